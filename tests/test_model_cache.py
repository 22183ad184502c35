import os

import numpy as np
import pytest

from sparkdl_pipe.errors import DatasetError
from sparkdl_pipe.executor.score import ModelCache, predict_arrays
from sparkdl_pipe.model_card import file_sha256
from sparkdl_pipe.model_fetch import cache_dir, fetch_model
from sparkdl_pipe.models import get_builder


def test_model_loaded_once_per_worker_and_reloaded_on_new_id(tmp_path):
    path = str(tmp_path / "m.keras")
    m = get_builder("mlp")((4, 4, 1), 3)
    m.save(path)
    other = str(tmp_path / "m2.keras")
    get_builder("mlp")((4, 4, 1), 3).save(other)
    cache = ModelCache()
    mid = file_sha256(path)[:16]
    a = cache.get(path, mid)
    assert cache.get(path, mid) is a and cache.loads == 1
    b = cache.get("file://" + path, mid)  # the same file by URL: loaded again from the node's one copy
    assert b is cache.get("file://" + path, mid) and cache.loads == 2
    cache.get(other, file_sha256(other)[:16])
    assert cache.loads == 3
    x = np.random.default_rng(0).integers(0, 255, (10, 4, 4, 1), dtype=np.uint8)
    # batching does not change results
    np.testing.assert_allclose(predict_arrays(a, x, 3), np.asarray(m(x)), rtol=1e-5, atol=1e-6)
    assert predict_arrays(a, x[:0], 3).shape == (0, 3)


def test_fetch_model_copies_once_and_refuses_a_file_that_does_not_match_its_card(tmp_path):
    path = str(tmp_path / "model.keras")
    get_builder("mlp")((4, 4, 1), 3).save(path)
    mid = file_sha256(path)[:16]
    local = fetch_model("file://" + path, mid)
    assert local.startswith(cache_dir()) and local != path and file_sha256(local)[:16] == mid
    stamp = os.stat(local).st_mtime_ns
    assert fetch_model("file://" + path, mid) == local and os.stat(local).st_mtime_ns == stamp
    with pytest.raises(DatasetError, match="does not match its model card"):
        fetch_model(path, "0123456789abcdef")  # a file changed after training
    with pytest.raises(DatasetError, match="model id"):
        fetch_model(path, "../../etc/x")
    with pytest.raises(DatasetError, match="does not exist"):
        fetch_model(str(tmp_path / "gone.keras"), "0123456789abcdef")

import numpy as np

from sparkdl_pipe.executor.score import ModelCache, predict_arrays
from sparkdl_pipe.models import get_builder


def test_model_loaded_once_per_worker_and_reloaded_on_new_id(tmp_path):
    path = str(tmp_path / "m.keras")
    m = get_builder("mlp")((4, 4, 1), 3)
    m.save(path)
    cache = ModelCache()
    a = cache.get(path, "id1")
    b = cache.get(path, "id1")
    assert a is b and cache.loads == 1
    cache.get(path, "id2")
    assert cache.loads == 2
    x = np.random.default_rng(0).integers(0, 255, (10, 4, 4, 1), dtype=np.uint8)
    # batching does not change results
    np.testing.assert_allclose(predict_arrays(a, x, 3), np.asarray(m(x)), rtol=1e-5, atol=1e-6)
    assert predict_arrays(a, x[:0], 3).shape == (0, 3)

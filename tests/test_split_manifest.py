import numpy as np
import pytest

from sparkdl_pipe.config import SplitConfig, TrainConfig
from sparkdl_pipe.errors import UserInputError
from sparkdl_pipe.executor.data import shuffled_batches
from sparkdl_pipe.manifest import fingerprint, natural_sorted
from sparkdl_pipe.records import label_from_rel_path, stable_hash
from sparkdl_pipe.schema import decode_pixels


def test_stable_hash_is_deterministic_and_uniform():
    a = [stable_hash(42, f"cat/{i}.png")[0] for i in range(5000)]
    b = [stable_hash(42, f"cat/{i}.png")[0] for i in range(5000)]
    assert a == b
    assert abs(np.mean(np.asarray(a) < 0.1) - 0.1) < 0.015
    assert stable_hash(1, "x")[0] != stable_hash(2, "x")[0]


def test_label_and_split_from_relative_path():
    assert label_from_rel_path("cat/a.png") == ("cat", None)
    assert label_from_rel_path("train/cat/a.png") == ("cat", "train")
    # the label is the first folder under the root or split folder (issue 21: was the parent, "x")
    assert label_from_rel_path("Validation/dog/x/y.jpg") == ("dog", "val")
    assert label_from_rel_path("a.png") == (None, None)
    assert label_from_rel_path("train/a.png") == ("train", None)  # a label folder named train


def test_natural_label_order():
    assert natural_sorted(["10", "2", "1", "b", "a", "2"]) == ["1", "2", "10", "a", "b"]


def test_manifest_fingerprint_ignores_timestamps():
    d = {"labels": ["a"], "created_at": "x", "versions": {"a": 1}}
    assert fingerprint(d) == fingerprint({**d, "created_at": "y", "versions": {}})
    assert fingerprint(d) != fingerprint({**d, "labels": ["b"]})


def test_config_validation_messages():
    with pytest.raises(UserInputError, match="less than 1"):
        SplitConfig(0.5, 0.5)
    with pytest.raises(UserInputError, match="--epochs"):
        TrainConfig("d", "o", epochs=0)


def test_decode_pixels_roundtrip():
    x = np.random.default_rng(0).integers(0, 255, (5, 4, 3, 2), dtype=np.uint8)
    np.testing.assert_array_equal(decode_pixels([r.tobytes() for r in x], (4, 3, 2)), x)
    assert decode_pixels([], (4, 3, 2)).shape == (0, 4, 3, 2)


def test_shuffled_batches_are_exact_and_lose_nothing_but_the_tail():
    chunks = [(np.arange(i * 100, (i + 1) * 100).reshape(100, 1), np.arange(i * 100, (i + 1) * 100))
              for i in range(7)]
    out = list(shuffled_batches(iter(chunks), 32, 128, np.random.default_rng(0)))
    assert all(len(y) == 32 for _, y in out)
    seen = np.concatenate([y for _, y in out])
    assert len(seen) == 700 // 32 * 32 and len(set(seen.tolist())) == len(seen)
    assert not np.array_equal(seen[:32], np.arange(32))  # shuffled
    for x, y in out:
        np.testing.assert_array_equal(x[:, 0], y)  # images stay with their labels

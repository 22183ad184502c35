"""Configuration mistakes through the real CLI: exit status 2, one line, no traceback, no Spark started."""

import os
import subprocess
import sys

import pytest

from sparkdl_pipe.preprocess.spec import ImageSpec

CLI = os.path.join(os.path.dirname(sys.executable), "sparkdl-pipe")


@pytest.fixture(scope="module")
def rgb_model(tmp_path_factory):
    """A real Keras model whose card says 8x8x3 (the digits dataset is 8x8x1)."""
    from tests.test_hostile_input import _tiny_model, save_model_dir

    spec = ImageSpec(8, 8, 3)
    return save_model_dir(str(tmp_path_factory.mktemp("m") / "rgb"), _tiny_model(spec), ["a", "b"], spec)


def test_config_mistakes_exit_2_with_one_line(digits_ds, rgb_model, tmp_path):
    ds = digits_ds[0]
    cases = [
        (["train", "--dataset", ds, "--output", str(tmp_path / "m"), "--model", "resnet9000"], "one of ['bilstm', 'cnn', 'conv_autoencoder', 'fasttext', 'mlp', 'textcnn']"),
        (["train", "--dataset", str(tmp_path / "nope"), "--output", str(tmp_path / "m")], "does not exist"),
        (["train", "--dataset", ds, "--output", str(tmp_path / "m"), "--rank-timeout", "1"], "--rank-timeout"),
        (["ingest-images", "--input", ds, "--output", str(tmp_path / "d"), "--image-size", "8", "9999"],
         "image width: expected an integer between 1 and 4096"),
        (["score", "--model", rgb_model, "--input", os.path.join(ds, "test"), "--output", str(tmp_path / "s")],
         "the data's preprocessing does not match the model's"),
        (["score", "--model", ds, "--input", ds, "--output", str(tmp_path / "s")], "not a sparkdl_pipe model"),
        (["ingest-images", "--input", ds, "--output", str(tmp_path / "d"), "--max-rejects", "-1"], "--max-rejects"),
        (["train", "--dataset", ds, "--output", "gs://bucket/m"], "expected a path or a file://, hdfs://, s3:// or s3a://"),
    ]
    for args, needle in cases:
        r = subprocess.run([CLI, *args], capture_output=True, text=True, timeout=300)
        assert r.returncode == 2, (args, r.stderr[-1500:])
        assert "Traceback" not in r.stderr and "SparkContext" not in r.stderr, args
        errors = [ln for ln in r.stderr.splitlines() if ": error:" in ln]
        assert len(errors) == 1 and needle in errors[0], (args, errors)

"""The command line and the spark-submit jobs, run as a user runs them (real subprocesses)."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import make_image_folder

BIN = os.path.dirname(sys.executable)
CLI = os.path.join(BIN, "sparkdl-pipe")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(cmd, timeout=600):
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)


def test_help_for_every_command_has_an_example():
    r = run([CLI, "--help"])
    assert r.returncode == 0 and "ingest-images" in r.stdout and "example" in r.stdout
    for cmd in ("ingest-images", "train", "score", "demo"):
        r = run([CLI, cmd, "--help"])
        assert r.returncode == 0, r.stderr
        assert "example" in r.stdout and "--overwrite" in r.stdout and "--master" in r.stdout


@pytest.mark.parametrize("args,needle", [
    (["ingest-images", "--input", "/nonexistent/photos", "--output", "/tmp/sdp-x"], "does not exist"),
    (["ingest-images", "--input", "/tmp", "--output", "/tmp/sdp-x", "--image-size", "0"], "image height"),
    (["train", "--dataset", "/nonexistent/ds", "--output", "/tmp/sdp-m"], "does not exist"),
    (["score", "--model", "/tmp", "--input", "/tmp", "--output", "/tmp/sdp-s"], "not a sparkdl_pipe model"),
])
def test_user_mistakes_get_one_line_and_status_2(args, needle):
    r = run([CLI, *args])
    assert r.returncode == 2, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    errors = [line for line in r.stderr.splitlines() if ": error:" in line]
    assert len(errors) == 1 and needle in errors[0]


def test_spark_submit_jobs_end_to_end(tmp_path):
    raw = str(tmp_path / "raw")
    make_image_folder(raw, per_label=48, size=(12, 12))
    submit = [os.path.join(BIN, "spark-submit"), "--master", "local[2]", "--conf", "spark.ui.enabled=false"]
    ds, model, scores = str(tmp_path / "ds"), str(tmp_path / "model"), str(tmp_path / "scores")
    r = run([*submit, "jobs/ingest_images.py", "--input", raw, "--output", ds, "--image-size", "12",
             "--channels", "3"])
    assert r.returncode == 0, (r.stdout[-1000:], [ln for ln in r.stderr.splitlines() if "error" in ln.lower()][-5:])
    assert "ingested 96 records" in r.stdout
    cfg = tmp_path / "train.yaml"  # a config file, with a flag overriding one of its values
    cfg.write_text(f"dataset: {ds}\noutput: {model}\nmodel: mlp\nepochs: 5\nbatch_size: 8\nnum_proc: 2\n")
    r = run([*submit, "jobs/train.py", "--config", str(cfg), "--epochs", "3"])
    assert r.returncode == 0, (r.stdout[-1000:], [ln for ln in r.stderr.splitlines() if "error" in ln.lower()][-5:])
    card = json.load(open(os.path.join(model, "model_card.json")))
    assert card["training"]["num_proc"] == 2 and card["final"]["test_accuracy"] >= 0.8
    assert card["training"]["epochs"] == 3
    # rank 0's progress reached the driver's console, one line per epoch
    # (spark-submit's PythonRunner merges the driver's stderr into its stdout)
    console = (r.stdout + r.stderr).splitlines()
    epochs = [ln for ln in console if ln.startswith("[train] epoch ")]
    assert [ln.split(":")[0] for ln in epochs] == [f"[train] epoch {i}/3" for i in (1, 2, 3)], \
        [ln for ln in console if "progress" in ln or "[train]" in ln][-5:]
    assert all("samples/s" in ln and "left" in ln for ln in epochs)
    assert os.path.exists(os.path.join(model, "report.md"))
    r = run([*submit, "jobs/score.py", "--model", model, "--input", raw, "--output", scores])
    assert r.returncode == 0, (r.stdout[-1000:], [ln for ln in r.stderr.splitlines() if "error" in ln.lower()][-5:])
    summary = json.load(open(os.path.join(scores, "_sparkdl_score.json")))
    assert summary["input_rows"] == 96 and summary["scored"] == 96 and summary["accuracy"] >= 0.8
    import yaml

    for out, key, value in ((ds, "input", raw), (model, "epochs", 3), (scores, "model", model)):
        saved = yaml.safe_load(open(os.path.join(out, "_sparkdl_config.yaml")))
        assert saved[key] == value

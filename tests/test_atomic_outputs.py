"""Atomic, idempotent outputs: a real CLI job SIGKILLed mid-write (with its JVM and Python workers)
leaves the previous output or nothing; leftovers do not break the next run; re-runs refuse."""

import glob
import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from sparkdl_pipe import storage
from sparkdl_pipe.config import IngestImagesConfig
from sparkdl_pipe.driver.ingest import run_ingest_images
from sparkdl_pipe.preprocess.spec import ImageSpec
from tests.conftest import make_image_folder

CLI = os.path.join(os.path.dirname(sys.executable), "sparkdl-pipe")
ARGS = ["--image-size", "16", "--channels", "3", "--row-group-mb", "0.01", "--master", "local[2]",
        "--conf", "spark.ui.enabled=false"]


def _env():
    return {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}


def _kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL the job: every descendant by PID, and its process group (it leads one)."""
    kids = psutil.Process(proc.pid).children(recursive=True)
    os.killpg(proc.pid, signal.SIGKILL)
    for k in kids:
        try:
            os.kill(k.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(60)


def _ingest_killed_mid_write(raw: str, out: str, *extra: str) -> str:
    """Start `sparkdl-pipe ingest-images`, SIGKILL it once its staging dir has data; return that dir."""
    proc = subprocess.Popen([CLI, "ingest-images", "--input", raw, "--output", out, *ARGS, *extra],
                            env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    parent, name = os.path.split(out)
    pattern = os.path.join(parent, f".{name}.staging-*", "*", "*.parquet")
    deadline = time.time() + 300
    try:
        while not glob.glob(pattern):
            assert proc.poll() is None, "the job ended before it could be killed"
            assert time.time() < deadline
            time.sleep(0.02)
    finally:
        _kill_tree(proc)
    staged = glob.glob(os.path.join(parent, f".{name}.staging-*"))
    assert len(staged) == 1
    return staged[0]


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("raw-atomic"))
    make_image_folder(root, labels=("a", "b", "c", "d"), per_label=100, size=(16, 16))
    return root


def test_kill_mid_write_leaves_nothing_or_the_previous_output(spark, raw, tmp_path):
    # 1. no previous output: nothing at the target, only a hidden staging directory
    out = str(tmp_path / "ds")
    staged = _ingest_killed_mid_write(raw, out)
    assert not os.path.exists(out)
    assert os.path.isdir(staged)  # partial data, never visible at the target

    # 2. a previous output: still there, complete and unchanged, after a killed --overwrite
    prev = str(tmp_path / "prev")
    res = run_ingest_images(spark, IngestImagesConfig(raw, prev, ImageSpec(8, 8, 1)))
    before = json.load(open(os.path.join(prev, storage.MANIFEST_FILE)))
    _ingest_killed_mid_write(raw, prev, "--overwrite")
    after = json.load(open(os.path.join(prev, storage.MANIFEST_FILE)))
    assert after == before and after["fingerprint"] == res.fingerprint
    assert spark.read.parquet(os.path.join(prev, "train")).count() == res.counts["train"]

    # 3. the next run cleans the killed job's staging directory and publishes
    r = subprocess.run([CLI, "ingest-images", "--input", raw, "--output", prev, *ARGS, "--overwrite"],
                       env=_env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "removed" in r.stderr and "left by a killed job" in r.stderr
    assert not glob.glob(os.path.join(str(tmp_path), ".prev.staging-*"))
    assert json.load(open(os.path.join(prev, storage.MANIFEST_FILE)))["preprocess"]["height"] == 16

    # 4. re-running onto an existing output without --overwrite: one line, exit 2, before Spark starts
    r = subprocess.run([CLI, "ingest-images", "--input", raw, "--output", prev, *ARGS], env=_env(),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert [ln for ln in r.stderr.splitlines() if ": error:" in ln] == [
        f"sparkdl-pipe ingest-images: error: output file://{prev} already exists. Pass --overwrite to replace it"]


def test_max_rejects_exit_status_3_and_nothing_published(tmp_path):
    raw = str(tmp_path / "raw")
    make_image_folder(raw, per_label=4, size=(8, 8))
    open(os.path.join(raw, "cat", "empty.png"), "wb").close()
    out = str(tmp_path / "ds")
    r = subprocess.run([CLI, "ingest-images", "--input", raw, "--output", out, *ARGS, "--max-rejects", "0"],
                       env=_env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 3, r.stderr[-2000:]
    err = [ln for ln in r.stderr.splitlines() if ": error:" in ln]
    assert len(err) == 1 and "1 rejected record(s) exceed --max-rejects 0 (empty_file 1)" in err[0]
    assert not os.path.exists(out) and not glob.glob(str(tmp_path / ".ds.staging-*"))


def test_interrupted_swap_is_restored_and_dead_owners_cleaned(tmp_path):
    target = tmp_path / "out"
    old = tmp_path / ".out.staging-0123abcd-old"  # killed between the two renames of a publish
    old.mkdir()
    (old / "data").write_text("previous")
    dead = tmp_path / ".out.staging-deadbeef"
    dead.mkdir()
    (dead / storage.OWNER_FILE).write_text(json.dumps({"host": __import__("socket").gethostname(),
                                                       "pid": 2**22 + 7, "process_started": 0}))
    live = tmp_path / ".out.staging-a11ve000"
    live.mkdir()
    storage._write_owner("file://" + str(live))  # this very process: alive
    done = storage.prepare_output("file://" + str(target), overwrite=True)
    assert (target / "data").read_text() == "previous" and not old.exists()
    assert not dead.exists() and live.exists() and len(done) == 2


def test_only_files_reported_by_successful_tasks_are_kept(tmp_path):
    """Ingest and scoring tasks write their own part files; a failed or duplicate attempt's files,
    which no collected summary names, are removed before anything is counted or published."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from sparkdl_pipe.executor.parts import PartWriter, keep_reported

    staging = "file://" + str(tmp_path / "staging")
    part = PartWriter(staging, "train", pa.schema([("x", pa.int32())]))
    part.write(pa.table({"x": pa.array([1, 2, 3], pa.int32())}))
    name, rows = part.close()
    assert (name, rows) == ("train/part-00000-0.parquet", 3)
    assert PartWriter(staging, "val", part.schema).close() is None  # no rows: no file at all
    for leftover in ("train/part-00000-1.parquet", "rejects/part-00003-0.parquet"):
        os.makedirs(os.path.dirname(tmp_path / "staging" / leftover), exist_ok=True)
        (tmp_path / "staging" / leftover).write_bytes(b"partial write of a failed attempt")
    keep_reported(staging, ("train", "val", "rejects"), {name})
    assert sorted(os.listdir(tmp_path / "staging" / "train")) == ["part-00000-0.parquet"]
    assert os.listdir(tmp_path / "staging" / "rejects") == []
    assert pq.read_table(str(tmp_path / "staging" / "train")).column("x").to_pylist() == [1, 2, 3]

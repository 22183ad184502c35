"""A real Spark standalone cluster (master + 2 workers as separate processes) and the jobs on it.

The cluster is started with :mod:`sparkdl_pipe.cluster` (what ``make cluster-up`` runs) on free
ports. Each worker advertises two fake GPUs through the shipped ``scripts/gpu_discovery.sh`` (fed by a
fake ``nvidia-smi``: worker 1 has GPUs 0 and 1, worker 2 has GPUs 3 and 5), so GPU scheduling is
exercised on CPU machines: each rank/scoring task must pin the address Spark gave it, and
TensorFlow then finds no GPU and runs on the CPU. At the end every process is stopped by PID and
none may be left.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import psutil
import pytest

from sparkdl_pipe import cluster as cl

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
FAKE_GPUS = (("0", "1"), ("3", "5"))
GPU_CONF = ["--conf", "spark.executor.resource.gpu.amount=1", "--conf", "spark.task.resource.gpu.amount=1"]


def fake_discovery_script(directory: str, addresses: tuple[str, ...]) -> str:
    """scripts/gpu_discovery.sh run with a fake nvidia-smi that lists ``addresses``."""
    bindir = os.path.join(directory, "bin")
    os.makedirs(bindir, exist_ok=True)
    smi = os.path.join(bindir, "nvidia-smi")
    with open(smi, "w") as f:
        f.write("#!/bin/sh\n" + "".join(f"echo {a}\n" for a in addresses))
    script = os.path.join(directory, "discover.sh")
    with open(script, "w") as f:
        f.write(f"#!/bin/sh\nPATH={bindir}:$PATH exec {ROOT}/scripts/gpu_discovery.sh\n")
    for p in (smi, script):
        os.chmod(p, 0o755)
    return script


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    base = tmp_path_factory.mktemp("cluster")
    workers = tuple(cl.WorkerSpec(gpus=len(a), gpu_discovery=fake_discovery_script(str(base / f"gpus{i}"), a))
                    for i, a in enumerate(FAKE_GPUS))
    c = cl.start_cluster(cl.ClusterSpec(workers=workers, start_timeout=300), str(base / "state"))
    print(f"\ncluster {c.master_url} up in {c.seconds_to_start:.1f}s", flush=True)
    try:
        yield c
    finally:
        started = c.processes()  # daemons, executors, Python workers, Horovod ranks
        left = c.stop()
        assert not left, f"processes left behind: {left}"
        alive = [p.pid for p in started if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        assert not alive, f"processes left behind: {alive}"


def _env() -> dict[str, str]:
    # The driver and the executors run this venv's python (the package is installed there).
    return {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}


def submit(c: cl.Cluster, job: str, *args: str, conf: list[str] | None = None) -> tuple[str, float]:
    cmd = [os.path.join(BIN, "spark-submit"), "--master", c.master_url, "--conf", "spark.ui.enabled=false",
           *(conf or []), f"jobs/{job}", *args]
    t0 = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=_env(), cwd=ROOT)
    secs = time.time() - t0
    errors = [ln for ln in r.stderr.splitlines() if "error" in ln.lower() or "Traceback" in ln]
    assert r.returncode == 0, (job, r.stdout[-2000:], errors[-10:], r.stderr[-3000:])
    print(f"{job}: {secs:.1f}s: {r.stdout.strip().splitlines()[-1]}", flush=True)
    return r.stdout, secs


def test_make_cluster_up_and_down(tmp_path):
    """What people run: background daemons with PID files that outlive `make`, stopped by PID."""
    state = tmp_path / "c"
    make = ["make", "-s", "-C", ROOT, f"VENV={os.path.dirname(BIN)}", f"CLUSTER_DIR={state}",
            "CLUSTER_ARGS=--master-port 0 --ui-port 0 --workers 1 --timeout 300"]
    try:
        r = subprocess.run([*make, "cluster-up"], capture_output=True, text=True, timeout=400, env=_env())
        assert r.returncode == 0, r.stderr[-3000:]
        assert "cluster up in" in r.stdout
        pids = {f.stem: int(f.read_text()) for f in state.glob("*.pid")}
        assert set(pids) == {"master", "worker-1"} and all(psutil.pid_exists(p) for p in pids.values())
        c = cl.Cluster.load(str(state))
        assert len(cl.alive_workers(cl.master_status(c.ui_url))) == 1
        r = subprocess.run([*make, "cluster-up"], capture_output=True, text=True, timeout=120, env=_env())
        assert r.returncode != 0 and "cluster-down" in r.stderr  # refuses to start a second one there
        started = c.processes()
        r = subprocess.run([*make, "cluster-down"], capture_output=True, text=True, timeout=120, env=_env())
        assert r.returncode == 0 and "stopped" in r.stdout, r.stderr[-2000:]
        assert not list(state.glob("*.pid"))
        assert not [p.pid for p in started if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    finally:
        if (state / cl.STATE_FILE).exists():
            cl.Cluster.load(str(state)).stop()


def test_workers_registered_with_their_settings(cluster):
    st = cl.master_status(cluster.ui_url)
    workers = cl.alive_workers(st)
    assert len(workers) == 2
    assert all(w["cores"] == cl.WORKER_CORES and w["memory"] == 3072 for w in workers)
    gpus = sorted(tuple(sorted(w["resources"]["gpu"]["addresses"])) for w in workers)
    assert gpus == sorted(FAKE_GPUS)
    check = [sys.executable, "-m", "sparkdl_pipe.cluster", "check", "--ui", cluster.ui_url]
    assert subprocess.run([*check, "--min-workers", "2"], timeout=60).returncode == 0
    assert subprocess.run([*check, "--min-workers", "3"], capture_output=True, timeout=60).returncode == 1


def test_spark_submit_jobs_on_the_cluster_with_gpu_scheduling(cluster, digits_folder, tmp_path):
    """ingest -> train (2 ranks) -> score through spark-submit, every location an explicit file:// URL."""
    import pyarrow.parquet as pq

    url = lambda p: "file://" + str(p)  # noqa: E731
    raw, ds, model, scores = url(digits_folder), url(tmp_path / "ds"), url(tmp_path / "model"), url(tmp_path / "scores")
    t0 = time.time()
    out, _ = submit(cluster, "ingest_images.py", "--input", raw, "--output", ds, "--image-size", "8")
    manifest = json.load(open(tmp_path / "ds" / "_sparkdl_manifest.json"))
    counts = {s: manifest["splits"][s]["count"] for s in ("train", "val", "test")}
    assert sum(counts.values()) == 1797 and counts["test"] == 360 and counts["val"] > 0
    submit(cluster, "train.py", "--dataset", ds, "--output", model, "--model", "mlp", "--epochs", "6",
           "--batch-size", "32", "--num-proc", "2", conf=GPU_CONF)
    card = json.load(open(tmp_path / "model" / "model_card.json"))
    assert card["training"]["num_proc"] == 2 and card["final"]["test_rows"] == 360
    assert card["training"]["hosts"] == [socket.gethostname()] * 2  # both workers run on this host
    assert card["training"]["transport"] == "gloo"  # a GPU job keeps one rank in each Spark task
    assert card["final"]["test_accuracy"] >= 0.85, card["final"]
    assert (tmp_path / "model" / "model.keras").exists()
    assert (tmp_path / "model" / "checkpoints" / "epoch-006.weights.h5").exists()
    # Each rank pinned the GPU Spark assigned to its task (one on each worker), and TF saw no GPU.
    devices = card["training"]["devices"]
    assert len(devices) == 2
    for d in devices:
        assert d["source"] == "horovod-task" and len(d["task_gpus"]) == 1, devices
        assert d["cuda_visible_devices"] == d["task_gpus"][0] and d["tf_gpus"] == 0, devices
    got = sorted(d["task_gpus"][0] for d in devices)
    assert got[0] in FAKE_GPUS[0] and got[1] in FAKE_GPUS[1], devices

    submit(cluster, "score.py", "--model", model, "--input", url(os.path.join(digits_folder, "test")),
           "--output", scores, conf=GPU_CONF)
    summary = json.load(open(tmp_path / "scores" / "_sparkdl_score.json"))
    assert summary["input_rows"] == 360 and summary["scored"] == 360 and summary["rejected"] == 0
    assert summary["accuracy"] >= 0.85
    assert pq.read_table(str(tmp_path / "scores" / "predictions")).num_rows == 360
    assert summary["devices"], summary
    all_gpus = set(FAKE_GPUS[0] + FAKE_GPUS[1])
    for d in summary["devices"]:
        assert d["source"] == "spark-task" and len(d["task_gpus"]) == 1 and d["task_gpus"][0] in all_gpus
        assert d["cuda_visible_devices"] == d["task_gpus"][0] and d["tf_gpus"] == 0, summary["devices"]
    print(f"end to end on the cluster: {time.time() - t0:.1f}s, test accuracy "
          f"{card['final']['test_accuracy']:.4f} (ranks), {summary['accuracy']:.4f} (scored)", flush=True)

    # The jobs ran on this cluster (spark-submit's --master won over the package's local default).
    names = [a["name"] for a in cl.master_status(cluster.ui_url).get("completedapps", [])]
    for cmd in ("ingest-images", "train", "score"):
        assert f"sparkdl_pipe {cmd}" in names, names


def test_cpu_training_on_the_cluster_goes_over_mpi(cluster, digits_folder, tmp_path):
    """Without GPUs, ``--transport auto`` trains over MPI: mpirun starts its daemon through a Spark task
    of the cluster, the two ranks end in sync and learn, and nothing is left running (fixture)."""
    url = lambda p: "file://" + str(p)  # noqa: E731
    ds, model = url(tmp_path / "ds"), url(tmp_path / "model")
    submit(cluster, "ingest_images.py", "--input", url(digits_folder), "--output", ds, "--image-size", "8")
    submit(cluster, "train.py", "--dataset", ds, "--output", model, "--model", "mlp", "--epochs", "6",
           "--batch-size", "32", "--num-proc", "2")
    card = json.load(open(tmp_path / "model" / "model_card.json"))
    assert card["training"]["transport"] == "mpi" and card["training"]["transport_requested"] == "auto"
    assert card["training"]["num_proc"] == 2 and card["final"]["test_rows"] == 360
    assert card["training"]["hosts"] == [socket.gethostname()] * 2  # both workers run on this host
    assert card["final"]["test_accuracy"] >= 0.85, card["final"]
    assert (tmp_path / "model" / "model.keras").exists()

"""docker-compose.yml, its GPU override, the Dockerfile and `make compose-test`, checked against sparkdl_pipe.cluster.

CI runs no Docker engine, so here the files are parsed and their services' commands are run through
the same code that starts the test suite's standalone cluster (``sparkdl_pipe.cluster``): same
entry-point classes, ports, worker cores and memory, and executor environment, so the compose
cluster and the tested one cannot drift apart. ``make compose-test`` (scripts/compose-test.sh, run
by hand where an engine runs) builds the image and runs the jobs on the compose cluster; the tests
below keep its services, hosts and checks in step with the compose file.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
from dataclasses import replace

import pytest
import yaml

from sparkdl_pipe import cluster as cl
from sparkdl_pipe._env import EXECUTOR_ENV

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE_ROOT = "/opt/sparkdl_pipe"  # the Dockerfile's WORKDIR, where the repo is copied
MODULE = ["python", "-m", "sparkdl_pipe.cluster"]
WORKERS = ("spark-worker-1", "spark-worker-2")


def load(name: str) -> dict:
    with open(os.path.join(ROOT, name)) as f:
        return yaml.safe_load(f)


@pytest.fixture(scope="module")
def compose() -> dict:
    return load("docker-compose.yml")["services"]


@pytest.fixture(scope="module")
def gpu() -> dict:
    return load("docker-compose.gpu.yml")["services"]


def module_args(service: dict) -> list[str]:
    cmd = service["command"]
    assert cmd[:3] == MODULE, f"services run the cluster module, got {cmd}"
    return cmd[3:]


def published(service: dict) -> set[int]:
    return {int(str(p).split(":")[-1]) for p in service.get("ports", [])}


def test_master_runs_what_the_fixture_runs(compose):
    master = compose["spark-master"]
    cmd, env = cl.foreground_command(module_args(master))
    assert cmd == cl.master_command(master["hostname"], cl.MASTER_PORT, cl.MASTER_UI_PORT)
    assert cmd[1] == cl.MASTER_CLASS and os.path.basename(cmd[0]) == "spark-class"
    assert {cl.MASTER_PORT, cl.MASTER_UI_PORT} <= published(master)
    assert all(env[k] == v for k, v in EXECUTOR_ENV.items())


@pytest.mark.parametrize("name", WORKERS)
def test_workers_run_what_the_fixture_runs(compose, name):
    worker = compose[name]
    args = module_args(worker)
    cmd, env = cl.foreground_command(args)
    ui_port = int(args[args.index("--ui-port") + 1])
    work_dir = args[args.index("--work-dir") + 1]
    master_url = f"spark://{compose['spark-master']['hostname']}:{cl.MASTER_PORT}"
    # The fixture's workers: cl.WorkerSpec() (its cores/memory defaults) through cl.worker_command.
    assert cmd == cl.worker_command(master_url, replace(cl.WorkerSpec(), ui_port=ui_port), worker["hostname"],
                                    work_dir)
    assert cmd[1] == cl.WORKER_CLASS and ui_port in published(worker)
    assert cmd[cmd.index("--cores") + 1] == str(cl.WORKER_CORES)
    assert cmd[cmd.index("--memory") + 1] == cl.WORKER_MEMORY
    assert all(env[k] == v for k, v in EXECUTOR_ENV.items())  # executors inherit these
    assert work_dir.startswith("/data/")
    assert worker["depends_on"]["spark-master"]["condition"] == "service_healthy"


def test_every_service_shares_image_env_and_data_volume(compose):
    assert set(compose) == {"spark-master", *WORKERS, "client"}
    images = {s["image"] for s in compose.values()}
    assert len(images) == 1, images
    for name, s in compose.items():
        assert s["build"]["context"] == "." and s["build"]["dockerfile"] == "Dockerfile", name
        assert all(s["environment"][k] == v for k, v in EXECUTOR_ENV.items()), name
        assert s["environment"]["PYSPARK_PYTHON"] == f"{IMAGE_ROOT}/.venv/bin/python", name
        assert "data:/data" in s["volumes"], name
    assert "data" in load("docker-compose.yml")["volumes"]


def test_health_checks_use_the_cluster_module(compose):
    for name in ("spark-master", *WORKERS):
        s = compose[name]
        test = s["healthcheck"]["test"]
        assert test[0] == "CMD" and test[1:4] == MODULE and test[4] == "check", test
        port = int(test[test.index("--ui") + 1].rsplit(":", 1)[1])
        assert port in published(s)
        args = cl.build_parser().parse_args(test[4:])  # parses with the module's own parser
        assert args.command == "check"


def test_client_submits_to_the_compose_master_and_readme_shows_the_line(compose):
    client = compose["client"]
    assert client["profiles"] == ["client"]
    assert {w: {"condition": "service_healthy"} for w in WORKERS} == client["depends_on"]
    cmd = client["command"]
    assert cmd[0] == "sparkdl-pipe" and cmd[cmd.index("--master") + 1] == f"spark://spark-master:{cl.MASTER_PORT}"
    assert cmd[cmd.index("--workdir") + 1].startswith("/data/")
    readme = open(os.path.join(ROOT, "README.md")).read()
    # The project name comes from -p (no top-level `name:`), in the Compose v1 and v2 spellings.
    assert "docker-compose -p sparkdl-pipe run --rm client" in readme
    assert "docker compose -p sparkdl-pipe run --rm client" in readme


def test_compose_v1_accepts_the_file():
    """Debian 12's docker-compose 1.29 refuses a top-level `name:` and a `version:` is obsolete in v2."""
    for name in ("docker-compose.yml", "docker-compose.gpu.yml"):
        top = load(name)
        assert "name" not in top and "version" not in top, name
        assert set(top) <= {"services", "volumes"} | {k for k in top if k.startswith("x-")}, name
        for svc, s in top["services"].items():
            assert "secrets" not in s.get("build", {}), f"{name}:{svc}: Compose v1 has no build secrets"


def test_ports_are_published_on_localhost_only(compose):
    for name, s in compose.items():
        for p in s.get("ports", []):
            host_ip, host_port, container_port = str(p).split(":")
            assert host_ip == "127.0.0.1", f"{name} publishes {p} beyond this machine"
            assert re.fullmatch(r"\$\{SPARKDL_PORT_[A-Z0-9_]+-" + container_port + r"\}", host_port), p


def test_dockerfile_installs_with_install_sh():
    text = open(os.path.join(ROOT, "Dockerfile")).read()
    assert not re.search(r"^#\s*syntax=", text, re.M), "a syntax line pulls the frontend from a registry"
    runs = [r for r in re.split(r"\n(?=[A-Z]+ )", text) if r.startswith("RUN ")]
    downloading = [r for r in runs if "apt-get" in r or "install.sh" in r]
    assert len(downloading) == 2
    for r in downloading:  # the extra CA bundle comes as a secret, joined in a tmpfs, for that step only
        assert "--mount=type=secret,id=ca_bundle,required=false" in r and "--mount=type=tmpfs,target=/run/sparkdl-ca" in r
        assert "docker-ca-env.sh" in r
    assert not re.search(r"^(COPY|ADD)\b.*\.(pem|crt)\b", text, re.M | re.I)
    assert not re.search(r"^ENV\b.*(CERT|CA_BUNDLE)", text, re.M)
    ignored = open(os.path.join(ROOT, ".dockerignore")).read().split()
    assert {"**/*.pem", "**/*.crt", "**/*.key", "**/.env"} <= set(ignored)
    assert "scripts/install.sh" in text and "ARG HOROVOD_GPU_OPERATIONS" in text
    assert f"WORKDIR {IMAGE_ROOT}" in text and f"PYSPARK_PYTHON={IMAGE_ROOT}/.venv/bin/python" in text
    install = open(os.path.join(ROOT, "scripts", "install.sh")).read()
    assert "HOROVOD_GPU_OPERATIONS" in install


@pytest.mark.parametrize("name", WORKERS)
def test_gpu_workers_reserve_and_advertise_gpus(compose, gpu, name):
    worker = gpu[name]
    args = module_args(worker)
    cpu_args = module_args(compose[name])
    assert args[:len(cpu_args)] == cpu_args, "the GPU worker is the CPU worker plus GPU flags"
    _cmd, env = cl.foreground_command(args)
    script = args[args.index("--gpu-discovery") + 1]
    assert script == f"{IMAGE_ROOT}/scripts/gpu_discovery.sh"
    assert os.access(os.path.join(ROOT, "scripts", "gpu_discovery.sh"), os.X_OK)
    opts = shlex.split(env["SPARK_WORKER_OPTS"])
    assert "-Dspark.worker.resource.gpu.amount=1" in opts
    assert f"-Dspark.worker.resource.gpu.discoveryScript={script}" in opts
    (dev,) = worker["deploy"]["resources"]["reservations"]["devices"]
    assert dev["driver"] == "nvidia" and dev["capabilities"] == ["gpu"] and len(dev["device_ids"]) == 1


def test_gpu_image_builds_horovod_with_nccl_and_jobs_ask_for_gpus(gpu):
    for name, s in gpu.items():
        assert s["build"]["args"]["HOROVOD_GPU_OPERATIONS"] == "NCCL", name
        assert "cuda" in s["build"]["args"]["BASE_IMAGE"] and "devel" in s["build"]["args"]["BASE_IMAGE"]
    cmd = gpu["client"]["command"]
    confs = [cmd[i + 1] for i, a in enumerate(cmd) if a == "--conf"]
    assert "spark.executor.resource.gpu.amount=1" in confs and "spark.task.resource.gpu.amount=1" in confs


def test_compose_test_runs_the_compose_cluster(compose):
    """scripts/compose-test.sh starts the compose file's master and workers and checks the ranks' hosts."""
    text = open(os.path.join(ROOT, "scripts", "compose-test.sh")).read()
    workers = re.search(r"^WORKERS=\((.*)\)$", text, re.M).group(1).split()
    assert tuple(workers) == WORKERS and [compose[w]["hostname"] for w in workers] == workers
    master = re.search(r"^MASTER_URL=(\S+)$", text, re.M).group(1)
    assert master == f"spark://{compose['spark-master']['hostname']}:{cl.MASTER_PORT}"
    assert 'up -d --no-build spark-master "${WORKERS[@]}"' in text
    assert "--min-workers" in text and "--num-proc 2" in text
    assert re.search(r"trap cleanup EXIT", text) and "down -v" in text
    for job in re.findall(r"submit (\w+\.py)", text):
        assert os.path.exists(os.path.join(ROOT, "jobs", job)), job
    makefile = open(os.path.join(ROOT, "Makefile")).read()
    assert re.search(r"^compose-test:\n\tbash scripts/compose-test.sh$", makefile, re.M)


def _compose_check():
    spec = importlib.util.spec_from_file_location("compose_check", os.path.join(ROOT, "scripts", "compose_check.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _fake_run(root, hosts, test_accuracy=0.85, scored_accuracy=0.85, rejected=0):
    """What the three jobs write, as far as compose_check reads it: manifest, model card, score summary."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for d in ("dataset", "model", "scores/predictions/part-0"):
        os.makedirs(root / d, exist_ok=True)
    (root / "dataset" / "_sparkdl_manifest.json").write_text(json.dumps({
        "input_records": 50, "fingerprint": "f1", "rejects": {"count": 0},
        "splits": {"train": {"count": 36}, "val": {"count": 4}, "test": {"count": 10}}}))
    (root / "model" / "model_card.json").write_text(json.dumps({
        "model_id": "m1", "dataset": {"fingerprint": "f1"},
        "training": {"num_proc": 2, "hosts": hosts, "transport": "mpi", "epochs": 3, "seconds": 9.0},
        "final": {"test_rows": 10, "test_accuracy": test_accuracy, "val_accuracy": 0.8}}))
    (root / "scores" / "_sparkdl_score.json").write_text(json.dumps({
        "input_rows": 10, "scored": 10 - rejected, "rejected": rejected, "accuracy": scored_accuracy,
        "model_id": "m1"}))
    pq.write_table(pa.table({"x": list(range(10 - rejected))}), root / "scores/predictions/part-0/a.parquet")


def test_compose_check_reconciles_counts_accuracy_and_hosts(tmp_path, capsys):
    check = _compose_check().check
    args = dict(n_train=40, n_test=10, min_accuracy=0.75, hosts=list(WORKERS))
    _fake_run(tmp_path, list(reversed(WORKERS)))
    assert check(str(tmp_path), **args) == 0
    _fake_run(tmp_path, ["spark-worker-1", "spark-worker-1"])  # both ranks on one host
    assert check(str(tmp_path), **args) == 1
    assert "different hosts" in capsys.readouterr().err
    _fake_run(tmp_path, list(WORKERS), test_accuracy=0.5, scored_accuracy=0.5)
    assert check(str(tmp_path), **args) == 1
    _fake_run(tmp_path, list(WORKERS), rejected=1)
    assert check(str(tmp_path), **args) == 1
    assert check(str(tmp_path), **{**args, "n_test": 11}) == 1

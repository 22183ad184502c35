"""docker-compose.yml, its GPU override and the Dockerfile, checked against sparkdl_pipe.cluster.

No Docker engine runs here (and the client has no compose plugin), so the files are parsed and
their services' commands are run through the same code that starts the test suite's standalone
cluster (``sparkdl_pipe.cluster``): same entry-point classes, ports, worker cores and memory, and
executor environment, so the compose cluster and the tested one cannot drift apart.
"""

from __future__ import annotations

import os
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
    assert "docker compose run --rm client" in readme


def test_dockerfile_installs_with_install_sh():
    text = open(os.path.join(ROOT, "Dockerfile")).read()
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

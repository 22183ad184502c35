"""Getting a SparkSession configured for this package, and asking it how much it can run.

Runs on: driver.
"""

from __future__ import annotations

import logging
import os
import sys
import time

from sparkdl_pipe._env import EXECUTOR_ENV, worker_env
from sparkdl_pipe.compat import python_daemon_conf
from sparkdl_pipe.errors import SparkSetupError

log = logging.getLogger(__name__)


def make_spark_session(master: str | None = None, app_name: str = "sparkdl_pipe", conf: dict | None = None):
    """The active SparkSession, or a new one (``local[*]`` unless ``master`` or spark-submit says).

    Executors get :data:`sparkdl_pipe._env.EXECUTOR_ENV` and the workers' malloc settings
    (:func:`sparkdl_pipe._env.worker_env`) through ``spark.executorEnv.*``. Under
    spark-submit the session it built is returned (its settings win).
    """
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    b = SparkSession.builder.appName(app_name)
    if master:
        b = b.master(master)
    elif not os.environ.get("PYSPARK_GATEWAY_PORT"):
        # Plain `python`/CLI: local. Under spark-submit (gateway already up) its --master wins.
        b = b.master("local[*]")
    defaults = {
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.shuffle.partitions": "8",
        "spark.ui.showConsoleProgress": "false",
        "spark.driver.memory": "4g",
        # PySpark's daemon, minus the per-task re-reading of every zip on the path (executor/pydaemon.py),
        # where the installed PySpark has the hook it wraps (compat.py: not on Spark 3.5)
        **python_daemon_conf(),
    }
    users = {"GLIBC_TUNABLES": os.environ["GLIBC_TUNABLES"]} if "GLIBC_TUNABLES" in os.environ else {}
    for k, v in worker_env({**EXECUTOR_ENV, **users}).items():  # a user's malloc settings win
        defaults[f"spark.executorEnv.{k}"] = v
    for k, v in {**defaults, **(conf or {})}.items():
        b = b.config(k, v)
    spark = b.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def task_slots(spark) -> int:
    """How many tasks the session can run at once, now.

    ``local[N]``: N cores / ``spark.task.cpus``. On a cluster: what Spark's scheduler reports for the
    executors registered so far (cores / ``spark.task.cpus`` and, with GPU scheduling, GPUs /
    ``spark.task.resource.gpu.amount``, whichever is smaller), 0 before any executor registered.
    """
    sc = spark.sparkContext
    task_cpus = int(sc.getConf().get("spark.task.cpus", "1"))
    master = sc.master
    if master.startswith("local"):
        inner = master[master.find("[") + 1: master.find("]")] if "[" in master else "1"
        cores = (os.cpu_count() or 1) if inner == "*" else int(inner.split(",")[0])
        return max(1, cores // task_cpus)
    try:
        jsc = sc._jsc.sc()
        return int(jsc.maxNumConcurrentTasks(jsc.resourceProfileManager().defaultResourceProfile()))
    except Exception:  # noqa: BLE001 - internal API; fall back to counting executors
        pass
    try:
        n_exec = max(0, sc._jsc.sc().getExecutorMemoryStatus().size() - 1)  # minus the driver
    except Exception:  # noqa: BLE001 - best effort; fall back to defaultParallelism below
        n_exec = 0
    cores_per_exec = sc.getConf().get("spark.executor.cores")
    if n_exec and cores_per_exec:
        return max(1, n_exec * int(cores_per_exec) // task_cpus)
    return max(1, sc.defaultParallelism // task_cpus)


def require_slots(spark, num_proc: int, wait_seconds: float = 120.0) -> None:
    """Refuse (instead of hanging) when ``num_proc`` ranks cannot run at once.

    On a cluster, executors register a few seconds after the session starts (spark-submit jobs ask
    right away), so this waits up to ``wait_seconds`` for enough of them before refusing.
    """
    slots = task_slots(spark)
    if slots < num_proc and not spark.sparkContext.master.startswith("local"):
        log.info("waiting up to %.0fs for executors: %d of %d task slots so far", wait_seconds, slots, num_proc)
        deadline = time.monotonic() + wait_seconds
        while slots < num_proc and time.monotonic() < deadline:
            time.sleep(1.0)
            slots = task_slots(spark)
    if num_proc > slots:
        gpu = spark.sparkContext.getConf().get("spark.task.resource.gpu.amount")
        gpu_txt = (f", spark.task.resource.gpu.amount={gpu} (are there enough GPUs on the workers, "
                   "and spark.executor.resource.gpu.amount?)") if gpu else ""
        raise SparkSetupError(
            f"--num-proc {num_proc} needs {num_proc} concurrent Spark tasks but this session can run "
            f"{slots} (master {spark.sparkContext.master}, spark.task.cpus="
            f"{spark.sparkContext.getConf().get('spark.task.cpus', '1')}{gpu_txt}). Lower --num-proc or add "
            "executors/cores (spark.executor.cores, spark.cores.max)")

"""What differs between the Spark lines this package runs on (3.5 LTS, 4.0, 4.1), decided here once.

Each function asks the installed pyspark for a capability (an attribute, a module) rather than
comparing version numbers, so a patch release that back-ports something is handled too. The rest of
the package calls these and never looks at ``pyspark.__version__`` itself (README "Why these versions").

- PySpark >= 4.0 sets up a task's files in ``pyspark.worker.setup_spark_files``, a module-level function
  ``pyspark.worker.main`` looks up at each task, which ``executor/pydaemon.py`` wraps. PySpark 3.5 does
  the same work inline in ``main()``: there is nothing to wrap, so sessions keep PySpark's own daemon and
  the zip importers are pruned where our batch functions start instead (``executor/worker.py``).

Runs on: the driver and executors (no Spark session needed).
"""

from __future__ import annotations

import functools


@functools.lru_cache(maxsize=1)
def worker_setup_hook() -> bool:
    """True when ``pyspark.worker.main`` calls a module-level ``setup_spark_files`` that can be wrapped."""
    import pyspark.worker as w

    return callable(getattr(w, "setup_spark_files", None))


def python_daemon_conf() -> dict[str, str]:
    """The Spark conf that starts the Python worker daemon through ``executor/pydaemon.py``, where the
    installed PySpark has the hook it wraps; empty (PySpark's own daemon) where it does not."""
    if worker_setup_hook():
        return {"spark.python.daemon.module": "sparkdl_pipe.executor.pydaemon"}
    return {}


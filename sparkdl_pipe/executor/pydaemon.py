"""The Python worker daemon of sessions this package builds (``spark.python.daemon.module``).

PySpark's own daemon, with one change: before PySpark's per-task ``setup_spark_files`` runs
``importlib.invalidate_caches()``, :func:`~sparkdl_pipe.executor.worker.prune_zip_importers`
drops the zip importers that would each re-read a whole archive (see ``executor/worker.py``). This
way every task benefits, including the ones that never run our batch functions (``createDataFrame``
from a Python RDD, users' own UDFs).

Runs on: executors (Spark starts it as ``python -m sparkdl_pipe.executor.pydaemon``). The package
must be installed where executors run Python, as the README requires anyway.
"""

from __future__ import annotations

import pyspark.worker as _pyspark_worker

from sparkdl_pipe.compat import worker_setup_hook
from sparkdl_pipe.executor.worker import prune_zip_importers

if worker_setup_hook():  # PySpark >= 4.0 (compat.py); on 3.5 this is PySpark's daemon unchanged
    _setup_spark_files = _pyspark_worker.setup_spark_files

    def setup_spark_files(infile) -> None:
        prune_zip_importers()
        _setup_spark_files(infile)

    _pyspark_worker.setup_spark_files = setup_spark_files  # looked up by pyspark.worker.main at each task

if __name__ == "__main__":
    from pyspark import daemon

    daemon.manager()

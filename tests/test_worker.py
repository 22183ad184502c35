"""The reused Spark Python worker stays cheap to start tasks in (executor/worker.py)."""

from __future__ import annotations

import pandas as pd


def _inspect(batches):
    import importlib
    import os
    import sys
    import zipimport

    from sparkdl_pipe.executor.worker import prune_zip_importers

    def zip_importers():
        return [f for f in sys.path_importer_cache.values() if isinstance(f, zipimport.zipimporter)]

    # What a worker accumulates (whatever ran in it before): spark-core's jar on the path, which
    # Spark puts in the workers' PYTHONPATH, and an importer per package imported from pyspark.zip.
    jar = next(p for p in os.environ["PYTHONPATH"].split(os.pathsep) if p.endswith(".jar"))
    archive = next(p for p in os.environ["PYTHONPATH"].split(os.pathsep) if p.endswith("pyspark.zip"))
    sys.path.append(jar)
    for key in (jar, archive + "/pyspark/ml", archive + "/pyspark/sql"):
        sys.path_importer_cache[key] = zipimport.zipimporter(key)
    before = len(zip_importers())
    prune_zip_importers()
    importlib.invalidate_caches()  # what PySpark runs at every task start: now re-reads one archive each
    left = zip_importers()
    import pyspark.mllib.linalg  # importing from pyspark.zip still works after the pruning

    for _ in batches:
        pass
    yield pd.DataFrame({"before": [before], "after": [len(left)], "jars": [sum(p.endswith(".jar") for p in sys.path)],
                        "prefixed": [sum(1 for f in left if f.prefix or f.archive.endswith(".jar"))],
                        "archives": [len({f.archive for f in left})], "linalg": [pyspark.mllib.linalg.__name__]})


def test_prune_zip_importers_in_a_spark_worker(spark):
    out = spark.range(1).mapInPandas(_inspect, "before long, after long, jars long, prefixed long, archives long, "
                                               "linalg string").collect()[0]
    assert out["before"] >= out["after"] + 3 and out["after"] >= 1  # per-package and jar importers gone
    assert out["jars"] == 0 and out["prefixed"] == 0
    assert out["linalg"] == "pyspark.mllib.linalg"
    assert out["after"] == out["archives"]  # one importer per archive


def _plain_task(it):
    import sys
    import zipimport

    import pyspark.ml.linalg  # noqa: F401 - importing from pyspark.zip still works

    yield (sys.argv[0].rsplit("/", 1)[-1], [p for p in sys.path if p.endswith(".jar")],
           sum(1 for f in sys.path_importer_cache.values() if isinstance(f, zipimport.zipimporter) and f.prefix
               and f.archive.endswith(".jar")))


def test_our_daemon_prunes_before_every_task(spark):
    """Tasks that never run our batch functions (a plain RDD here) also start with a pruned path."""
    from sparkdl_pipe.compat import worker_setup_hook

    if not worker_setup_hook():  # PySpark 3.5 (compat.py): its own daemon, no hook to wrap
        assert spark.sparkContext.getConf().get("spark.python.daemon.module") is None
        assert spark.sparkContext.parallelize(range(4), 4).map(lambda i: i * i).sum() == 14
        return
    assert spark.sparkContext.getConf().get("spark.python.daemon.module") == "sparkdl_pipe.executor.pydaemon"
    rows = spark.sparkContext.parallelize(range(4), 4).mapPartitions(_plain_task).collect()
    assert [r[0] for r in rows] == ["pydaemon.py"] * 4
    assert all(r[1] == [] and r[2] == 0 for r in rows)

"""The reused Spark Python worker stays cheap to start tasks in (executor/worker.py)."""

from __future__ import annotations

import pandas as pd


def _inspect(batches):
    import importlib
    import sys
    import zipimport

    from sparkdl_pipe.executor.worker import prune_zip_importers

    def zip_importers():
        return [f for f in sys.path_importer_cache.values() if isinstance(f, zipimport.zipimporter)]

    before = len(zip_importers())
    prune_zip_importers()
    importlib.invalidate_caches()  # what PySpark runs at every task start: now re-reads one archive each
    left = zip_importers()
    import pyspark.ml.linalg  # a package from pyspark.zip not imported before: still importable

    for _ in batches:
        pass
    yield pd.DataFrame({"before": [before], "after": [len(left)], "jars": [sum(p.endswith(".jar") for p in sys.path)],
                        "prefixed": [sum(1 for f in left if f.prefix and f.archive.endswith(".jar"))],
                        "archives": [len({f.archive for f in left})], "linalg": [pyspark.ml.linalg.__name__]})


def test_prune_zip_importers_in_a_spark_worker(spark):
    out = spark.range(1).mapInPandas(_inspect, "before long, after long, jars long, prefixed long, archives long, "
                                               "linalg string").collect()[0]
    assert out["before"] > out["after"] >= 1  # per-package importers gone, one per archive kept
    assert out["jars"] == 0 and out["prefixed"] == 0
    assert out["linalg"] == "pyspark.ml.linalg"
    assert out["after"] == out["archives"]  # one importer per archive

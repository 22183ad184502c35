"""A small image dataset written by one stack and read by the others (README "Why these versions").

`python -m tests.stack_fixture` (run in the venv of a stack) ingests a fixed 48-image folder with that
stack's Spark, pyarrow and patched Petastorm and keeps the output under
tests/data/stacks/spark-<major.minor>/, with `expected.json`: what that stack read back. tests/test_stacks.py
reads every stored dataset with the running stack and compares.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
STORE = os.path.join(HERE, "data", "stacks")
SPLITS = ("train", "val", "test")
SHAPE = (8, 8, 3)


def make_folder(root: str) -> int:
    from tests.conftest import make_image_folder

    return make_image_folder(root, labels=("cat", "dog", "ému"), per_label=16, size=(8, 8), seed=25)


def ingest(spark, root: str, out: str):
    from sparkdl_pipe.config import IngestImagesConfig
    from sparkdl_pipe.driver.ingest import run_ingest_images
    from sparkdl_pipe.preprocess.spec import ImageSpec

    return run_ingest_images(spark, IngestImagesConfig(root, out, ImageSpec(*SHAPE)))


def summary(ds: str) -> dict:
    """Per split, what Petastorm's batch reader (row-group shards 0 and 1 of 2) reads: rows, labels, and
    a digest of the rows in a stable order, so two stacks that read the same values agree exactly."""
    from sparkdl_pipe.executor.data import read_split

    out = {}
    for s in SPLITS:
        rows = []
        for shard in range(2):
            for x, y in read_split("file://" + os.path.join(ds, s), SHAPE, shard=shard, shard_count=2):
                assert x.dtype == np.uint8 and x.shape[1:] == SHAPE
                rows.extend((bytes(xi.tobytes()), int(yi)) for xi, yi in zip(x, y, strict=True))
        rows.sort()
        h = hashlib.sha256()
        for xb, y in rows:
            h.update(xb)
            h.update(y.to_bytes(2, "little"))
        out[s] = {"rows": len(rows), "labels": sorted(y for _, y in rows), "digest": h.hexdigest()}
    return out


def stack_name() -> str:
    import pyspark

    return "spark-" + ".".join(pyspark.__version__.split(".")[:2])


def main() -> int:
    import pyarrow
    import pyspark
    from pyspark import SparkContext

    from sparkdl_pipe.driver.session import make_spark_session

    dest = os.path.join(STORE, stack_name())
    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.join(tmp, "imgs")
        make_folder(root)
        spark = make_spark_session("local[2]", app_name="sparkdl_pipe-stack-fixture",
                                   conf={"spark.sql.shuffle.partitions": "4"})
        try:
            ingest(spark, root, os.path.join(tmp, "ds"))
        finally:
            gateway = SparkContext._gateway
            spark.stop()
            if gateway is not None and getattr(gateway, "proc", None) is not None:  # the JVM, by its PID
                gateway.shutdown()
                gateway.proc.terminate()
                gateway.proc.wait(timeout=60)
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(os.path.join(tmp, "ds"), os.path.join(dest, "ds"),
                        ignore=shutil.ignore_patterns(".*.crc", "_SUCCESS"))
    expected = {"written_by": {"pyspark": pyspark.__version__, "pyarrow": pyarrow.__version__,
                               "numpy": np.__version__}, "splits": summary(os.path.join(dest, "ds"))}
    with open(os.path.join(dest, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, sort_keys=True)
    print("wrote", dest, {s: v["rows"] for s, v in expected["splits"].items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())

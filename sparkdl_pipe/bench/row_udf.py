"""The hand-wired scoring baseline: a plain (non-vectorized) Spark UDF that predicts one row per call.

This is what a row-at-a-time transformer (such as Horovod's ``KerasModel.transform``) does; the
benchmark compares the product's batched ``mapInPandas`` scoring with it.

Runs on: executors (the UDF body) and the driver (building the UDF).
"""

from __future__ import annotations

import numpy as np


def predict_one(image: bytes, model_path: str, model_id: str, shape: tuple[int, ...]) -> int:
    """Class index for one stored image (executor). The model is cached per Python worker."""
    from sparkdl_pipe.executor.score import MODEL_CACHE

    model = MODEL_CACHE.get(model_path, model_id, 1)
    x = np.frombuffer(image, dtype=np.uint8).reshape((1, *shape))
    return int(np.asarray(model.predict_on_batch(x))[0].argmax())


def row_udf_scoring_seconds(spark, split_url: str, model_path: str, model_id: str, shape: tuple[int, ...],
                            rows: int) -> tuple[int, float]:
    """Score the first ``rows`` rows of a split with the row UDF; (rows scored, seconds). Driver."""
    import time
    from functools import partial

    from pyspark.sql import functions as F

    from sparkdl_pipe import storage

    fn = partial(predict_one, model_path=model_path, model_id=model_id, shape=tuple(shape))
    udf = F.udf(lambda b: fn(bytes(b)), "int")
    df = spark.read.parquet(storage.spark_path(split_url)).select("image").limit(rows) \
        .repartition(spark.sparkContext.defaultParallelism).cache()
    n = df.count()
    t0 = time.perf_counter()
    df.select(udf("image").alias("prediction")).write.format("noop").mode("overwrite").save()
    secs = time.perf_counter() - t0
    df.unpersist()
    return n, secs

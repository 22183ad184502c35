"""A trained model as a Spark SQL function: ``register(spark, "classify_fashion", "models/fashion")``.

The function is a vectorized (pandas, iterator) UDF: the model is loaded once per Python worker and
records are prepared with exactly the model's preprocessing. It takes one column, image bytes or a
path for image models, the text for text models, and returns a struct of the task's prediction
columns and a ``reason``: a row that cannot be used gives null predictions and its reason, never a
failed query.

    >>> register(spark, "classify_fashion", "models/fashion")  # doctest: +SKIP
    >>> spark.sql("SELECT path, classify_fashion(content).label_name FROM images")  # doctest: +SKIP

Runs on: driver (registration) and executors (the function).
"""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd

from sparkdl_pipe import storage

#: The struct fields of a classification model's function (Spark DDL).
_DROP = ("true_label", "model_name", "model_id", "target", "error")  # no truth to compare with in a query


def result_schema(task_name: str, key: str) -> str:
    """The Spark DDL of the function's struct: the task's prediction columns and a reason."""
    from pyspark.sql.pandas.types import from_arrow_type

    from sparkdl_pipe import tasks

    schema = tasks.get(task_name).prediction_schema(key)
    cols = [f"{f.name} {from_arrow_type(f.type).simpleString()}" for f in schema if f.name not in (key, *_DROP)]
    return ", ".join([*cols, "reason string"])


def register(spark, name: str, model_dir: str, batch_size: int = 1024):
    """Register the model in ``model_dir`` (path or URL) as the SQL function ``name``; returns the UDF.

    Runs on: driver. The model file is checked (safe mode, the card's hash) once here.
    """
    from pyspark.sql.functions import pandas_udf

    from sparkdl_pipe import modalities, tasks
    from sparkdl_pipe.model_card import load_model_info
    from sparkdl_pipe.model_fetch import fetch_model
    from sparkdl_pipe.safe_model import check_model_file

    info = load_model_info(storage.to_url(model_dir))
    modality = modalities.get(info.kind)
    task_ = tasks.get(info.task)
    check_model_file(fetch_model(info.model_url, info.model_id), info.spec.shape,
                     task_.output_size(info.labels, info.spec.shape), task_.embedding_layer)
    modality.load_artifacts(info.url, info.spec, info.card)
    ddl = result_schema(info.task, modality.key)
    names = [c.split()[0] for c in ddl.split(", ")]
    plain = {"model_url": info.model_url, "model_id": info.model_id, "ref": modality.ref,
             "spec": info.spec.to_dict(), "dir": info.url, "card": info.card, "labels": info.labels,
             "task": info.task, "batch": batch_size}  # plain values only

    def predict(batches: Iterator[pd.Series]) -> Iterator[pd.DataFrame]:
        from sparkdl_pipe.executor.score import MODEL_CACHE, mixed_inputs, task_columns
        from sparkdl_pipe.modalities import resolve

        mod = resolve(plain["ref"])
        spec = mod.spec_type.from_dict(plain["spec"])
        artifacts = mod.load_artifacts(plain["dir"], spec, plain["card"])
        task = tasks.get(plain["task"])
        model = MODEL_CACHE.get(plain["model_url"], plain["model_id"])
        for values in batches:
            x, ok, reason = mixed_inputs(mod, spec, artifacts, list(values))
            cols = task_columns(task, model, x, ok, plain["labels"], plain["batch"])
            yield pd.DataFrame({**{k: cols[k] for k in names if k in cols}, "reason": reason})

    udf = pandas_udf(predict, ddl)  # type: ignore[call-overload]
    spark.udf.register(name, udf)
    return udf

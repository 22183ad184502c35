"""The classic text baseline inside the product: Spark MLlib ``HashingTF`` + ``IDF`` +
``LogisticRegression`` fitted on exactly the train split an ingest made, from the stored token ids
(our tokenizer's output), so a comparison with our models is about the model, not the tokenization.

``regParam`` is picked on the val split from a small grid, like any tuned baseline; the test split
is used once, for the reported accuracy. Runs on: driver (Spark jobs; the token cells are decoded
in the executors by :func:`sparkdl_pipe.executor.terms.ids_as_terms`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field

from sparkdl_pipe import storage
from sparkdl_pipe.config import BaselineTextConfig
from sparkdl_pipe.errors import DatasetError, UserInputError
from sparkdl_pipe.manifest import load_dataset_info

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BaselineResult:
    """What :func:`run_text_baseline` measured. ``val_by_reg``/``test_by_reg``: accuracy per
    ``regParam`` (the reported one is chosen on val; the test figures of the others show how much
    that choice cost, an upper bound for a tuned baseline)."""

    dataset: str
    train_rows: int
    val_rows: int
    test_rows: int
    num_features: int
    reg_param: float
    val_accuracy: float | None
    test_accuracy: float | None
    fit_seconds: float
    seconds: float
    val_by_reg: dict[str, float] = field(default_factory=dict)
    test_by_reg: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        def f(v: float | None) -> str:
            return "n/a" if v is None else f"{v:.4f}"

        return (f"baseline-text (MLlib HashingTF({self.num_features}) + IDF + LogisticRegression, regParam "
                f"{self.reg_param:g} chosen on val) on {self.dataset}: train {self.train_rows}, val {self.val_rows}, "
                f"test {self.test_rows}; validation accuracy {f(self.val_accuracy)}, test accuracy "
                f"{f(self.test_accuracy)}; fits {self.fit_seconds:.1f}s, {self.seconds:.1f}s in all")

    def to_dict(self) -> dict:
        return asdict(self)


def _terms(spark, url: str):
    """A split as (label, terms) rows; None when the split is empty."""
    from pyspark.sql import functions as F

    from sparkdl_pipe.executor.terms import ids_as_terms

    if not storage.exists(url):
        return None
    to_terms = F.pandas_udf(ids_as_terms, "array<string>")  # type: ignore[call-overload]
    return spark.read.parquet(url).select(F.col("label").cast("double").alias("label"),
                                          to_terms("tokens").alias("terms"))


def _accuracy(model, df) -> float | None:
    if df is None:
        return None
    from pyspark.sql import functions as F

    row = model.transform(df).select(F.avg((F.col("prediction") == F.col("label")).cast("double")).alias("a"),
                                     F.count(F.lit(1)).alias("n")).first()
    return None if not row["n"] else float(row["a"])


def run_text_baseline(spark, cfg: BaselineTextConfig) -> BaselineResult:
    """Fit TF-IDF + logistic regression on an ingested text dataset's train split; pick ``regParam`` on
    val; report val and test accuracy (the same splits and token ids our models train and test on).

    >>> run_text_baseline(spark, BaselineTextConfig("datasets/reviews")).test_accuracy  # doctest: +SKIP
    0.7712
    """
    from pyspark import StorageLevel
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.feature import IDF, HashingTF

    t0 = time.time()
    info = load_dataset_info(storage.to_url(cfg.dataset))
    if info.kind != "text":
        raise UserInputError(f"baseline-text needs a text dataset, {cfg.dataset} is {info.kind}",
                             fix="Give the output of ingest-text")
    splits = {s: _terms(spark, info.split_url(s)) if info.count(s) else None for s in storage.SPLITS}
    train = splits["train"]
    if train is None:
        raise DatasetError(f"dataset {cfg.dataset} has no train rows", fix="Re-ingest with a train split")
    feats = Pipeline(stages=[HashingTF(inputCol="terms", outputCol="tf", numFeatures=cfg.num_features),
                             IDF(inputCol="tf", outputCol="features")]).fit(train)
    data = {s: feats.transform(df).select("label", "features").persist(StorageLevel.MEMORY_AND_DISK)
            for s, df in splits.items() if df is not None}
    try:
        t_fit = time.time()
        best = None
        val_by_reg: dict[str, float] = {}
        test_by_reg: dict[str, float] = {}
        for reg in cfg.reg_params:
            lr = LogisticRegression(featuresCol="features", labelCol="label", family="multinomial",
                                    regParam=reg, elasticNetParam=0.0, maxIter=cfg.max_iter)
            model = lr.fit(data["train"])
            score = _accuracy(model, data.get("val"))
            val_by_reg[f"{reg:g}"] = score if score is not None else float("nan")
            test = _accuracy(model, data.get("test"))
            test_by_reg[f"{reg:g}"] = test if test is not None else float("nan")
            log.info("baseline-text: regParam %g, validation accuracy %s", reg, score)
            if best is None or (score is not None and score > best[0]):
                best = (score if score is not None else -1.0, reg, model)
        fit_s = time.time() - t_fit
        assert best is not None  # reg_params is never empty (BaselineTextConfig checks it)
        _, reg, model = best
        return BaselineResult(
            dataset=cfg.dataset, train_rows=info.count("train"), val_rows=info.count("val"),
            test_rows=info.count("test"), num_features=cfg.num_features, reg_param=reg,
            val_accuracy=_accuracy(model, data.get("val")), test_accuracy=_accuracy(model, data.get("test")),
            fit_seconds=round(fit_s, 2), seconds=round(time.time() - t0, 2), val_by_reg=val_by_reg,
            test_by_reg=test_by_reg)
    finally:
        for df in data.values():
            df.unpersist()

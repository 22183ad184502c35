"""run_scoring: score raw images (folder or manifest) or an ingested split with a trained model.

Runs on: driver. The per-batch work is :func:`sparkdl_pipe.executor.score.score_batches`.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial

from sparkdl_pipe import rejects as rj
from sparkdl_pipe import storage
from sparkdl_pipe.config import ScoreConfig
from sparkdl_pipe.driver.files import (
    MANIFEST_SUFFIXES,
    read_input_files,
    read_manifest_table,
    resolved_path,
    spread,
    write_rejects,
)
from sparkdl_pipe.errors import DatasetError, UserInputError
from sparkdl_pipe.executor.score import SCORED_DDL, score_batches
from sparkdl_pipe.manifest import load_dataset_info
from sparkdl_pipe.model_card import load_model_info
from sparkdl_pipe.model_fetch import fetch_model
from sparkdl_pipe.safe_model import check_model_file

log = logging.getLogger(__name__)

SUMMARY_FILE = "_sparkdl_score.json"


@dataclass(frozen=True)
class ScoreResult:
    """What a scoring job wrote. ``input_rows == scored + rejected``."""

    output: str
    input_rows: int
    scored: int
    rejected: int
    rejects_by_reason: dict[str, int]
    labelled_rows: int
    accuracy: float | None
    skipped_hidden: int
    model_id: str
    seconds: float
    unknown_true_labels: int = 0

    def summary(self) -> str:
        acc = f", accuracy {self.accuracy:.4f} on {self.labelled_rows} labelled rows" if self.accuracy is not None else ""
        unk = (f"; {self.unknown_true_labels} rows with a label the model never saw (scored, not counted in "
               "accuracy)") if self.unknown_true_labels else ""
        return (f"scored {self.input_rows} rows in {self.seconds:.1f}s: {self.scored} predictions + "
                f"{self.rejected} rejects ({rj.format_counts(self.rejects_by_reason)}){acc}{unk}; "
                f"skipped hidden files {self.skipped_hidden}; output {self.output}")


def _detect_format(url: str, fmt: str) -> str:
    if fmt != "auto":
        return fmt
    head, _, name = url.rstrip("/").rpartition("/")
    if name in storage.SPLITS and storage.exists(storage.join(head, storage.MANIFEST_FILE)):
        return "petastorm"  # a split of an ingested dataset
    if url.lower().endswith(MANIFEST_SUFFIXES):
        return "manifest"
    return "folder"


def split_dataset_info(split_url: str, given: str):
    """The dataset an ingested split (``.../D/train``) belongs to; one line when it is not one."""
    try:
        return load_dataset_info(split_url.rsplit("/", 1)[0])
    except DatasetError as e:
        raise DatasetError(f"{given} is not a split of a sparkdl_pipe dataset", fix=str(e)) from e


def run_scoring(spark, cfg: ScoreConfig) -> ScoreResult:
    """Score ``cfg.input`` with the model in ``cfg.model``; write predictions and rejects to ``cfg.output``.

    Runs on: driver. Preprocessing is the function ingest used, with the spec from the model card.

    >>> res = run_scoring(spark, ScoreConfig("models/fmnist", "new_images/", "scores/"))  # doctest: +SKIP
    >>> res.input_rows == res.scored + res.rejected  # doctest: +SKIP
    True
    """
    from pyspark.sql import functions as F

    t0 = time.time()
    model = load_model_info(cfg.model)
    inp, out = storage.to_url(cfg.input), storage.to_url(cfg.output)
    if not storage.exists(inp):
        raise DatasetError(f"input {cfg.input} does not exist")
    storage.prepare_output(out, cfg.overwrite)
    # safe mode and the card's sha256, once, before any task (the file is fetched to this node's cache)
    check_model_file(fetch_model(model.model_url, model.model_id), model.spec.shape, len(model.labels))
    if model.kind == "text":
        from sparkdl_pipe.driver.score_text import run_text_scoring

        return run_text_scoring(spark, cfg, model, inp, out, t0)
    fmt = _detect_format(inp, cfg.input_format)
    spec = model.spec
    labels = model.labels
    hidden: list[str] = []
    unknown_labels = 0
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(cfg.batch_size))
    if fmt == "petastorm":
        info = split_dataset_info(inp, cfg.input)
        if info.spec.fingerprint() != spec.fingerprint():
            raise DatasetError("the data's preprocessing does not match the model's",
                               f"{spec.to_dict()} (model card)", info.spec.to_dict(),
                               "Re-ingest the data with the model's image size and channels, or score raw files")
        src = spark.read.parquet(storage.spark_path(inp)).select(
            "path", "image", F.col("label_name").alias("true_label"))
        source = "pixels"
    elif fmt == "manifest":
        df = read_manifest_table(spark, inp, {cfg.manifest_path_col: "--path-col"})
        resolved = resolved_path(inp, cfg.manifest_path_col)
        true = F.col("label").cast("string") if "label" in df.columns else F.lit(None).cast("string")
        src = spread(df.select(resolved.alias("path"), true.alias("true_label")), rows_per_partition=5000)
        if "label" in df.columns:
            unknown_labels = src.filter(F.col("true_label").isNotNull() & ~F.col("true_label").isin(labels)).count()
        source = "path"
    elif fmt == "folder":
        src, hidden = read_input_files(spark, inp)
        source = "path"
    else:
        raise UserInputError("--input-format", "auto, folder, manifest or petastorm for an image model", fmt)

    threads = score_threads(spark)
    fn = partial(score_batches, model_path=model.model_url, model_id=model.model_id, model_name=model.name,
                 spec_dict=spec.to_dict(), labels=labels, batch_size=cfg.batch_size, source=source,
                 threads=threads, root=inp if fmt == "folder" else None)
    return write_scores(src.mapInPandas(fn, SCORED_DDL), cfg, model, inp, out, fmt, hidden, t0,
                        unknown_labels=unknown_labels)


def score_threads(spark) -> int:
    """One TensorFlow thread per task core, so concurrent tasks of an executor do not oversubscribe it."""
    return 1 if spark.sparkContext.master.startswith("local") else \
        int(spark.sparkContext.getConf().get("spark.task.cpus", "1"))


def write_scores(scored, cfg: ScoreConfig, model, inp: str, out: str, fmt: str, hidden: list[str], t0: float,
                 id_col: str = "path", unknown_labels: int = 0) -> ScoreResult:
    """Count, check and publish a scored DataFrame (``SCORED_DDL``-like, the record id in ``id_col``):
    predictions, rejects and the summary JSON; more rejects than ``cfg.max_rejects`` publish nothing.
    ``unknown_labels``: input rows whose true label the model does not know. Runs on: driver."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    scored = scored.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        with storage.staged_output(out, cfg.overwrite) as staging:
            # First the predictions: this one job runs the model over every row and fills the cache
            # the counts below read. (No coalesce here: it would also shrink the scoring's parallelism.)
            scored.filter(F.col("reason").isNull()) \
                .select(id_col, "prediction", "label_name", "probability", "true_label", "model_name", "model_id") \
                .write.mode("overwrite").parquet(storage.spark_path(storage.join(staging, "predictions")))
            stats = scored.groupBy("reason").agg(
                F.count(F.lit(1)).alias("n"),
                F.sum(F.when(F.col("true_label").isNotNull(), 1).otherwise(0)).alias("labelled"),
                F.sum(F.when(F.col("true_label") == F.col("label_name"), 1).otherwise(0)).alias("correct"),
                F.collect_set("device").alias("devices"),
            ).collect()
            total = sum(r["n"] for r in stats)
            ok = [r for r in stats if r["reason"] is None]
            n_ok = ok[0]["n"] if ok else 0
            labelled = ok[0]["labelled"] if ok else 0
            correct = ok[0]["correct"] if ok else 0
            rejects_by_reason = {r["reason"]: r["n"] for r in stats if r["reason"] is not None}
            n_rej = sum(rejects_by_reason.values())
            if cfg.max_rejects is not None and n_rej > cfg.max_rejects:  # nothing is published
                first = scored.filter(F.col("reason").isNotNull()).select(id_col, "reason").limit(3).collect()
                rj.enforce_limit(cfg.max_rejects, rejects_by_reason, [(str(r[id_col]), r["reason"]) for r in first],
                                 out)
            acc = correct / labelled if labelled else None
            devices = sorted({d for r in stats for d in r["devices"] if d})
            write_rejects(scored.filter(F.col("reason").isNotNull())
                          .select(id_col, "reason", "message", F.lit("score").alias("stage")),
                          storage.join(staging, "rejects"), n_rej)
            storage.write_json(storage.join(staging, SUMMARY_FILE), {
                "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "input": inp, "input_format": fmt, "model": model.url, "model_name": model.name,
                "model_id": model.model_id, "input_rows": total, "scored": n_ok, "rejected": n_rej,
                "rejects_by_reason": rejects_by_reason, "labelled_rows": labelled, "accuracy": acc,
                "unknown_true_labels": unknown_labels, "max_rejects": cfg.max_rejects,
                "skipped": {"hidden": len(hidden), "examples": hidden[:20]},
                "files_seen": total + len(hidden),
                "batch_size": cfg.batch_size, "seconds": time.time() - t0,
                "devices": [json.loads(d) for d in devices],
            })
    finally:
        scored.unpersist()
    if n_ok + n_rej != total:
        raise AssertionError(f"scoring lost rows: {total} in, {n_ok} scored + {n_rej} rejected")
    res = ScoreResult(out, total, n_ok, n_rej, rejects_by_reason, labelled, acc, len(hidden), model.model_id,
                      time.time() - t0, unknown_labels)
    log.info(res.summary())
    return res


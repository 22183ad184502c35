"""run_scoring: score raw records (a folder, a table) or an ingested split with a trained model, any kind of data.

Runs on: driver. The per-batch work is :func:`sparkdl_pipe.executor.score.score_batches`.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial

from sparkdl_pipe import modalities, storage, tasks
from sparkdl_pipe import rejects as rj
from sparkdl_pipe.config import ScoreConfig
from sparkdl_pipe.driver.listing import FolderListing, HiddenNames, list_folder
from sparkdl_pipe.driver.sources import (
    READER_DECODED,
    detect_format,
    hidden_files,
    is_dataset_split,
    spread,
    table_source,
)
from sparkdl_pipe.errors import DatasetError, UserInputError
from sparkdl_pipe.executor.parts import keep_reported, write_empty
from sparkdl_pipe.executor.score import SCORE_SUMMARY_DDL, predictions_schema, score_and_write, score_batches
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
    metrics: dict = field(default_factory=dict)  # the task's (regression: target_rows, mae, rmse, r2)

    def summary(self) -> str:
        acc = f", accuracy {self.accuracy:.4f} on {self.labelled_rows} labelled rows" if self.accuracy is not None else ""
        if self.metrics.get("target_rows"):
            m = self.metrics
            r2 = f"{m['r2']:.4f}" if m.get("r2") is not None else "n/a"
            acc = (f", MAE {m['mae']:.4f} RMSE {m['rmse']:.4f} R2 {r2} on {m['target_rows']} rows with a "
                   "target")
        unk = (f"; {self.unknown_true_labels} rows with a label the model never saw (scored, not counted in "
               "accuracy)") if self.unknown_true_labels else ""
        return (f"scored {self.input_rows} rows in {self.seconds:.1f}s: {self.scored} predictions + "
                f"{self.rejected} rejects ({rj.format_counts(self.rejects_by_reason)}){acc}{unk}; "
                f"skipped hidden files {self.skipped_hidden}; output {self.output}")


def split_dataset_info(split_url: str, given: str):
    """The dataset an ingested split (``.../D/train``) belongs to; one line when it is not one."""
    try:
        return load_dataset_info(split_url.rsplit("/", 1)[0])
    except DatasetError as e:
        raise DatasetError(f"{given} is not a split of a sparkdl_pipe dataset", fix=str(e)) from e


def score_format(inp: str, fmt: str, modality) -> str:
    """``petastorm`` (a split of an ingested dataset), ``folder`` or a table format, for any kind.

    ``manifest`` (a table of paths, the historical image name) is the table format of its name;
    ``txt`` is another name of ``folder``.
    """
    if fmt == "petastorm" or (fmt == "auto" and is_dataset_split(inp)):
        return "petastorm"
    if fmt == "manifest":
        if modality.table_reads != "path":
            raise UserInputError("--input-format", f"auto, folder, petastorm or a table format for a {modality.kind} "
                                 "model", fmt)
        return detect_format(inp, "auto", modality.describe_input())
    return detect_format(inp, fmt, modality.describe_input())


def run_scoring(spark, cfg: ScoreConfig) -> ScoreResult:
    """Score ``cfg.input`` with the model in ``cfg.model``; write predictions and rejects to ``cfg.output``.

    Runs on: driver. Written once for every kind of data: the records go through the model's
    modality (the preparation ingest used, with the spec and what was fitted, from the model
    directory) and the task's prediction columns.

    >>> res = run_scoring(spark, ScoreConfig("models/fmnist", "new_images/", "scores/"))  # doctest: +SKIP
    >>> res.input_rows == res.scored + res.rejected  # doctest: +SKIP
    True
    """
    from pyspark.sql import functions as F

    t0 = time.time()
    model = load_model_info(cfg.model)
    modality = modalities.get(model.kind)
    inp, out = storage.to_url(cfg.input), storage.to_url(cfg.output)
    if not storage.exists(inp):
        raise DatasetError(f"input {cfg.input} does not exist")
    storage.prepare_output(out, cfg.overwrite)
    # safe mode and the card's sha256, once, before any task (the file is fetched to this node's cache)
    task = tasks.get(model.task)
    task_options = task.score_options(model.card, cfg)  # e.g. --anomaly-quantile -> a threshold, refused here
    embeddings = (cfg.embedding_layer or "") if cfg.embeddings else task.embedding_layer
    check_model_file(fetch_model(model.model_url, model.model_id), model.spec.shape,
                     task.output_size(model.labels, model.spec.shape), embeddings)
    spec = model.spec
    modality.load_artifacts(model.url, spec, model.card)  # a missing or altered vocabulary fails here
    fmt = score_format(inp, cfg.input_format, modality)
    hidden: FolderListing | HiddenNames = HiddenNames([])
    unknown_labels = 0
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(cfg.batch_size))
    if fmt == "petastorm":
        info = split_dataset_info(inp, cfg.input)
        if info.spec.fingerprint() != spec.fingerprint():
            raise DatasetError("the data's preprocessing does not match the model's",
                               f"{spec.to_dict()} (model card)", info.spec.to_dict(),
                               "Re-ingest the data with the model's spec, or score the raw records")
        src = spark.read.parquet(storage.spark_path(inp)).select(
            modality.key, modality.feature, F.col(tasks.get(info.task).truth_column).cast("string").alias("true_label"))
        source = "stored"
    elif fmt == "folder":
        hidden = list_folder(spark, inp, driver_max_files=cfg.driver_listing_max_files)  # unpersisted when done
        src, source = spread(hidden.records(("path",)), rows_per_partition=5000), "path"
    else:
        reads = modality.table_reads
        table, has_label = table_source(spark, inp, fmt, main_col=cfg.manifest_path_col if reads == "path" else cfg.text_col,
                             main_flag="--path-col" if reads == "path" else "--text-col", reads=reads,
                             label_col=cfg.label_col, id_col=cfg.id_col, label_required=False)
        src = spread(table.withColumnRenamed("label_name", "true_label"), rows_per_partition=5000 if reads == "path"
                     else 20000)
        hidden, source = HiddenNames(hidden_files(inp)), reads
        if not has_label:
            src = src.drop("true_label")
        elif model.labels:  # a classifier's labels (a regression's truth is a number: its own check)
            unknown_labels = src.filter(F.col("true_label").isNotNull()
                                        & ~F.trim(F.col("true_label")).isin(model.labels)).count()
    fn = partial(score_batches, model_path=model.model_url, model_id=model.model_id, model_name=model.name,
                 modality_ref=modality.ref, spec_dict=spec.to_dict(), model_dir=model.url, card=model.card,
                 labels=model.labels, batch_size=cfg.batch_size, source=source, threads=score_threads(spark),
                 root=inp if fmt == "folder" else None, decoded_by_reader=fmt in READER_DECODED,
                 task_name=model.task, embeddings=embeddings, task_options=task_options)
    try:
        return write_scores(spark, src, fn, cfg, model, inp, out, fmt, hidden, t0, id_col=modality.key,
                            unknown_labels=unknown_labels, task_options=task_options)
    finally:
        if isinstance(hidden, FolderListing):
            hidden.unpersist()


def score_threads(spark) -> int:
    """One TensorFlow thread per task core, so concurrent tasks of an executor do not oversubscribe it."""
    return 1 if spark.sparkContext.master.startswith("local") else \
        int(spark.sparkContext.getConf().get("spark.task.cpus", "1"))


def write_scores(spark, src, score_fn, cfg: ScoreConfig, model, inp: str, out: str, fmt: str,
                 hidden: FolderListing | HiddenNames, t0: float, id_col: str = "path",
                 unknown_labels: int = 0, task_options: dict | None = None) -> ScoreResult:
    """Score ``src`` with the batch function ``score_fn`` (yielding ``SCORED_DDL``-like frames, the
    record id in ``id_col``) and publish predictions, rejects and the summary JSON, in one Spark job:
    each task writes its own part files and returns only counts. More rejects than
    ``cfg.max_rejects`` publish nothing. ``unknown_labels``: input rows whose true label the model
    does not know. Runs on: driver."""
    with storage.staged_output(out, cfg.overwrite) as staging:
        summary = src.mapInPandas(partial(score_and_write, score=score_fn, staging=staging, id_col=id_col,
                                          task_name=model.task, embeddings=cfg.embeddings,
                                          task_options=task_options),
                                  SCORE_SUMMARY_DDL).collect()
        keep_reported(staging, ("predictions", "rejects"), {r["name"] for r in summary if r["kind"] == "file"})
        counts: dict[str | None, list[int]] = {}
        examples: dict[str, str] = {}
        for r in summary:
            if r["kind"] == "count":
                c = counts.setdefault(r["reason"], [0, 0, 0])
                c[0], c[1], c[2] = c[0] + r["n"], c[1] + r["labelled"], c[2] + r["correct"]
                if r["reason"] is not None:
                    examples.setdefault(r["reason"], r["name"])
        n_ok, labelled, correct = counts.pop(None, [0, 0, 0])
        rejects_by_reason = {str(reason): c[0] for reason, c in sorted(counts.items(), key=lambda kv: str(kv[0]))}
        total = n_ok + sum(rejects_by_reason.values())
        n_rej = sum(rejects_by_reason.values())
        rj.enforce_limit(cfg.max_rejects, rejects_by_reason, [(p, r) for r, p in examples.items()], out)
        acc = correct / labelled if labelled and model.labels else None
        metrics = tasks.get(model.task).score_summary(storage.join(staging, "predictions")) if n_ok else {}
        devices = sorted({r["name"] for r in summary if r["kind"] == "device"})
        for d, schema, n in (("predictions", predictions_schema(id_col, model.task, cfg.embeddings, task_options),
                              n_ok),
                             ("rejects", rj.arrow_schema(id_col), n_rej)):
            rows = sum(r["n"] for r in summary if r["kind"] == "file" and r["name"].startswith(d + "/"))
            if rows != n:  # the tasks' counts and their files disagree: our bug
                raise AssertionError(f"scoring wrote {rows} {d} rows, counted {n}")
            if not n:
                write_empty(storage.join(staging, d), schema)
        skipped = hidden.publish(spark, staging)
        storage.write_json(storage.join(staging, SUMMARY_FILE), {
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "input": inp, "input_format": fmt, "model": model.url, "model_name": model.name,
            "model_id": model.model_id, "input_rows": total, "scored": n_ok, "rejected": n_rej,
            "rejects_by_reason": rejects_by_reason, "labelled_rows": labelled, "accuracy": acc,
            **({"metrics": metrics} if metrics else {}),
            "unknown_true_labels": unknown_labels, "max_rejects": cfg.max_rejects,
            **({"task_options": task_options} if task_options else {}),
            "skipped": {**skipped.to_dict(), "examples": skipped.examples},
            "files_seen": total + skipped.count,
            "batch_size": cfg.batch_size, "seconds": time.time() - t0,
            "devices": [json.loads(d) for d in devices],
        })
    res = ScoreResult(out, total, n_ok, n_rej, rejects_by_reason, labelled, acc, skipped.count, model.model_id,
                      time.time() - t0, unknown_labels, metrics)
    log.info(res.summary())
    return res

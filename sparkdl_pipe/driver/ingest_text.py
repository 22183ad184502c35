"""run_ingest_text: a raw text corpus -> vocabulary + Petastorm train/val/test + rejects + manifest.

Runs on: driver. Tokenizing and encoding run in :mod:`sparkdl_pipe.executor.ingest_text`; the
vocabulary is counted by Spark over the train split only.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial

from sparkdl_pipe import manifest as mf
from sparkdl_pipe import storage
from sparkdl_pipe.config import IngestTextConfig
from sparkdl_pipe.driver.files import spread, write_rejects
from sparkdl_pipe.driver.ingest import (
    IngestResult,
    accounted,
    ingest_stats,
    split_column,
    write_manifest,
    write_splits,
)
from sparkdl_pipe.driver.text_files import detect_text_format, read_text_input
from sparkdl_pipe.errors import DatasetError
from sparkdl_pipe.executor.ingest import path_of
from sparkdl_pipe.executor.ingest_text import ENCODED_DDL, PREPARED_DDL, encode_prepared, prepare_texts
from sparkdl_pipe.preprocess.text import VOCAB_FILE, Vocabulary, save_vocabulary
from sparkdl_pipe.schema import text_schema_json, text_unischema

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestTextResult(IngestResult):
    """What a text ingest wrote: :class:`IngestResult` plus the vocabulary and truncation counts."""

    vocab_size: int = 0
    truncated: int = 0

    def summary(self) -> str:
        return (super().summary() + f"; vocabulary {self.vocab_size} ids (with <pad>=0, <oov>=1); "
                f"{self.truncated} documents truncated")


def build_vocabulary(train_tokens, max_tokens: int, min_count: int) -> Vocabulary:
    """Count tokens with Spark (``train_tokens``: a DataFrame with a ``tokens`` array column) and
    keep the ``max_tokens`` most frequent with at least ``min_count`` occurrences, ties broken by
    token, so the same corpus gives the same vocabulary on any cluster. Runs on: driver (Spark job).
    """
    from pyspark.sql import functions as F

    top = train_tokens.select(F.explode("tokens").alias("token")).groupBy("token").count() \
        .filter(F.col("count") >= min_count).orderBy(F.desc("count"), F.asc("token")).limit(max_tokens).collect()
    return Vocabulary.from_counts(((r["token"], r["count"]) for r in top), max_tokens, min_count)


def run_ingest_text(spark, cfg: IngestTextConfig) -> IngestTextResult:
    """Ingest a text corpus into token-id Petastorm splits, a vocabulary, rejects and a manifest.

    Runs on: driver.

    >>> from sparkdl_pipe.config import IngestTextConfig
    >>> res = run_ingest_text(spark, IngestTextConfig("reviews.csv", "datasets/reviews",
    ...                                               text_col="review", label_col="stars"))  # doctest: +SKIP
    >>> res.input_records == sum(res.counts.values()) + res.rejected  # doctest: +SKIP
    True
    """
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    t0 = time.time()
    inp, out = storage.to_url(cfg.input), storage.to_url(cfg.output)
    if not storage.exists(inp):
        raise DatasetError(f"input {cfg.input} does not exist", fix="Give a .csv/.tsv/.jsonl/.parquet file or "
                           "a folder of <label>/*.txt files")
    storage.prepare_output(out, cfg.overwrite)
    fmt = detect_text_format(inp, cfg.input_format)
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "1024")
    src, hidden = read_text_input(spark, inp, fmt, cfg.text_col, cfg.label_col, cfg.id_col, cfg.split_col)
    if fmt != "txt":
        src = spread(src, rows_per_partition=20000)
    spec = cfg.text
    fn = partial(prepare_texts, spec_dict=spec.to_dict(), seed=cfg.split.seed,
                 root=inp if fmt == "txt" else None, from_folder=fmt == "txt")
    prepared = src.mapInPandas(fn, PREPARED_DDL).persist(StorageLevel.MEMORY_AND_DISK)
    vocab_bc = None
    try:
        st = ingest_stats(prepared, cfg.split.val_fraction, cfg.split.test_fraction, sums={
            "truncated": (F.col("n_tokens") > spec.max_len).cast("long"), "tokens": F.col("n_tokens")})
        total, rejects_by_reason, labels, hints, splits = st.total, st.rejects_by_reason, st.labels, st.hints, st.splits
        if total == 0:
            raise DatasetError(f"no text records found in {cfg.input}",
                               fix=f"Check the path and format ({fmt}); hidden files ({len(hidden)}) are skipped")
        accepted = prepared.filter(F.col("reason").isNull()) \
            .withColumn("split", split_column(hints, cfg.split.val_fraction, cfg.split.test_fraction))
        if not splits["train"]["count"]:
            raise DatasetError(f"no accepted records in the train split of {cfg.input}",
                               fix="The vocabulary is built from the train split; check the split column or fractions")

        vocab = build_vocabulary(accepted.filter(F.col("split") == "train"), spec.vocab_size, spec.min_count)
        spec = dataclasses.replace(spec, vocab_fingerprint=vocab.fingerprint(), vocab_len=vocab.size)
        vocab_bc = spark.sparkContext.broadcast(list(vocab.tokens))
        encoded = accepted.mapInPandas(partial(encode_prepared, vocab_tokens=vocab_bc, max_len=spec.max_len,
                                               labels=labels), ENCODED_DDL)
        row_bytes = 4 * spec.max_len + 64
        with storage.staged_output(out, cfg.overwrite) as staging:
            groups = write_splits(spark, encoded, staging, {s: splits[s]["count"] for s in storage.SPLITS},
                                  row_bytes, cfg.row_group_mb, text_unischema())
            for s in storage.SPLITS:
                splits[s]["path"] = s
                splits[s]["row_groups"] = groups[s]
            save_vocabulary(vocab, storage.join(staging, VOCAB_FILE))
            n_rej = sum(rejects_by_reason.values())
            write_rejects(prepared.filter(F.col("reason").isNotNull()).select(
                F.col("id"), F.col("reason"), F.col("message"), F.lit("ingest").alias("stage")),
                storage.join(staging, "rejects"), n_rej)
            truncated = sum(splits[s]["truncated"] for s in storage.SPLITS)
            doc = {
                "format": mf.FORMAT, "format_version": mf.FORMAT_VERSION, "kind": "text",
                "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "input": inp, "input_kind": fmt, "input_records": total,
                "columns": {"text": cfg.text_col, "label": cfg.label_col, "id": cfg.id_col, "split": cfg.split_col},
                "preprocess": spec.to_dict(), "preprocess_fingerprint": spec.fingerprint(),
                "schema": text_schema_json(spec.max_len),
                "vocabulary": {"path": VOCAB_FILE, "size": vocab.size, "tokens": len(vocab.tokens),
                               "fingerprint": vocab.fingerprint(), "built_from": "train",
                               "max_tokens": spec.vocab_size, "min_count": spec.min_count,
                               "order": "count desc, token asc", "reserved": {"<pad>": 0, "<oov>": 1}},
                "truncated": {"count": truncated, "max_len": spec.max_len,
                              "rule": "first max_len tokens kept, padded with 0 at the end"},
                "labels": labels,
                "splits": splits,
                "split_rule": {"seed": cfg.split.seed, "val_fraction": cfg.split.val_fraction,
                               "test_fraction": cfg.split.test_fraction, "input_split_kept": sorted(hints),
                               "hash": "sha1(seed:relative_path)" if fmt == "txt" else "sha1(seed:id)",
                               "id": "the path" if fmt == "txt" else
                               (f"column {cfg.id_col}" if cfg.id_col else "sha1:<first 16 hex of sha1(text)>")},
                "rejects": {"count": n_rej, "per_reason": rejects_by_reason, "path": "rejects"},
                "skipped": {"hidden": len(hidden), "examples": [path_of(h) for h in hidden[:20]]},
                "row_group_mb": cfg.row_group_mb,
                "versions": mf.versions(),
            }
            fingerprint = write_manifest(staging, doc)
    finally:
        prepared.unpersist()
        if vocab_bc is not None:
            vocab_bc.unpersist()
    res = IngestTextResult(out, total, accounted(total, splits, n_rej), n_rej, rejects_by_reason, len(hidden), labels,
                           fingerprint, time.time() - t0, vocab_size=vocab.size, truncated=truncated)
    log.info(res.summary())
    return res

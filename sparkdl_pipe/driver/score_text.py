"""run_text_scoring: score raw text (CSV/TSV, JSONL, Parquet, ``<label>/*.txt``) or an ingested text
split with a text model, using the tokenizer spec and vocabulary recorded in its model directory.

Runs on: driver (called by :func:`sparkdl_pipe.driver.score.run_scoring` for text models). The
per-batch work is :func:`sparkdl_pipe.executor.score_text.score_text_batches`.
"""

from __future__ import annotations

from functools import partial

from sparkdl_pipe import storage
from sparkdl_pipe.config import ScoreConfig
from sparkdl_pipe.driver.files import spread
from sparkdl_pipe.driver.score import ScoreResult, score_threads, split_dataset_info, write_scores
from sparkdl_pipe.driver.text_files import detect_text_format, read_text_input
from sparkdl_pipe.errors import DatasetError, UserInputError
from sparkdl_pipe.executor.score_text import score_text_batches
from sparkdl_pipe.preprocess.text import load_vocabulary


def _is_text_split(inp: str) -> bool:
    """A split of an ingested dataset: ``<dataset>/<train|val|test>`` beside the dataset's manifest.

    (Splits are plain Parquet without Petastorm's ``_common_metadata``: the manifest is what marks them.)
    """
    head, _, name = inp.rstrip("/").rpartition("/")
    return name in storage.SPLITS and storage.exists(storage.join(head, storage.MANIFEST_FILE)) \
        and not storage.exists(storage.join(inp, storage.MANIFEST_FILE))


def run_text_scoring(spark, cfg: ScoreConfig, model, inp: str, out: str, t0: float) -> ScoreResult:
    """Score ``inp`` with a text model. Runs on: driver.

    >>> run_scoring(spark, ScoreConfig("models/reviews", "new_reviews.jsonl", "scores/",
    ...                                text_col="review"))  # doctest: +SKIP
    """
    from pyspark.sql import functions as F

    spec = model.spec
    if "vocabulary_file" not in model.card:
        raise DatasetError(f"text model {model.url} has no vocabulary_file in its card", fix="Re-train it")
    vocab = load_vocabulary(model.vocab_url)
    if vocab.fingerprint() != spec.vocab_fingerprint:
        raise DatasetError("the model's vocabulary file does not match its card", spec.vocab_fingerprint,
                           vocab.fingerprint(), "Re-train the model; do not edit vocab.json")
    fmt = cfg.input_format
    if fmt in ("folder", "manifest"):
        raise UserInputError("--input-format", "auto, csv, tsv, jsonl, parquet, txt or petastorm for a text model", fmt)
    hidden: list[str] = []
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(cfg.batch_size))
    if fmt == "petastorm" or (fmt == "auto" and _is_text_split(inp)):
        fmt = "petastorm"
        info = split_dataset_info(inp, cfg.input)
        if info.spec.fingerprint() != spec.fingerprint():
            raise DatasetError("the data's tokenization/vocabulary does not match the model's",
                               f"spec fingerprint {spec.fingerprint()} (model card)", info.spec.fingerprint(),
                               "Score the raw text instead: it is tokenized with the model's vocabulary")
        src = spark.read.parquet(storage.spark_path(inp)).select("id", "tokens", F.col("label_name").alias("true_label"))
        source = "tokens"
    else:
        fmt = detect_text_format(inp, fmt)
        src, hidden = read_text_input(spark, inp, fmt, cfg.text_col, cfg.label_col, cfg.id_col, None,
                                      label_required=False)
        if fmt != "txt":
            src = spread(src, rows_per_partition=20000)
        source = "folder" if fmt == "txt" else "table"
    fn = partial(score_text_batches, model_path=model.model_url, model_id=model.model_id, model_name=model.name,
                 spec_dict=spec.to_dict(), vocab_path=model.vocab_url, labels=model.labels,
                 batch_size=cfg.batch_size, source=source, threads=score_threads(spark),
                 root=inp if fmt == "txt" else None)
    return write_scores(src, fn, cfg, model, inp, out, fmt, hidden, t0, id_col="id")

"""Text as a kind of data: strict UTF-8, normalise, tokenize; a vocabulary fitted on the train split;
``max_len`` int32 token ids stored.

Runs on: driver (:meth:`TextModality.fit` counts tokens with Spark) and executors (the rest). The
text work is :mod:`sparkdl_pipe.preprocess.text`, the same calls at ingest and at scoring.
"""

from __future__ import annotations

import numpy as np

from sparkdl_pipe import storage
from sparkdl_pipe.errors import DatasetError
from sparkdl_pipe.modalities.base import Modality, Prepared
from sparkdl_pipe.preprocess.spec import AUTO_MAX_LEN_PERCENTILE, TextSpec
from sparkdl_pipe.preprocess.text import (
    EMPTY_TEXT,
    VOCAB_FILE,
    Vocabulary,
    decode_text_checked,
    encode_tokens,
    length_percentile,
    load_vocabulary,
    save_vocabulary,
    text_to_tokens,
)


class TextModality(Modality):
    """UTF-8 text -> ``spec.max_len`` token ids (0 = padding, 1 = out of vocabulary)."""

    kind = "text"
    spec_type = TextSpec
    feature = "tokens"
    dtype = "<i4"
    key = "id"
    default_model = "textcnn"  # auto without a val split, and for regression
    auto_candidates = ("textcnn", "fasttext")  # benchmarks/NOTES.md, changes 30 and 33
    table_reads = "content"
    needs_fit = True
    #: tokens: tokens before truncation; truncated: 1 when over max_len; replacement_char: 1 when the
    #: accepted text holds U+FFFD; invalid_utf8_replaced: 1 when invalid bytes were replaced.
    stat_names = ("tokens", "truncated", "replacement_char", "invalid_utf8_replaced")
    prepared_ddl = "tokens array<string>"

    def prepare(self, data, spec, decoded_by_reader=False) -> Prepared:
        if decoded_by_reader and isinstance(data, (bytes, bytearray)):
            data = bytes(data).decode("utf-8")  # the reader's own string: its U+FFFD are replaced bytes
        text, reason, message, replaced = decode_text_checked(data, spec.invalid_utf8)
        if text is None:
            return Prepared(None, reason, message)
        tokens = text_to_tokens(text, spec)
        if not tokens:
            return Prepared(None, EMPTY_TEXT, "no tokens after normalisation (only control or zero-width characters)")
        return Prepared(tokens, stats={"tokens": len(tokens),
                                       "truncated": int(not spec.needs_length_fit and len(tokens) > spec.max_len),
                                       "replacement_char": int("\ufffd" in text and not replaced),
                                       "invalid_utf8_replaced": int(replaced)})

    def encode(self, value, spec, artifacts) -> np.ndarray:
        return encode_tokens(value, artifacts.lookup, spec.max_len, spec.truncation)[0]

    def fitted_stats(self, value, stats: dict[str, int], spec) -> dict[str, int]:
        return {**stats, "truncated": int(len(value) > spec.max_len)}

    def prepared_row(self, value) -> dict:
        return {"tokens": value}

    def from_prepared_row(self, row: dict):
        return list(row["tokens"])

    def fit(self, spark, train_prepared, spec):
        """The vocabulary: the ``spec.vocab_size`` most frequent train tokens seen at least
        ``spec.min_count`` times, ties broken by token, so the same corpus gives the same vocabulary
        on any cluster. Runs on: driver (one Spark job)."""
        import dataclasses

        from pyspark.sql import functions as F

        top = train_prepared.select(F.explode("tokens").alias("token")).groupBy("token").count() \
            .filter(F.col("count") >= spec.min_count).orderBy(F.desc("count"), F.asc("token")) \
            .limit(spec.vocab_size).collect()
        vocab = Vocabulary.from_counts(((r["token"], r["count"]) for r in top), spec.vocab_size, spec.min_count)
        fitted = dataclasses.replace(spec, vocab_fingerprint=vocab.fingerprint(), vocab_len=vocab.size)
        if spec.needs_length_fit:
            fitted = dataclasses.replace(fitted, max_len=self.fit_max_len(train_prepared, spec), max_len_auto=True)
        return fitted, vocab

    @staticmethod
    def fit_max_len(train_prepared, spec) -> int:
        """``--max-len auto``: the :data:`AUTO_MAX_LEN_PERCENTILE`-th percentile of the train split's
        token counts (exact, nearest rank), capped at ``spec.max_len_cap``. Runs on: driver (one Spark job)."""
        from pyspark.sql import functions as F

        lengths = train_prepared.select(F.size("tokens").alias("n")).groupBy("n").count().collect()
        counts = sorted((int(r["n"]), int(r["count"])) for r in lengths)
        return min(spec.max_len_cap, max(1, length_percentile(counts, AUTO_MAX_LEN_PERCENTILE)))

    def save_artifacts(self, artifacts, dir_url: str) -> dict:
        save_vocabulary(artifacts, storage.join(dir_url, VOCAB_FILE))
        return {"vocabulary": {"path": VOCAB_FILE, "size": artifacts.size, "tokens": len(artifacts.tokens),
                               "fingerprint": artifacts.fingerprint(), "built_from": "train",
                               "order": "count desc, token asc", "reserved": {"<pad>": 0, "<oov>": 1}}}

    def load_artifacts(self, dir_url: str, spec, doc: dict):
        if "vocabulary_file" in doc:  # a model card
            path = doc["vocabulary_file"]
        elif "vocabulary" in doc:  # a dataset manifest
            path = doc["vocabulary"]["path"]
        else:
            raise DatasetError(f"text model {dir_url} has no vocabulary_file in its card", fix="Re-train it")
        vocab = load_vocabulary(storage.join(dir_url, path))
        if vocab.fingerprint() != spec.vocab_fingerprint:
            raise DatasetError("the vocabulary file does not match its card or manifest", spec.vocab_fingerprint,
                               vocab.fingerprint(), "Re-ingest or re-train; do not edit vocab.json")
        return vocab

    def copy_artifacts(self, dataset, model_dir: str, card: dict) -> None:
        vocab = self.load_artifacts(dataset.url, dataset.spec, dataset.doc)
        save_vocabulary(vocab, storage.join(model_dir, VOCAB_FILE))
        card["vocabulary_file"] = VOCAB_FILE

    def fitted_sizes(self, artifacts) -> dict[str, int]:
        return {"vocab_size": artifacts.size}

    def summary_extras(self, stats: dict[str, int], fitted: dict[str, int]) -> str:
        out = f"; vocabulary {fitted.get('vocab_size', 0)} ids (with <pad>=0, <oov>=1); " \
              f"{stats.get('truncated', 0)} documents truncated"
        if stats.get("replacement_char") or stats.get("invalid_utf8_replaced"):
            out += (f"; {stats.get('replacement_char', 0)} texts hold U+FFFD, "
                    f"{stats.get('invalid_utf8_replaced', 0)} had invalid UTF-8 replaced")
        return out

    def model_extras(self, spec) -> dict:
        return {"vocab_size": spec.vocab_len}

    def manifest_extras(self, spec, splits: dict[str, dict]) -> dict:
        total = {k: sum(int(s.get(k, 0)) for s in splits.values()) for k in self.stat_names}
        rule = ("first max_len tokens kept" if spec.truncation == "head" else
                "first max_len/2 and last max_len - max_len/2 tokens kept")
        return {"truncated": {"count": total["truncated"], "max_len": spec.max_len, "truncation": spec.truncation,
                              "rule": rule + ", padded with 0 at the end"},
                "max_len": {"value": spec.max_len, "rule": "auto" if spec.max_len_auto else "given",
                            **({"percentile": AUTO_MAX_LEN_PERCENTILE, "cap": spec.max_len_cap,
                                "of": "token counts of the train split"} if spec.max_len_auto else {})},
                "utf8": {"invalid_utf8": spec.invalid_utf8,
                         "records_with_replacement_char": total["replacement_char"],
                         "records_with_invalid_bytes_replaced": total["invalid_utf8_replaced"]}}

    def schema_json(self, spec, key=None) -> dict:
        from sparkdl_pipe.schema import text_schema_json

        return text_schema_json(spec.max_len)

    def describe_input(self) -> str:
        return "a .csv/.tsv/.jsonl/.parquet file or a folder of <label>/*.txt files"


TEXT = TextModality()

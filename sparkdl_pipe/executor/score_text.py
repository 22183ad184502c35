"""Scoring raw text (or an ingested text split) in ``mapInPandas`` batches with a text model.

Raw text goes through exactly the functions ingest used (:func:`check_and_tokenize`,
:func:`~sparkdl_pipe.preprocess.text.encode_tokens`) with the spec and vocabulary of the model
card, so a document gets the token ids it got at ingest. The model comes from the per-worker
:data:`~sparkdl_pipe.executor.score.MODEL_CACHE`.

Runs on: executors.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd

from sparkdl_pipe.executor.ingest import label_from_rel_path, relative_to, root_prefix
from sparkdl_pipe.executor.ingest_text import check_and_tokenize, clean_label, content_id
from sparkdl_pipe.executor.score import MODEL_CACHE, _device_record, best_class, predict_arrays, scored_frame
from sparkdl_pipe.executor.worker import prune_zip_importers
from sparkdl_pipe.preprocess.spec import TextSpec
from sparkdl_pipe.preprocess.text import encode_tokens, load_vocabulary
from sparkdl_pipe.schema import decode_features


def _encode_rows(pdf: pd.DataFrame, source: str, spec: TextSpec, index: dict[str, int], root_path: str | None,
                 known: set[str]):
    """(ids (n, max_len) for the ok rows, ok mask, ids of every row, true labels, reasons, messages)."""
    n = len(pdf)
    reason: list[str | None] = [None] * n
    message: list[str | None] = [None] * n
    if source == "tokens":
        return (decode_features(list(pdf["tokens"]), spec.shape, "text"), np.ones(n, dtype=bool),
                list(pdf["id"]), list(pdf["true_label"]), reason, message)
    if source == "folder":
        ids = list(pdf["path"])
        datas, bads = list(pdf["content"]), [None] * n
        labels = [label_from_rel_path(relative_to(p, root_path))[0] for p in ids]
    else:
        datas, bads = list(pdf["data"]), list(pdf["malformed"])
        ids = [r if isinstance(r, str) and r != "" else content_id(d if d is not None else b)
               for r, d, b in zip(pdf["id"], datas, bads, strict=True)]
        labels = [clean_label(x) for x in pdf["label_name"]]
    rows, ok = [], np.zeros(n, dtype=bool)
    for i, (data, bad) in enumerate(zip(datas, bads, strict=True)):
        tokens, reason[i], message[i] = check_and_tokenize(data, None, bad, spec, need_label=False)
        if tokens is not None:
            rows.append(encode_tokens(tokens, index, spec.max_len)[0])
            ok[i] = True
    x = np.stack(rows) if rows else np.zeros((0, spec.max_len), dtype=np.int32)
    return x, ok, ids, [lab if lab in known else None for lab in labels], reason, message


def score_text_batches(batches: Iterator[pd.DataFrame], model_path: str, model_id: str, model_name: str,
                       spec_dict: dict, vocab_path: str, labels: list[str], batch_size: int, source: str,
                       threads: int | None = None, root: str | None = None) -> Iterator[pd.DataFrame]:
    """Score a partition of text. ``source``: ``table`` (``id, data, label_name, split_hint,
    malformed`` from a CSV/TSV/JSONL/Parquet reader), ``folder`` (binaryFile ``path, content`` of
    ``<label>/*.txt``; the true label is the folder when the model knows it) or ``tokens`` (an
    ingested split's stored ids). One output row per input row (the columns of
    :data:`sparkdl_pipe.executor.score.SCORED_DDL`, with ``id`` for ``path``); texts that cannot be
    used carry ``reason``/``message`` and no prediction.
    """
    prune_zip_importers()  # cheap task starts in this reused worker (executor/worker.py)
    spec = TextSpec.from_dict(spec_dict)
    vocab = load_vocabulary(vocab_path)
    if vocab.fingerprint() != spec.vocab_fingerprint:
        raise ValueError(f"vocabulary {vocab_path} has fingerprint {vocab.fingerprint()}, the model card "
                         f"says {spec.vocab_fingerprint}")
    index = vocab.index()
    root_path = root_prefix(root) if root else None
    model = MODEL_CACHE.get(model_path, model_id, threads)
    names = np.asarray(labels, dtype=object)
    device = _device_record()  # which GPU (if any) this task scored on, as image scoring records it
    for pdf in batches:
        x, ok, ids, true, reason, message = _encode_rows(pdf, source, spec, index, root_path, set(labels))
        pred, prob = best_class(predict_arrays(model, x, batch_size), ok)
        yield scored_frame("id", pd.Series(ids, dtype=object).astype(str).values, true, pred, prob, names,
                           model_name, model_id, reason, message, device)

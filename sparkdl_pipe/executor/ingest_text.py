"""Text ingest batch functions, run by ``mapInPandas`` in the executors: a pandas batch at a time.

:func:`prepare_texts` decodes, validates, normalises and tokenizes (one output row per input row,
rejects included); :func:`encode_prepared` maps tokens to ids with the vocabulary built over the
train split and pads/truncates them. Both call :mod:`sparkdl_pipe.preprocess.text`, as scoring does.

Runs on: executors. Arguments are plain values or a Spark broadcast (the vocabulary).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pandas as pd

from sparkdl_pipe.executor.ingest import (
    NO_LABEL,
    SPLIT_ALIASES,
    label_from_rel_path,
    relative_to,
    root_prefix,
    stable_hash,
)
from sparkdl_pipe.executor.worker import prune_zip_importers
from sparkdl_pipe.preprocess.spec import TextSpec
from sparkdl_pipe.preprocess.text import (
    EMPTY_TEXT,
    MALFORMED_RECORD,
    UNDECODABLE_TEXT,
    decode_text,
    encode_tokens,
    ids_to_bytes,
    text_to_tokens,
)

#: Spark DDL of what :func:`prepare_texts` yields.
PREPARED_DDL = ("id string, label_name string, split_hint string, u double, order_key long, "
                "tokens array<string>, n_tokens int, reason string, message string")
#: Spark DDL of what :func:`encode_prepared` yields.
ENCODED_DDL = "tokens binary, label int, label_name string, id string, order_key long, split string"


def content_id(data) -> str:
    """The id of a table row without an id: a hash of its raw text (or of the unparsable record)."""
    return "sha1:" + hashlib.sha1(bytes(data) if data is not None else b"").hexdigest()[:16]


def clean_label(label) -> str | None:
    """A label cell as a non-empty stripped string, or None (missing)."""
    if label is None or (not isinstance(label, str) and pd.isna(label)):
        return None
    return str(label).strip() or None


def check_and_tokenize(data, label: str | None, malformed, spec: TextSpec,
                       need_label: bool = True) -> tuple[list[str] | None, str | None, str | None]:
    """(tokens, reason, message) for one record: the validation ingest and scoring share."""
    if isinstance(malformed, (bytes, bytearray)):
        try:
            raw = bytes(malformed).decode("utf-8")
        except UnicodeDecodeError:
            return None, UNDECODABLE_TEXT, "record is not valid UTF-8: " + repr(bytes(malformed)[:200])
        return None, MALFORMED_RECORD, f"the reader could not parse this record: {raw[:200]!r}"
    text, reason, message = decode_text(data)
    if text is None:
        return None, reason, message
    if need_label and label is None:
        return None, NO_LABEL, "no label: give a label column value or put the file in a <label>/ folder"
    tokens = text_to_tokens(text, spec)
    if not tokens:
        return None, EMPTY_TEXT, "no tokens after normalisation (only control or zero-width characters)"
    return tokens, None, None


def prepare_texts(batches: Iterator[pd.DataFrame], spec_dict: dict, seed: int, root: str | None,
                  from_folder: bool) -> Iterator[pd.DataFrame]:
    """Decode, validate and tokenize a partition of text records. One output row per input row.

    Folder input (``root`` given) has binaryFile's ``path, content``: the id is the path, the label
    the parent folder, the split hint a top ``train/``/``val/``/``test/`` folder, and the split key
    the path relative to ``root``. Table input has ``id, data, label_name, split_hint, malformed``:
    the id is the id column or, without one, a hash of the text; the split key is the id.
    """
    prune_zip_importers()  # cheap task starts in this reused worker (executor/worker.py)
    spec = TextSpec.from_dict(spec_dict)
    root_path = root_prefix(root) if root else None
    cols = ("id", "label_name", "split_hint", "u", "order_key", "tokens", "n_tokens", "reason", "message")
    for pdf in batches:
        out: dict[str, list] = {k: [] for k in cols}
        if from_folder:
            rows = []
            for path, content in zip(pdf["path"], pdf["content"], strict=True):
                rel = relative_to(path, root_path)
                label, hint = label_from_rel_path(rel)
                rows.append((path, rel, content, label, hint, None))
        else:
            rows = []
            for rid, data, label, hint, bad in zip(pdf["id"], pdf["data"], pdf["label_name"], pdf["split_hint"],
                                                   pdf["malformed"], strict=True):
                rid = rid if isinstance(rid, str) and rid != "" else content_id(data if data is not None else bad)
                hint = SPLIT_ALIASES.get(str(hint).strip().lower()) if isinstance(hint, str) else None
                rows.append((rid, rid, data, clean_label(label), hint, bad))
        for rid, key, data, label, hint, bad in rows:
            u, order = stable_hash(seed, key)
            tokens, reason, message = check_and_tokenize(data, label, bad, spec)
            for k, v in (("id", rid), ("label_name", label), ("split_hint", hint), ("u", u), ("order_key", order),
                         ("tokens", tokens), ("n_tokens", len(tokens) if tokens else 0), ("reason", reason),
                         ("message", message)):
                out[k].append(v)
        yield pd.DataFrame(out)


def encode_prepared(batches: Iterator[pd.DataFrame], vocab_tokens, max_len: int,
                    labels: list[str]) -> Iterator[pd.DataFrame]:
    """Token lists -> ``max_len`` int32 ids (raw little-endian bytes) and integer labels.

    ``vocab_tokens`` is a Spark broadcast of the vocabulary's token list (id = position + 2).
    """
    prune_zip_importers()  # cheap task starts in this reused worker (executor/worker.py)
    index = {t: i + 2 for i, t in enumerate(vocab_tokens.value)}
    label_index = {name: i for i, name in enumerate(labels)}
    for pdf in batches:
        cells = [ids_to_bytes(encode_tokens(list(toks), index, max_len)[0]) for toks in pdf["tokens"]]
        yield pd.DataFrame({"tokens": cells, "label": [label_index[n] for n in pdf["label_name"]],
                            "label_name": pdf["label_name"].values, "id": pdf["id"].values,
                            "order_key": pdf["order_key"].values, "split": pdf["split"].values})

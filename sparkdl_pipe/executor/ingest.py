"""Ingest batch functions, run by ``mapInPandas`` in the executors: a pandas batch at a time.

Runs on: executors. Arguments are plain values (no SparkSession, no large objects in closures).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import numpy as np
import pandas as pd

from sparkdl_pipe.executor.parts import PartWriter
from sparkdl_pipe.executor.reading import path_of, read_bytes
from sparkdl_pipe.executor.worker import prune_zip_importers
from sparkdl_pipe.preprocess.image import decode_image
from sparkdl_pipe.preprocess.spec import ImageSpec
from sparkdl_pipe.rejects import MISSING_FILE, NO_LABEL, UNKNOWN_LABEL, count_by_reason

SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val",
                 "validation": "val", "dev": "val", "test": "test", "testing": "test"}

__all__ = ["KEYED_DDL", "MISSING_FILE", "NO_LABEL", "SUMMARY_DDL", "decode_and_write", "key_record",
           "key_records", "label_from_rel_path", "path_of", "read_bytes", "relative_to", "root_prefix",
           "stable_hash"]

#: Spark DDL of what :func:`key_records` yields (plus ``content`` when its input has the bytes).
KEYED_DDL = ("path string, rel_path string, label_name string, split_hint string, u double, "
             "order_key long, reason string, message string")

#: Spark DDL of what :func:`decode_and_write` yields: a few summary rows per task, never the images.
#: ``kind`` is ``file`` (a Parquet file the task wrote: split, name, n rows), ``class`` (split,
#: label_name, n accepted) or ``reject`` (reason, n, one example path).
SUMMARY_DDL = "kind string, split string, label_name string, reason string, n long, name string"

def stable_hash(seed: int, key: str) -> tuple[float, int]:
    """(u in [0, 1), a signed 63-bit order key) from a seed and a record key. Stable everywhere."""
    d = hashlib.sha1(f"{seed}:{key}".encode()).digest()
    u = int.from_bytes(d[:8], "big") / 2.0**64
    order = int.from_bytes(d[8:16], "big") >> 1
    return u, order


def relative_to(url: str, root_path: str | None) -> str:
    """``url``'s filesystem path relative to ``root_path`` (a path ending in '/'), or the whole path."""
    fp = path_of(url)
    return fp[len(root_path):] if root_path and fp.startswith(root_path) else fp


def root_prefix(root: str) -> str:
    """The prefix :func:`relative_to` strips: the root's filesystem path with a trailing '/'."""
    return path_of(root).rstrip("/") + "/"


def label_from_rel_path(rel: str) -> tuple[str | None, str | None]:
    """(label, split hint) for ``[split/]label/.../file`` relative paths; the label is the parent folder."""
    parts = [p for p in rel.split("/") if p]
    if len(parts) < 2:
        return None, None
    hint = SPLIT_ALIASES.get(parts[0].lower()) if len(parts) >= 3 else None
    return parts[-2], hint


def key_record(path: str, label, hint, seed: int, root_path: str | None, from_manifest: bool,
               allowed: set[str] | None) -> tuple:
    """(rel_path, label, split hint, u, order_key, reason, message) of one input record, before decoding.

    Folder input (``from_manifest`` false): label and hint come from ``path`` relative to
    ``root_path``. Manifest input: from the given ``label``/``hint`` values. A record with no label,
    or a label not in ``allowed``, is rejected here (it is never read).
    """
    if from_manifest:
        rel = path
        if isinstance(label, str):
            label = label.strip() or None
        elif label is not None and not pd.isna(label):
            label = str(label)
        else:
            label = None
        hint = SPLIT_ALIASES.get(str(hint).strip().lower()) if isinstance(hint, str) else None
    else:
        rel = relative_to(path, root_path)
        label, hint = label_from_rel_path(rel)
    u, order = stable_hash(seed, rel)
    reason = message = None
    if label is None:
        reason, message = NO_LABEL, "no label: put the file in a <label>/ folder or give a label column"
    elif allowed is not None and label not in allowed:
        reason, message = UNKNOWN_LABEL, f"label {label!r} is not one of --labels {sorted(allowed)}"[:300]
    return rel, label, hint, u, order, reason, message


def key_records(batches: Iterator[pd.DataFrame], seed: int, root: str | None, from_manifest: bool,
                allowed_labels: list[str] | None = None) -> Iterator[pd.DataFrame]:
    """:func:`key_record` for every row (``path`` [, ``label_name``, ``split_hint``] [, ``content``]).

    Rows of :data:`KEYED_DDL`, with ``content`` passed through when the input has it.
    """
    prune_zip_importers()
    root_path = root_prefix(root) if root else None
    allowed = set(allowed_labels) if allowed_labels is not None else None
    names = ["rel_path", "label_name", "split_hint", "u", "order_key", "reason", "message"]
    for pdf in batches:
        labels = pdf["label_name"] if from_manifest else [None] * len(pdf)
        hints = pdf["split_hint"] if from_manifest else [None] * len(pdf)
        keyed = [key_record(p, lab, h, seed, root_path, from_manifest, allowed)
                 for p, lab, h in zip(pdf["path"], labels, hints, strict=True)]
        out = pd.DataFrame(keyed, columns=names) if keyed else pd.DataFrame({k: [] for k in names})
        out.insert(0, "path", pdf["path"].to_numpy())
        if "content" in pdf.columns:
            out["content"] = pdf["content"].to_numpy()
        yield out


def _fixed_binary(arrays: list[np.ndarray]):
    """Equal-sized uint8 arrays as one Arrow binary array, built with numpy (no per-row objects)."""
    import pyarrow as pa

    flat = np.stack(arrays).reshape(len(arrays), -1)
    width = flat.shape[1]
    offsets = np.arange(0, (len(arrays) + 1) * width, width, dtype=np.int32)
    return pa.Array.from_buffers(pa.binary(), len(arrays), [None, pa.py_buffer(offsets), pa.py_buffer(flat)])


class _SplitFile:
    """One task's part file of one split: images buffered and written ``rows_per_group`` at a time."""

    def __init__(self, staging: str, split: str, rows_per_group: int) -> None:
        from sparkdl_pipe.schema import image_arrow_schema

        self.part = PartWriter(staging, split, image_arrow_schema(), use_dictionary=["label", "label_name"],
                               write_statistics=["label", "label_name"])
        self.rows_per_group = rows_per_group
        self.buf: tuple[list, list, list, list] = ([], [], [], [])

    def add(self, image: np.ndarray, label: int, label_name: str, path: str) -> None:
        for col, v in zip(self.buf, (image, label, label_name, path), strict=True):
            col.append(v)
        if len(self.buf[0]) >= self.rows_per_group:
            self.flush()

    def flush(self) -> None:
        import pyarrow as pa

        images, labels, names, paths = self.buf
        if images:
            self.part.write(pa.table([_fixed_binary(images), pa.array(labels, pa.int32()),
                                      pa.array(names, pa.string()), pa.array(paths, pa.string())],
                                     schema=self.part.schema))
        self.buf = ([], [], [], [])

    def close(self) -> tuple[str, int] | None:
        self.flush()
        return self.part.close()


def decode_and_write(batches: Iterator[pd.DataFrame], spec_dict: dict, staging: str,
                     rows_per_group: dict[str, int]) -> Iterator[pd.DataFrame]:
    """Decode + resize a partition of keyed records and write them, in order, as Parquet files.

    Input rows: :data:`KEYED_DDL` plus ``split`` and ``label`` (null for records already rejected)
    and optionally ``content`` (the bytes; else they are read here by path, failures becoming
    reasons). Accepted records go to ``<staging>/<split>/part-<task>-<attempt>.parquet`` in row
    groups of ``rows_per_group[split]`` rows; rejected ones to ``<staging>/rejects/...``. Only
    summary rows (:data:`SUMMARY_DDL`) go back to Spark: the driver keeps the files its successful
    tasks name and checks their footers. Every input row is one accepted or one rejected record.
    """
    import pyarrow as pa

    from sparkdl_pipe.rejects import arrow_schema

    prune_zip_importers()  # cheap task starts in this reused worker (executor/worker.py)
    spec = ImageSpec.from_dict(spec_dict)
    files: dict[str, _SplitFile] = {}
    per_class: dict[tuple[str, str], int] = {}
    rejects: tuple[list, list, list] = ([], [], [])
    for pdf in batches:
        has_content = "content" in pdf.columns
        contents = pdf["content"] if has_content else [None] * len(pdf)
        for path, split, label, name, reason, message, data in zip(
                pdf["path"], pdf["split"], pdf["label"], pdf["label_name"], pdf["reason"], pdf["message"],
                contents, strict=True):
            image = None
            if reason is None:
                if not has_content:
                    data, reason, message = read_bytes(path)
                if reason is None:
                    res = decode_image(data, spec)
                    image, reason, message = res.array, res.reason, res.message
            if reason is not None or image is None:
                for col, v in zip(rejects, (path, reason, message), strict=True):
                    col.append(v)
                continue
            if split not in files:
                files[split] = _SplitFile(staging, split, rows_per_group[split])
            files[split].add(image, int(label), name, path)
            per_class[(split, name)] = per_class.get((split, name), 0) + 1
    summary: list[tuple] = []
    for s, f in files.items():
        done = f.close()
        if done:
            summary.append(("file", s, None, None, done[1], done[0]))
    summary += [("class", s, name, None, n, None) for (s, name), n in per_class.items()]
    if rejects[0]:
        part = PartWriter(staging, "rejects", arrow_schema())
        part.write(pa.table([pa.array(c, pa.string()) for c in (*rejects, ["ingest"] * len(rejects[0]))],
                            schema=part.schema))
        done = part.close()
        if done:
            summary.append(("file", "rejects", None, None, done[1], done[0]))
        first: dict[str, str] = {}
        for path, reason in zip(rejects[0], rejects[1], strict=True):
            first.setdefault(reason, path)
        summary += [("reject", None, None, r, n, first[r]) for r, n in count_by_reason(rejects[1]).items()]
    yield pd.DataFrame(summary, columns=["kind", "split", "label_name", "reason", "n", "name"])

"""Ingest batch functions, run by ``mapInPandas`` in the executors: a pandas batch at a time.

Runs on: executors. Arguments are plain values (no SparkSession, no large objects in closures).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pandas as pd

from sparkdl_pipe.executor.reading import path_of, read_bytes
from sparkdl_pipe.executor.worker import prune_zip_importers
from sparkdl_pipe.preprocess.image import decode_image
from sparkdl_pipe.preprocess.spec import ImageSpec
from sparkdl_pipe.rejects import MISSING_FILE, NO_LABEL, UNKNOWN_LABEL

SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val",
                 "validation": "val", "dev": "val", "test": "test", "testing": "test"}

__all__ = ["DECODED_DDL", "MISSING_FILE", "NO_LABEL", "decode_images", "label_from_rel_path", "path_of",
           "read_bytes", "relative_to", "root_prefix", "stable_hash"]

#: Spark DDL of what :func:`decode_images` yields.
DECODED_DDL = ("path string, rel_path string, label_name string, split_hint string, u double, "
               "order_key long, image binary, reason string, message string")


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


def decode_images(batches: Iterator[pd.DataFrame], spec_dict: dict, seed: int, root: str | None,
                  from_manifest: bool, allowed_labels: list[str] | None = None) -> Iterator[pd.DataFrame]:
    """Decode + resize a partition of images. Every input row yields exactly one output row.

    Folder input has a ``path`` column (and optionally ``content``, the bytes); label and split
    come from the path relative to ``root``. Manifest input has ``path, label_name, split_hint``.
    Bytes not given are read here by path (:func:`read_bytes`: failures become reject reasons).
    Rejected rows carry ``reason``/``message`` and no image. With ``allowed_labels``, any other
    label is rejected as ``unknown_label``.
    """
    prune_zip_importers()  # cheap task starts in this reused worker (executor/worker.py)
    spec = ImageSpec.from_dict(spec_dict)
    root_path = root_prefix(root) if root else None
    allowed = set(allowed_labels) if allowed_labels is not None else None
    for pdf in batches:
        out: dict[str, list] = {k: [] for k in ("path", "rel_path", "label_name", "split_hint", "u",
                                                "order_key", "image", "reason", "message")}
        has_content = "content" in pdf.columns
        for row in pdf.itertuples(index=False):
            path = row.path
            if from_manifest:
                rel = path
                label, hint = row.label_name, row.split_hint
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
            image = reason = message = data = None
            if label is None:
                reason, message = NO_LABEL, "no label: put the file in a <label>/ folder or give a label column"
            elif allowed is not None and label not in allowed:
                reason, message = UNKNOWN_LABEL, f"label {label!r} is not one of --labels {sorted(allowed)}"[:300]
            elif has_content:
                data = row.content
            else:
                data, reason, message = read_bytes(path)
            if reason is None:
                res = decode_image(data, spec)
                if res.ok:
                    image = res.array.tobytes()  # type: ignore[union-attr]
                else:
                    reason, message = res.reason, res.message
            for k, v in (("path", path), ("rel_path", rel), ("label_name", label), ("split_hint", hint),
                         ("u", u), ("order_key", order), ("image", image), ("reason", reason),
                         ("message", message)):
                out[k].append(v)
        yield pd.DataFrame(out)

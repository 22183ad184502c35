"""Ingest batch functions, run by ``mapInPandas`` in the executors: a pandas batch at a time.

Runs on: executors. Arguments are plain values (no SparkSession, no large objects in closures).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from urllib.parse import unquote, urlparse

import pandas as pd

from sparkdl_pipe.preprocess.image import decode_image
from sparkdl_pipe.preprocess.spec import ImageSpec

SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val",
                 "validation": "val", "dev": "val", "test": "test", "testing": "test"}

# Reason codes added by ingest (decode reasons live in preprocess.image).
NO_LABEL = "missing_label"
MISSING_FILE = "missing_file"

#: Spark DDL of what :func:`decode_images` yields.
DECODED_DDL = ("path string, rel_path string, label_name string, split_hint string, u double, "
               "order_key long, image binary, reason string, message string")


def path_of(url: str) -> str:
    """The filesystem path component of a Spark path (``file:/a/b`` -> ``/a/b``)."""
    p = urlparse(url)
    return unquote(p.path) if p.scheme else url


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


def read_bytes(url: str) -> tuple[bytes | None, str | None]:
    """Read a whole file from a local path or URL: (bytes, None) or (None, error message)."""
    try:
        if urlparse(url).scheme in ("", "file"):
            with open(path_of(url), "rb") as f:
                return f.read(), None
        from pyarrow import fs as pafs

        fs, p = pafs.FileSystem.from_uri(url.replace("s3a://", "s3://", 1))
        with fs.open_input_stream(p) as f:
            return f.read(), None
    except (OSError, ValueError) as e:
        return None, f"{type(e).__name__}: {e}"[:300]


def decode_images(batches: Iterator[pd.DataFrame], spec_dict: dict, seed: int, root: str | None,
                  from_manifest: bool) -> Iterator[pd.DataFrame]:
    """Decode + resize a partition of images. Every input row yields exactly one output row.

    Folder input has columns ``path, content``; label and split come from the path relative to
    ``root``. Manifest input has ``path, label_name, split_hint``; bytes are read here by path,
    unless the batch also has ``content`` (a DataFrame of image bytes).
    Rejected rows carry ``reason``/``message`` and no image.
    """
    spec = ImageSpec.from_dict(spec_dict)
    root_path = root_prefix(root) if root else None
    for pdf in batches:
        has_content = "content" in pdf.columns  # a DataFrame source with bytes (else read by path)
        out: dict[str, list] = {k: [] for k in ("path", "rel_path", "label_name", "split_hint", "u",
                                                "order_key", "image", "reason", "message")}
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
                data, err = (row.content, None) if has_content else read_bytes(path)
            else:
                rel = relative_to(path, root_path)
                label, hint = label_from_rel_path(rel)
                data, err = row.content, None
            u, order = stable_hash(seed, rel)
            image = reason = message = None
            if err is not None:
                reason, message = MISSING_FILE, err
            elif label is None:
                reason, message = NO_LABEL, "no label: put the file in a <label>/ folder or give a label column"
            else:
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

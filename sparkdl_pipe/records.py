"""Record keys, written once for every kind of data: split keys, labels from folders, stable hashes.

Ingest (driver and executors) and scoring (executors) call these, so a record gets the same key,
label and split hint wherever it is seen.

The label of a file in a folder layout is the **first folder under the root** (under the split
folder where there is one): ``cat/2019/x.jpg`` is ``cat``, ``train/cat/2019/x.jpg`` is ``cat`` in
the train split, as Keras' ``image_dataset_from_directory`` and torchvision's ``ImageFolder`` read
it. (Before 2026-12, the parent folder was the label: ``2019`` above. Datasets ingested then keep
the labels they were written with.)

Runs on: driver and executors (stdlib and pandas only).
"""

from __future__ import annotations

import hashlib
from urllib.parse import unquote, urlparse

import pandas as pd

#: Folder or column names that say which split a record belongs to, and the split they mean.
SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val",
                 "validation": "val", "dev": "val", "test": "test", "testing": "test"}


def path_of(url: str) -> str:
    """The filesystem path component of a URL (``file:/a/b%20c`` -> ``/a/b c``); plain paths as given."""
    p = urlparse(url)
    return unquote(p.path) if p.scheme else url


def stable_hash(seed: int, key: str) -> tuple[float, int]:
    """(u in [0, 1), a signed 63-bit order key) from a seed and a record key. Stable everywhere."""
    d = hashlib.sha1(f"{seed}:{key}".encode()).digest()
    u = int.from_bytes(d[:8], "big") / 2.0**64
    order = int.from_bytes(d[8:16], "big") >> 1
    return u, order


def stable_hashes(digests: list[bytes]):
    """:func:`stable_hash` of many keys from their sha1 ``digests`` (``hashlib.sha1(f"{seed}:{key}".encode())``),
    with numpy: (u float64 array, order key int64 array), the same values."""
    import numpy as np

    if not digests:
        return np.zeros(0, np.float64), np.zeros(0, np.int64)
    d = np.frombuffer(b"".join(digests), dtype=np.uint8).reshape(len(digests), -1)[:, :16]
    words = np.ascontiguousarray(d).view(">u8")  # two big-endian 64-bit words per key
    return words[:, 0].astype(np.float64) / 2.0**64, (words[:, 1] >> np.uint64(1)).astype(np.int64)


def relative_to(url: str, root_path: str | None) -> str:
    """``url``'s filesystem path relative to ``root_path`` (a path ending in '/'), or the whole path."""
    fp = path_of(url)
    return fp[len(root_path):] if root_path and fp.startswith(root_path) else fp


def root_prefix(root: str) -> str:
    """The prefix :func:`relative_to` strips: the root's filesystem path with a trailing '/'."""
    return path_of(root).rstrip("/") + "/"


def label_from_rel_path(rel: str) -> tuple[str | None, str | None]:
    """(label, split hint) of a ``[split/]label/[...]/file`` path relative to the input root.

    The label is the first folder under the root, or under a top ``train/``/``val/``/``test/``
    folder; deeper folders are part of the file's place, not its label. A file directly under
    the root has no label; a file directly in a folder named like a split is labelled by it.

    >>> label_from_rel_path("train/cat/2019/x.jpg")
    ('cat', 'train')
    >>> label_from_rel_path("cat/2019/x.jpg")
    ('cat', None)
    """
    parts = [p for p in rel.split("/") if p]
    if len(parts) < 2:
        return None, None
    hint = SPLIT_ALIASES.get(parts[0].lower()) if len(parts) >= 3 else None
    return (parts[1], hint) if hint else (parts[0], None)


def split_hint(value) -> str | None:
    """A split column's cell as ``train``/``val``/``test``, or None (any other value: no hint)."""
    return SPLIT_ALIASES.get(value.strip().lower()) if isinstance(value, str) else None


def clean_label(label) -> str | None:
    """A label cell as a non-empty stripped string, or None (missing)."""
    if label is None or (not isinstance(label, str) and pd.isna(label)):
        return None
    return str(label).strip() or None


def content_id(data) -> str:
    """The id of a table row without an id: a hash of its raw content (or of the unparsable record)."""
    return "sha1:" + hashlib.sha1(bytes(data) if data is not None else b"").hexdigest()[:16]


def split_of(hint: str | None, band: int, below_val: bool, hints: set[str]) -> str:
    """The split rule, for a record's input split ``hint`` (or None), its hash ``band`` (0: below
    test_fraction, 1: below test+val, 2: above) and whether its hash is below val_fraction.

    Keep the input's own split; carve val out of train when the input has no val split. The one
    definition: ``split_column`` (Spark SQL), the driver's counts and the write tasks all use it.
    """
    if hint is None:
        return ("test", "val", "train")[band]
    if "val" not in hints and hint == "train" and below_val:
        return "val"
    return hint


def zones(u, val_fraction: float, test_fraction: float):
    """(band, below_val) arrays of a numpy array of record hashes ``u``: band 0 below test_fraction,
    1 below test + val, 2 above; below_val, ``u`` below val_fraction (``split_zones``,
    driver/ingest.py, in numpy). NaN (no hash)
    compares False: band 2, below_val False, as a null does in ``split_zones``."""
    import numpy as np

    return np.where(u < test_fraction, 0, np.where(u < test_fraction + val_fraction, 1, 2)), u < val_fraction

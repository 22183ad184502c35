"""Stored dataset schemas: their JSON form in the manifest, and decoding stored feature cells.

Images are stored as raw row-major (H, W, C) uint8 pixel bytes, one binary cell per record. The
shape lives in the dataset manifest. Raw bytes keep Petastorm's batch reader vectorised: a batch of
N images becomes one (N, H, W, C) array with a single ``np.frombuffer``, no per-row codec calls.
Text is stored the same way: ``max_len`` token ids as raw little-endian int32 bytes per record.
Every kind of data stores its feature so (``sparkdl_pipe.modalities``: the column and the dtype);
the Parquet files are written by :func:`sparkdl_pipe.executor.ingest.write_records` and read by
Petastorm's batch reader, with no Unischema pickled anywhere.

Runs on: driver and executors (light imports only at module level).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def schema_json(shape: tuple[int, ...]) -> dict:
    """The schema as stored in the manifest (readable without Petastorm or pickle)."""
    return {
        "name": "ImageDataset",
        "fields": [
            {"name": "image", "dtype": "uint8", "shape": list(shape), "encoding": "raw-bytes-row-major-HWC"},
            {"name": "label", "dtype": "int32", "shape": []},
            {"name": "label_name", "dtype": "string", "shape": []},
            {"name": "path", "dtype": "string", "shape": []},
        ],
    }


def decode_pixels(cells, shape: tuple[int, ...]) -> np.ndarray:
    """Raw pixel cells (a sequence of ``bytes``) to one (N, *shape) uint8 array."""
    n = len(cells)
    if n == 0:
        return np.zeros((0, *shape), dtype=np.uint8)
    return np.frombuffer(b"".join(cells), dtype=np.uint8).reshape((n, *shape))


def text_schema_json(max_len: int) -> dict:
    """The text schema as stored in the manifest."""
    return {
        "name": "TextDataset",
        "fields": [
            {"name": "tokens", "dtype": "int32", "shape": [max_len], "encoding": "raw-bytes-little-endian",
             "reserved_ids": {"padding": 0, "out_of_vocabulary": 1}},
            {"name": "label", "dtype": "int32", "shape": []},
            {"name": "label_name", "dtype": "string", "shape": []},
            {"name": "id", "dtype": "string", "shape": []},
        ],
    }


def _modality(kind: Any):
    from sparkdl_pipe import modalities

    return kind if hasattr(kind, "feature") else modalities.get(kind)


def feature_column(kind: Any) -> str:
    """The column holding the model input for a dataset ``kind`` (a name or a Modality: its ``feature``)."""
    return _modality(kind).feature


def _stored_dtype(kind_or_dtype: Any) -> np.dtype:
    from sparkdl_pipe import modalities

    if hasattr(kind_or_dtype, "dtype") or kind_or_dtype in modalities.kinds():
        return np.dtype(_modality(kind_or_dtype).dtype)
    return np.dtype(kind_or_dtype)


def native_dtype(kind_or_dtype: Any) -> np.dtype:
    """The in-memory dtype of a kind's features (uint8 pixels, int32 token ids), native byte order."""
    return _stored_dtype(kind_or_dtype).newbyteorder("=")


def decode_features(cells, shape: tuple[int, ...], kind_or_dtype: Any) -> np.ndarray:
    """Raw feature cells of a dataset kind (or of a stored dtype such as ``<i4``) to one (N, *shape) array."""
    stored = _stored_dtype(kind_or_dtype)
    n = len(cells)
    if n == 0:
        return np.zeros((0, *shape), dtype=stored.newbyteorder("="))
    arr = np.frombuffer(b"".join(cells), dtype=stored).reshape((n, *shape))
    return arr.astype(stored.newbyteorder("="), copy=False)

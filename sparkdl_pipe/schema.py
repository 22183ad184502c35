"""Dataset schemas, defined once: the Petastorm Unischema and its JSON form.

Images are stored as raw row-major (H, W, C) uint8 pixel bytes, one binary cell per record. The
shape lives in the dataset manifest. Raw bytes keep Petastorm's batch reader vectorised: a batch of
N images becomes one (N, H, W, C) array with a single ``np.frombuffer``, no per-row codec calls.

Runs on: driver and executors (light imports only at module level).
"""

from __future__ import annotations

import numpy as np


def image_unischema():
    """The Petastorm Unischema of an image dataset split."""
    from petastorm.codecs import ScalarCodec
    from petastorm.unischema import Unischema, UnischemaField
    from pyspark.sql.types import BinaryType, IntegerType, StringType

    return Unischema("ImageDataset", [
        UnischemaField("image", np.bytes_, (), ScalarCodec(BinaryType()), False),
        UnischemaField("label", np.int32, (), ScalarCodec(IntegerType()), False),
        UnischemaField("label_name", np.str_, (), ScalarCodec(StringType()), False),
        UnischemaField("path", np.str_, (), ScalarCodec(StringType()), False),
    ])


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

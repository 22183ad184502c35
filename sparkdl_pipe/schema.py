"""Dataset schemas, defined once: the Petastorm Unischema and its JSON form.

Images are stored as raw row-major (H, W, C) uint8 pixel bytes, one binary cell per record. The
shape lives in the dataset manifest. Raw bytes keep Petastorm's batch reader vectorised: a batch of
N images becomes one (N, H, W, C) array with a single ``np.frombuffer``, no per-row codec calls.
Text is stored the same way: ``max_len`` token ids as raw little-endian int32 bytes per record.

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


def image_arrow_schema():
    """The Arrow schema of an image split's Parquet files (what Spark writes for :func:`image_unischema`)."""
    import pyarrow as pa

    return pa.schema([("image", pa.binary()), ("label", pa.int32()), ("label_name", pa.string()),
                      ("path", pa.string())])


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


def text_unischema():
    """The Petastorm Unischema of a text dataset split (``id`` names the source record)."""
    from petastorm.codecs import ScalarCodec
    from petastorm.unischema import Unischema, UnischemaField
    from pyspark.sql.types import BinaryType, IntegerType, StringType

    return Unischema("TextDataset", [
        UnischemaField("tokens", np.bytes_, (), ScalarCodec(BinaryType()), False),
        UnischemaField("label", np.int32, (), ScalarCodec(IntegerType()), False),
        UnischemaField("label_name", np.str_, (), ScalarCodec(StringType()), False),
        UnischemaField("id", np.str_, (), ScalarCodec(StringType()), False),
    ])


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


#: Per dataset kind: the column holding the model input and the stored element dtype.
FEATURE_COLUMN = {"image": "image", "text": "tokens"}
STORED_DTYPE: dict[str, np.dtype] = {"image": np.dtype(np.uint8), "text": np.dtype("<i4")}


def feature_column(kind: str) -> str:
    """The column holding the model input for a dataset ``kind`` ('image' or 'text')."""
    return FEATURE_COLUMN[kind]


def native_dtype(kind: str) -> np.dtype:
    """The in-memory dtype of a ``kind``'s features (uint8 pixels, int32 token ids)."""
    return STORED_DTYPE[kind].newbyteorder("=")


def decode_features(cells, shape: tuple[int, ...], kind: str) -> np.ndarray:
    """Raw feature cells of a dataset ``kind`` to one (N, *shape) array (uint8 pixels, int32 ids)."""
    n = len(cells)
    if n == 0:
        return np.zeros((0, *shape), dtype=native_dtype(kind))
    arr = np.frombuffer(b"".join(cells), dtype=STORED_DTYPE[kind]).reshape((n, *shape))
    return arr.astype(native_dtype(kind), copy=False)

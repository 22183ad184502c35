"""Images as a kind of data: decode, colour-convert and resize to uint8 (H, W, C) pixels.

Runs on: driver and executors. The pixel work is :func:`sparkdl_pipe.preprocess.image.decode_image`.
"""

from __future__ import annotations

import numpy as np

from sparkdl_pipe.modalities.base import Modality, Prepared
from sparkdl_pipe.preprocess.image import decode_image
from sparkdl_pipe.preprocess.spec import ImageSpec


class ImageModality(Modality):
    """Encoded image files (PNG, JPEG, GIF, BMP, TIFF, WebP...) -> ``spec.shape`` uint8 pixels."""

    kind = "image"
    spec_type = ImageSpec
    feature = "image"
    dtype = "u1"
    key = "path"
    default_model = "cnn"
    table_reads = "path"

    def prepare(self, data, spec, decoded_by_reader=False) -> Prepared:
        res = decode_image(data, spec)
        return Prepared(res.array, res.reason, res.message)

    def encode(self, value, spec, artifacts) -> np.ndarray:
        return value

    def schema_json(self, spec, key=None) -> dict:
        from sparkdl_pipe.schema import schema_json

        return schema_json(spec.shape)

    def describe_input(self) -> str:
        return "a folder of <label>/ image folders or a manifest file (.csv/.parquet)"


IMAGE = ImageModality()

"""Image decode / colour conversion / resize, a batch at a time. Pure Pillow + numpy.

Runs on: executors (ingest and scoring) and the driver (tests, local tools).
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from sparkdl_pipe.preprocess.spec import ImageSpec

# Reason codes for rejected records (all codes and their meaning: sparkdl_pipe.rejects).
from sparkdl_pipe.rejects import EMPTY_FILE, TOO_LARGE, UNDECODABLE

__all__ = ["EMPTY_FILE", "TOO_LARGE", "UNDECODABLE", "DecodeResult", "decode_image", "decode_batch",
           "stack_images"]


@dataclass(frozen=True)
class DecodeResult:
    """One decoded image (``array`` of ``spec.shape``, uint8) or a reject (``reason`` + ``message``)."""

    array: np.ndarray | None
    reason: str | None = None
    message: str | None = None

    @property
    def ok(self) -> bool:
        return self.array is not None


def _to_mode(img, channels: int):
    """Convert any Pillow mode to L or RGB, sensibly for 16-bit, palette, CMYK and alpha images."""
    from PIL import Image

    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16/32-bit integer grayscale: scale the full range down to 8 bits instead of clipping.
        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if mode.startswith("I;16") else max(float(arr.max()), 1.0)
        img = Image.fromarray(np.clip(arr * (255.0 / hi), 0, 255).astype(np.uint8), mode="L")
    elif mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        img = Image.fromarray(((arr - lo) * scale).astype(np.uint8), mode="L")
    elif mode == "P":
        img = img.convert("RGBA")
    target = "L" if channels == 1 else "RGB"
    if img.mode != target:
        img = img.convert(target)  # alpha is dropped; CMYK/YCbCr/LA convert with Pillow's matrices
    return img


def decode_image(data: bytes | None, spec: ImageSpec) -> DecodeResult:
    """Decode one encoded image (PNG, JPEG, GIF, BMP, TIFF, WebP...) into ``spec.shape`` uint8.

    Never raises for bad data: returns a reject with a reason code and a message.

    >>> from sparkdl_pipe.preprocess.spec import ImageSpec
    >>> decode_image(b"", ImageSpec(28, 28, 1)).reason
    'empty_file'
    """
    from PIL import Image, UnidentifiedImageError

    if data is None or len(data) == 0:
        return DecodeResult(None, EMPTY_FILE, "file is empty (0 bytes)")
    # Our own limit (spec.max_pixels, checked from the header before any pixel is decoded) replaces
    # Pillow's process-wide one, so a limit above Pillow's default is honoured too.
    if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < spec.max_pixels:
        Image.MAX_IMAGE_PIXELS = spec.max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            w, h = img.size
            if w * h > spec.max_pixels:
                return DecodeResult(None, TOO_LARGE,
                                    f"{w}x{h} = {w * h} pixels is over the limit of {spec.max_pixels}")
            # Shrink while decoding where the codec can (JPEG DCT scaling): far less work for big photos.
            img.draft("L" if spec.channels == 1 else "RGB", (spec.width, spec.height))
            img.load()
            img = _to_mode(img, spec.channels)
            if img.size != (spec.width, spec.height):
                img = img.resize((spec.width, spec.height), Image.Resampling.BILINEAR, reducing_gap=3.0)
            arr = np.asarray(img, dtype=np.uint8)
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as e:
        return DecodeResult(None, TOO_LARGE, str(e)[:300])
    except UnidentifiedImageError:
        return DecodeResult(None, UNDECODABLE, "not a recognised image format")
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as e:
        return DecodeResult(None, UNDECODABLE, f"{type(e).__name__}: {e}"[:300])
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return DecodeResult(np.ascontiguousarray(arr))


def decode_batch(blobs: Iterable[bytes | None], spec: ImageSpec) -> list[DecodeResult]:
    """Decode a batch of encoded images; one result per input, in order."""
    return [decode_image(b, spec) for b in blobs]


def stack_images(arrays: list[np.ndarray], spec: ImageSpec) -> np.ndarray:
    """Stack decoded images into one (N, H, W, C) uint8 array (empty batches keep the shape)."""
    if not arrays:
        return np.zeros((0, *spec.shape), dtype=np.uint8)
    return np.stack(arrays).astype(np.uint8, copy=False)

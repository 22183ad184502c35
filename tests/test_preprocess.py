import io

import numpy as np
import pytest
from PIL import Image

from sparkdl_pipe.errors import UserInputError
from sparkdl_pipe.preprocess.image import EMPTY_FILE, TOO_LARGE, UNDECODABLE, decode_batch, decode_image
from sparkdl_pipe.preprocess.spec import ImageSpec, spec_from_dict
from tests.conftest import png_bytes


def _save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_grayscale_png_keeps_pixels_at_same_size():
    a = np.arange(28 * 28, dtype=np.uint16).reshape(28, 28).astype(np.uint8)
    r = decode_image(png_bytes(a), ImageSpec(28, 28, 1))
    assert r.ok and r.array.shape == (28, 28, 1) and r.array.dtype == np.uint8
    np.testing.assert_array_equal(r.array[:, :, 0], a)


def test_rgb_jpeg_resized_and_converted_to_gray():
    a = np.zeros((100, 80, 3), dtype=np.uint8)
    a[:, :, 0] = 200
    r = decode_image(_save(Image.fromarray(a), "JPEG", quality=95), ImageSpec(10, 12, 1))
    assert r.ok and r.array.shape == (10, 12, 1)
    # Pillow's L = 0.299 R: a pure red 200 image is about 60 gray everywhere
    assert abs(float(r.array.mean()) - 0.299 * 200) < 3


def test_gray_to_rgb_replicates_channel():
    a = np.full((8, 8), 77, dtype=np.uint8)
    r = decode_image(png_bytes(a), ImageSpec(8, 8, 3))
    assert r.array.shape == (8, 8, 3)
    assert (r.array == 77).all()


@pytest.mark.parametrize("mode", ["P", "RGBA", "CMYK", "LA"])
def test_other_colour_modes_convert(mode):
    a = np.random.default_rng(0).integers(0, 255, (16, 16, 3), dtype=np.uint8)
    img = Image.fromarray(a).convert(mode)
    fmt = "JPEG" if mode == "CMYK" else ("PNG" if mode != "CMYK" else "TIFF")
    r = decode_image(_save(img, fmt), ImageSpec(16, 16, 3))
    assert r.ok and r.array.shape == (16, 16, 3)


def test_16bit_png_scaled_not_clipped():
    a = np.full((4, 4), 65535, dtype=np.uint16)
    a[0, 0] = 0
    img = Image.fromarray(a)
    r = decode_image(_save(img, "PNG"), ImageSpec(4, 4, 1))
    assert r.ok
    assert r.array[1, 1, 0] == 255 and r.array[0, 0, 0] == 0


def test_wrong_extension_is_irrelevant_bytes_decide():
    # a JPEG's bytes decode whatever the file was called; only bytes are seen here
    a = np.full((5, 5, 3), 128, dtype=np.uint8)
    r = decode_image(_save(Image.fromarray(a), "JPEG"), ImageSpec(5, 5, 3))
    assert r.ok


def test_bad_inputs_are_rejects_not_exceptions():
    spec = ImageSpec(8, 8, 1)
    good = png_bytes(np.zeros((8, 8), dtype=np.uint8))
    results = decode_batch([b"", None, b"not an image at all", good[: len(good) // 2], good], spec)
    assert [r.reason for r in results] == [EMPTY_FILE, EMPTY_FILE, UNDECODABLE, UNDECODABLE, None]
    assert all(r.message for r in results[:4])


def test_pixel_limit_rejects_bombs():
    img = png_bytes(np.zeros((300, 300), dtype=np.uint8))
    r = decode_image(img, ImageSpec(8, 8, 1, max_pixels=300 * 299))
    assert r.reason == TOO_LARGE and "90000" in r.message


def test_spec_validation_and_roundtrip():
    with pytest.raises(UserInputError, match="channels"):
        ImageSpec(28, 28, 2)
    with pytest.raises(UserInputError, match="height"):
        ImageSpec(0, 28, 1)
    s = ImageSpec(32, 16, 3)
    assert spec_from_dict(s.to_dict()) == s
    assert s.fingerprint() == ImageSpec(32, 16, 3, max_pixels=5).fingerprint()  # bomb limit not part of it
    assert s.fingerprint() != ImageSpec(16, 32, 3).fingerprint()

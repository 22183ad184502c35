"""A folder of hostile image files, and the reject reasons ingest and scoring must give each one."""

from __future__ import annotations

import io
import os
import struct
import zlib

import numpy as np


def _img(mode: str, size=(12, 10), fmt="PNG", seed=0) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    w, h = size
    if mode == "I;16":
        img = Image.fromarray(rng.integers(0, 65535, (h, w), dtype=np.uint16))
    elif mode == "P":
        img = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).convert("P")
    else:
        img = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).convert(mode)
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def png_header_bomb(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width x height`` pixels (a decompression bomb's signature)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + chunk(b"IEND", b""))


def make_hostile_folder(root: str, good_per_label: int = 12) -> dict:
    """Write the folder; return what each ingest must report.

    Returns ``{"ingest_rejects": {...}, "score_rejects": {...}, "accepted": n, "hidden": n}``.
    Unreadable files: ``chmod 000`` stops reads only when not running as root; as root that file is
    accepted (counted so), and the broken symlink and the FIFO still exercise unreadable paths.
    """
    as_root = os.geteuid() == 0
    for lab in ("a", "b"):
        os.makedirs(os.path.join(root, lab), exist_ok=True)
        for i in range(good_per_label):
            with open(os.path.join(root, lab, f"good {i:02d}.png"), "wb") as f:
                f.write(_img("RGB", seed=i + (100 if lab == "b" else 0)))
    a, b = os.path.join(root, "a"), os.path.join(root, "b")
    jpeg = _img("RGB", size=(64, 48), fmt="JPEG")
    png = _img("RGB", size=(64, 48))
    files = {
        # rejected
        f"{a}/empty.png": b"",
        f"{a}/truncated.jpg": jpeg[: len(jpeg) // 2],
        f"{b}/truncated.png": png[: len(png) // 2],
        f"{b}/notes.png": b"these are my notes, not a picture\n",
        f"{a}/bomb.png": png_header_bomb(100_000, 100_000),
        f"{b}/big.png": _img("L", size=(1200, 1000)),  # 1.2 MP, over the test's --max-pixels 1,000,000
        f"{root}/no label.png": _img("RGB"),  # outside a label folder
        # accepted, converted sensibly
        f"{a}/png named as.jpg": _img("RGB", seed=7),
        f"{a}/sixteen-bit.png": _img("I;16"),
        f"{b}/palette.gif": _img("P", fmt="GIF"),
        f"{b}/cmyk.jpg": _img("CMYK", fmt="JPEG"),
        f"{a}/alpha.png": _img("RGBA"),
        f"{b}/tiny 1x1.png": _img("RGB", size=(1, 1)),
        f"{a}/café au lait ü 名前.png": _img("RGB", seed=9),
        f"{a}/locked.png": _img("RGB", seed=11),
        # hidden: skipped and counted
        f"{a}/.DS_Store": b"\x00\x00\x00\x01Bud1",
        f"{b}/._palette.gif": b"AppleDouble",
        f"{root}/_SUCCESS": b"",
        f"{root}/.git/config": b"[core]",
    }
    for path, data in files.items():
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
    os.chmod(f"{a}/locked.png", 0)
    os.symlink(f"{root}/gone.png", f"{b}/dangling link.png")  # broken symlink: target never existed
    os.mkfifo(f"{a}/pipe.png")  # reading it would block forever; must be refused, not opened
    ingest = {"empty_file": 1, "undecodable_image": 3, "image_too_large": 2, "missing_label": 1,
              "missing_file": 1, "unreadable_file": 1 + (0 if as_root else 1)}
    score = {k: v for k, v in ingest.items() if k != "missing_label"}
    accepted = 2 * good_per_label + 7 + (1 if as_root else 0)
    return {"ingest_rejects": ingest, "score_rejects": score, "accepted": accepted, "hidden": 4,
            "root": as_root}


def count_entries(root: str) -> int:
    """Every directory entry that is not a directory (files, symlinks, FIFOs), counted independently."""
    n = 0
    for _dirpath, _dirs, files in os.walk(root):
        n += len(files)
    return n

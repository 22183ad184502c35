"""Benchmark inputs written to local folders: real Fashion-MNIST PNGs and larger JPEGs made from them.

Runs on: driver (as a preparation step of :func:`sparkdl_pipe.bench.run.run_benchmark`).
"""

from __future__ import annotations

import os

import numpy as np


def fashion_arrays(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, str]:
    """``n`` 28x28 grayscale images with labels: Fashion-MNIST when installed, else scikit-learn digits.

    The digits (8x8) are scaled to 28x28 and repeated to ``n`` so the benchmark runs anywhere.
    """
    from sparkdl_pipe.driver.demo_data import fashion_mnist_available, load_fashion_mnist

    if fashion_mnist_available():
        x, y = load_fashion_mnist()["train"]
        name = "fashion-mnist"
    else:
        from PIL import Image
        from sklearn.datasets import load_digits

        d = load_digits()
        small = (d.images * (255.0 / 16.0)).astype(np.uint8)
        x = np.stack([np.asarray(Image.fromarray(im).resize((28, 28), Image.Resampling.BILINEAR)) for im in small])
        y = d.target
        name = "digits-28x28"
    idx = np.random.default_rng(seed).permutation(len(y))
    idx = np.resize(idx, n)  # repeats when n is larger than the source
    return x[idx].astype(np.uint8), y[idx].astype(np.int32), name


def write_pngs(x: np.ndarray, y: np.ndarray, root: str, start: int = 0) -> list[str]:
    """``root/<label>/img-<i>.png`` for every image; returns the paths written."""
    from PIL import Image

    paths = []
    for i in range(len(y)):
        d = os.path.join(root, f"class-{int(y[i])}")
        os.makedirs(d, exist_ok=True)
        p = os.path.join(d, f"img-{start + i:06d}.png")
        Image.fromarray(x[i], mode="L").save(p)
        paths.append(p)
    return paths


def write_jpegs(x: np.ndarray, y: np.ndarray, root: str, size: int = 256, seed: int = 0) -> list[str]:
    """Colour ``size``x``size`` JPEGs (quality 90) made from the 28x28 images, tinted and textured.

    Decoding and shrinking these dominates ingest, unlike the tiny PNGs.
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    paths = []
    for i in range(len(y)):
        big = np.asarray(Image.fromarray(x[i], mode="L").resize((size, size), Image.Resampling.BICUBIC), dtype=np.float32)
        tint = rng.uniform(0.4, 1.0, size=3)
        noise = rng.normal(0, 12, size=(size, size, 3))
        rgb = np.clip(big[..., None] * tint + noise + 20, 0, 255).astype(np.uint8)
        d = os.path.join(root, f"class-{int(y[i])}")
        os.makedirs(d, exist_ok=True)
        p = os.path.join(d, f"photo-{i:06d}.jpg")
        Image.fromarray(rgb, mode="RGB").save(p, quality=90)
        paths.append(p)
    return paths


def list_files(root: str) -> list[str]:
    return sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs if not f.startswith("."))


def read_all(root: str) -> int:
    """Read every file under ``root`` once; returns the bytes read.

    Puts a folder in the page cache before a timed line: the ingest job and its decode-only limit
    then both read from memory, whatever this machine evicted since the files were written (a cold
    first read cost the first ingest 2 s of 5.7 here, which its baseline never pays).
    """
    n = 0
    for p in list_files(root):
        try:
            with open(p, "rb") as f:
                n += len(f.read())
        except OSError:  # a broken symlink (the scale inputs hold some on purpose)
            continue
    return n

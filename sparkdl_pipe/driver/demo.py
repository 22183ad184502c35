"""run_demo: the whole path on real data, from raw image files to a scored table.

Fashion-MNIST (Debian package ``dataset-fashion-mnist``) is written out as PNG files in
``train/<label>/`` and ``test/<label>/`` folders, ingested, trained with Horovod on Spark, and the
test images are scored from their raw files. Without the package, scikit-learn's bundled digits
are used instead (1,797 images, 8x8) and the report says so.

Runs on: driver.
"""

from __future__ import annotations

import gzip
import os
import time
from dataclasses import dataclass, field

import numpy as np

from sparkdl_pipe.config import IngestImagesConfig, ScoreConfig, SplitConfig, TrainConfig
from sparkdl_pipe.preprocess.spec import ImageSpec

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


@dataclass
class DemoReport:
    """What a demo run did; the image and the text demo both print it. Runs on: driver."""

    dataset: str
    images_written: int
    stages: dict[str, float] = field(default_factory=dict)
    counts: dict = field(default_factory=dict)
    val_accuracy: float | None = None
    test_accuracy_training: float | None = None
    test_accuracy_scored: float | None = None
    scored_rows: int = 0
    rejected_rows: int = 0
    note: str = ""
    inputs_label: str = "raw image files"
    inputs_detail: str = ""
    scored_from: str = "raw files"

    def render(self) -> str:
        detail = f" ({self.inputs_detail})" if self.inputs_detail else ""
        lines = [f"sparkdl_pipe demo: {self.dataset}" + (f" ({self.note})" if self.note else ""),
                 f"  {self.inputs_label + ':':<24}{self.images_written}{detail}"]
        for k, v in self.counts.items():
            lines.append(f"  {k + ':':<24}{v}")
        for k, v in self.stages.items():
            lines.append(f"  time {k + ':':<19}{v:.1f}s")
        def f(v):
            return "n/a" if v is None else f"{v:.4f}"
        lines += [f"  validation accuracy:    {f(self.val_accuracy)}",
                  f"  test accuracy (ranks):  {f(self.test_accuracy_training)}",
                  f"  test accuracy (scored from {self.scored_from}): {f(self.test_accuracy_scored)}"
                  f" over {self.scored_rows} rows, {self.rejected_rows} rejected"]
        return "\n".join(lines)


def run_demo(spark, workdir: str, epochs: int = 8, num_proc: int = 2, batch_size: int = 64,
             dataset: str = "auto") -> DemoReport:
    """Run ingest -> train -> score on Fashion-MNIST (or the digits fallback). Runs on: driver."""
    from sparkdl_pipe.driver.ingest import run_ingest_images
    from sparkdl_pipe.driver.score import run_scoring
    from sparkdl_pipe.driver.train import run_training

    use_fashion = dataset == "fashion-mnist" or (dataset == "auto" and fashion_mnist_available())
    if use_fashion:
        data, names, size, name, note = load_fashion_mnist(), FASHION_CLASSES, 28, "fashion-mnist", ""
    else:
        data, names, size, name = load_digits_split(), [str(i) for i in range(10)], 8, "digits"
        note = ("Fashion-MNIST not installed: 'apt-get install dataset-fashion-mnist' for the full demo; "
                "using scikit-learn's bundled digits") if dataset == "auto" else ""
    workdir = os.path.abspath(workdir)
    raw = os.path.join(workdir, f"{name}-raw")
    rep = DemoReport(name, 0, note=note)
    t = time.time()
    rep.images_written = write_png_folders(data, names, raw)
    rep.stages["write PNGs"] = time.time() - t

    ds_url = os.path.join(workdir, f"{name}-dataset")
    t = time.time()
    ing = run_ingest_images(spark, IngestImagesConfig(
        input=raw, output=ds_url, image=ImageSpec(size, size, 1),
        split=SplitConfig(val_fraction=0.1, test_fraction=0.1, seed=42), overwrite=True))
    rep.stages["ingest"] = time.time() - t
    rep.counts = {"ingested train": ing.counts["train"], "ingested val": ing.counts["val"],
                  "ingested test": ing.counts["test"], "ingest rejects": ing.rejected}
    print(ing.summary(), flush=True)

    t = time.time()
    tr = run_training(spark, TrainConfig(dataset=ds_url, output=os.path.join(workdir, f"{name}-model"),
                                         model="cnn", epochs=epochs, batch_size=batch_size, num_proc=num_proc,
                                         overwrite=True))
    rep.stages["train"] = time.time() - t
    rep.val_accuracy, rep.test_accuracy_training = tr.val_accuracy, tr.test_accuracy
    print(tr.summary(), flush=True)

    t = time.time()
    sc = run_scoring(spark, ScoreConfig(model=tr.output, input=os.path.join(raw, "test"),
                                        output=os.path.join(workdir, f"{name}-scores"), overwrite=True))
    rep.stages["score"] = time.time() - t
    rep.test_accuracy_scored, rep.scored_rows, rep.rejected_rows = sc.accuracy, sc.scored, sc.rejected
    print(sc.summary(), flush=True)
    return rep

"""Shared fixtures: one real local[2] SparkSession per test session, image folders made on the fly."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest

import sparkdl_pipe  # noqa: F401  (sets TF_USE_LEGACY_KERAS before anything imports TensorFlow)


@pytest.fixture(scope="session")
def spark():
    from sparkdl_pipe.driver.session import make_spark_session

    s = make_spark_session("local[2]", app_name="sparkdl_pipe-tests",
                           conf={"spark.driver.memory": "3g", "spark.sql.shuffle.partitions": "4"})
    yield s
    from pyspark import SparkContext

    gateway = SparkContext._gateway
    s.stop()
    # Stop the JVM this session started, by its own PID, and check nothing we started is left.
    if gateway is not None and getattr(gateway, "proc", None) is not None:
        gateway.shutdown()
        gateway.proc.terminate()
        gateway.proc.wait(timeout=60)
    import psutil

    def ours(p: psutil.Process) -> bool:
        # Python's own multiprocessing resource tracker (started by Horovod's MPI launcher when it
        # runs `mpirun --version`) lives as long as this interpreter and ends with it: not a leak.
        try:
            return p.is_running() and p.status() != psutil.STATUS_ZOMBIE and \
                "multiprocessing.resource_tracker" not in " ".join(p.cmdline())
        except psutil.NoSuchProcess:
            return False

    left = [p for p in psutil.Process().children(recursive=True) if ours(p)]
    assert not left, f"processes left behind: {[(p.pid, p.name()) for p in left]}"


def png_bytes(arr: np.ndarray, fmt: str = "PNG", mode: str | None = None) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    img = Image.fromarray(arr) if mode is None else Image.fromarray(arr).convert(mode)
    img.save(buf, format=fmt)
    return buf.getvalue()


def make_image_folder(root: str, labels=("cat", "dog"), per_label: int = 40, size=(20, 24), seed: int = 0,
                      split_folders: tuple[str, ...] | None = None) -> int:
    """Write per_label colour PNGs per label (class = bright left half vs bright right half)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    n = 0
    tops = split_folders or ("",)
    for top in tops:
        for li, lab in enumerate(labels):
            d = os.path.join(root, top, lab)
            os.makedirs(d, exist_ok=True)
            for i in range(per_label):
                a = rng.integers(0, 60, (*size, 3), dtype=np.uint8)
                half = size[1] // 2
                if li % 2 == 0:
                    a[:, :half] += 150
                else:
                    a[:, half:] += 150
                Image.fromarray(a).save(os.path.join(d, f"img {i:03d}.png"))
                n += 1
    return n


@pytest.fixture(scope="session")
def digits_folder(tmp_path_factory):
    """scikit-learn's bundled digits as a raw PNG folder tree: train/<digit>/, test/<digit>/."""
    from sparkdl_pipe.driver.demo_data import load_digits_split, write_png_folders

    root = str(tmp_path_factory.mktemp("digits-raw"))
    n = write_png_folders(load_digits_split(), [str(i) for i in range(10)], root)
    assert n == 1797
    return root


@pytest.fixture(scope="session")
def digits_ds(spark, digits_folder, tmp_path_factory):
    """The digits folder ingested at 8x8x1: (dataset path, IngestResult)."""
    from sparkdl_pipe.config import IngestImagesConfig
    from sparkdl_pipe.driver.ingest import run_ingest_images
    from sparkdl_pipe.preprocess.spec import ImageSpec

    out = str(tmp_path_factory.mktemp("digits") / "ds")
    res = run_ingest_images(spark, IngestImagesConfig(digits_folder, out, ImageSpec(8, 8, 1)))
    assert res.counts["test"] == 360 and res.rejected == 0
    return out, res


#: The uninterrupted training run that resumed runs are compared with.
TRAINED_DIGITS = {"model": "cnn", "epochs": 12, "batch_size": 32, "num_proc": 2, "learning_rate": 2e-3}


@pytest.fixture(scope="session")
def trained(spark, digits_ds, tmp_path_factory):
    """A CNN trained uninterrupted on 2 ranks on digits_ds: (model path, TrainResult)."""
    from sparkdl_pipe.config import TrainConfig
    from sparkdl_pipe.driver.train import run_training

    ds, _ = digits_ds
    out = str(tmp_path_factory.mktemp("digits-model") / "model")
    return out, run_training(spark, TrainConfig(ds, out, **TRAINED_DIGITS))

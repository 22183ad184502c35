"""Ingest on a real local[2] SparkSession, real files, real Petastorm output."""

import json
import os

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from sparkdl_pipe.config import IngestImagesConfig, SplitConfig
from sparkdl_pipe.driver.ingest import run_ingest_images
from sparkdl_pipe.errors import DatasetError
from sparkdl_pipe.executor.data import read_split
from sparkdl_pipe.preprocess.spec import ImageSpec
from tests.conftest import make_image_folder


def _split_of_paths(spark, out):
    rows = {}
    for s in ("train", "val", "test"):
        p = os.path.join(out, s)
        if os.path.exists(p):
            for r in spark.read.parquet(p).select("path").collect():
                rows[r["path"]] = s
    return rows


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("imgs"))
    n = make_image_folder(root, labels=("cat", "dog", "ému"), per_label=60)
    open(os.path.join(root, "cat", "broken.png"), "wb").write(b"\x89PNG\r\n\x1a\n garbage")
    open(os.path.join(root, "dog", "empty.jpg"), "wb").close()
    open(os.path.join(root, "cat", ".DS_Store"), "wb").write(b"junk")
    open(os.path.join(root, "orphan.png"), "wb").write(b"no label folder")
    return root, n


def test_ingest_folder_counts_reconcile_and_petastorm_reads(spark, folder, tmp_path):
    root, n_good = folder
    out = str(tmp_path / "ds")
    res = run_ingest_images(spark, IngestImagesConfig(root, out, ImageSpec(16, 16, 3)))
    assert res.input_records == n_good + 3  # two broken files and one without a label folder
    assert sum(res.counts.values()) == n_good
    assert res.rejected == 3
    assert res.rejects_by_reason == {"undecodable_image": 1, "empty_file": 1, "missing_label": 1}
    assert res.skipped_hidden == 1
    assert res.labels == ["cat", "dog", "ému"]
    assert res.counts["val"] > 0 and res.counts["test"] > 0 and res.counts["train"] > 0.6 * n_good

    man = json.load(open(os.path.join(out, "_sparkdl_manifest.json")))
    assert man["input_records"] == res.input_records
    assert man["rejects"]["count"] == 3
    assert sum(man["splits"]["train"]["per_class"].values()) == res.counts["train"]
    assert man["preprocess"]["height"] == 16 and man["schema"]["fields"][0]["shape"] == [16, 16, 3]
    assert man["fingerprint"] == res.fingerprint and "pyspark" in man["versions"]

    rej = pd.read_parquet(os.path.join(out, "rejects"))
    assert len(rej) == 3 and set(rej["reason"]) == set(res.rejects_by_reason)
    assert rej["message"].notna().all()

    # Real Petastorm reading, row-group shards: together the shards cover the split exactly once
    for s in ("train", "val", "test"):  # enough row groups for Petastorm to deal to ranks
        assert man["splits"][s]["row_groups"] >= min(16, res.counts[s])
        assert pq.ParquetDataset(os.path.join(out, s)).read().num_rows == res.counts[s]
    seen = 0
    labels = []
    for shard in range(2):
        for x, y in read_split("file://" + os.path.join(out, "train"), (16, 16, 3), shard=shard, shard_count=2):
            assert x.shape[1:] == (16, 16, 3) and x.dtype == np.uint8
            seen += len(y)
            labels.extend(y.tolist())
    assert seen == res.counts["train"]
    assert set(labels) == {0, 1, 2}
    # the pixels are what the class rule says: bright left half for cat (0), right half for dog (1)
    for x, y in read_split("file://" + os.path.join(out, "test"), (16, 16, 3)):
        left, right = x[:, :, :8].mean(axis=(1, 2, 3)), x[:, :, 8:].mean(axis=(1, 2, 3))
        assert ((left > right) == (y % 2 == 0)).all()


def test_split_is_deterministic_across_runs_and_partitioning(spark, folder, tmp_path):
    root, _ = folder
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    run_ingest_images(spark, IngestImagesConfig(root, a, ImageSpec(8, 8, 1)))
    spark.conf.set("spark.sql.files.maxPartitionBytes", "4096")  # many more input partitions
    old = spark.conf.get("spark.sql.files.openCostInBytes")
    try:
        from sparkdl_pipe.driver import ingest as ingest_mod

        res_b = ingest_mod.run_ingest_images(spark, IngestImagesConfig(root, b, ImageSpec(8, 8, 1)))
    finally:
        spark.conf.set("spark.sql.files.openCostInBytes", old)
    sa, sb = _split_of_paths(spark, a), _split_of_paths(spark, b)
    assert sa == sb and len(sa) == sum(res_b.counts.values())
    c = str(tmp_path / "c")
    run_ingest_images(spark, IngestImagesConfig(root, c, ImageSpec(8, 8, 1), split=SplitConfig(seed=7)))
    assert _split_of_paths(spark, c) != sa  # the seed matters


def test_input_split_folders_are_kept(spark, tmp_path):
    root = str(tmp_path / "raw")
    make_image_folder(root, per_label=30, split_folders=("train", "test"))
    out = str(tmp_path / "ds")
    res = run_ingest_images(spark, IngestImagesConfig(root, out, ImageSpec(8, 8, 1),
                                                      split=SplitConfig(val_fraction=0.2)))
    assert res.counts["test"] == 60  # exactly the test/ folder
    assert res.counts["train"] + res.counts["val"] == 60
    assert 4 <= res.counts["val"] <= 24  # val carved from train/
    assert res.labels == ["cat", "dog"]  # train/ and test/ are not labels
    for path, split in _split_of_paths(spark, out).items():
        assert ("/test/" in path) == (split == "test")


def test_manifest_csv_input_with_missing_file_and_split_column(spark, folder, tmp_path):
    root, _ = folder
    rows = []
    for _i, lab in enumerate(["cat", "dog"]):
        for j in range(20):
            rows.append({"file": f"{lab}/img {j:03d}.png", "class": lab, "split": "test" if j < 5 else "train"})
    rows.append({"file": "cat/does-not-exist.png", "class": "cat", "split": "train"})
    rows.append({"file": "dog/img 000.png", "class": "", "split": "train"})
    man = os.path.join(root, "manifest.csv")
    pd.DataFrame(rows).to_csv(man, index=False)
    out = str(tmp_path / "ds")
    res = run_ingest_images(spark, IngestImagesConfig(man, out, ImageSpec(8, 8, 1), manifest_path_col="file",
                                                      manifest_label_col="class"))
    assert res.input_records == 42
    assert res.rejects_by_reason == {"missing_file": 1, "missing_label": 1}
    assert res.counts["test"] == 10 and res.counts["train"] + res.counts["val"] == 30
    os.remove(man)


def test_manifest_parquet_with_absolute_paths(spark, folder, tmp_path):
    root, _ = folder
    paths = [os.path.join(root, lab, f"img {j:03d}.png") for lab in ("cat", "dog") for j in range(16)]
    man = str(tmp_path / "m.parquet")
    pd.DataFrame({"path": paths, "label": [p.split(os.sep)[-2] for p in paths]}).to_parquet(man)
    res = run_ingest_images(spark, IngestImagesConfig(man, str(tmp_path / "ds"), ImageSpec(8, 8, 3)))
    assert res.input_records == 32 and res.rejected == 0 and sum(res.counts.values()) == 32
    assert res.labels == ["cat", "dog"]


def test_refuses_existing_output_and_missing_input(spark, folder, tmp_path):
    root, _ = folder
    out = tmp_path / "exists"
    out.mkdir()
    with pytest.raises(DatasetError, match="--overwrite"):
        run_ingest_images(spark, IngestImagesConfig(root, str(out), ImageSpec(8, 8, 1)))
    with pytest.raises(DatasetError, match="does not exist"):
        run_ingest_images(spark, IngestImagesConfig(str(tmp_path / "nope"), str(tmp_path / "o"), ImageSpec(8, 8, 1)))
    assert not [p for p in os.listdir(tmp_path) if "staging" in p]

"""The training input: a rank's shard cached in memory holds exactly that shard, reshuffled per epoch."""

import numpy as np

from sparkdl_pipe.config import IngestImagesConfig
from sparkdl_pipe.driver.ingest import run_ingest_images
from sparkdl_pipe.executor.data import make_cached_train_dataset, read_split
from sparkdl_pipe.manifest import load_dataset_info
from sparkdl_pipe.preprocess.spec import ImageSpec


def _rows(x: np.ndarray, y: np.ndarray) -> list[tuple[int, bytes]]:
    return sorted((int(lab), img.tobytes()) for img, lab in zip(x, y, strict=True))


def test_cached_shard_is_the_shard_once_per_epoch_in_a_new_order(spark, digits_folder, tmp_path):
    out = str(tmp_path / "ds")
    run_ingest_images(spark, IngestImagesConfig(digits_folder, out, ImageSpec(8, 8, 1)))
    url = load_dataset_info(out).split_url("train")
    shards = []
    for shard in (0, 1):
        xs, ys = zip(*read_split(url, (8, 8, 1), shard=shard, shard_count=2), strict=True)
        expect = _rows(np.concatenate(xs), np.concatenate(ys))
        ds, n = make_cached_train_dataset(url, (8, 8, 1), 1, shard=shard, shard_count=2, seed=7)
        assert n == len(expect)
        it = iter(ds)
        epochs = [[next(it) for _ in range(n)] for _ in range(2)]
        got = [(np.concatenate([b[0].numpy() for b in e]), np.concatenate([b[1].numpy() for b in e]))
               for e in epochs]
        assert _rows(*got[0]) == expect and _rows(*got[1]) == expect
        assert not np.array_equal(got[0][1], got[1][1]) or n < 3  # reshuffled each epoch
        shards.append(expect)
    # The two shards split the train split between them: nothing lost, nothing twice.
    xs, ys = zip(*read_split(url, (8, 8, 1)), strict=True)
    assert sorted(shards[0] + shards[1]) == _rows(np.concatenate(xs), np.concatenate(ys))


def test_one_pass_reads_never_come_back_empty(spark, digits_folder, tmp_path):
    """Regression: Petastorm's thread pool sometimes ended a one-epoch read with no rows."""
    out = str(tmp_path / "ds")
    run_ingest_images(spark, IngestImagesConfig(digits_folder, out, ImageSpec(8, 8, 1)))
    info = load_dataset_info(out)
    url = info.split_url("train")
    counts = set()
    for _ in range(25):
        counts.add(sum(len(y) for _, y in read_split(url, (8, 8, 1), shard=1, shard_count=2)))
    assert len(counts) == 1 and counts.pop() > 0
    assert sum(len(y) for _, y in read_split(url, (8, 8, 1))) == info.count("train")
    # No pickled Petastorm Unischema anywhere in the split (Petastorm's readers would unpickle it);
    # the schema is JSON in the manifest, and a split that carries a pickle is refused before reading.
    import os

    import pytest

    from sparkdl_pipe.errors import DatasetError
    from sparkdl_pipe.manifest import refuse_pickled_schema

    split_dir = os.path.join(out, "train")
    assert not any(n.endswith("metadata") for n in os.listdir(split_dir))
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_metadata(pa.schema([("image", pa.binary())], metadata={b"dataset-toolkit.unischema.v1": b"\x80\x04N."}),
                      os.path.join(split_dir, "_common_metadata"))
    with pytest.raises(DatasetError, match="pickled Petastorm schema"):
        refuse_pickled_schema(url)

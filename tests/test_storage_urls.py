"""Models and checkpoints on a storage URL: rank 0 writes on its own disk and uploads through pyarrow,
``--resume`` downloads the checkpoint, scoring fetches the model per node. Exercised with ``file://``
URLs (the same code path as ``hdfs://``/``s3://``): real Spark, 2 real Horovod ranks, digits."""

import os

import pandas as pd
import pytest

from sparkdl_pipe import model_card as mc
from sparkdl_pipe import storage
from sparkdl_pipe.config import ScoreConfig, TrainConfig
from sparkdl_pipe.driver.resume import work_dir
from sparkdl_pipe.driver.score import run_scoring
from sparkdl_pipe.driver.train import run_training
from sparkdl_pipe.errors import UserInputError

SMALL = {"model": "mlp", "batch_size": 32, "num_proc": 2, "learning_rate": 2e-3}


def test_train_to_url_resume_from_url_and_score_from_url(spark, digits_ds, digits_folder, tmp_path):
    ds = digits_ds[0]
    path = str(tmp_path / "models" / "m")
    url = "file://" + path
    res = run_training(spark, TrainConfig(ds, url, epochs=2, **SMALL))
    card = storage.read_json(storage.join(url, mc.CARD_FILE))
    # the model rank 0 uploaded is the one the card names (its sha256) and it loads in safe mode
    assert card["model_id"] == res.model_id == mc.file_sha256(os.path.join(path, mc.MODEL_FILE))[:16]
    from sparkdl_pipe.safe_model import check_model_file

    check_model_file(os.path.join(path, mc.MODEL_FILE), (8, 8, 1), 10)
    ck = set(storage.list_names(storage.join(url, "checkpoints")))
    assert {"epoch-001.weights.h5", "epoch-002.weights.h5", "epoch-001", "epoch-002", "last.json"} <= ck
    assert storage.read_json(storage.join(url, "checkpoints", "last.json"))["epoch"] == 2
    assert any(n.startswith("events.out.tfevents") for n in os.listdir(os.path.join(path, "tensorboard")))
    assert os.path.exists(os.path.join(path, "report.md")) and os.path.exists(os.path.join(path, "plots"))
    assert not storage.exists(work_dir(url))  # checkpoints moved into the model, heartbeats gone
    assert [n for n in os.listdir(os.path.dirname(path)) if n != "m"] == []  # no staging left either
    assert res.test_accuracy is not None and res.test_accuracy > 0.6

    # --resume: the checkpoints go to the work URL, rank 0 downloads epoch 2 and continues to 3
    more = run_training(spark, TrainConfig(ds, url, epochs=3, resume=True, overwrite=True, **SMALL))
    card3 = storage.read_json(storage.join(url, mc.CARD_FILE))
    assert card3["training"]["resumed_from_epoch"] == 2
    assert [h["epoch"] for h in card3["history"]] == [1, 2, 3]
    assert card3["history"][:2] == card["history"]  # restored from the checkpoint, not retrained
    assert "epoch-003" in storage.list_names(storage.join(url, "checkpoints"))
    assert card3["model_id"] == more.model_id == mc.file_sha256(os.path.join(path, mc.MODEL_FILE))[:16]
    assert more.model_id != res.model_id

    # scoring from the model's URL and from its plain path: the same predictions, row by row
    test_dir = os.path.join(digits_folder, "test")
    s_url = run_scoring(spark, ScoreConfig(url, "file://" + test_dir, "file://" + str(tmp_path / "s1")))
    s_path = run_scoring(spark, ScoreConfig(path, test_dir, str(tmp_path / "s2")))
    assert s_url.input_rows == s_path.input_rows == 360 and s_url.scored == 360
    assert s_url.model_id == more.model_id
    assert s_url.accuracy == pytest.approx(more.test_accuracy, abs=1e-9)
    a = pd.read_parquet(str(tmp_path / "s1" / "predictions"))
    b = pd.read_parquet(str(tmp_path / "s2" / "predictions"))
    m = a.merge(b, on="path", suffixes=("", "_p"))
    assert len(m) == 360 and (m["prediction"] == m["prediction_p"]).all()
    assert (m["probability"] - m["probability_p"]).abs().max() < 1e-6


def test_unsupported_storage_scheme_is_one_clear_error(spark, digits_ds):
    with pytest.raises(UserInputError, match="expected a path or a file://, hdfs://, s3:// or s3a:// URL"):
        run_training(spark, TrainConfig(digits_ds[0], "gs://bucket/m", **SMALL))

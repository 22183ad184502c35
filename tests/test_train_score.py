"""Ingest -> Horovod training on 2 real ranks -> Spark UDF scoring, on scikit-learn's digits."""

import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest

from sparkdl_pipe.config import IngestImagesConfig, ScoreConfig, TrainConfig
from sparkdl_pipe.driver.ingest import run_ingest_images
from sparkdl_pipe.driver.score import run_scoring
from sparkdl_pipe.driver.train import run_training
from sparkdl_pipe.errors import DatasetError, SparkSetupError, UserInputError
from sparkdl_pipe.preprocess.spec import ImageSpec
from tests.conftest import png_bytes


def test_two_ranks_end_with_identical_weights_and_learn(trained):
    out, res = trained
    assert res.num_proc == 2 and len(res.weights_digests) == 2
    assert res.weights_digests[0] == res.weights_digests[1]
    assert res.test_accuracy is not None and res.test_accuracy >= 0.9
    assert res.val_accuracy >= 0.85
    losses = [h["loss"] for h in res.history]
    assert len(losses) == 12 and losses[-1] < losses[0] / 2


def test_model_directory_and_card(trained, digits_ds):
    out, res = trained
    _, ing = digits_ds
    card = json.load(open(os.path.join(out, "model_card.json")))
    assert card["model_id"] == res.model_id and card["name"] == "cnn"
    assert card["labels"] == [str(i) for i in range(10)]
    assert card["dataset"]["fingerprint"] == ing.fingerprint
    assert card["preprocess"] == {"height": 8, "width": 8, "channels": 1, "max_pixels": 64_000_000,
                                  "kind": "image", "version": 1}
    assert card["training"]["num_proc"] == 2 and card["training"]["steps_per_epoch"] == res.steps_per_epoch
    assert len(card["history"]) == 12 and {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(card["history"][0])
    assert card["final"]["test_rows"] == 360
    assert np.asarray(card["final"]["test_confusion"]).sum() == 360
    ckpts = sorted(os.listdir(os.path.join(out, "checkpoints")))
    assert [c for c in ckpts if c.endswith(".weights.h5")] == [f"epoch-{i:03d}.weights.h5" for i in range(1, 13)]
    assert "epoch-012" in ckpts and "last.json" in ckpts  # tf.train.Checkpoint with the optimizer state
    # the saved model loads in safe mode and gives the card's test accuracy back on the test split
    import tf_keras as keras

    from sparkdl_pipe.executor.data import read_split

    m = keras.models.load_model(os.path.join(out, "model.keras"), compile=False, safe_mode=True)
    correct = n = 0
    for x, y in read_split("file://" + os.path.join(digits_ds[0], "test"), (8, 8, 1)):
        correct += int((np.asarray(m(x)).argmax(1) == y).sum())
        n += len(y)
    assert n == 360 and abs(correct / n - card["final"]["test_accuracy"]) < 1e-9


def test_score_raw_files_matches_training_and_reconciles(spark, trained, digits_folder, digits_ds, tmp_path):
    model, res = trained
    out = str(tmp_path / "scores")
    sc = run_scoring(spark, ScoreConfig(model, os.path.join(digits_folder, "test"), out, batch_size=100))
    assert sc.input_rows == 360 and sc.scored == 360 and sc.rejected == 0
    # same preprocessing code + spec from the card: exactly the accuracy the ranks measured
    assert sc.accuracy == pytest.approx(res.test_accuracy, abs=1e-9)
    preds = pd.read_parquet(os.path.join(out, "predictions"))
    assert len(preds) == 360 and preds["model_id"].eq(res.model_id).all()
    assert preds["probability"].between(0, 1).all()
    assert (preds["label_name"] == preds["prediction"].astype(str)).all()
    # scoring the ingested split gives the same predictions path by path
    out2 = str(tmp_path / "scores2")
    sc2 = run_scoring(spark, ScoreConfig(model, os.path.join(digits_ds[0], "test"), out2))
    p2 = pd.read_parquet(os.path.join(out2, "predictions"))
    m = preds.merge(p2, on="path", suffixes=("", "_ds"))
    assert len(m) == 360 and (m["prediction"] == m["prediction_ds"]).all()
    assert sc2.accuracy == pytest.approx(sc.accuracy)


def test_score_bad_files_go_to_rejects(spark, trained, digits_folder, tmp_path):
    model, _ = trained
    src = tmp_path / "mixed"
    (src / "7").mkdir(parents=True)
    for f in sorted(os.listdir(os.path.join(digits_folder, "test", "7")))[:5]:
        shutil.copy(os.path.join(digits_folder, "test", "7", f), src / "7" / f)
    (src / "7" / "empty.png").write_bytes(b"")
    (src / "7" / "text.png").write_bytes(b"hello")
    (src / "odd name ü.jpg").write_bytes(png_bytes(np.zeros((8, 8), dtype=np.uint8)))
    (src / ".hidden.png").write_bytes(b"x")
    out = str(tmp_path / "s")
    sc = run_scoring(spark, ScoreConfig(model, str(src), out))
    assert sc.input_rows == 8 and sc.scored == 6 and sc.rejected == 2 and sc.skipped_hidden == 1
    assert sc.rejects_by_reason == {"empty_file": 1, "undecodable_image": 1}
    assert sc.labelled_rows == 5  # the file outside a label folder has no true label
    rej = pd.read_parquet(os.path.join(out, "rejects"))
    assert sorted(os.path.basename(p) for p in rej["path"]) == ["empty.png", "text.png"]


def test_training_refuses_clearly(spark, digits_ds, tmp_path):
    ds, _ = digits_ds
    with pytest.raises(SparkSetupError, match="--num-proc 3 needs 3"):
        run_training(spark, TrainConfig(ds, str(tmp_path / "m"), num_proc=3))
    with pytest.raises(UserInputError, match="one of"):
        run_training(spark, TrainConfig(ds, str(tmp_path / "m"), model="nope"))
    with pytest.raises(DatasetError, match="not a sparkdl_pipe dataset"):
        run_training(spark, TrainConfig(str(tmp_path), str(tmp_path / "m")))


def test_score_refuses_mismatched_preprocessing(spark, trained, tmp_path):
    model, _ = trained
    from tests.conftest import make_image_folder

    raw = str(tmp_path / "raw")
    make_image_folder(raw, per_label=20)
    ds = str(tmp_path / "ds16")
    run_ingest_images(spark, IngestImagesConfig(raw, ds, ImageSpec(16, 16, 1)))
    with pytest.raises(DatasetError, match="preprocessing does not match"):
        run_scoring(spark, ScoreConfig(model, os.path.join(ds, "train"), str(tmp_path / "s")))


def test_train_without_val_and_test_splits(spark, tmp_path):
    from sparkdl_pipe.config import SplitConfig
    from tests.conftest import make_image_folder

    raw = str(tmp_path / "raw")
    make_image_folder(raw, per_label=40, size=(10, 10))
    ds = str(tmp_path / "ds")
    ing = run_ingest_images(spark, IngestImagesConfig(raw, ds, ImageSpec(10, 10, 3),
                                                      split=SplitConfig(val_fraction=0.0, test_fraction=0.0)))
    assert ing.counts == {"train": 80, "val": 0, "test": 0}
    out = str(tmp_path / "m")
    res = run_training(spark, TrainConfig(ds, out, model="tests.user_models:build_tiny", epochs=2, batch_size=8,
                                          num_proc=2))
    assert res.val_accuracy is None and res.test_accuracy is None
    assert res.weights_digests[0] == res.weights_digests[1]
    card = json.load(open(os.path.join(out, "model_card.json")))  # strict JSON: no NaN anywhere
    assert card["final"]["val_accuracy"] is None and "val_loss" not in card["history"][0]
    json.loads(open(os.path.join(out, "model_card.json")).read(), parse_constant=lambda c: pytest.fail(c))

"""Regression end to end (real Spark, 2 Horovod ranks, real Parquet), embeddings of a regression
model, and fine-tuning (``--init-from``, ``--freeze-epochs``).

Data: scikit-learn's bundled digits as PNG files, the digit's value (0-9) as a numeric target in a
manifest CSV, plus rows whose target is empty, text, NaN, inf or beyond float32.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from sparkdl_pipe.errors import UserInputError

#: Manifest rows with a bad target (they name real images): reason each must get.
BAD_TARGETS = {"": "missing_target", "abc": "invalid_target", "nan": "invalid_target", "inf": "invalid_target",
               "1e40": "invalid_target", "  ": "missing_target"}


@pytest.fixture(scope="module")
def digits_manifest(tmp_path_factory):
    """1,797 digit PNGs in one flat folder and a manifest CSV (file, value) with bad-target rows."""
    from PIL import Image
    from sklearn.datasets import load_digits

    root = tmp_path_factory.mktemp("digits-reg")
    d = load_digits()
    img = np.clip(d.images * (255.0 / 16.0), 0, 255).astype(np.uint8)
    rows = []
    for i, (a, y) in enumerate(zip(img, d.target, strict=True)):
        name = f"img/{i:04d}.png"
        os.makedirs(root / "img", exist_ok=True)
        Image.fromarray(a).save(root / name)
        rows.append((name, str(float(y))))
    rows += [(f"img/{i:04d}.png", bad) for i, bad in enumerate(BAD_TARGETS)]
    path = root / "digits.csv"
    pd.DataFrame(rows, columns=["file", "value"]).to_csv(path, index=False)
    return str(path), d.target.astype(np.float64)


@pytest.fixture(scope="module")
def reg_ds(spark, digits_manifest, tmp_path_factory):
    from sparkdl_pipe.config import IngestImagesConfig
    from sparkdl_pipe.driver.ingest import run_ingest
    from sparkdl_pipe.preprocess.spec import ImageSpec

    manifest, _ = digits_manifest
    out = str(tmp_path_factory.mktemp("reg") / "ds")
    res = run_ingest(spark, IngestImagesConfig(manifest, out, ImageSpec(8, 8, 1), manifest_path_col="file",
                                               target_col="value"))
    return out, res


@pytest.fixture(scope="module")
def reg_model(spark, reg_ds, tmp_path_factory):
    from sparkdl_pipe.config import TrainConfig
    from sparkdl_pipe.driver.train import run_training

    ds, _ = reg_ds
    out = str(tmp_path_factory.mktemp("reg-model") / "model")
    res = run_training(spark, TrainConfig(ds, out, model="cnn", epochs=10, batch_size=32, num_proc=2,
                                          learning_rate=2e-3, standardize_target=True))
    return out, res


def test_target_ingest_counts_reconcile_and_bad_targets_are_rejected(reg_ds, digits_manifest):
    import pyarrow.parquet as pq

    ds, res = reg_ds
    _, y = digits_manifest
    assert res.input_records == len(y) + len(BAD_TARGETS)
    assert res.input_records == sum(res.counts.values()) + res.rejected
    want: dict[str, int] = {}
    for reason in BAD_TARGETS.values():
        want[reason] = want.get(reason, 0) + 1
    assert res.rejects_by_reason == want
    doc = json.load(open(os.path.join(ds, "_sparkdl_manifest.json")))
    assert doc["task"] == "regression" and doc["labels"] == []
    assert doc["target"]["count"] == len(y)
    assert doc["target"]["mean"] == pytest.approx(y.mean(), rel=1e-6)
    assert doc["target"]["std"] == pytest.approx(y.std(), rel=1e-5)
    assert (doc["target"]["min"], doc["target"]["max"]) == (0.0, 9.0)
    assert [f["name"] for f in doc["schema"]["fields"]] == ["image", "target", "path"]
    stored = []
    for split in ("train", "val", "test"):
        t = pq.read_table(os.path.join(ds, split))
        assert t.schema.field("target").type == "float"
        stored.append(t.column("target").to_numpy())
        assert doc["target"]["splits"][split]["count"] == t.num_rows == res.counts[split]
    stored_all = np.concatenate(stored)
    assert np.isfinite(stored_all).all() and np.allclose(np.sort(stored_all), np.sort(y))
    rej = pq.read_table(os.path.join(ds, "rejects")).to_pandas()
    assert sorted(rej["reason"]) == sorted(BAD_TARGETS.values())
    assert rej["message"].notna().all()


def test_folder_input_with_a_target_is_one_line(spark, tmp_path):
    from sparkdl_pipe.config import IngestImagesConfig
    from sparkdl_pipe.driver.ingest import run_ingest
    from sparkdl_pipe.preprocess.spec import ImageSpec
    from tests.conftest import make_image_folder

    make_image_folder(str(tmp_path / "imgs"), per_label=3)
    with pytest.raises(UserInputError, match="folder layout has no numeric target"):
        run_ingest(spark, IngestImagesConfig(str(tmp_path / "imgs"), str(tmp_path / "o"), ImageSpec(8, 8, 1),
                                             target_col="value"))


def test_text_table_with_a_target_ingests_and_trains(spark, tmp_path):
    """Text regression: the target is how many times 'good' occurs among filler words (0-4)."""
    from sparkdl_pipe.config import IngestTextConfig, TrainConfig
    from sparkdl_pipe.driver.ingest import run_ingest
    from sparkdl_pipe.driver.train import run_training
    from sparkdl_pipe.preprocess.spec import TextSpec

    rng = np.random.default_rng(0)
    filler = ["the", "film", "plot", "actor", "scene", "music", "long", "story"]
    rows: list[dict] = []
    for i in range(600):
        k = i % 5
        words = list(rng.choice(filler, 10)) + ["good"] * k
        rng.shuffle(words)
        rows.append({"id": f"r{i}", "text": " ".join(words), "stars": float(k)})
    rows += [{"id": "x1", "text": "no stars"}, {"id": "x2", "text": "bad stars", "stars": "many"}]
    path = tmp_path / "reviews.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    res = run_ingest(spark, IngestTextConfig(str(path), str(tmp_path / "ds"), TextSpec(max_len=16),
                                             id_col="id", target_col="stars"))
    assert res.input_records == 602 == sum(res.counts.values()) + res.rejected
    assert res.rejects_by_reason == {"missing_target": 1, "invalid_target": 1}
    doc = json.load(open(tmp_path / "ds" / "_sparkdl_manifest.json"))
    assert doc["task"] == "regression" and doc["target"]["count"] == 600 and doc["target"]["max"] == 4.0
    tr = run_training(spark, TrainConfig(str(tmp_path / "ds"), str(tmp_path / "m"), epochs=8, batch_size=16,
                                         num_proc=2, learning_rate=3e-3, loss="huber"))
    assert tr.final["test_mae"] < 0.6, tr.final  # constant predictor: 1.2


def test_regression_learns_with_exact_metrics_across_ranks(reg_model, reg_ds):
    """A linear head + MSE on standardised targets: test MAE well under a constant predictor's (about
    2.5 for digit values), and the ranks' summed test metrics equal the driver's own computation."""
    import tf_keras as keras

    from sparkdl_pipe.executor.data import read_split
    from sparkdl_pipe.manifest import load_dataset_info

    out, res = reg_model
    ds, _ = reg_ds
    card = json.load(open(os.path.join(out, "model_card.json")))
    assert card["task"] == "regression" and card["task_options"]["loss_name"] == "mse"
    info = load_dataset_info(ds)
    assert card["task_options"]["std"] == pytest.approx(info.doc["target"]["splits"]["train"]["std"])
    fin = card["final"]
    assert fin["test_rows"] == res.final["test_rows"] == info.count("test")
    assert fin["test_mae"] < 0.9, fin  # constant predictor: ~2.5
    assert fin["test_r2"] > 0.75, fin
    assert all("val_mae" in h for h in card["history"])
    # the saved model predicts in the target's units (the scale is folded into its output layer)
    model = keras.models.load_model(os.path.join(out, "model.keras"), compile=False, safe_mode=True)
    assert model.layers[-1].activation.__name__ == "linear" and model.output_shape == (None, 1)
    preds, ys = [], []
    for x, y in read_split(info.split_url("test"), (8, 8, 1), label_col="target", label_dtype="float32"):
        preds.append(model.predict(x, verbose=0).reshape(-1))
        ys.append(y)
    err = np.concatenate(preds).astype(np.float64) - np.concatenate(ys)
    assert len(err) == fin["test_rows"]
    assert fin["test_mae"] == pytest.approx(np.abs(err).mean(), rel=1e-4)
    assert fin["test_rmse"] == pytest.approx(np.sqrt((err ** 2).mean()), rel=1e-4)
    assert os.path.exists(os.path.join(out, "report.md")) and "test MAE" in open(os.path.join(out, "report.md")).read()


def test_metric_totals_sum_exactly_over_shards():
    from sparkdl_pipe.tasks.regression import Regression

    rng = np.random.default_rng(0)
    y = rng.normal(5, 2, 101)
    z = rng.normal(0, 1, (101, 1))
    task = Regression(mean=5.0, std=2.0, loss_name="huber")
    whole = task.summarize(task.eval_totals(z, y, 1), 1)
    parts = task.eval_totals(z[:37], y[:37], 1) + task.eval_totals(z[37:], y[37:], 1)
    split = task.summarize(parts, 1)
    pred = z.reshape(-1) * 2 + 5
    assert split["rows"] == whole["rows"] == 101
    for k in ("mae", "rmse", "r2", "loss"):
        assert split[k] == pytest.approx(whole[k], rel=1e-12)
    assert whole["mae"] == pytest.approx(np.abs(pred - y).mean())
    assert whole["r2"] == pytest.approx(1 - ((pred - y) ** 2).sum() / ((y - y.mean()) ** 2).sum())
    r = (pred - y) / 2  # Huber (delta 1) in standard units
    assert whole["loss"] == pytest.approx(np.where(abs(r) <= 1, 0.5 * r * r, abs(r) - 0.5).mean())


def test_scoring_raw_files_reconciles_and_reports_errors(spark, reg_model, digits_manifest, tmp_path):
    import pyarrow.parquet as pq

    from sparkdl_pipe.config import ScoreConfig
    from sparkdl_pipe.driver.score import run_scoring

    out, res = reg_model
    manifest, y = digits_manifest
    sc = run_scoring(spark, ScoreConfig(out, manifest, str(tmp_path / "s"), manifest_path_col="file",
                                        label_col="value", embeddings=True))
    n = len(y) + len(BAD_TARGETS)
    assert sc.input_rows == n == sc.scored + sc.rejected and sc.rejected == 0
    preds = pq.read_table(str(tmp_path / "s" / "predictions")).to_pandas()
    assert len(preds) == n and preds["prediction"].dtype == np.float64
    with_target = preds[preds["target"].notna()]
    assert len(with_target) == len(y) == sc.metrics["target_rows"]  # bad-target rows are scored, not compared
    assert np.allclose(with_target["error"], with_target["prediction"] - with_target["target"])
    assert preds.loc[preds["target"].isna(), "error"].isna().all()
    assert sc.metrics["mae"] == pytest.approx(np.abs(with_target["error"]).mean())
    assert sc.metrics["mae"] < 0.9 and sc.metrics["r2"] > 0.75
    summary = json.load(open(tmp_path / "s" / "_sparkdl_score.json"))
    assert summary["metrics"]["rmse"] == pytest.approx(np.sqrt((with_target["error"] ** 2).mean()))
    emb = np.stack(preds["embedding"].to_numpy())
    assert emb.shape == (n, 128) and np.isfinite(emb).all()  # the cnn body's Dense(128), the head's input
    assert "MAE" in sc.summary()
    # the same model as a SQL function gives the same predictions
    from sparkdl_pipe import sql

    sql.register(spark, "digit_value", out)
    once = preds.drop_duplicates("path")  # the manifest names some files twice (its bad-target rows)
    some = once["path"].head(20).tolist()
    got = spark.createDataFrame([(p,) for p in some], "path string") \
        .selectExpr("path", "digit_value(path).prediction AS p").toPandas().merge(once, on="path")
    assert len(got) == 20 and np.allclose(got["p"], got["prediction"], atol=1e-4)


def test_finetune_from_a_model_dir_with_freeze(spark, reg_model, digits_manifest, tmp_path):
    """A classifier fine-tuned from the regression model: the body is the parent's for the frozen
    epoch (checkpoint of epoch 1), then trains; the card names the parent."""
    import tf_keras as keras

    from sparkdl_pipe.config import IngestImagesConfig, TrainConfig
    from sparkdl_pipe.driver.ingest import run_ingest
    from sparkdl_pipe.driver.train import run_training
    from sparkdl_pipe.models.finetune import load_parent_body
    from sparkdl_pipe.preprocess.spec import ImageSpec
    from sparkdl_pipe.tasks import CLASSIFICATION

    parent_dir, parent_res = reg_model
    # the same digits as a classification dataset (label = the digit), from the same files
    table = pd.read_csv(digits_manifest[0], dtype=str, keep_default_na=False).iloc[:len(digits_manifest[1])]
    table["label"] = table["value"].astype(float).astype(int)
    table["file"] = [os.path.join(os.path.dirname(digits_manifest[0]), f) for f in table["file"]]
    cls_manifest = str(tmp_path / "cls.csv")
    table.to_csv(cls_manifest, index=False)
    ds = str(tmp_path / "cls-ds")
    run_ingest(spark, IngestImagesConfig(cls_manifest, ds, ImageSpec(8, 8, 1), manifest_path_col="file"))
    out = str(tmp_path / "ft")
    res = run_training(spark, TrainConfig(ds, out, epochs=2, batch_size=32, num_proc=2, learning_rate=2e-3,
                                          init_from=parent_dir, freeze_epochs=1))
    card = json.load(open(os.path.join(out, "model_card.json")))
    assert card["parent"]["model_id"] == parent_res.model_id and card["parent"]["layer"]
    assert card["training"]["freeze_epochs"] == 1 and card["task"] == "classification"
    parent = keras.models.load_model(os.path.join(parent_dir, "model.keras"), compile=False, safe_mode=True)
    n_body = len(parent.layers) - 1  # every layer but the head
    after1 = load_parent_body(os.path.join(parent_dir, "model.keras"), parent_res.model_id, None, CLASSIFICATION, 10)
    after1.load_weights(os.path.join(out, "checkpoints", "epoch-001.weights.h5"))
    final = keras.models.load_model(os.path.join(out, "model.keras"), compile=False, safe_mode=True)
    changed = []
    for i in range(n_body):
        for w_parent, w1, w2 in zip(parent.layers[i].get_weights(), after1.layers[i].get_weights(),
                                    final.layers[i].get_weights(), strict=True):
            assert np.array_equal(w_parent, w1), parent.layers[i].name  # frozen during epoch 1
            changed.append(not np.array_equal(w1, w2))
    assert changed and any(changed)  # unfrozen in epoch 2
    assert res.test_accuracy is not None and res.test_accuracy > 0.5, res.test_accuracy  # 10 classes


def test_init_from_shape_mismatch_and_unknown_layer_are_refused(spark, reg_ds, tmp_path):
    import tf_keras as keras

    from sparkdl_pipe.config import TrainConfig
    from sparkdl_pipe.driver.train import run_training
    from sparkdl_pipe.models.builders import cnn_body, with_head
    from sparkdl_pipe.tasks import CLASSIFICATION

    ds, _ = reg_ds
    other = with_head(cnn_body((10, 10, 1)), CLASSIFICATION, 3)
    path = str(tmp_path / "other.keras")
    other.save(path)
    with pytest.raises(UserInputError, match=r"input shape does not match.*\(8, 8, 1\)"):
        run_training(spark, TrainConfig(ds, str(tmp_path / "m"), num_proc=2, init_from=path))
    same = with_head(cnn_body((8, 8, 1)), CLASSIFICATION, 3)
    path2 = str(tmp_path / "same.h5")
    same.save(path2)
    with pytest.raises(Exception, match="no layer 'nope'"):
        run_training(spark, TrainConfig(ds, str(tmp_path / "m"), num_proc=2, init_from=path2, init_layer="nope"))
    with pytest.raises(UserInputError, match="--init-from"):
        TrainConfig(ds, str(tmp_path / "m"), freeze_epochs=2)
    assert not os.path.exists(tmp_path / "m")
    del keras


def test_init_from_h5_with_a_lambda_layer_is_refused(tmp_path):
    import tf_keras as keras

    from sparkdl_pipe.errors import DatasetError
    from sparkdl_pipe.models.finetune import resolve_parent

    inp = keras.Input((8, 8, 1))
    x = keras.layers.Lambda(lambda t: t * 2.0)(inp)
    x = keras.layers.Flatten()(x)
    model = keras.Model(inp, keras.layers.Dense(2, activation="softmax")(keras.layers.Dense(4)(x)))
    path = str(tmp_path / "lam.h5")
    model.save(path)
    with pytest.raises(DatasetError, match="Lambda"):
        resolve_parent(path, None, (8, 8, 1))

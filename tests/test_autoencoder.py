"""The autoencoder task end to end on 2 real Horovod ranks: an unlabeled folder of scikit-learn's
digits -> ingest -> conv_autoencoder -> scoring (embedding, reconstruction_error, is_anomaly)."""

import json
import os

import numpy as np
import pandas as pd
import pytest

from sparkdl_pipe import tasks
from sparkdl_pipe.config import IngestImagesConfig, ScoreConfig, TrainConfig
from sparkdl_pipe.driver.ingest import run_ingest_images
from sparkdl_pipe.driver.score import run_scoring
from sparkdl_pipe.driver.train import run_training
from sparkdl_pipe.errors import DatasetError, UserInputError
from sparkdl_pipe.preprocess.spec import ImageSpec
from sparkdl_pipe.tasks.autoencoder import histogram_quantile, row_errors


@pytest.fixture(scope="module")
def unlabeled(tmp_path_factory):
    """All 1,797 digits as PNG files directly under one folder: no label folders."""
    from PIL import Image

    from sparkdl_pipe.driver.demo_data import load_digits_split

    root = str(tmp_path_factory.mktemp("digits-unlabeled"))
    n = 0
    for split, (x, _) in load_digits_split().items():
        for i, img in enumerate(x):
            Image.fromarray(img).save(os.path.join(root, f"{split}-{i:04d}.png"))
            n += 1
    assert n == 1797
    return root


@pytest.fixture(scope="module")
def unlabeled_ds(spark, unlabeled, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("ae") / "ds")
    return out, run_ingest_images(spark, IngestImagesConfig(unlabeled, out, ImageSpec(8, 8, 1)))


@pytest.fixture(scope="module")
def autoencoder(spark, unlabeled_ds, tmp_path_factory):
    ds, _ = unlabeled_ds
    out = str(tmp_path_factory.mktemp("ae-model") / "model")
    cfg = TrainConfig(ds, out, task="autoencoder", bottleneck=8, epochs=15, batch_size=32, num_proc=2,
                      learning_rate=2e-3)
    return out, run_training(spark, cfg)


def _split(ds: str, split: str) -> np.ndarray:
    from sparkdl_pipe.executor.data import read_split

    return np.concatenate([x for x, _ in read_split("file://" + os.path.join(ds, split), (8, 8, 1))])


def test_unlabeled_folder_ingests_every_file_with_no_label(unlabeled_ds):
    ds, res = unlabeled_ds
    assert res.input_records == 1797 and res.rejected == 0 and sum(res.counts.values()) == 1797
    assert res.labels == [] and min(res.counts.values()) > 100
    man = json.load(open(os.path.join(ds, "_sparkdl_manifest.json")))
    assert man["labels"] == [] and man["task"] == "autoencoder"
    assert all(man["splits"][s]["per_class"] == {} for s in ("train", "val", "test"))
    stored = pd.read_parquet(os.path.join(ds, "train"))
    assert (stored["label"] == -1).all() and stored["label_name"].isna().all()


def test_a_folder_with_label_folders_still_rejects_files_outside_them(spark, tmp_path):
    from PIL import Image

    root = tmp_path / "mixed"
    for i in range(6):
        d = root / ("a" if i % 2 else "b")
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((8, 8), i * 20, np.uint8)).save(d / f"{i}.png")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "stray.png")
    res = run_ingest_images(spark, IngestImagesConfig(str(root), str(tmp_path / "ds"), ImageSpec(8, 8, 1)))
    assert res.labels == ["a", "b"] and res.rejects_by_reason == {"missing_label": 1}


def test_tasks_the_dataset_cannot_do_are_refused_before_any_rank(spark, unlabeled_ds, digits_ds, tmp_path):
    ds, _ = unlabeled_ds
    # the unlabeled dataset's own task is autoencoder; classification needs labels
    with pytest.raises(DatasetError, match=r"0 label\(s\).*--task autoencoder"):
        run_training(spark, TrainConfig(ds, str(tmp_path / "m"), task="classification", num_proc=2))
    with pytest.raises(UserInputError, match=r"--task: expected one of \['autoencoder', 'classification', 'regression'\], got 'bogus'"):
        TrainConfig(ds, str(tmp_path / "m"), task="bogus")
    with pytest.raises(UserInputError, match="--bottleneck"):
        TrainConfig(ds, str(tmp_path / "m"), task="autoencoder", bottleneck=0)
    # a text model cannot be an image autoencoder
    with pytest.raises(UserInputError, match="model 'textcnn' is for text datasets"):
        run_training(spark, TrainConfig(ds, str(tmp_path / "m"), task="autoencoder", model="textcnn", num_proc=2))
    assert not os.path.exists(tmp_path / "m")


def test_autoencoder_on_text_is_refused_in_one_line(spark, tmp_path):
    from sparkdl_pipe.config import IngestTextConfig
    from sparkdl_pipe.driver.ingest import run_ingest_text
    from tests.text_corpus import make_docs

    make_docs(60).to_csv(tmp_path / "docs.csv", index=False)
    run_ingest_text(spark, IngestTextConfig(str(tmp_path / "docs.csv"), str(tmp_path / "tds"), id_col="id"))
    with pytest.raises(DatasetError) as e:
        run_training(spark, TrainConfig(str(tmp_path / "tds"), str(tmp_path / "m"), task="autoencoder", num_proc=2))
    msg = str(e.value)
    assert "task autoencoder cannot learn from dataset" in msg and "this one is text" in msg and "\n" not in msg
    assert not os.path.exists(tmp_path / "m")


def test_autoencoder_learns_with_identical_weights_on_both_ranks(autoencoder, unlabeled_ds):
    out, res = autoencoder
    ds, ing = unlabeled_ds
    assert res.num_proc == 2 and res.weights_digests[0] == res.weights_digests[1]
    assert res.val_accuracy is None and res.test_accuracy is None
    losses = [h["loss"] for h in res.history]
    assert len(losses) == 15 and losses[-1] < losses[0] / 2 and "accuracy" not in res.history[0]
    # a trivial predictor, the mean training image, on the test split
    train, test = _split(ds, "train") / 255.0, _split(ds, "test") / 255.0
    mean_image_mse = float(np.mean((test - train.mean(axis=0)) ** 2))
    assert res.test_loss < 0.5 * mean_image_mse, (res.test_loss, mean_image_mse)


def test_card_error_distribution_is_exact_across_ranks(autoencoder, unlabeled_ds):
    out, res = autoencoder
    ds, ing = unlabeled_ds
    card = json.load(open(os.path.join(out, "model_card.json")))
    assert card["task"] == "autoencoder" and card["name"] == "conv_autoencoder" and card["labels"] == []
    assert card["training"]["bottleneck"] == 8 and card["training"]["task"] == "autoencoder"
    rec = card["final"]["reconstruction_error"]
    import tf_keras as keras

    model = keras.models.load_model(os.path.join(out, "model.keras"), compile=False, safe_mode=True)
    assert model.get_layer("embedding").output_shape == (None, 8)
    for split in ("val", "test"):
        d = rec[split]
        x = _split(ds, split)
        err = row_errors(np.asarray(model(x.astype("float32"), training=False)), x)
        assert d["rows"] == ing.counts[split] == len(err)
        # the ranks' summed totals give the single-process figure back exactly (float round-off only)
        assert d["mean"] == pytest.approx(err.mean(), rel=1e-5)
        for q, key in ((0.5, "p50"), (0.95, "p95"), (0.99, "p99")):
            exact = float(np.quantile(err, q))
            # one histogram bin is 0.58% wide; the sample quantile's own step between rows is wider
            lo, hi = np.quantile(err, max(0, q - 2 / len(err))), np.quantile(err, min(1, q + 2 / len(err)))
            assert lo * 0.99 <= d[key] <= hi * 1.01, (split, key, d[key], exact)
    assert rec["val"]["p50"] <= rec["val"]["p95"] <= rec["val"]["p99"]
    assert res.test_loss == pytest.approx(rec["test"]["mean"])
    report = open(os.path.join(out, "report.md")).read()
    assert "## Reconstruction error" in report and "plots/reconstructions.png" in report
    for png in ("curves.png", "reconstructions.png"):
        assert os.path.getsize(os.path.join(out, "plots", png)) > 2000


def test_scoring_writes_embedding_error_and_anomaly_flags(spark, autoencoder, unlabeled, unlabeled_ds, tmp_path):
    out, _ = autoencoder
    ds, ing = unlabeled_ds
    # raw files: every file scored once, reconciling with the input
    sc = run_scoring(spark, ScoreConfig(out, unlabeled, str(tmp_path / "raw"), batch_size=100))
    assert sc.input_rows == 1797 == sc.scored and sc.rejected == 0 and sc.accuracy is None
    raw = pd.read_parquet(os.path.join(tmp_path / "raw", "predictions"))
    assert len(raw) == 1797 and raw["path"].nunique() == 1797
    assert set(raw.columns) >= {"embedding", "reconstruction_error", "model_id"} and "is_anomaly" not in raw
    assert raw["embedding"].map(len).eq(8).all() and raw["reconstruction_error"].between(0, 1).all()
    # the validation split with --anomaly-quantile 0.9: about a tenth of its rows are flagged
    card = json.load(open(os.path.join(out, "model_card.json")))
    sv = run_scoring(spark, ScoreConfig(out, os.path.join(ds, "val"), str(tmp_path / "val"), anomaly_quantile=0.9))
    val = pd.read_parquet(os.path.join(tmp_path / "val", "predictions"))
    assert sv.scored == ing.counts["val"] == len(val)
    assert val["reconstruction_error"].mean() == pytest.approx(card["final"]["reconstruction_error"]["val"]["mean"],
                                                               rel=1e-5)
    t = histogram_quantile(np.bincount([b for b, c in card["final"]["reconstruction_error"]["val"]["histogram"]
                                        ["counts"] for _ in range(c)], minlength=2800), 0.9)
    assert (val["is_anomaly"] == (val["reconstruction_error"] > t)).all()
    assert abs(val["is_anomaly"].mean() - 0.1) <= 2 / len(val) + 0.01
    # the same row scored from the raw file and from the stored split: the same error and embedding
    m = raw.merge(val, on="path", suffixes=("", "_val"))
    assert len(m) == len(val)
    assert np.allclose(m["reconstruction_error"], m["reconstruction_error_val"], rtol=1e-5)
    assert np.allclose(np.stack(m["embedding"]), np.stack(m["embedding_val"]), atol=1e-5)
    summary = json.load(open(os.path.join(tmp_path / "val", "_sparkdl_score.json")))
    assert summary["task_options"]["anomaly_quantile"] == 0.9


def test_anomaly_quantile_is_refused_clearly(spark, autoencoder, unlabeled_ds, tmp_path):
    out, _ = autoencoder
    with pytest.raises(UserInputError, match="--anomaly-quantile"):
        ScoreConfig(out, "x", "y", anomaly_quantile=1.0)
    cfg = ScoreConfig(out, "x", "y", anomaly_quantile=0.99)
    with pytest.raises(UserInputError, match="--anomaly-quantile: expected an autoencoder model, got 'a classif"):
        tasks.get("classification").score_options({}, cfg)
    with pytest.raises(DatasetError, match="no validation reconstruction errors"):
        tasks.get("autoencoder").score_options({"final": {}}, cfg)


def test_featurizer_gives_the_bottleneck_as_a_vector(spark, autoencoder, unlabeled, tmp_path):
    from sparkdl_pipe.ml import KerasFeaturizer

    out, _ = autoencoder
    paths = sorted(os.path.join(unlabeled, f) for f in os.listdir(unlabeled))[:50]
    df = spark.createDataFrame([(p,) for p in paths], "path string")
    feats = KerasFeaturizer(modelDir=out, inputCol="path").transform(df).toPandas()
    assert len(feats) == 50 and feats["reject_reason"].isna().all()
    assert all(len(v) == 8 for v in feats["embedding"])
    sc = run_scoring(spark, ScoreConfig(out, unlabeled, str(tmp_path / "s")))
    raw = pd.read_parquet(os.path.join(tmp_path / "s", "predictions"))
    raw = raw.set_index(raw["path"].str.rsplit("/", n=1).str[-1])
    for p, v in zip(feats["path"], feats["embedding"], strict=True):
        assert np.allclose(v.toArray(), raw.loc[os.path.basename(p), "embedding"], atol=1e-5)
    assert sc.scored == 1797


def test_autoencoder_as_a_sql_function(spark, autoencoder, unlabeled):
    from sparkdl_pipe import sql

    out, _ = autoencoder
    sql.register(spark, "ae_score", out)
    paths = sorted(os.path.join(unlabeled, f) for f in os.listdir(unlabeled))[:20]
    spark.createDataFrame([(p,) for p in paths] + [("/nope.png",)], "path string").createOrReplaceTempView("ae_in")
    rows = spark.sql("SELECT path, ae_score(path) AS r FROM ae_in").toPandas()
    good = rows[rows["path"] != "/nope.png"]["r"]
    assert all(len(r["embedding"]) == 8 and 0 <= r["reconstruction_error"] < 1 and r["reason"] is None for r in good)
    bad = rows[rows["path"] == "/nope.png"]["r"].iloc[0]
    assert bad["reconstruction_error"] is None or np.isnan(bad["reconstruction_error"])
    assert bad["reason"] == "missing_file"

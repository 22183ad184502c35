"""The Spark ML autoencoder: ``KerasImageAutoencoder`` fitted on an unlabeled DataFrame of scikit-learn's
digits (PNG bytes, real Spark, 2 Horovod ranks, conv_autoencoder), its Model scoring normal digits
against anomalies (pure noise, inverted digits), saved and loaded alone and in a PipelineModel, its
embedding clustered by MLlib's KMeans. One fit for the module."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from sparkdl_pipe import storage
from sparkdl_pipe.errors import UserInputError
from tests.conftest import png_bytes

QUANTILE = 0.95
N_ODD = 60  # noise images, and as many inverted digits


def _digits(split: str):
    from sparkdl_pipe.driver.demo_data import load_digits_split

    return load_digits_split()[split]


@pytest.fixture(scope="module")
def train_df(spark):
    """The 1,437 training digits as PNG bytes and no label column, plus one file that is no image."""
    x, _ = _digits("train")
    rows = [(i, png_bytes(a)) for i, a in enumerate(x)] + [(len(x), b"not an image")]
    return spark.createDataFrame(pd.DataFrame(rows, columns=["id", "image"]), "id long, image binary")


@pytest.fixture(scope="module")
def test_df(spark):
    """Normal test digits, pure noise, inverted test digits, an undecodable file and a null."""
    x, y = _digits("test")
    rng = np.random.default_rng(7)
    noise = rng.integers(0, 256, (N_ODD, 8, 8), dtype=np.uint8)
    rows = [(i, "digit", int(d), png_bytes(a)) for i, (a, d) in enumerate(zip(x, y, strict=True))]
    rows += [(1000 + i, "noise", None, png_bytes(a)) for i, a in enumerate(noise)]
    rows += [(2000 + i, "inverted", int(y[i]), png_bytes(255 - x[i])) for i in range(N_ODD)]
    rows += [(3000, "bad", None, b"\x89PNG truncated"), (3001, "null", None, None)]
    pdf = pd.DataFrame(rows, columns=["id", "kind", "digit", "image"])
    return spark.createDataFrame(pdf, "id long, kind string, digit int, image binary")


@pytest.fixture(scope="module")
def fitted(train_df, tmp_path_factory):
    from sparkdl_pipe.ml import KerasImageAutoencoder

    ae = KerasImageAutoencoder(inputCol="image", pathCol="id", imageSize=[8], channels=1, bottleneck=8,
                               epochs=10, batchSize=32, learningRate=2e-3, numProc=2, anomalyQuantile=QUANTILE,
                               workDir=str(tmp_path_factory.mktemp("ae-ml")), scoreBatchSize=128)
    return ae, ae.fit(train_df)


def _scored(model, df) -> pd.DataFrame:
    out = model.transform(df).drop("image").toPandas().sort_values("id").reset_index(drop=True)
    out["embedding"] = [None if v is None else v.toArray() for v in out["embedding"]]
    return out


def test_fit_ingests_the_unlabeled_dataframe_and_trains_an_autoencoder(fitted, train_df):
    from sparkdl_pipe.ml import KerasImageAutoencoderModel

    ae, model = fitted
    assert isinstance(model, KerasImageAutoencoderModel)
    ing = model.ingestResult
    # every row accounted for: no label column needed, the one bad file a reject with its reason
    assert ing.input_records == train_df.count() == sum(ing.counts.values()) + ing.rejected
    assert ing.labels == [] and ing.rejects_by_reason == {"undecodable_image": 1} and ing.counts["val"] > 100
    ds = storage.local_path(storage.to_url(ing.output))
    man = json.load(open(os.path.join(ds, "_sparkdl_manifest.json")))
    assert man["task"] == "autoencoder" and man["labels"] == [] and man["input_kind"] == "dataframe"
    stored = pd.read_parquet(os.path.join(ds, "train"))
    assert (stored["label"] == -1).all() and stored["label_name"].isna().all()
    tr = model.trainResult
    assert tr.num_proc == 2 and tr.weights_digests[0] == tr.weights_digests[1] and len(tr.history) == 10
    assert tr.history[-1]["loss"] < tr.history[0]["loss"] / 2
    info = model.modelInfo()
    assert info.task == "autoencoder" and info.card["name"] == "conv_autoencoder"
    assert info.card["training"]["bottleneck"] == 8
    # the Estimator's Params reach the Model; copy keeps them
    assert model.getAnomalyQuantile() == QUANTILE and ae.copy().getBottleneck() == 8


def test_transform_adds_error_anomaly_flag_and_embedding(fitted, test_df):
    from sparkdl_pipe.tasks.autoencoder import dense_histogram, histogram_quantile

    _, model = fitted
    scored_df = model.transform(test_df)
    types = {f.name: f.dataType.simpleString() for f in scored_df.schema.fields}
    assert list(types)[:4] == ["id", "kind", "digit", "image"]  # the input's columns first, kept
    assert types["reconstruction_error"] == "double" and types["is_anomaly"] == "boolean"
    assert types["embedding"] == "vector" and types["reject_reason"] == "string"
    s = _scored(model, test_df)
    assert len(s) == test_df.count()
    bad = s[s["kind"].isin(["bad", "null"])].set_index("kind")
    assert bad.loc["bad", "reject_reason"] == "undecodable_image" and bad.loc["null", "reject_reason"] == "missing_file"
    assert bad["reconstruction_error"].isna().all() and bad["is_anomaly"].isna().all()
    assert bad["embedding"].isna().all()
    good = s[~s["kind"].isin(["bad", "null"])]
    assert good["reject_reason"].isna().all() and all(len(v) == 8 for v in good["embedding"])
    # the threshold: the quantile of the validation errors recorded at fit, as score --anomaly-quantile
    val = model.modelInfo().card["final"]["reconstruction_error"]["val"]
    t = model.anomalyThreshold()
    assert t == pytest.approx(histogram_quantile(dense_histogram(val["histogram"]["counts"]), QUANTILE))
    assert (good["is_anomaly"] == (good["reconstruction_error"] > t)).all()
    by = good.groupby("kind").agg(err=("reconstruction_error", "mean"), flagged=("is_anomaly", "mean"))
    normal = by.loc["digit"]
    assert normal["err"] == pytest.approx(val["mean"], rel=0.3)  # test digits: errors like the val split's
    assert normal["flagged"] < 0.15  # about 1 - QUANTILE of normal digits
    for odd in ("noise", "inverted"):
        assert by.loc[odd, "err"] > 4 * normal["err"], by
        assert by.loc[odd, "flagged"] >= 0.9, by
    # another quantile after fit: the card keeps the whole validation histogram
    assert model.copy({model.anomalyQuantile: 0.5}).anomalyThreshold() < t


def test_saved_and_loaded_alone_and_in_a_pipeline_gives_identical_outputs(fitted, test_df, tmp_path):
    from pyspark.ml import Pipeline, PipelineModel

    from sparkdl_pipe.ml import KerasImageAutoencoder, KerasImageAutoencoderModel

    ae, model = fitted
    before = _scored(model, test_df)
    model.write().save(str(tmp_path / "model"))
    assert not list(tmp_path.rglob("*.pkl")) and (tmp_path / "model" / "model" / "model.keras").exists()
    loaded = KerasImageAutoencoderModel.load(str(tmp_path / "model"))
    assert loaded.getAnomalyQuantile() == QUANTILE and loaded.anomalyThreshold() == model.anomalyThreshold()
    PipelineModel(stages=[model]).write().save(str(tmp_path / "pipeline"))
    in_pipe = PipelineModel.load(str(tmp_path / "pipeline"))
    assert isinstance(in_pipe.stages[0], KerasImageAutoencoderModel)
    for after in (_scored(loaded, test_df), _scored(in_pipe, test_df)):
        assert after["id"].tolist() == before["id"].tolist()
        assert after["reject_reason"].equals(before["reject_reason"])
        assert np.array_equal(after["reconstruction_error"].to_numpy(), before["reconstruction_error"].to_numpy(),
                              equal_nan=True)
        assert after["is_anomaly"].equals(before["is_anomaly"])
        ok = before["reject_reason"].isna()
        assert np.array_equal(np.stack(after["embedding"][ok]), np.stack(before["embedding"][ok]))
    # the unfitted Estimator in a Pipeline: its Params saved as JSON and read back
    Pipeline(stages=[ae]).write().save(str(tmp_path / "estimator"))
    stage = Pipeline.load(str(tmp_path / "estimator")).getStages()[0]
    assert isinstance(stage, KerasImageAutoencoder)
    assert {p.name: v for p, v in stage.extractParamMap().items()} == \
        {p.name: v for p, v in ae.extractParamMap().items()}


def test_renamed_output_columns_and_the_embedding_feeds_kmeans(fitted, test_df):
    from pyspark.ml.clustering import KMeans

    _, model = fitted
    renamed = model.copy({model.embeddingCol: "features", model.reconstructionErrorCol: "score",
                          model.isAnomalyCol: "odd"})
    digits = test_df.filter("kind = 'digit'")
    feats = renamed.transform(digits).cache()  # KMeans reads its input once per iteration
    assert {"features", "score", "odd"} <= set(feats.columns) and "embedding" not in feats.columns
    km = KMeans(k=10, seed=3, featuresCol="features", predictionCol="cluster").fit(feats)
    got = km.transform(feats).select("digit", "cluster").toPandas()
    assert len(got) == digits.count() and got["cluster"].nunique() >= 8
    # clusters of the 8-number embedding follow the digits: most of each cluster is one digit
    purity = got.groupby("cluster")["digit"].agg(lambda d: d.value_counts().iloc[0]).sum() / len(got)
    feats.unpersist()
    assert purity > 0.5, purity  # 10 balanced digits: about 0.1-0.2 for unrelated clusters (0.77 seen)
    with pytest.raises(UserInputError, match="new, distinct column names"):
        model.copy({model.embeddingCol: "digit"}).transform(digits)


def test_mistakes_are_refused_before_any_work(spark, train_df, tmp_path):
    from sparkdl_pipe.ml import KerasImageAutoencoder

    work = tmp_path / "w"
    with pytest.raises(UserInputError, match="valFraction: expected above 0"):
        KerasImageAutoencoder(inputCol="image", imageSize=[8], valFraction=0.0, workDir=str(work)).fit(train_df)
    with pytest.raises(UserInputError, match="anomalyQuantile"):
        KerasImageAutoencoder(inputCol="image", imageSize=[8], anomalyQuantile=1.0, workDir=str(work)).fit(train_df)
    with pytest.raises(UserInputError, match="task"):
        KerasImageAutoencoder(inputCol="image", imageSize=[8], workDir=str(work)).setTask("classification") \
            .fit(train_df)
    with pytest.raises(UserInputError, match="model 'textcnn' is for text"):
        KerasImageAutoencoder(inputCol="image", imageSize=[8], model="textcnn", workDir=str(work)).fit(train_df)
    assert not work.exists() or not any(work.iterdir())

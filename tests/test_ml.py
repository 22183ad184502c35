"""The Spark ML API: KerasImageClassifier in a Pipeline, fitted (2 real Horovod ranks), saved,
loaded and used to transform; on scikit-learn's digits as PNG bytes with integer labels."""

import json
import os

import numpy as np
import pandas as pd
import pytest
from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.feature import SQLTransformer

from sparkdl_pipe.errors import UserInputError
from sparkdl_pipe.ml import KerasImageClassifier, KerasImageClassifierModel
from tests.conftest import png_bytes


def _frame(spark, split: str):
    from sparkdl_pipe.driver.demo_data import load_digits_split

    x, y = load_digits_split()[split]
    pdf = pd.DataFrame({"id": np.arange(len(y)), "png": [png_bytes(a) for a in x], "digit": y.astype(int)})
    return spark.createDataFrame(pdf, "id long, png binary, digit int")


@pytest.fixture(scope="module")
def fitted(spark, tmp_path_factory):
    work = str(tmp_path_factory.mktemp("ml-work"))
    clf = KerasImageClassifier(imageSize=[8], channels=1, model="cnn", epochs=12, batchSize=32,
                               learningRate=2e-3, numProc=2, workDir=work, scoreBatchSize=128)
    # A plain Spark stage before ours: the image/label columns are made by SQL.
    prep = SQLTransformer(statement="SELECT *, png AS image, digit AS label FROM __THIS__")
    train = _frame(spark, "train")
    model = Pipeline(stages=[prep, clf]).fit(train)
    return model, train.count()


def test_fit_trains_and_reports(fitted):
    model, n_train = fitted
    stage = model.stages[-1]
    assert isinstance(stage, KerasImageClassifierModel)
    ing, tr = stage.ingestResult, stage.trainResult
    assert ing.input_records == n_train and ing.rejected == 0 and sum(ing.counts.values()) == n_train
    assert ing.labels == [str(i) for i in range(10)]
    assert tr.num_proc == 2 and tr.weights_digests[0] == tr.weights_digests[1]
    assert tr.test_accuracy >= 0.85
    card = stage.modelInfo().card
    assert card["dataset"]["fingerprint"] == ing.fingerprint and card["preprocess"]["height"] == 8
    assert os.path.exists(os.path.join(stage.getModelDir().replace("file://", ""), "report.md"))


def test_transform_keeps_columns_adds_predictions_and_learns(spark, fitted):
    model, _ = fitted
    test = _frame(spark, "test")
    out = model.transform(test).toPandas()
    assert list(out.columns) == ["id", "png", "digit", "image", "label", "prediction", "predicted_label",
                                 "probability", "reject_reason"]
    assert len(out) == 360 and out["reject_reason"].isna().all()
    assert out["prediction"].dtype == np.float64  # Spark ML's convention: evaluators want a double
    assert (out["predicted_label"] == out["prediction"].astype(int).astype(str)).all()
    probs = np.stack([v.toArray() for v in out["probability"]])  # an MLlib Vector of every class's
    assert probs.shape == (360, 10) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    assert (probs.argmax(axis=1) == out["prediction"]).all()
    assert (out["prediction"] == out["digit"]).mean() >= 0.9


def test_pipeline_and_stages_round_trip(spark, fitted, tmp_path):
    model, _ = fitted
    test = _frame(spark, "test")
    before = model.transform(test).select("id", "prediction", "probability").toPandas().sort_values("id")
    path = str(tmp_path / "pipeline")
    model.write().overwrite().save(path)
    stage_dirs = sorted(os.listdir(os.path.join(path, "stages")))
    saved_model = os.path.join(path, "stages", stage_dirs[-1], "model")
    assert sorted(os.listdir(saved_model)) == ["model.keras", "model_card.json", "plots", "report.md"]
    meta_dir = os.path.join(path, "stages", stage_dirs[-1], "metadata")
    part = [f for f in os.listdir(meta_dir) if f.startswith("part-")][0]
    meta = json.loads(open(os.path.join(meta_dir, part)).read())
    assert meta["class"] == "sparkdl_pipe.ml.image.KerasImageClassifierModel"
    loaded = PipelineModel.load(path)
    after = loaded.transform(test).select("id", "prediction", "probability").toPandas().sort_values("id")
    assert (before["prediction"].values == after["prediction"].values).all()
    assert np.array_equal(np.stack([v.toArray() for v in before["probability"]]),
                          np.stack([v.toArray() for v in after["probability"]]))
    st = loaded.stages[-1]
    assert st.getModelDir().endswith("/model") and st.modelInfo().model_id == model.stages[-1].modelInfo().model_id
    # the fitted stage alone: model.write().save(path) / KerasImageClassifierModel.load(path)
    model.stages[-1].write().save(str(tmp_path / "alone"))
    alone = KerasImageClassifierModel.load(str(tmp_path / "alone"))
    assert alone.modelInfo().model_id == st.modelInfo().model_id and alone.getScoreBatchSize() == 128

    # the unfitted Pipeline (with our Estimator) round-trips its params too
    clf = KerasImageClassifier(imageSize=[8, 8], epochs=3, numProc=2, model="mlp", inputCol="png")
    clf.write().save(str(tmp_path / "clf"))
    assert KerasImageClassifier.load(str(tmp_path / "clf")).getOrDefault("epochs") == 3
    Pipeline(stages=[clf]).write().save(str(tmp_path / "est"))
    est = Pipeline.load(str(tmp_path / "est")).getStages()[0]
    assert isinstance(est, KerasImageClassifier)
    assert (est.getOrDefault("imageSize"), est.getOrDefault("epochs"), est.getOrDefault("model"),
            est.getInputCol()) == ([8, 8], 3, "mlp", "png")


def test_transform_paths_and_bad_rows(spark, fitted, digits_folder):
    model, _ = fitted
    stage = model.stages[-1].copy().setInputCol("path")
    files = sorted(os.path.join(r, f) for r, _, fs in os.walk(os.path.join(digits_folder, "test")) for f in fs)[:20]
    rows = [(p,) for p in files] + [("/nonexistent/x.png",), (None,)]
    df = spark.createDataFrame(rows, "path string")
    out = stage.transform(df).toPandas()
    assert len(out) == 22
    ok = out[out["reject_reason"].isna()]
    assert len(ok) == 20 and ok["prediction"].notna().all()
    assert (ok["predicted_label"] == ok["path"].map(lambda p: p.split("/")[-2])).mean() >= 0.8
    bad = out[out["reject_reason"].notna()]
    assert list(bad["reject_reason"]) == ["missing_file", "missing_file"] and bad["prediction"].isna().all()
    garbage = spark.createDataFrame([(b"not an image",)], "image binary")
    g = model.stages[-1].transform(garbage).toPandas()
    assert g["reject_reason"].tolist() == ["undecodable_image"] and g["prediction"].isna().all()


def test_clear_errors(spark, fitted, tmp_path):
    model, _ = fitted
    df = spark.createDataFrame([(1, "a")], "x int, y string")
    with pytest.raises(UserInputError, match="input column 'image' is not in the DataFrame"):
        model.stages[-1].transform(df)
    with pytest.raises(UserInputError, match="binary .* or string"):
        model.stages[-1].copy().setInputCol("x").transform(df)
    clf = KerasImageClassifier(model="nope", workDir=str(tmp_path))
    with pytest.raises(UserInputError, match="one of"):
        clf.fit(spark.createDataFrame([(b"x", 1)], "image binary, label int"))

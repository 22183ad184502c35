"""Embeddings and SQL: `score --embeddings` adds the layer before the head; KerasFeaturizer turns a
trained model into an MLlib Vector stage (featurizer -> LogisticRegression in one Pipeline, fitted,
saved, loaded, evaluated); sparkdl_pipe.sql.register makes the model a SQL function whose bad rows
give a null result and a reason."""

import os

import numpy as np
import pandas as pd
import pytest
from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.classification import LogisticRegression
from pyspark.ml.evaluation import MulticlassClassificationEvaluator

from sparkdl_pipe.config import ScoreConfig
from sparkdl_pipe.driver.score import run_scoring
from sparkdl_pipe.errors import DatasetError
from tests.conftest import png_bytes


def _frame(spark, split: str):
    from sparkdl_pipe.driver.demo_data import load_digits_split

    x, y = load_digits_split()[split]
    pdf = pd.DataFrame({"id": np.arange(len(y)), "png": [png_bytes(a) for a in x], "digit": y.astype(int)})
    return spark.createDataFrame(pdf, "id long, png binary, digit int")


def test_score_embeddings_are_the_layer_before_the_head(spark, trained, digits_folder, tmp_path):
    model, _ = trained
    test = os.path.join(digits_folder, "test")
    a = run_scoring(spark, ScoreConfig(model, test, str(tmp_path / "a")))
    b = run_scoring(spark, ScoreConfig(model, test, str(tmp_path / "b"), embeddings=True))
    assert a.scored == b.scored == 360 and a.accuracy == b.accuracy
    pa = pd.read_parquet(tmp_path / "a" / "predictions")
    pb = pd.read_parquet(tmp_path / "b" / "predictions")
    m = pa.merge(pb, on="path", suffixes=("", "_e"))
    assert len(m) == 360 and (m["prediction"] == m["prediction_e"]).all()
    emb = np.stack(m["embedding"].to_numpy())
    assert emb.shape == (360, 128) and emb.dtype == np.float32 and np.isfinite(emb).all()
    # the head on top of the embedding gives back the probabilities
    from sparkdl_pipe.safe_model import load_model_safely

    keras_model = load_model_safely(os.path.join(model, "model.keras"))
    w, bias = keras_model.layers[-1].get_weights()
    logits = emb @ w + bias
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose((p / p.sum(axis=1, keepdims=True)).max(axis=1), m["probability"], rtol=1e-4)
    with pytest.raises(DatasetError, match="has no layer 'nope'"):
        run_scoring(spark, ScoreConfig(model, test, str(tmp_path / "c"), embeddings=True, embedding_layer="nope"))


def test_featurizer_then_logistic_regression_in_one_pipeline(spark, trained, tmp_path):
    from sparkdl_pipe.ml import KerasFeaturizer

    model, _ = trained
    train, test = _frame(spark, "train"), _frame(spark, "test")
    feats = KerasFeaturizer(modelDir=model, inputCol="png")
    lr = LogisticRegression(featuresCol="embedding", labelCol="digit", maxIter=60)
    fitted = Pipeline(stages=[feats, lr]).fit(train)
    path = str(tmp_path / "pipe")
    fitted.write().overwrite().save(path)
    loaded = PipelineModel.load(path)
    scored = loaded.transform(test)
    acc = MulticlassClassificationEvaluator(labelCol="digit", predictionCol="prediction",
                                            metricName="accuracy").evaluate(scored)
    assert acc >= 0.85
    row = scored.select("embedding").first()
    assert row["embedding"].size == 128
    # a record that cannot be read gets a null vector and its reason, not a failed job
    bad = spark.createDataFrame([(b"not an image",)], "png binary")
    got = feats.transform(bad).select("embedding", "reject_reason").first()
    assert got["embedding"] is None and got["reject_reason"] == "undecodable_image"


def test_model_as_a_sql_function_bad_rows_give_a_reason(spark, trained):
    from sparkdl_pipe import sql

    model, _ = trained
    df = _frame(spark, "test").union(spark.createDataFrame([(9000, b"not a png", 1), (9001, None, 2)],
                                                           "id long, png binary, digit int"))
    df.createOrReplaceTempView("digit_images")
    sql.register(spark, "classify_digits", model)
    out = spark.sql("SELECT id, digit, classify_digits(png) AS r FROM digit_images").toPandas()
    assert len(out) == 362
    bad = out[out["id"] >= 9000]
    assert [r["prediction"] for r in bad["r"]] == [None, None]
    assert sorted(r["reason"] for r in bad["r"]) == ["missing_file", "undecodable_image"]
    good = out[out["id"] < 9000]
    acc = np.mean([str(r["label_name"]) == str(d) for r, d in zip(good["r"], good["digit"], strict=True)])
    assert acc >= 0.85


def test_cross_validator_picks_the_better_grid_point(spark, tmp_path):
    from pyspark.ml.tuning import CrossValidator, ParamGridBuilder

    from sparkdl_pipe.ml import KerasImageClassifier

    train = _frame(spark, "train").withColumnRenamed("png", "image").withColumnRenamed("digit", "label")
    clf = KerasImageClassifier(imageSize=[8], channels=1, model="cnn", batchSize=32, learningRate=2e-3,
                               numProc=2, workDir=str(tmp_path / "cv"), scoreBatchSize=256)
    grid = ParamGridBuilder().addGrid(clf.epochs, [1, 10]).build()
    cv = CrossValidator(estimator=clf, estimatorParamMaps=grid, numFolds=2, seed=3, parallelism=2,
                        evaluator=MulticlassClassificationEvaluator(labelCol="label", predictionCol="prediction",
                                                                    metricName="accuracy"))
    fitted = cv.fit(train)
    metrics = list(fitted.avgMetrics)
    assert len(metrics) == 2 and metrics[1] > metrics[0]  # 10 epochs beat 1 epoch on every fold
    best = fitted.bestModel  # refitted on all the data with the better grid point
    assert best.trainResult is not None and len(best.trainResult.history) == 10
    acc = MulticlassClassificationEvaluator(labelCol="label", predictionCol="prediction", metricName="accuracy") \
        .evaluate(best.transform(_frame(spark, "test").withColumnRenamed("png", "image")
                                 .withColumnRenamed("digit", "label")))
    assert acc >= 0.85

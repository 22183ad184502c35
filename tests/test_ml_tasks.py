"""Spark ML Estimators for tasks other than classification: ``KerasImageRegressor`` tuned with
``TrainValidationSplit`` and ``RegressionEvaluator`` (real Spark, 2 Horovod ranks per fit), the
Model saved and loaded, a bad image a null prediction and a reason. (Bad targets are rejects with
reasons in the same ingest code: tests/test_regression.py.)"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sparkdl_pipe.errors import UserInputError
from tests.conftest import png_bytes


def _frame(spark, split: str):
    from sparkdl_pipe.driver.demo_data import load_digits_split

    x, y = load_digits_split()[split]
    pdf = pd.DataFrame({"id": np.arange(len(y)), "image": [png_bytes(a) for a in x], "value": y.astype(float)})
    return spark.createDataFrame(pdf, "id long, image binary, value double")


def test_image_regressor_tuned_with_train_validation_split(spark, tmp_path):
    from pyspark.ml.evaluation import RegressionEvaluator
    from pyspark.ml.tuning import ParamGridBuilder, TrainValidationSplit

    from sparkdl_pipe.ml import KerasImageRegressor, KerasImageRegressorModel

    reg = KerasImageRegressor(labelCol="value", imageSize=[8], channels=1, model="cnn", batchSize=32,
                              learningRate=2e-3, standardizeTarget=True, numProc=2, pathCol="id",
                              workDir=str(tmp_path / "w"), scoreBatchSize=256)
    assert reg.getOrDefault(reg.task) == "regression" and reg.copy().getOrDefault(reg.task) == "regression"
    mae = RegressionEvaluator(labelCol="value", predictionCol="prediction", metricName="mae")
    grid = ParamGridBuilder().addGrid(reg.epochs, [1, 10]).build()
    tvs = TrainValidationSplit(estimator=reg, estimatorParamMaps=grid, evaluator=mae, trainRatio=0.75, seed=5)
    fitted = tvs.fit(_frame(spark, "train"))
    assert fitted.validationMetrics[1] < fitted.validationMetrics[0]  # 10 epochs beat 1 (lower MAE)
    best = fitted.bestModel
    assert isinstance(best, KerasImageRegressorModel) and len(best.trainResult.history) == 10
    ing = best.ingestResult
    assert ing.rejected == 0 and ing.input_records == sum(ing.counts.values()) == _frame(spark, "train").count()
    test = _frame(spark, "test")
    scored = best.transform(test)
    assert scored.schema["prediction"].dataType.simpleString() == "double"
    got = mae.evaluate(scored)
    assert got < 1.0, got  # a constant predictor: about 2.5 on digit values
    path = str(tmp_path / "saved")
    best.write().save(path)
    loaded = KerasImageRegressorModel.load(path)
    a = best.transform(test).select("id", "prediction").toPandas().sort_values("id")
    b = loaded.transform(test).select("id", "prediction").toPandas().sort_values("id")
    assert np.allclose(a["prediction"].values, b["prediction"].values)
    bad = spark.createDataFrame([(1, b"not an image", 3.0)], "id long, image binary, value double")
    row = loaded.transform(bad).first()
    assert row["prediction"] is None and row["reject_reason"] == "undecodable_image"


def test_estimator_refuses_an_unknown_task(spark):
    from sparkdl_pipe.ml import KerasImageClassifier

    clf = KerasImageClassifier(task="clustering", numProc=1, imageSize=[8])
    with pytest.raises(UserInputError, match="task"):
        clf.fit(_frame(spark, "test"))

"""``KerasImageClassifier`` (a Spark ML Estimator) and ``KerasImageClassifierModel`` (its Transformer).

Runs on: driver. The Estimator and Model are written once (:mod:`.estimator`); this module adds
the image Params (``imageSize``, ``channels``) and the :class:`~sparkdl_pipe.preprocess.spec.ImageSpec`
they make.

>>> from pyspark.ml import Pipeline
>>> from sparkdl_pipe.ml import KerasImageClassifier
>>> clf = KerasImageClassifier(inputCol="content", labelCol="label", imageSize=[8], channels=1,
...                            model="cnn", epochs=5, numProc=2)  # doctest: +SKIP
>>> model = Pipeline(stages=[clf]).fit(train_df)  # doctest: +SKIP
>>> model.write().overwrite().save("models/digits-pipeline")  # doctest: +SKIP
>>> PipelineModel.load("models/digits-pipeline").transform(new_df)  # doctest: +SKIP
"""

from __future__ import annotations

from pyspark import keyword_only

from sparkdl_pipe.errors import UserInputError
from sparkdl_pipe.ml.estimator import KerasEstimator, KerasModel
from sparkdl_pipe.ml.params import ImageParams


def image_spec(params: ImageParams):
    """The :class:`~sparkdl_pipe.preprocess.spec.ImageSpec` of an image Estimator's ``imageSize`` and ``channels``."""
    from sparkdl_pipe.preprocess.spec import ImageSpec

    size = params.getOrDefault(params.imageSize)
    if len(size) not in (1, 2):
        raise UserInputError("imageSize", "[n] or [height, width]", size)
    h, w = (size[0], size[0]) if len(size) == 1 else size
    return ImageSpec(h, w, params.getOrDefault(params.channels))


class KerasImageClassifierModel(KerasModel):
    """A trained image classifier as a Transformer (see :class:`~sparkdl_pipe.ml.estimator.KerasModel`).

    ``inputCol``: image file bytes (binary) or a path/URL (string).
    """

    @keyword_only
    def __init__(self, *, modelDir=None, inputCol=None, predictionCol=None, probabilityCol=None,
                 predictedLabelCol=None, rejectReasonCol=None, scoreBatchSize=None) -> None:
        super().__init__()
        self._init_results()
        self._set(**self._input_kwargs)  # type: ignore[attr-defined]


class KerasImageClassifier(KerasEstimator, ImageParams):
    """Trains a Keras image classifier with Horovod on Spark from a DataFrame of images and labels.

    ``fit(df)``: ``inputCol`` holds image file bytes (binary) or paths/URLs (string), ``labelCol``
    string or integer labels. The rows are decoded in the executors, split train/val/test by a
    stable hash, written as a Petastorm dataset under ``workDir`` and trained on ``numProc`` ranks;
    bad images are set aside with a reason (``fit``'s ``ingestResult`` counts them).
    """

    kind = "image"
    _model_class = KerasImageClassifierModel

    @keyword_only
    def __init__(self, *, inputCol=None, labelCol=None, pathCol=None, predictionCol=None,
                 probabilityCol=None, predictedLabelCol=None, rejectReasonCol=None, scoreBatchSize=None,
                 model=None, imageSize=None, channels=None, epochs=None, batchSize=None, learningRate=None,
                 numProc=None, seed=None, valFraction=None, testFraction=None, workDir=None, mlflow=None,
                 mlflowUri=None, task=None, loss=None, standardizeTarget=None) -> None:
        super().__init__()
        self._set(**self._input_kwargs)  # type: ignore[attr-defined]

    @keyword_only
    def setParams(self, *, inputCol=None, labelCol=None, pathCol=None, predictionCol=None,
                  probabilityCol=None, predictedLabelCol=None, rejectReasonCol=None, scoreBatchSize=None,
                  model=None, imageSize=None, channels=None, epochs=None, batchSize=None, learningRate=None,
                  numProc=None, seed=None, valFraction=None, testFraction=None, workDir=None, mlflow=None,
                  mlflowUri=None, task=None, loss=None, standardizeTarget=None):
        return self._set(**self._input_kwargs)  # type: ignore[attr-defined]

    def _spec(self):
        return image_spec(self)


class KerasImageRegressorModel(KerasImageClassifierModel):
    """A trained image regression model as a Transformer: adds ``predictionCol`` (a double, in the
    target's own units) and ``rejectReasonCol``."""


class KerasImageRegressor(KerasImageClassifier):
    """:class:`KerasImageClassifier` with ``task="regression"``: ``labelCol`` holds a numeric target
    (MSE by default, ``loss="huber"``, ``standardizeTarget``); the Model predicts a double, so
    ``RegressionEvaluator`` and the tuners work on it. Same Params otherwise."""

    _model_class = KerasImageRegressorModel

    @keyword_only
    def __init__(self, **kwargs) -> None:
        given = self._input_kwargs  # type: ignore[attr-defined]
        super().__init__()
        self._setDefault(task="regression")
        self._set(**given)

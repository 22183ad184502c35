"""``KerasTextClassifier`` (a Spark ML Estimator) and ``KerasTextClassifierModel`` (its Transformer).

Runs on: driver. The Estimator and Model are written once (:mod:`.estimator`); this module adds
the text Params (``maxLen``, ``vocabSize``, ``minCount``, ``lowercase``, ``invalidUtf8``) and the
:class:`~sparkdl_pipe.preprocess.spec.TextSpec` they make. The vocabulary is fitted on the train
split of the DataFrame and saved with the model, so ``transform`` tokenizes exactly as ``fit`` did.

>>> from pyspark.ml import Pipeline
>>> from sparkdl_pipe.ml import KerasTextClassifier
>>> clf = KerasTextClassifier(inputCol="review", labelCol="sentiment", maxLen=64, epochs=3,
...                           numProc=2)  # doctest: +SKIP
>>> model = Pipeline(stages=[clf]).fit(train_df)  # doctest: +SKIP
>>> model.write().overwrite().save("models/reviews-pipeline")  # doctest: +SKIP
>>> PipelineModel.load("models/reviews-pipeline").transform(new_df)  # doctest: +SKIP
"""

from __future__ import annotations

from pyspark import keyword_only

from sparkdl_pipe.ml.estimator import KerasEstimator, KerasModel
from sparkdl_pipe.ml.params import TextParams


class KerasTextClassifierModel(KerasModel):
    """A trained text classifier as a Transformer (see :class:`~sparkdl_pipe.ml.estimator.KerasModel`).

    ``inputCol``: the text (string, or UTF-8 bytes).
    """

    @keyword_only
    def __init__(self, *, modelDir=None, inputCol=None, predictionCol=None, probabilityCol=None,
                 predictedLabelCol=None, rejectReasonCol=None, scoreBatchSize=None) -> None:
        super().__init__()
        self._setDefault(inputCol="text")
        self._init_results()
        self._set(**self._input_kwargs)  # type: ignore[attr-defined]


class KerasTextClassifier(KerasEstimator, TextParams):
    """Trains a Keras text classifier with Horovod on Spark from a DataFrame of texts and labels.

    ``fit(df)``: ``inputCol`` holds the text (string, or UTF-8 bytes), ``labelCol`` string or
    integer labels. The texts are tokenized in the executors, split train/val/test by a stable hash
    (of ``pathCol`` when given, else of the text), the vocabulary is fitted on the train split,
    and ``numProc`` ranks train on the token ids; bad texts are set aside with a reason.
    ``model``: ``auto``, ``textcnn``, ``fasttext``, ``bilstm`` or ``module:function``. ``auto`` trains
    textcnn and fasttext with the same Params and keeps the one with the higher val accuracy (the
    same :func:`~sparkdl_pipe.driver.train.run_training` as ``train --model auto``; the choice is in
    ``modelInfo().card["selection"]`` and ``trainResult.selection``; a saved model holds the winner
    only); for regression, or ``valFraction=0``, ``auto`` is textcnn.
    """

    kind = "text"
    _model_class = KerasTextClassifierModel

    @keyword_only
    def __init__(self, *, inputCol=None, labelCol=None, pathCol=None, predictionCol=None,
                 probabilityCol=None, predictedLabelCol=None, rejectReasonCol=None, scoreBatchSize=None,
                 model=None, maxLen=None, vocabSize=None, minCount=None, lowercase=None, invalidUtf8=None,
                 epochs=None, batchSize=None, learningRate=None, numProc=None, seed=None, valFraction=None,
                 testFraction=None, workDir=None, mlflow=None, mlflowUri=None, task=None, loss=None,
                 standardizeTarget=None) -> None:
        super().__init__()
        self._setDefault(inputCol="text")
        self._set(**self._input_kwargs)  # type: ignore[attr-defined]

    @keyword_only
    def setParams(self, *, inputCol=None, labelCol=None, pathCol=None, predictionCol=None,
                  probabilityCol=None, predictedLabelCol=None, rejectReasonCol=None, scoreBatchSize=None,
                  model=None, maxLen=None, vocabSize=None, minCount=None, lowercase=None, invalidUtf8=None,
                  epochs=None, batchSize=None, learningRate=None, numProc=None, seed=None, valFraction=None,
                  testFraction=None, workDir=None, mlflow=None, mlflowUri=None, task=None, loss=None,
                  standardizeTarget=None):
        return self._set(**self._input_kwargs)  # type: ignore[attr-defined]

    def _spec(self):
        from sparkdl_pipe.preprocess.spec import TextSpec

        g = self.getOrDefault
        return TextSpec(max_len=g(self.maxLen), vocab_size=g(self.vocabSize), min_count=g(self.minCount),
                        lowercase=g(self.lowercase), invalid_utf8=g(self.invalidUtf8))


class KerasTextRegressorModel(KerasTextClassifierModel):
    """A trained text regression model as a Transformer: adds ``predictionCol`` (a double, in the
    target's own units) and ``rejectReasonCol``."""


class KerasTextRegressor(KerasTextClassifier):
    """:class:`KerasTextClassifier` with ``task="regression"``: ``labelCol`` holds a numeric target;
    the Model predicts a double. Same Params otherwise."""

    _model_class = KerasTextRegressorModel

    @keyword_only
    def __init__(self, **kwargs) -> None:
        given = self._input_kwargs  # type: ignore[attr-defined]
        super().__init__()
        self._setDefault(task="regression")
        self._set(**given)

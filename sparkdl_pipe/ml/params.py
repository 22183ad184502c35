"""Spark-style Params of the Estimators and their Models (Param + TypeConverters + setters): those
every kind of data shares, then each kind's preprocessing Params.

Runs on: driver.
"""

from __future__ import annotations

from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import HasInputCol, HasLabelCol, HasPredictionCol, HasProbabilityCol


class ScoringParams(HasInputCol, HasPredictionCol, HasProbabilityCol):
    """What ``transform`` reads and writes; shared by the Estimator (passed on) and the Model."""

    predictedLabelCol: Param[str] = Param(Params._dummy(), "predictedLabelCol",
                                          "output column: the predicted label's name",
                                          typeConverter=TypeConverters.toString)
    rejectReasonCol: Param[str] = Param(Params._dummy(), "rejectReasonCol",
                                        "output column: why a row could not be scored (null when scored)",
                                        typeConverter=TypeConverters.toString)
    scoreBatchSize: Param[int] = Param(Params._dummy(), "scoreBatchSize",
                                       "rows per Arrow batch and model call when transforming",
                                       typeConverter=TypeConverters.toInt)

    def __init__(self) -> None:
        super().__init__()
        self._setDefault(inputCol="image", predictionCol="prediction", probabilityCol="probability",
                         predictedLabelCol="predicted_label", rejectReasonCol="reject_reason",
                         scoreBatchSize=1024)

    def setInputCol(self, value: str):
        """Images: file bytes (binary) or a path/URL (string). Text: the text (string or UTF-8 bytes)."""
        return self._set(inputCol=value)

    def setPredictionCol(self, value: str):
        return self._set(predictionCol=value)

    def setProbabilityCol(self, value: str):
        """Output column: the predicted class's probability (a double)."""
        return self._set(probabilityCol=value)

    def setPredictedLabelCol(self, value: str):
        return self._set(predictedLabelCol=value)

    def getPredictedLabelCol(self) -> str:
        return self.getOrDefault(self.predictedLabelCol)

    def setRejectReasonCol(self, value: str):
        return self._set(rejectReasonCol=value)

    def getRejectReasonCol(self) -> str:
        return self.getOrDefault(self.rejectReasonCol)

    def setScoreBatchSize(self, value: int):
        return self._set(scoreBatchSize=value)

    def getScoreBatchSize(self) -> int:
        return self.getOrDefault(self.scoreBatchSize)


def _p(name: str, doc: str, conv) -> Param:
    return Param(Params._dummy(), name, doc, typeConverter=conv)


class TrainingParams(HasLabelCol):
    """What ``fit`` needs: the data columns, preprocessing, model and Horovod training settings."""

    pathCol = _p("pathCol", "optional column naming each record (split key, kept in the dataset); "
                 "default: the path (string input) or the content's hash", TypeConverters.toString)
    model = _p("model", "model builder: auto, mlp, cnn, textcnn, bilstm, fasttext or module:function", TypeConverters.toString)
    epochs = _p("epochs", "training epochs", TypeConverters.toInt)
    batchSize = _p("batchSize", "training batch size per rank", TypeConverters.toInt)
    learningRate = _p("learningRate", "learning rate per rank (scaled by the number of ranks)",
                      TypeConverters.toFloat)
    numProc = _p("numProc", "Horovod ranks; 0 = the session's task slots", TypeConverters.toInt)
    seed = _p("seed", "seed for the split and the weights", TypeConverters.toInt)
    valFraction = _p("valFraction", "fraction of rows for validation", TypeConverters.toFloat)
    testFraction = _p("testFraction", "fraction of rows for the test split", TypeConverters.toFloat)
    workDir = _p("workDir", "where fit writes the Petastorm dataset and the model (a path every node "
                 "sees); default: a new temporary directory (local masters only)", TypeConverters.toString)
    task = _p("task", "what is learnt: classification (labelCol: string or integer labels) or regression "
              "(labelCol: a numeric target)", TypeConverters.toString)
    loss = _p("loss", "regression loss: auto (mse), mse or huber", TypeConverters.toString)
    standardizeTarget = _p("standardizeTarget", "regression: train on the standardised target (undone in "
                           "the model's output)", TypeConverters.toBoolean)
    mlflow = _p("mlflow", "record the training run in MLflow", TypeConverters.toBoolean)
    mlflowUri = _p("mlflowUri", "MLflow tracking URI (default: <model dir>/mlruns)", TypeConverters.toString)

    def __init__(self) -> None:
        super().__init__()
        self._setDefault(labelCol="label", pathCol="", model="auto", epochs=5, batchSize=64, learningRate=1e-3, numProc=0, seed=42, valFraction=0.1,
                         testFraction=0.1, workDir="", mlflow=False, mlflowUri="", task="classification",
                         loss="auto", standardizeTarget=False)

    def setLabelCol(self, value: str):
        """String or integer labels."""
        return self._set(labelCol=value)

    def setPathCol(self, value: str):
        return self._set(pathCol=value)

    def setModel(self, value: str):
        return self._set(model=value)

    def setEpochs(self, value: int):
        return self._set(epochs=value)

    def setBatchSize(self, value: int):
        return self._set(batchSize=value)

    def setLearningRate(self, value: float):
        return self._set(learningRate=value)

    def setNumProc(self, value: int):
        return self._set(numProc=value)

    def setSeed(self, value: int):
        return self._set(seed=value)

    def setValFraction(self, value: float):
        return self._set(valFraction=value)

    def setTestFraction(self, value: float):
        return self._set(testFraction=value)

    def setWorkDir(self, value: str):
        return self._set(workDir=value)

    def setTask(self, value: str):
        return self._set(task=value)

    def setLoss(self, value: str):
        return self._set(loss=value)

    def setStandardizeTarget(self, value: bool):
        return self._set(standardizeTarget=value)

    def setMlflow(self, value: bool):
        return self._set(mlflow=value)

    def setMlflowUri(self, value: str):
        return self._set(mlflowUri=value)


class ImageParams(Params):
    """How images are decoded (the ``ingest-images`` options)."""

    imageSize = _p("imageSize", "[height, width] (or [n] for square) the images are resized to",
                   TypeConverters.toListInt)
    channels = _p("channels", "1 (grayscale) or 3 (RGB)", TypeConverters.toInt)

    def __init__(self) -> None:
        super().__init__()
        self._setDefault(imageSize=[28], channels=1)

    def setImageSize(self, value):
        return self._set(imageSize=[value] if isinstance(value, int) else list(value))

    def setChannels(self, value: int):
        return self._set(channels=value)


class TextParams(Params):
    """How text is tokenized (the ``ingest-text`` options)."""

    maxLen = _p("maxLen", "tokens per document after truncation/padding", TypeConverters.toInt)
    vocabSize = _p("vocabSize", "most frequent train tokens kept in the vocabulary", TypeConverters.toInt)
    minCount = _p("minCount", "minimum train count of a vocabulary token", TypeConverters.toInt)
    lowercase = _p("lowercase", "lower-case the text (str.casefold)", TypeConverters.toBoolean)
    invalidUtf8 = _p("invalidUtf8", "reject or replace bytes that are not valid UTF-8", TypeConverters.toString)

    def __init__(self) -> None:
        super().__init__()
        self._setDefault(maxLen=64, vocabSize=20000, minCount=2, lowercase=True, invalidUtf8="reject")

    def setMaxLen(self, value: int):
        return self._set(maxLen=value)

    def setVocabSize(self, value: int):
        return self._set(vocabSize=value)

    def setMinCount(self, value: int):
        return self._set(minCount=value)

    def setLowercase(self, value: bool):
        return self._set(lowercase=value)

    def setInvalidUtf8(self, value: str):
        return self._set(invalidUtf8=value)


class AutoencoderScoringParams(Params):
    """What an autoencoder Model writes: its output columns and the anomaly quantile."""

    anomalyQuantile = _p("anomalyQuantile", "is_anomaly: the reconstruction error is above this quantile "
                         "(0 < q < 1) of the validation errors recorded at fit", TypeConverters.toFloat)
    reconstructionErrorCol = _p("reconstructionErrorCol", "output column: the row's reconstruction error "
                                "(mean squared error of pixels in [0, 1]; a double)", TypeConverters.toString)
    isAnomalyCol = _p("isAnomalyCol", "output column: whether the reconstruction error is above the "
                      "anomalyQuantile threshold (a boolean)", TypeConverters.toString)
    embeddingCol = _p("embeddingCol", "output column: the bottleneck (an MLlib Vector)", TypeConverters.toString)

    def __init__(self) -> None:
        super().__init__()
        self._setDefault(anomalyQuantile=0.99, reconstructionErrorCol="reconstruction_error",
                         isAnomalyCol="is_anomaly", embeddingCol="embedding")

    def setAnomalyQuantile(self, value: float):
        return self._set(anomalyQuantile=value)

    def getAnomalyQuantile(self) -> float:
        return self.getOrDefault(self.anomalyQuantile)

    def setReconstructionErrorCol(self, value: str):
        return self._set(reconstructionErrorCol=value)

    def getReconstructionErrorCol(self) -> str:
        return self.getOrDefault(self.reconstructionErrorCol)

    def setIsAnomalyCol(self, value: str):
        return self._set(isAnomalyCol=value)

    def getIsAnomalyCol(self) -> str:
        return self.getOrDefault(self.isAnomalyCol)

    def setEmbeddingCol(self, value: str):
        return self._set(embeddingCol=value)

    def getEmbeddingCol(self) -> str:
        return self.getOrDefault(self.embeddingCol)


class AutoencoderParams(AutoencoderScoringParams):
    """An autoencoder Estimator's own Params: the bottleneck, and what its Model writes."""

    bottleneck = _p("bottleneck", "units of the linear bottleneck (the embedding)", TypeConverters.toInt)

    def __init__(self) -> None:
        super().__init__()
        self._setDefault(bottleneck=32)

    def setBottleneck(self, value: int):
        return self._set(bottleneck=value)

    def getBottleneck(self) -> int:
        return self.getOrDefault(self.bottleneck)

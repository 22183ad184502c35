"""``KerasImageAutoencoder`` (a Spark ML Estimator) and ``KerasImageAutoencoderModel`` (its Transformer):
anomaly scores and embeddings from unlabeled images.

Runs on: driver. The same Estimator and Model as the classifiers (:mod:`.estimator`), with the task
fixed to ``autoencoder`` (:mod:`sparkdl_pipe.tasks.autoencoder`): ``fit`` ingests an unlabeled
DataFrame exactly as ``ingest-images`` ingests a folder with no label folders, and trains
``conv_autoencoder`` on Horovod ranks as ``train --task autoencoder`` does; ``transform`` is the
batched scoring of ``score --anomaly-quantile``. Images only: no text autoencoder exists.

>>> from pyspark.ml.clustering import KMeans
>>> from sparkdl_pipe.ml import KerasImageAutoencoder
>>> ae = KerasImageAutoencoder(inputCol="content", imageSize=[28], bottleneck=16, epochs=10,
...                            anomalyQuantile=0.99, numProc=2)  # doctest: +SKIP
>>> model = ae.fit(photos)  # doctest: +SKIP
>>> scored = model.transform(new_photos)  # + reconstruction_error, is_anomaly, embedding  # doctest: +SKIP
>>> KMeans(k=5, featuresCol="embedding").fit(scored.filter("reject_reason IS NULL"))  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import replace

from pyspark import keyword_only

from sparkdl_pipe import model_card as mc
from sparkdl_pipe.errors import DatasetError, UserInputError
from sparkdl_pipe.ml.estimator import KerasEstimator, KerasModel
from sparkdl_pipe.ml.image import image_spec
from sparkdl_pipe.ml.params import AutoencoderParams, AutoencoderScoringParams, ImageParams

TASK = "autoencoder"


def _check_quantile(q: float) -> float:
    if not 0.0 < q < 1.0:
        raise UserInputError("anomalyQuantile", "a fraction strictly between 0 and 1 (e.g. 0.99)", q)
    return q


class KerasImageAutoencoderModel(KerasModel, AutoencoderScoringParams):
    """A trained image autoencoder as a Transformer: ``transform(df)`` keeps every input column and adds
    ``reconstructionErrorCol`` (a double: the row's mean squared error of pixels in [0, 1], the anomaly
    score), ``isAnomalyCol`` (a boolean: the error is above the ``anomalyQuantile`` of the validation
    errors recorded at fit, :meth:`anomalyThreshold`), ``embeddingCol`` (the bottleneck, an MLlib
    ``Vector``) and ``rejectReasonCol``. A row that cannot be used (an undecodable image, a missing
    file, a null) gets nulls in the three and its reason; the job never fails on it.

    ``inputCol``: image file bytes (binary) or a path/URL (string). ``anomalyQuantile`` may be changed
    after fit: the model card keeps the whole validation error histogram.
    """

    @keyword_only
    def __init__(self, *, modelDir=None, inputCol=None, rejectReasonCol=None, scoreBatchSize=None,
                 anomalyQuantile=None, reconstructionErrorCol=None, isAnomalyCol=None, embeddingCol=None) -> None:
        super().__init__()
        self._init_results()
        self._set(**self._input_kwargs)  # type: ignore[attr-defined]

    def anomalyThreshold(self) -> float:
        """The reconstruction error above which a row is an anomaly: the ``anomalyQuantile`` of the
        validation split's errors (from the model card's histogram, within 0.6%), as ``score
        --anomaly-quantile`` computes it."""
        return float(self._task_options(self.modelInfo())["anomaly_threshold"])

    def _task_options(self, info: mc.ModelInfo) -> dict:
        from sparkdl_pipe.tasks.autoencoder import anomaly_options

        if info.task != TASK:
            raise UserInputError(f"model {info.url}", "an autoencoder model (task autoencoder)", info.task,
                                 "Score it with KerasImageClassifierModel/KerasImageRegressorModel")
        return anomaly_options(info.card, _check_quantile(self.getAnomalyQuantile()))

    def _output_name(self, column: str) -> str:
        names = {"reconstruction_error": self.getReconstructionErrorCol(), "is_anomaly": self.getIsAnomalyCol(),
                 "embedding": self.getEmbeddingCol()}
        return names.get(column, column)

    def _transform(self, dataset):
        return self._transform_task(dataset, self.modelInfo())


class KerasImageAutoencoder(KerasEstimator, ImageParams, AutoencoderParams):
    """Trains a convolutional autoencoder with Horovod on Spark from a DataFrame of images, no labels needed.

    ``fit(df)``: ``inputCol`` holds image file bytes (binary) or paths/URLs (string); there is no label
    column (``labelCol``, empty by default, may name one: its labels are then required and kept in the
    dataset, as for a labelled folder, but not learnt). The rows are decoded in the executors, split
    train/val/test by a stable hash, written as an unlabeled Petastorm dataset (label -1, the manifest's
    task ``autoencoder``) under ``workDir``, and ``model`` (default ``conv_autoencoder``) learns to
    reconstruct them through a ``bottleneck`` of units on ``numProc`` ranks; bad images are set aside
    with a reason (``ingestResult`` counts them). The validation split's reconstruction errors, recorded
    in the model card, give the Model's anomaly threshold: ``valFraction`` must be above 0.
    """

    kind = "image"
    _model_class = KerasImageAutoencoderModel
    _tasks = (TASK,)

    @keyword_only
    def __init__(self, *, inputCol=None, labelCol=None, pathCol=None, rejectReasonCol=None, scoreBatchSize=None,
                 model=None, imageSize=None, channels=None, bottleneck=None, epochs=None, batchSize=None,
                 learningRate=None, numProc=None, seed=None, valFraction=None, testFraction=None, workDir=None,
                 mlflow=None, mlflowUri=None, anomalyQuantile=None, reconstructionErrorCol=None,
                 isAnomalyCol=None, embeddingCol=None) -> None:
        super().__init__()
        self._setDefault(task=TASK, labelCol="", model="conv_autoencoder")
        self._set(**self._input_kwargs)  # type: ignore[attr-defined]

    @keyword_only
    def setParams(self, *, inputCol=None, labelCol=None, pathCol=None, rejectReasonCol=None, scoreBatchSize=None,
                  model=None, imageSize=None, channels=None, bottleneck=None, epochs=None, batchSize=None,
                  learningRate=None, numProc=None, seed=None, valFraction=None, testFraction=None, workDir=None,
                  mlflow=None, mlflowUri=None, anomalyQuantile=None, reconstructionErrorCol=None,
                  isAnomalyCol=None, embeddingCol=None):
        return self._set(**self._input_kwargs)  # type: ignore[attr-defined]

    def _spec(self):
        return image_spec(self)

    def _label_col(self) -> str | None:
        return self.getLabelCol() or None

    def _configs(self, work: str):
        g = self.getOrDefault
        _check_quantile(g(self.anomalyQuantile))
        if not 1 <= g(self.bottleneck) <= 65536:
            raise UserInputError("bottleneck", "between 1 and 65536 units", g(self.bottleneck))
        if not g(self.valFraction) > 0:
            raise UserInputError("valFraction", "above 0: the anomaly threshold is a quantile of the "
                                 "validation split's reconstruction errors", g(self.valFraction))
        icfg, tcfg = super()._configs(work)
        return icfg, replace(tcfg, task=TASK, bottleneck=g(self.bottleneck))

    def _fit_alone(self, dataset):
        model = super()._fit_alone(dataset)
        try:
            model.anomalyThreshold()  # the validation errors are in the card: checked here, not at transform
        except DatasetError as e:
            raise DatasetError("fit: the validation split is empty, so the model has no anomaly threshold",
                               fix="Give more rows or a larger valFraction") from e
        return model

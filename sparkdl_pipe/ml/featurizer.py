"""``KerasFeaturizer``: a trained model's embedding as an MLlib ``Vector`` column, a plain Spark ML stage.

From a model directory (``sparkdl-pipe train``, or a fitted ``Keras*Classifier``), ``transform``
adds ``outputCol`` (a ``pyspark.ml.linalg`` dense vector: the output of the layer before the task's
head, or of ``layer``; an autoencoder's bottleneck) computed in batches in the executors with exactly the model's preprocessing,
so it plugs straight into ``VectorAssembler``, ``LogisticRegression``, ``KMeans`` or
``BucketedRandomProjectionLSH``: the Deep Learning Pipelines recipe of images -> features -> MLlib.
Rows that cannot be prepared get a null vector and their reason in ``rejectReasonCol``; filter them
out before an MLlib estimator (``SQLTransformer("SELECT * FROM __THIS__ WHERE reject_reason IS NULL")``).

Runs on: driver (the batch function is :func:`sparkdl_pipe.executor.score.append_embeddings`).

>>> feats = KerasFeaturizer(modelDir="models/fashion", inputCol="content")  # doctest: +SKIP
>>> Pipeline(stages=[feats, LogisticRegression(featuresCol="embedding")]).fit(digits)  # doctest: +SKIP
"""

from __future__ import annotations

from functools import partial

from pyspark import keyword_only
from pyspark.ml import Transformer
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import HasInputCol, HasOutputCol
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable

from sparkdl_pipe import model_card as mc
from sparkdl_pipe.errors import UserInputError
from sparkdl_pipe.ml.estimator import ModelDirReader, ModelDirWriter, as_vector, scoring_threads, source_kind


class KerasFeaturizer(Transformer, HasInputCol, HasOutputCol, DefaultParamsReadable, DefaultParamsWritable):
    """Adds a trained model's embedding of ``inputCol`` as an MLlib vector column ``outputCol``."""

    modelDir: Param[str] = Param(Params._dummy(), "modelDir", "the trained model's directory",
                                 typeConverter=TypeConverters.toString)
    layer: Param[str] = Param(Params._dummy(), "layer", "the layer whose output is the embedding "
                              "(empty: the input of the task's head)", typeConverter=TypeConverters.toString)
    rejectReasonCol: Param[str] = Param(Params._dummy(), "rejectReasonCol", "output column: why a row has no "
                                        "embedding (empty: no such column)", typeConverter=TypeConverters.toString)
    batchSize: Param[int] = Param(Params._dummy(), "batchSize", "rows per Arrow batch and model call",
                                  typeConverter=TypeConverters.toInt)

    @keyword_only
    def __init__(self, *, modelDir=None, inputCol=None, outputCol=None, layer=None, rejectReasonCol=None,
                 batchSize=None) -> None:
        super().__init__()
        self._setDefault(inputCol="image", outputCol="embedding", layer="", rejectReasonCol="reject_reason",
                         batchSize=1024)
        self._set(**self._input_kwargs)  # type: ignore[attr-defined]

    @keyword_only
    def setParams(self, *, modelDir=None, inputCol=None, outputCol=None, layer=None, rejectReasonCol=None,
                  batchSize=None):
        return self._set(**self._input_kwargs)  # type: ignore[attr-defined]

    def getModelDir(self) -> str:
        return self.getOrDefault(self.modelDir)

    def modelInfo(self) -> mc.ModelInfo:
        return mc.load_model_info(self.getModelDir())

    def _transform(self, dataset):
        from pyspark.sql.types import ArrayType, FloatType, StringType, StructField, StructType

        from sparkdl_pipe import modalities, tasks
        from sparkdl_pipe.executor.score import append_embeddings
        from sparkdl_pipe.model_fetch import fetch_model
        from sparkdl_pipe.safe_model import check_model_file

        if not self.isDefined(self.modelDir) or not self.getModelDir():
            raise UserInputError("modelDir", "a trained model's directory", None, "Set it with setModelDir")
        info = self.modelInfo()
        modality = modalities.get(info.kind)
        col, out, reason = self.getInputCol(), self.getOutputCol(), self.getOrDefault(self.rejectReasonCol)
        source = source_kind(dataset, col, modality)
        task = tasks.get(info.task)
        layer = self.getOrDefault(self.layer) or task.embedding_layer or ""  # an autoencoder: its bottleneck
        check_model_file(fetch_model(info.model_url, info.model_id), info.spec.shape,
                         task.output_size(info.labels, info.spec.shape), layer)
        new = [c for c in (out, reason) if c]
        if set(new) & set(dataset.columns) or len(set(new)) != len(new):
            raise UserInputError(f"output columns {new}", "new, distinct column names",
                                 sorted(set(new) & set(dataset.columns)), "Rename them with setOutputCol")
        fields = [*dataset.schema.fields, StructField(out, ArrayType(FloatType()))]
        if reason:
            fields.append(StructField(reason, StringType()))
        bs = self.getOrDefault(self.batchSize)
        threads = scoring_threads(dataset.sparkSession, bs)
        fn = partial(append_embeddings, input_col=col, source=source, model_path=info.model_url,
                     model_id=info.model_id, modality_ref=modality.ref, spec_dict=info.spec.to_dict(),
                     model_dir=info.url, card=info.card, batch_size=bs, layer=layer, out_col=out,
                     reason_col=reason or None, threads=threads)
        return as_vector(dataset.mapInPandas(fn, StructType(fields)), out)

    def write(self):
        return ModelDirWriter(self)

    @classmethod
    def read(cls):
        return ModelDirReader(cls)

"""The Spark ML Estimator and Model written once, for every kind of data: ``KerasEstimator`` and
``KerasModel``. Each kind's stages (:mod:`.image`, :mod:`.text`) only add its preprocessing Params
and the spec they make.

Runs on: driver. ``fit`` is the project's ingest + Horovod training over a DataFrame (the same code
as ``sparkdl-pipe ingest-*`` and ``train``); ``transform`` is the batched scoring function
(``mapInPandas``, the model loaded once per Python worker), adding columns to the input rows.

Persistence: parameters are saved as Spark ML's JSON metadata (no pickle); a fitted model also
stores its Keras file, model card, what its kind of data fitted (a vocabulary) and run report
under ``<path>/model``.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
import uuid
from functools import partial
from typing import TYPE_CHECKING

from pyspark.ml import Estimator, Model
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.util import (
    DefaultParamsReadable,
    DefaultParamsReader,
    DefaultParamsWritable,
    DefaultParamsWriter,
)

from sparkdl_pipe import model_card as mc
from sparkdl_pipe import storage
from sparkdl_pipe.errors import UserInputError
from sparkdl_pipe.ml.params import ScoringParams, TrainingParams

if TYPE_CHECKING:
    from sparkdl_pipe.driver.ingest import IngestResult
    from sparkdl_pipe.driver.train import TrainResult

log = logging.getLogger(__name__)

#: The tasks the Estimators fit (``task`` Param): the dataset's task comes from its labels or target.
ML_TASKS = ("classification", "regression")

#: Serialises fits in this driver process (see :meth:`KerasEstimator._fit`).
_FIT_LOCK = threading.Lock()

#: What a saved model directory keeps of the training output (checkpoints and logs stay behind),
#: with the files the card names for its kind of data (a text model's ``vocab.json``).
_MODEL_FILES = (mc.MODEL_FILE, mc.CARD_FILE, "report.md", "plots")
MODEL_SUBDIR = "model"


def _local_dir(path: str, what: str) -> str:
    url = storage.to_url(path)
    if not storage.is_local(url):
        raise UserInputError(what, "a local or shared-filesystem path", path)
    return storage.local_path(url)


def as_vector(df, name: str):
    """``df`` with its array column ``name`` turned into MLlib Vectors; a null array stays null
    (``array_to_vector`` alone fails on a null, the row of a record that could not be used)."""
    from pyspark.ml.functions import array_to_vector
    from pyspark.sql import functions as F

    return df.withColumn(name, F.when(F.col(name).isNull(), F.lit(None)).otherwise(array_to_vector(F.col(name))))


def scoring_threads(spark, batch_size: int) -> int:
    """Set Arrow batches of ``batch_size`` rows for a scoring ``mapInPandas`` and return the
    TensorFlow threads each Python worker may use (1 on a local master, else ``spark.task.cpus``)."""
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(batch_size))
    sc = spark.sparkContext
    return 1 if sc.master.startswith("local") else int(sc.getConf().get("spark.task.cpus", "1"))


def source_kind(df, col: str, modality) -> str:
    """What an input column holds for ``modality``: ``content`` (the record's bytes) or ``path``."""
    from pyspark.sql.types import BinaryType, StringType

    if col not in df.columns:
        raise UserInputError(f"input column {col!r} is not in the DataFrame", f"one of {df.columns}",
                             fix="Set it with setInputCol")
    t = df.schema[col].dataType
    if isinstance(t, BinaryType):
        return "content"
    if isinstance(t, StringType):
        return "path" if modality.table_reads == "path" else "content"
    raise UserInputError(f"input column {col!r}", "binary (file bytes) or string", t.simpleString())


class KerasEstimator(Estimator, ScoringParams, TrainingParams, DefaultParamsReadable, DefaultParamsWritable):
    """Trains a Keras model with Horovod on Spark from a DataFrame of records and labels.

    Fits run one at a time in a driver, whatever a tuner's ``parallelism``, each in its own work
    directory, so ``CrossValidator``/``TrainValidationSplit`` work as for any Spark estimator.

    ``fit(df)``: ``inputCol`` holds the records (see each kind), ``labelCol`` string or integer
    labels (``task`` classification) or a numeric target (``task`` regression: a row whose target
    is missing or not a finite number is a reject, ``missing_target``/``invalid_target``). The rows are prepared in the executors, split train/val/test by a stable hash, written
    as a Petastorm dataset under ``workDir`` and trained on ``numProc`` ranks; bad records are set
    aside with a reason (``fit``'s ``ingestResult`` counts them). Subclasses set ``kind`` and
    ``_model_class`` and make the spec (:meth:`_spec`).
    """

    kind = "image"
    _model_class: type = None  # type: ignore[assignment]
    #: The values the ``task`` Param may take for this Estimator.
    _tasks: tuple[str, ...] = ML_TASKS

    def _spec(self):
        raise NotImplementedError

    def _label_col(self) -> str | None:
        """The DataFrame's label (or target) column for ingest; None: an unlabeled DataFrame."""
        return self.getLabelCol()

    def _configs(self, work: str):
        from sparkdl_pipe.config import IngestConfig, SplitConfig, TrainConfig

        g = self.getOrDefault
        task = g(self.task)
        if task not in self._tasks:
            raise UserInputError("task", f"one of {list(self._tasks)}", task)
        ds, out = storage.join(work, "dataset"), storage.join(work, MODEL_SUBDIR)
        icfg = IngestConfig(input=f"dataframe:{self.uid}", output=ds, spec=self._spec(),
                            split=SplitConfig(g(self.valFraction), g(self.testFraction), g(self.seed)),
                            target_col=g(self.labelCol) if task == "regression" else None)
        tcfg = TrainConfig(ds, out, model=g(self.model), epochs=g(self.epochs), batch_size=g(self.batchSize),
                           learning_rate=g(self.learningRate), num_proc=g(self.numProc) or None, seed=g(self.seed),
                           loss=g(self.loss), standardize_target=g(self.standardizeTarget))
        return icfg, tcfg

    def _fit(self, dataset):
        """One fit at a time in this driver: ``CrossValidator(parallelism=N)`` and ``fitMultiple``
        threads would otherwise fight over the same task slots (Horovod needs all its ranks at once)."""
        if not _FIT_LOCK.acquire(blocking=False):
            log.info("another fit holds the task slots; this one waits for it (fits are serialised)")
            _FIT_LOCK.acquire()
        try:
            return self._fit_alone(dataset)
        finally:
            _FIT_LOCK.release()

    def _fit_alone(self, dataset):
        from sparkdl_pipe import modalities
        from sparkdl_pipe.driver.ingest import run_ingest_dataframe
        from sparkdl_pipe.driver.progress import StageProgress
        from sparkdl_pipe.driver.tracking import TrackingConfig
        from sparkdl_pipe.driver.train import run_training
        from sparkdl_pipe.models.registry import get_builder, resolve_model

        spark = dataset.sparkSession
        source_kind(dataset, self.getInputCol(), modalities.get(self.kind))
        get_builder(resolve_model(self.getOrDefault(self.model), self.kind))  # fails here, before any work
        base = self.getOrDefault(self.workDir)
        if not base:
            if not spark.sparkContext.master.startswith("local"):
                raise UserInputError("workDir", "a path every node sees (shared filesystem) on a cluster",
                                     None, "Set it with setWorkDir")
            base = tempfile.mkdtemp(prefix="sparkdl_pipe-fit-")
        work = storage.join(storage.to_url(_local_dir(base, "workDir")),
                            f"{self.uid}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}")
        icfg, tcfg = self._configs(work)
        with StageProgress(spark, "fit"):
            ing = run_ingest_dataframe(spark, dataset, icfg, self.getInputCol(), self._label_col(),
                                       self.getOrDefault(self.pathCol) or None)
        tracking = None
        if self.getOrDefault(self.mlflow) or self.getOrDefault(self.mlflowUri):
            tracking = TrackingConfig(self.getOrDefault(self.mlflowUri) or None)
        tr = run_training(spark, tcfg, tracking=tracking)
        model = self._model_class(modelDir=tcfg.output)
        self._copyValues(model)
        model.ingestResult, model.trainResult = ing, tr
        return model


class KerasModel(Model, ScoringParams, DefaultParamsReadable, DefaultParamsWritable):
    """A trained model as a Transformer: ``transform(df)`` keeps every input column and adds
    ``predictionCol`` (class index as a double, the Spark ML convention that evaluators expect),
    ``predictedLabelCol`` (its name), ``probabilityCol`` (every class's probability as an MLlib
    ``Vector``, Spark ML's convention) and ``rejectReasonCol`` (why a row could not be scored, else null).

    The preprocessing comes from the model card (and the files beside it), as in training.
    """

    modelDir: Param[str] = Param(Params._dummy(), "modelDir", "the trained model's directory (model.keras + "
                                 "model_card.json); set by fit and by load", typeConverter=TypeConverters.toString)

    def _init_results(self) -> None:
        #: The records of the fit that produced this model (None after load).
        self.ingestResult: IngestResult | None = None
        self.trainResult: TrainResult | None = None

    def getModelDir(self) -> str:
        return self.getOrDefault(self.modelDir)

    def modelInfo(self) -> mc.ModelInfo:
        """The model card of the Keras model this Transformer scores with."""
        return mc.load_model_info(self.getModelDir())

    def _transform(self, dataset):
        from pyspark.sql.types import ArrayType, DoubleType, StringType, StructField, StructType

        from sparkdl_pipe import modalities
        from sparkdl_pipe.executor.score import append_predictions

        info = self.modelInfo()
        if info.task != "classification":
            return self._transform_task(dataset, info)
        modality = modalities.get(info.kind)
        col = self.getInputCol()
        source = source_kind(dataset, col, modality)
        outs = {"prediction": self.getPredictionCol(), "label": self.getPredictedLabelCol(),
                "probability": self.getProbabilityCol(), "reason": self.getRejectReasonCol()}
        clash = sorted(set(outs.values()) & set(dataset.columns))
        if clash or len(set(outs.values())) != 4:
            raise UserInputError(f"output columns {sorted(outs.values())}", "new, distinct column names",
                                 clash or sorted(outs.values()), "Rename them with the set*Col setters")
        schema = StructType([*dataset.schema.fields,
                             StructField(outs["prediction"], DoubleType()),
                             StructField(outs["label"], StringType()),
                             StructField(outs["probability"], ArrayType(DoubleType())),
                             StructField(outs["reason"], StringType())])
        bs = self.getScoreBatchSize()
        threads = scoring_threads(dataset.sparkSession, bs)
        fn = partial(append_predictions, input_col=col, source=source, model_path=info.model_url,
                     model_id=info.model_id, modality_ref=modality.ref, spec_dict=info.spec.to_dict(),
                     model_dir=info.url, card=info.card, labels=info.labels, batch_size=bs, out_cols=outs,
                     threads=threads, task_name=info.task)
        return as_vector(dataset.mapInPandas(fn, schema), outs["probability"])

    def _task_options(self, info: mc.ModelInfo) -> dict:
        """The task's scoring options (:meth:`~sparkdl_pipe.tasks.base.Task.score_options`) this
        Model scores with; none by default."""
        return {}

    def _output_name(self, column: str) -> str:
        """The output column of the task's column ``column``: ``prediction`` is ``predictionCol``."""
        return self.getPredictionCol() if column == "prediction" else column

    def _transform_task(self, dataset, info):
        """Any other task: its :attr:`~sparkdl_pipe.tasks.base.Task.output_columns` and the columns
        its scoring options add (named by :meth:`_output_name`; arrays become MLlib Vectors) and
        ``rejectReasonCol``."""
        from pyspark.sql.pandas.types import from_arrow_type
        from pyspark.sql.types import ArrayType, StringType, StructField, StructType

        from sparkdl_pipe import modalities, tasks
        from sparkdl_pipe.executor.score import append_task_outputs

        modality, task = modalities.get(info.kind), tasks.get(info.task)
        col = self.getInputCol()
        source = source_kind(dataset, col, modality)
        options = self._task_options(info)
        arrow = task.prediction_schema(modality.key)
        types = {**{c: arrow.field(c).type for c in task.output_columns},
                 **{f.name: f.type for f in task.extra_prediction_fields(options)}}
        names = {c: self._output_name(c) for c in types}
        reason = self.getRejectReasonCol()
        new = [*names.values(), reason]
        clash = sorted(set(new) & set(dataset.columns))
        if clash or len(set(new)) != len(new):
            raise UserInputError(f"output columns {new}", "new, distinct column names", clash or new,
                                 "Rename the input's columns, or set the Model's output column Params")
        fields = [StructField(names[c], from_arrow_type(t)) for c, t in types.items()]
        schema = StructType([*dataset.schema.fields, *fields, StructField(reason, StringType())])
        bs = self.getScoreBatchSize()
        threads = scoring_threads(dataset.sparkSession, bs)
        fn = partial(append_task_outputs, input_col=col, source=source, model_path=info.model_url,
                     model_id=info.model_id, modality_ref=modality.ref, spec_dict=info.spec.to_dict(),
                     model_dir=info.url, card=info.card, labels=info.labels, batch_size=bs, out_cols=names,
                     reason_col=reason, threads=threads, task_name=info.task, task_options=options)
        out = dataset.mapInPandas(fn, schema)
        for f in fields:
            if isinstance(f.dataType, ArrayType):
                out = as_vector(out, f.name)
        return out

    def write(self):
        return ModelDirWriter(self)

    @classmethod
    def read(cls):
        return ModelDirReader(cls)


class ModelDirWriter(DefaultParamsWriter):
    """Spark ML metadata (params as JSON) plus the Keras model, card and report under ``<path>/model``."""

    def saveImpl(self, path: str) -> None:
        inst = self.instance
        src = storage.to_url(inst.getModelDir())  # type: ignore[attr-defined]
        dst = storage.join(storage.to_url(path), MODEL_SUBDIR)  # both any storage URL
        DefaultParamsWriter.saveMetadata(inst, path, self.sparkSession)
        card = mc.load_model_info(src).card
        for name in (*_MODEL_FILES, *[card[k] for k in ("vocabulary_file",) if k in card]):
            if storage.exists(storage.join(src, name)):
                storage.copy(storage.join(src, name), storage.join(dst, name))


class ModelDirReader(DefaultParamsReader):
    def load(self, path: str):
        inst = super().load(path)
        inst._set(modelDir=storage.join(storage.to_url(path), MODEL_SUBDIR))
        inst.modelInfo()  # check the card is there and readable
        return inst

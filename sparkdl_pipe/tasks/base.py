"""The seam between the pipelines and what is learnt: :class:`Task` (classification today).

A task owns what sits on top of a model builder's body and everything that reads its outputs: the
output layer (Keras applications' ``include_top``), the loss and metrics, the per-rank totals that
ranks sum with allreduce for exact validation/test figures, the stored label fields, the columns
scoring writes, and how a scored batch counts against true labels.

Runs on: driver and executors (TensorFlow imported inside the methods that build layers).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np


class Task:
    """What is learnt from a dataset. Subclass it and register it in :mod:`sparkdl_pipe.tasks`."""

    name: ClassVar[str]
    #: Compile arguments of the Keras model.
    loss: ClassVar[str]
    metrics: ClassVar[tuple[str, ...]]
    #: What the model's output is, for the model card.
    output_doc: ClassVar[str]
    #: The stored column a training batch's ``y`` comes from, and its dtype.
    label_column: ClassVar[str] = "label"
    label_dtype: ClassVar[str] = "int32"
    #: The columns of :meth:`prediction_columns` (their types in :meth:`prediction_schema`): what a
    #: Spark ML Model of this task adds to each row.
    output_columns: ClassVar[tuple[str, ...]] = ("prediction",)
    #: Keys of :meth:`summarize` reported per epoch as ``val_<key>`` (and ``test_<key>`` in the card).
    summary_keys: ClassVar[tuple[str, ...]] = ("loss", "accuracy")

    def plan_options(self, cfg, info) -> dict:
        """Driver: this task's options for the ranks from a TrainConfig and the dataset's
        :class:`~sparkdl_pipe.manifest.DatasetInfo`; refuses options the task does not take."""
        from sparkdl_pipe.errors import UserInputError

        if cfg.loss != "auto" or cfg.standardize_target:
            raise UserInputError(f"--loss {cfg.loss} / --standardize-target for a {self.name} dataset",
                                 "regression datasets (ingested with --target-col)")
        return {}

    def with_options(self, options: dict):
        """This task configured by the plan's ``task_options`` (a target's scale, a loss...)."""
        return self

    def compile_loss(self):
        """What ``model.compile(loss=...)`` gets."""
        return self.loss

    def scale_targets(self, y):
        """The training target for a stored ``y`` batch (a tensor); identity unless configured."""
        return y

    def scales_targets(self) -> bool:
        """True when :meth:`scale_targets` is not the identity (the input pipeline then maps it)."""
        return False

    def finalize_model(self, model) -> None:
        """Rank 0, on the served copy before it is saved: anything folded into the weights."""

    #: The kinds of data (manifest ``kind``) this task can learn from; None: every kind.
    kinds: ClassVar[tuple[str, ...] | None] = None
    #: The built-in model ``--model auto`` trains for this task (None: the kind's default).
    default_model: ClassVar[str | None] = None
    #: The layer scoring always reads an ``embedding`` column from (None: only with --embeddings).
    embedding_layer: ClassVar[str | None] = None

    def n_outputs(self, labels: list[str]) -> int:
        raise NotImplementedError

    def n_outputs_for(self, labels: list[str], cfg) -> int:
        """The head's size for a training run (``cfg``: its TrainConfig); by default :meth:`n_outputs`."""
        return self.n_outputs(labels)

    def output_size(self, labels: list[str], input_shape) -> int:
        """The last dimension of the trained model's output (checked against the model file)."""
        return self.n_outputs(labels)

    def model(self, body, n_outputs: int):
        """``body`` with this task's head on top, as one model of the body's name."""
        import tf_keras as keras

        return keras.Model(body.inputs, self.head(body.outputs[0], n_outputs), name=body.name)

    def train_target(self, x, y):
        """What the model learns to output for a training batch (tensors): the labels by default."""
        return y

    def eval_target(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """The target :meth:`eval_totals` compares the outputs with: the labels by default."""
        return y

    def final_extras(self, val: dict | None, test: dict | None) -> dict:
        """Fields of the model card's ``final`` record beyond loss/accuracy (from the last val/test summaries)."""
        return {}

    def report_samples(self, model, x: np.ndarray) -> dict | None:
        """Rank 0, after training: small arrays the run report draws (None: nothing to draw)."""
        return None

    def scored_columns(self, outputs: np.ndarray, ok: np.ndarray, labels: list[str], x: np.ndarray,
                       embedding: np.ndarray | None, options: dict) -> dict:
        """Columns of one scored batch, given also the model inputs ``x`` of the ``ok`` rows, the
        embedding and the job's task options (:meth:`score_options`); by default :meth:`prediction_columns`."""
        return self.prediction_columns(outputs, ok, labels)

    def score_options(self, card: dict, score_cfg) -> dict:
        """Task options for scoring, on the driver, from the model card and the ScoreConfig."""
        if getattr(score_cfg, "anomaly_quantile", None) is not None:
            from sparkdl_pipe.errors import UserInputError

            raise UserInputError("--anomaly-quantile", "an autoencoder model", f"a {self.name} model",
                                 "Anomaly scores come from reconstruction errors: train with --task autoencoder")
        return {}

    def extra_prediction_fields(self, options: dict) -> list:
        """Arrow fields scoring adds to :meth:`prediction_schema` for these task options."""
        return []

    def check_dataset(self, labels: list[str], where: str) -> None:
        """Refuse, on the driver, a dataset this task cannot learn from."""

    def head(self, features, n_outputs: int):
        """The output tensor put on top of a body's output tensor ``features``."""
        raise NotImplementedError

    def eval_totals(self, outputs: np.ndarray, y: np.ndarray, n_outputs: int) -> np.ndarray:
        """Sums over one batch that :meth:`summarize` turns into metrics (summed across ranks)."""
        raise NotImplementedError

    def eval_size(self, n_outputs: int) -> int:
        raise NotImplementedError

    def summarize(self, totals: np.ndarray, n_outputs: int) -> dict:
        raise NotImplementedError

    def prediction_schema(self, id_col: str):
        """Arrow schema of the predictions table scoring writes."""
        raise NotImplementedError

    def prediction_columns(self, outputs: np.ndarray, ok: np.ndarray, labels: list[str]) -> dict:
        """Columns of one scored batch (``outputs`` has one row per ``ok`` row)."""
        raise NotImplementedError

    # ---- stored labels and the truth scoring compares with ----------------------------------------
    #: A stored split's column holding the truth (read as ``true_label`` when a split is scored).
    truth_column: ClassVar[str] = "label_name"

    def label_fields_json(self) -> list[dict]:
        """The stored label fields, as the manifest's schema lists them."""
        raise NotImplementedError

    def label_arrow_fields(self) -> list:
        """(name, Arrow type) of the stored label fields, in the order :meth:`stored_labels` gives them."""
        raise NotImplementedError

    def stored_labels(self, label, label_name, target) -> tuple:
        """One accepted record's stored label values (ingest, executors)."""
        raise NotImplementedError

    def known_truth(self, value, labels: list[str]) -> str | None:
        """A scored row's true label as scoring keeps it, or None when it cannot be compared."""
        return value if value in labels else None

    def truth_columns(self, cols: dict, true: list) -> dict:
        """Columns scoring adds from the true labels (regression: ``target`` and ``error``)."""
        return {}

    def score_summary(self, predictions_url: str) -> dict:
        """Task metrics of a scoring job, from its written predictions (driver)."""
        return {}

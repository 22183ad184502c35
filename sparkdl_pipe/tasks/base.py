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

    def n_outputs(self, labels: list[str]) -> int:
        raise NotImplementedError

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

"""What is learnt, by name: each task one module behind :class:`~sparkdl_pipe.tasks.base.Task`.

Runs on: driver and executors.
"""

from __future__ import annotations

from sparkdl_pipe.errors import UserInputError
from sparkdl_pipe.tasks.autoencoder import TASK as AUTOENCODER
from sparkdl_pipe.tasks.base import Task
from sparkdl_pipe.tasks.classification import TASK as CLASSIFICATION
from sparkdl_pipe.tasks.regression import TASK as REGRESSION

__all__ = ["Task", "get", "names"]

_TASKS: dict[str, Task] = {"classification": CLASSIFICATION, "regression": REGRESSION,
                          "autoencoder": AUTOENCODER}


def get(name: str) -> Task:
    """The task called ``name`` (model cards and manifests written before tasks existed: classification)."""
    if name not in _TASKS:
        raise UserInputError("task", f"one of {sorted(_TASKS)}", name)
    return _TASKS[name]


def names() -> list[str]:
    """The registered tasks' names."""
    return sorted(_TASKS)

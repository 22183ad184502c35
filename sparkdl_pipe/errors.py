"""One exception family. Messages say what was expected, what was received and how to fix it.

Runs on: driver and executors.
"""

from __future__ import annotations


class SparkdlPipeError(Exception):
    """Base of every error this package raises on purpose. ``exit_code`` is what the CLI returns."""

    exit_code = 1


class UserInputError(SparkdlPipeError):
    """A mistake in what the user asked for (a flag, a path, a config value). CLI exit status 2."""

    exit_code = 2

    def __init__(self, what: str, expected: str | None = None, received: object = None,
                 fix: str | None = None) -> None:
        parts = [what]
        if expected is not None:
            parts.append(f"expected {expected}")
        if received is not None:
            parts.append(f"got {received!r}")
        msg = parts[0] if len(parts) == 1 else f"{parts[0]}: " + ", ".join(parts[1:])
        if fix:
            msg += f". {fix}"
        super().__init__(msg)


class DatasetError(UserInputError):
    """A dataset or model directory is missing, incomplete or does not match what is asked of it."""


class SparkSetupError(SparkdlPipeError):
    """The Spark session cannot do what is asked (too few task slots, a missing setting)."""

    exit_code = 2


class TrainingError(SparkdlPipeError):
    """Distributed training failed; the message names the rank where it is known."""

    exit_code = 1


class ClusterError(SparkdlPipeError):
    """A local standalone cluster (``sparkdl_pipe.cluster``) could not be started or stopped."""

    exit_code = 1


class RejectLimitError(SparkdlPipeError):
    """More input records were rejected than ``--max-rejects`` allows; nothing was published. Exit 3."""

    exit_code = 3

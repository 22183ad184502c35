"""Where a training run keeps checkpoints while it runs, and finding the one ``--resume`` continues.

A run writes checkpoints and heartbeats to a work directory beside its output,
``.NAME.train-work/`` (not inside the staging directory, which is removed when a job fails):
after a failed or killed run the checkpoints are still there for ``train --resume``. On success the
checkpoints move into the published model (``NAME/checkpoints/``) and the work directory goes.
``--resume`` continues from the work directory, or else from the published model's checkpoints
(to train a finished model for more epochs; with ``--overwrite``).

Like the output, the work directory is a URL (``file://``, ``hdfs://``, ``s3://``): rank 0 uploads
checkpoints to it and the ranks write their heartbeats to it through :mod:`sparkdl_pipe.storage`.

Runs on: driver.
"""

from __future__ import annotations

import logging

from sparkdl_pipe import storage
from sparkdl_pipe.errors import UserInputError
from sparkdl_pipe.executor.checkpoint import read_last

log = logging.getLogger(__name__)


def work_dir(output_url: str) -> str:
    """The work directory (a URL) of a training run writing to ``output_url``.

    >>> work_dir("file:///models/m")
    'file:///models/.m.train-work'
    """
    head, _, name = storage.to_url(output_url).rstrip("/").rpartition("/")
    return f"{head}/.{name}.train-work"


def prepare_checkpoints(output_url: str, resume: bool, about: dict, epochs: int) -> tuple[str, str, dict | None]:
    """(checkpoint URL, heartbeat URL, last checkpoint or None) for a new run.

    Without ``resume`` an old work directory is cleared (its checkpoints are not used). With it, the
    checkpoint must come from the same model, dataset and classes, and have fewer than ``epochs``.
    """
    wd = work_dir(output_url)
    ck, hb = storage.join(wd, "checkpoints"), storage.join(wd, "heartbeats")
    if not resume:
        if read_last(ck) is not None:
            log.warning("starting from scratch: the checkpoints in %s (a previous run) are discarded; "
                        "use --resume to continue them", ck)
        storage.remove(wd)
        return ck, hb, None
    published = storage.join(storage.to_url(output_url), "checkpoints")
    last = read_last(ck)
    if last is None and read_last(published) is not None:
        storage.remove(wd)
        storage.copy(published, ck)
        last = read_last(ck)
    if last is None:
        raise UserInputError("--resume: no checkpoint to continue", fix=f"None in {ck} or {published}; "
                             "run without --resume to start from scratch")
    for key, value in about.items():
        if key in last and last[key] != value:
            raise UserInputError(f"--resume: the checkpoint in {ck} was made with another {key}",
                                 repr(value), last[key], "Resume with the same --model and --dataset, or "
                                 "start from scratch without --resume")
    if int(last["epoch"]) >= epochs:
        raise UserInputError("--epochs", f"more than the {last['epoch']} epochs the checkpoint already has",
                             epochs)
    storage.remove(hb)
    return ck, hb, last

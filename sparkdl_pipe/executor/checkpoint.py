"""Training checkpoints (model weights, optimizer state, epoch) without pickle, and restoring them.

Rank 0 writes, after every epoch, ``epoch-NNN.weights.h5`` (Keras weights), ``epoch-NNN/ckpt.*``
(a ``tf.train.Checkpoint`` of the model and the optimizer: weights, Adam moments, step counter,
learning rate) and then ``last.json`` (last): the epoch, the history so far and what the checkpoint
belongs to. A job killed at any point leaves ``last.json`` naming a complete checkpoint.

The checkpoint directory is a URL (``file://``, ``hdfs://``, ``s3://``): rank 0 writes each
checkpoint into a local temporary directory on its own node, uploads it through pyarrow
(:func:`sparkdl_pipe.storage.upload`), writes ``last.json`` after the upload, and deletes the local
copy. On resume rank 0 downloads the one checkpoint ``last.json`` names, restores it and broadcasts
every model and optimizer variable to the other ranks, so only rank 0 needs to reach the URL.

Runs on: executors (Horovod ranks); :func:`read_last` also on the driver.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from sparkdl_pipe import storage

LAST = "last.json"


def read_last(ck_url: str) -> dict | None:
    """The contents of ``last.json`` under ``ck_url`` (a path or URL); None when there is no checkpoint."""
    u = storage.join(storage.to_url(ck_url), LAST)
    try:
        if not storage.exists(u):
            return None
        doc = storage.read_json(u)
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _optimizer_variables(opt) -> list:
    v = opt.variables
    return list(v() if callable(v) else v)


def build_optimizer_state(model) -> None:
    """Create the optimizer's variables (moments, step) now, so they can be restored and broadcast."""
    model.optimizer.build(model.trainable_variables)


def save_checkpoint(ck_url: str, model, epoch: int, history: list[dict], about: dict) -> None:
    """Write epoch ``epoch``'s checkpoint locally, upload it to ``ck_url``, then ``last.json`` (rank 0 only)."""
    import tensorflow as tf

    local = tempfile.mkdtemp(prefix="sparkdl_pipe-ckpt-")
    try:
        weights = f"epoch-{epoch:03d}.weights.h5"
        model.save_weights(os.path.join(local, weights))
        prefix = tf.train.Checkpoint(model=model, optimizer=model.optimizer).write(
            os.path.join(local, f"epoch-{epoch:03d}", "ckpt"))
        for name in (weights, f"epoch-{epoch:03d}"):
            storage.upload(os.path.join(local, name), storage.join(ck_url, name))
    finally:
        shutil.rmtree(local, ignore_errors=True)
    doc = {"epoch": epoch, "checkpoint": os.path.relpath(prefix, local), "history": history,
           "metrics": history[-1] if history else {}, **about}
    storage.write_json(storage.join(ck_url, LAST), doc)  # atomic on local filesystems, one PUT on S3


def restore_and_broadcast(ck_url: str | None, model, rank: int) -> dict | None:
    """Rank 0 downloads and restores the last checkpoint of ``ck_url``; every rank then gets rank 0's variables.

    Call on every rank, after ``model.compile``. Returns ``last.json`` (on every rank) or None.
    """
    import horovod.tensorflow as hvd_tf
    import tensorflow as tf

    build_optimizer_state(model)
    last = None
    if rank == 0 and ck_url:
        last = read_last(ck_url)
        if last is not None:
            local = tempfile.mkdtemp(prefix="sparkdl_pipe-resume-")
            try:
                ck_sub = os.path.dirname(last["checkpoint"])  # epoch-NNN
                storage.download(storage.join(ck_url, ck_sub), os.path.join(local, ck_sub))
                status = tf.train.Checkpoint(model=model, optimizer=model.optimizer).read(
                    os.path.join(local, last["checkpoint"]))
                status.assert_existing_objects_matched()
            finally:
                shutil.rmtree(local, ignore_errors=True)
    last = hvd_tf.broadcast_object(last, root_rank=0, name="resume_state")
    if last is not None:
        hvd_tf.broadcast_variables(model.variables + _optimizer_variables(model.optimizer), root_rank=0)
    return last

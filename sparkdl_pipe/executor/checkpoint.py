"""Training checkpoints (model weights, optimizer state, epoch) without pickle, and restoring them.

Rank 0 writes, after every epoch, ``epoch-NNN.weights.h5`` (Keras weights), ``epoch-NNN/ckpt.*``
(a ``tf.train.Checkpoint`` of the model and the optimizer: weights, Adam moments, step counter,
learning rate) and then ``last.json`` (atomically, last): the epoch, the history so far and what
the checkpoint belongs to. A job killed at any point leaves ``last.json`` naming a complete checkpoint.

On resume rank 0 restores the checkpoint and broadcasts every model and optimizer variable to the
other ranks, so only rank 0 needs to see the checkpoint directory.

Runs on: executors (Horovod ranks); :func:`read_last` also on the driver.
"""

from __future__ import annotations

import json
import os
import uuid

LAST = "last.json"


def read_last(ck_dir: str) -> dict | None:
    """The contents of ``last.json`` (None when there is no complete checkpoint)."""
    try:
        with open(os.path.join(ck_dir, LAST), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _optimizer_variables(opt) -> list:
    v = opt.variables
    return list(v() if callable(v) else v)


def build_optimizer_state(model) -> None:
    """Create the optimizer's variables (moments, step) now, so they can be restored and broadcast."""
    model.optimizer.build(model.trainable_variables)


def save_checkpoint(ck_dir: str, model, epoch: int, history: list[dict], about: dict) -> None:
    """Write epoch ``epoch``'s checkpoint, then point ``last.json`` at it (rank 0 only)."""
    import tensorflow as tf

    os.makedirs(ck_dir, exist_ok=True)
    model.save_weights(os.path.join(ck_dir, f"epoch-{epoch:03d}.weights.h5"))
    prefix = tf.train.Checkpoint(model=model, optimizer=model.optimizer).write(
        os.path.join(ck_dir, f"epoch-{epoch:03d}", "ckpt"))
    doc = {"epoch": epoch, "checkpoint": os.path.relpath(prefix, ck_dir), "history": history,
           "metrics": history[-1] if history else {}, **about}
    tmp = os.path.join(ck_dir, f".{LAST}.{uuid.uuid4().hex[:8]}")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(doc, f)
    os.replace(tmp, os.path.join(ck_dir, LAST))


def restore_and_broadcast(ck_dir: str | None, model, rank: int) -> dict | None:
    """Rank 0 restores the last checkpoint of ``ck_dir``; every rank then receives rank 0's variables.

    Call on every rank, after ``model.compile``. Returns ``last.json`` (on every rank) or None.
    """
    import horovod.tensorflow as hvd_tf
    import tensorflow as tf

    build_optimizer_state(model)
    last = None
    if rank == 0 and ck_dir:
        last = read_last(ck_dir)
        if last is not None:
            status = tf.train.Checkpoint(model=model, optimizer=model.optimizer).read(
                os.path.join(ck_dir, last["checkpoint"]))
            status.assert_existing_objects_matched()
    last = hvd_tf.broadcast_object(last, root_rank=0, name="resume_state")
    if last is not None:
        hvd_tf.broadcast_variables(model.variables + _optimizer_variables(model.optimizer), root_rank=0)
    return last

"""The Keras callbacks of a rank's training loop: warm-up and cross-rank averaging, progress, TensorBoard.

Runs on: executors, inside a Horovod rank. Imported only by
:func:`sparkdl_pipe.executor.train_worker.train_rank` after TensorFlow is set up, so unlike the
other executor modules it imports tf_keras at module level. The progress wire format lives in
:mod:`sparkdl_pipe.executor.callbacks` (the driver reads it too).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import tf_keras as keras

from sparkdl_pipe.executor.callbacks import ProgressSink, write_scalars
from sparkdl_pipe.executor.plan import RankPlan


class WarmupAndAverage(keras.callbacks.Callback):
    """LR warm-up from base to base*size (Goyal et al.), metric averaging across ranks, and the
    exact validation of every epoch; rank 0 checkpoints. ``history`` gets one record per epoch.

    ``allreduce_sum`` sums an array over the ranks; ``eval_split`` evaluates a split on every rank
    (it allreduces, so every rank must call it); ``heartbeat`` marks progress for the watchdog.
    """

    def __init__(self, plan: RankPlan, rank: int, size: int, allreduce_sum: Callable, eval_split: Callable,
                 heartbeat=None, resumed: dict | None = None, save_checkpoint: Callable | None = None) -> None:
        super().__init__()
        self.plan, self.rank, self.size = plan, rank, size
        self.allreduce_sum, self.eval_split, self.hb = allreduce_sum, eval_split, heartbeat
        self.save_checkpoint = save_checkpoint
        self.history: list[dict] = list(resumed["history"]) if resumed else []
        self.t0 = time.time()
        self.epoch = 0
        self.last_val: dict | None = None  # the task's full summary of the last validation
        from sparkdl_pipe import tasks

        task = tasks.get(plan.task)
        self.train_keys = ("loss", *task.metrics)
        self.val_keys = task.summary_keys

    def on_train_batch_end(self, batch, logs=None):
        if self.hb is not None:
            self.hb.progress(self.epoch + 1)

    def on_train_batch_begin(self, batch, logs=None):
        p = self.plan
        warm = p.warmup_epochs * p.steps_per_epoch
        done = self.epoch * p.steps_per_epoch + batch + 1
        if warm and done <= warm and self.size > 1:
            lr = p.learning_rate * (1 + (self.size - 1) * done / warm)
            self.model.optimizer.learning_rate.assign(lr)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self.t0 = time.time()

    def on_epoch_end(self, epoch, logs=None):
        p = self.plan
        logs = logs if logs is not None else {}
        keys = sorted(k for k in self.train_keys if k in logs)
        avg = self.allreduce_sum(np.array([logs[k] for k in keys], dtype=np.float64)) / self.size
        for k, v in zip(keys, avg, strict=False):
            logs[k] = float(v)
        secs = time.time() - self.t0
        if p.val.url:  # every rank takes this branch or none does
            val = self.last_val = self.eval_split(p.val)
            for k in self.val_keys:
                logs[f"val_{k}"] = val[k]
            keys += [f"val_{k}" for k in self.val_keys]
        rec = {"epoch": epoch + 1, **{k: float(logs[k]) if logs[k] is not None else None for k in keys},
               "samples_per_s": p.steps_per_epoch * p.batch_size * self.size / max(secs, 1e-9), "seconds": secs,
               "learning_rate": float(keras.backend.get_value(self.model.optimizer.learning_rate))}
        self.history.append(rec)
        if self.rank == 0:
            left = (p.epochs - epoch - 1) * secs
            metrics = " ".join(f"{k} {rec[k]:.4f}" for k in keys if rec[k] is not None)
            print(f"[rank 0] epoch {epoch + 1}/{p.epochs} {metrics} {rec['samples_per_s']:.0f} samples/s, "
                  f"~{left:.0f}s left", flush=True)
            if p.checkpoint_dir and self.save_checkpoint is not None:
                self.save_checkpoint(p.checkpoint_dir, self.model, epoch + 1, self.history, p.checkpoint_about)


class Progress(keras.callbacks.Callback):
    """Rank 0: one progress record per epoch to the driver (:class:`ProgressSink`)."""

    def __init__(self, plan: RankPlan, size: int, history: list[dict]) -> None:
        super().__init__()
        self.plan, self.size, self.history = plan, size, history
        self.t0 = time.time()
        self.sink: ProgressSink | None = None

    def on_train_begin(self, logs=None):
        if self.sink is not None:  # a second fit of the same run (fine-tuning after a frozen phase)
            return
        self.t0 = time.time()
        addr = self.plan.progress_address  # "host:port" of the driver's ProgressServer
        host, _, port = addr.rpartition(":") if addr else ("", "", "")
        self.sink = ProgressSink((host, int(port)) if addr else None)
        self.sink.send({"event": "start", "ranks": self.size, "epochs": self.plan.epochs,
                        "steps_per_epoch": self.plan.steps_per_epoch, "batch_size": self.plan.batch_size})

    def on_train_end(self, logs=None):
        if self.sink is not None and (not self.history or self.history[-1]["epoch"] >= self.plan.epochs):
            self.sink.close()

    def on_epoch_end(self, epoch, logs=None):
        if not self.history or self.sink is None:
            return
        elapsed = time.time() - self.t0
        done, epochs = epoch + 1, self.plan.epochs
        self.sink.send({"event": "epoch", "epochs": epochs, **self.history[-1], "elapsed_s": elapsed,
                        "eta_s": elapsed / done * (epochs - done)})


class TensorBoardScalars(keras.callbacks.Callback):
    """Rank 0: each epoch's cross-rank record as TensorBoard scalars in ``log_dir``."""

    def __init__(self, log_dir: str, history: list[dict], epochs: int = 0) -> None:
        super().__init__()
        self.log_dir, self.history, self.plan_epochs = log_dir, history, epochs
        self.writer = None

    def on_train_begin(self, logs=None):
        import tensorflow as tf

        if self.writer is None:  # one writer over the fits of a run
            self.writer = tf.summary.create_file_writer(self.log_dir)

    def on_epoch_end(self, epoch, logs=None):
        if self.history and self.writer is not None:
            write_scalars(self.writer, self.history[-1], step=epoch + 1)

    def on_train_end(self, logs=None):
        if self.writer is not None and (not self.history or self.history[-1]["epoch"] >= self.plan_epochs):
            self.writer.close()


def make_rank_callbacks(plan: RankPlan, rank: int, size: int, history: list[dict],
                        tensorboard_dir: str | None) -> list:
    """Rank 0's progress and TensorBoard callbacks (an empty list on other ranks).

    ``history`` is the list the averaging callback appends each epoch's cross-rank record to; these
    callbacks must come after it in the callback list, and read ``history[-1]``.
    """
    if rank != 0:
        return []
    callbacks: list = [Progress(plan, size, history)]
    if tensorboard_dir:
        callbacks.append(TensorBoardScalars(tensorboard_dir, history, plan.epochs))
    return callbacks

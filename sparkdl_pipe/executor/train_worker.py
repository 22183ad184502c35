"""The Horovod worker: the training loop that runs once per rank inside a Spark task.

Runs on: executors, started by ``horovod.spark.run`` from :mod:`sparkdl_pipe.driver.train`.
Receives one frozen :class:`~sparkdl_pipe.executor.plan.RankPlan` (plain values, no SparkSession)
and returns a plain dict. TensorFlow and Horovod are imported inside :func:`train_rank`. What is
learnt (head, loss, metrics, evaluation totals) is the plan's task; what the data is, its kind.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import tempfile
import time
from typing import Any

import numpy as np

from sparkdl_pipe.executor.plan import RankPlan, SplitPlan


def horovod_loop() -> dict:
    """How this rank's Horovod background loop cycles, from the environment its launcher gave it."""
    from sparkdl_pipe._env import HOROVOD_WAKE_ENV

    cycle = os.environ.get("HOROVOD_CYCLE_TIME")
    return {"wake_on_enqueue": os.environ.get(HOROVOD_WAKE_ENV) == "1",
            "cycle_time_ms": float(cycle) if cycle else None}


def weights_digest(weights: list[np.ndarray]) -> str:
    """A hash of a model's weights: equal on every rank when data-parallel training is in sync."""
    h = hashlib.sha256()
    for w in weights:
        h.update(np.ascontiguousarray(w).tobytes())
    return h.hexdigest()[:16]


def evaluate_shard(model, url: str, shape: tuple[int, ...], shard: int | None, shard_count: int | None,
                   num_classes: int, kind: Any = "image", progress=None, task_name: Any = "classification") -> np.ndarray:
    """The task's evaluation totals (classification: [loss sum, correct, rows] and a flattened
    confusion matrix) over this rank's shard of a split. ``task_name``: a task's name, or the
    configured Task object itself."""
    from sparkdl_pipe import tasks
    from sparkdl_pipe.executor.data import read_split
    from sparkdl_pipe.executor.score import predict_arrays

    task = tasks.get(task_name) if isinstance(task_name, str) else task_name
    totals = np.zeros(task.eval_size(num_classes), dtype=np.float64)
    for x, y in read_split(url, shape, shard=shard, shard_count=shard_count, kind=kind,
                           label_col=task.label_column, label_dtype=task.label_dtype):
        totals += task.eval_totals(predict_arrays(model, x, 1024), task.eval_target(x, y), num_classes)
        if progress is not None:
            progress()
    return totals


def train_rank(plan: RankPlan) -> dict:
    """Train on this rank's shard; rank 0 checkpoints every epoch and saves the final model.

    Every rank runs exactly ``plan.steps_per_epoch`` steps per epoch from a looping reader, so no
    rank can run out of data and leave the others waiting in allreduce.

    Rank 0 writes the model and TensorBoard files into a local temporary directory on its own node
    and uploads them to ``plan.model_url`` / ``plan.tensorboard_url`` (any URL pyarrow reads,
    ``file://`` included: one code path) when training ends; checkpoints go up after every epoch.
    """
    local = tempfile.mkdtemp(prefix="sparkdl_pipe-rank-")
    try:
        return _train_rank(plan, local)
    finally:
        shutil.rmtree(local, ignore_errors=True)


def _set_threads(threads: int) -> None:
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(max(1, threads))


def plan_task(plan: RankPlan):
    """The plan's task, configured with its options."""
    from sparkdl_pipe import tasks

    return tasks.get(plan.task).with_options(plan.task_options)


def _build_compiled(plan: RankPlan, size: int):
    """The model (the task's head on the builder's body, or on a parent model's body with
    ``init_from``), compiled with Horovod's optimizer; the body frozen when the plan freezes it."""
    from sparkdl_pipe.models.registry import build_model

    task = plan_task(plan)
    if plan.init_from:
        from sparkdl_pipe.models.finetune import load_parent_body

        model = load_parent_body(plan.init_from, str(plan.init_id), plan.init_layer, task, plan.n_outputs)
    else:
        model = build_model(plan.model, plan.shape, task, plan.n_outputs, plan.builder_kwargs)
    if plan.init_from and plan.freeze_epochs > 0:
        set_body_trainable(model, False)
    compile_model(model, task, plan.learning_rate * size)
    return model


def set_body_trainable(model, trainable: bool) -> None:
    """Freeze (or unfreeze) every layer below the head (the last layer)."""
    for layer in model.layers[:-1]:
        layer.trainable = trainable


def compile_model(model, task, learning_rate: float) -> None:
    """Compile with a fresh Horovod-wrapped Adam (again after unfreezing: Keras reads ``trainable`` at compile)."""
    import horovod.tensorflow.keras as hvd
    import tf_keras as keras

    opt = hvd.DistributedOptimizer(keras.optimizers.Adam(learning_rate=learning_rate))
    model.compile(optimizer=opt, loss=task.compile_loss(), metrics=list(task.metrics))


def _train_input(plan: RankPlan, rank: int, size: int, modality):
    """This rank's looping, shuffled input: its shard cached in memory, or streamed from Petastorm."""
    from sparkdl_pipe import tasks
    from sparkdl_pipe.executor.data import make_cached_train_dataset, make_train_dataset

    task = plan_task(plan)
    labels = {"label_col": task.label_column, "label_dtype": task.label_dtype}
    if plan.cache_shard:
        ds, cached_rows = make_cached_train_dataset(plan.train_url, plan.shape, plan.batch_size, shard=rank,
                                                    shard_count=size, seed=plan.seed, kind=modality, **labels)
        note = f"shard of {cached_rows} rows cached in memory"
    else:
        ds = make_train_dataset(plan.train_url, plan.shape, plan.batch_size, shard=rank, shard_count=size,
                                seed=plan.seed, buffer=plan.shuffle_buffer, kind=modality, **labels)
        note = "streamed from Petastorm every epoch"
    if rank == 0:
        print(f"[rank 0] input: {note}", flush=True)
    if task.scales_targets():
        ds = ds.map(lambda x, y: (x, task.scale_targets(y)))
    if type(task).train_target is not tasks.Task.train_target:
        ds = ds.map(lambda x, y: (x, task.train_target(x, y)))  # e.g. an autoencoder learns its input
    return ds


def _report_samples(task, model, plan: RankPlan, modality) -> dict | None:
    """Rank 0: the task's small arrays for the run report, from the first rows of val (else test, train)."""
    from sparkdl_pipe.executor.data import read_split
    from sparkdl_pipe.tasks import Task

    if type(task).report_samples is Task.report_samples:  # nothing to draw: read nothing
        return None
    url = plan.val.url or plan.test.url or plan.train_url
    for x, _ in read_split(url, plan.shape, kind=modality):
        if len(x):
            return task.report_samples(model, x)
    return None


def _save_model(model, local: str, plan: RankPlan, model_url: str, tb_local: str | None) -> dict:
    """Rank 0: save an uncompiled copy (the Horovod-wrapped optimizer is not part of the served
    model), hash it, and upload it and the TensorBoard files."""
    import tf_keras as keras

    from sparkdl_pipe import storage
    from sparkdl_pipe.model_card import file_sha256

    clean = keras.models.clone_model(model)
    clean.set_weights(model.get_weights())
    plan_task(plan).finalize_model(clean)  # e.g. a regression's target scale folded into its output layer
    path = os.path.join(local, "model.keras")
    clean.save(path)
    out = {"sha256": file_sha256(path), "bytes": os.path.getsize(path)}
    storage.upload(path, model_url)
    if tb_local and plan.tensorboard_url and os.path.isdir(tb_local):
        storage.upload(tb_local, plan.tensorboard_url)
    return out


def _train_rank(plan: RankPlan, local: str) -> dict:
    # Unpickling this function imported sparkdl_pipe, whose _env set TF_USE_LEGACY_KERAS already.
    from sparkdl_pipe.executor.devices import pin_task_gpu

    devices = pin_task_gpu()  # the GPU Spark gave this rank's task, before TensorFlow is imported
    _set_threads(plan.threads)
    import horovod.tensorflow as hvd_tf
    import horovod.tensorflow.keras as hvd
    import tensorflow as tf
    import tf_keras as keras

    from sparkdl_pipe.executor.checkpoint import restore_and_broadcast, save_checkpoint
    from sparkdl_pipe.executor.heartbeat import Heartbeat
    from sparkdl_pipe.executor.keras_callbacks import WarmupAndAverage, make_rank_callbacks
    from sparkdl_pipe.modalities import resolve

    hvd.init()
    rank, size = hvd.rank(), hvd.size()
    hb = Heartbeat(plan.heartbeat_dir, rank).start() if plan.heartbeat_dir else None
    t_start = time.time()
    keras.utils.set_random_seed(plan.seed + rank)
    if rank == 0:
        print(f"[rank 0] {size} ranks x {plan.steps_per_epoch} steps/epoch x batch {plan.batch_size} (equal on "
              f"every rank), {plan.threads} thread(s) per rank", flush=True)
    model = _build_compiled(plan, size)
    # --resume: rank 0 restores weights + optimizer state + epoch, every rank gets them by broadcast
    resumed = restore_and_broadcast(plan.resume_from, model, rank)
    first_epoch = int(resumed["epoch"]) if resumed else 0
    if rank == 0 and resumed:
        print(f"[rank 0] resumed from the checkpoint of epoch {first_epoch}", flush=True)
    modality = resolve(plan.modality_ref)
    ds = _train_input(plan, rank, size, modality)
    task = plan_task(plan)

    def allreduce_sum(arr: np.ndarray) -> np.ndarray:
        return np.asarray(hvd_tf.allreduce(tf.constant(arr, dtype=tf.float64), op=hvd_tf.Sum, name=None))

    def eval_split(split: SplitPlan) -> dict:
        totals = np.zeros(task.eval_size(plan.n_outputs))
        if split.url and rank < split.shards:
            sharded = split.shards > 1
            totals = evaluate_shard(model, split.url, plan.shape, rank if sharded else None,
                                    split.shards if sharded else None, plan.n_outputs, modality,
                                    hb.progress if hb else None, task)
        tot = allreduce_sum(totals)
        out = task.summarize(tot, plan.n_outputs)
        if out["rows"] != split.rows:  # every rank sees the same sum, so all raise together
            raise RuntimeError(f"evaluation read {out['rows']} rows of {split.url}, the manifest says {split.rows}")
        return out

    cb = WarmupAndAverage(plan, rank, size, allreduce_sum, eval_split, hb, resumed, save_checkpoint)
    tb_local = os.path.join(local, "tensorboard") if plan.tensorboard_url else None
    callbacks = [hvd.callbacks.BroadcastGlobalVariablesCallback(0), cb,
                 *make_rank_callbacks(plan, rank, size, cb.history, tb_local)]  # rank 0: progress + TensorBoard
    frozen_until = min(plan.freeze_epochs, plan.epochs)
    if first_epoch < frozen_until:  # fine-tuning: the head alone first, on every rank
        model.fit(ds, epochs=frozen_until, initial_epoch=first_epoch, steps_per_epoch=plan.steps_per_epoch,
                  callbacks=callbacks, verbose=0)
        first_epoch = frozen_until
    if plan.freeze_epochs > 0 and first_epoch < plan.epochs:
        set_body_trainable(model, True)  # then everything: recompiled on every rank, a fresh optimizer
        compile_model(model, task, plan.learning_rate * size)
        if rank == 0:
            print(f"[rank 0] body unfrozen after epoch {first_epoch}", flush=True)
    if first_epoch < plan.epochs:
        model.fit(ds, epochs=plan.epochs, initial_epoch=first_epoch, steps_per_epoch=plan.steps_per_epoch,
                  callbacks=callbacks, verbose=0)

    test = eval_split(plan.test) if plan.test.url else None
    samples = _report_samples(task, model, plan, modality) if rank == 0 else None
    digest = weights_digest(model.get_weights())
    model_file = _save_model(model, local, plan, plan.model_url, tb_local) if rank == 0 and plan.model_url else {}
    if hb is not None:
        hb.stop()
    return {"rank": rank, "size": size, "history": cb.history, "test": test, "val": cb.last_val, "samples": samples,
            "weights_digest": digest, "model_file": model_file, "steps_per_epoch": plan.steps_per_epoch,
            "seconds": time.time() - t_start, "devices": devices.with_tf_gpus().to_dict(),
            "horovod_loop": horovod_loop(), "host": socket.gethostname()}

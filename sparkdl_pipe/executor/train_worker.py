"""The Horovod worker: the training loop that runs once per rank inside a Spark task.

Runs on: executors, started by ``horovod.spark.run`` from :mod:`sparkdl_pipe.driver.train`.
Receives one plain dict of parameters (no SparkSession, no objects that need pickling care) and
returns a plain dict. TensorFlow and Horovod are imported inside :func:`train_rank`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import tempfile
import time

import numpy as np


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
                   num_classes: int, kind: str = "image", progress=None) -> np.ndarray:
    """[loss sum, correct, rows] and a flattened confusion matrix over this rank's shard of a split."""
    from sparkdl_pipe.executor.data import read_split
    from sparkdl_pipe.executor.score import predict_arrays

    totals = np.zeros(3 + num_classes * num_classes, dtype=np.float64)
    for x, y in read_split(url, shape, shard=shard, shard_count=shard_count, kind=kind):
        p = predict_arrays(model, x, 1024)
        pred = p.argmax(axis=1)
        totals[0] += float(-np.log(np.clip(p[np.arange(len(y)), y], 1e-7, 1.0)).sum())
        totals[1] += float((pred == y).sum())
        totals[2] += len(y)
        np.add.at(totals[3:], y * num_classes + pred, 1)
        if progress is not None:
            progress()
    return totals


def train_rank(p: dict) -> dict:
    """Train on this rank's shard; rank 0 checkpoints every epoch and saves the final model.

    Every rank runs exactly ``p["steps_per_epoch"]`` steps per epoch from a looping reader, so no
    rank can run out of data and leave the others waiting in allreduce.

    Rank 0 writes the model and TensorBoard files into a local temporary directory on its own node
    and uploads them to ``p["model_url"]`` / ``p["tensorboard_url"]`` (any URL pyarrow reads,
    ``file://`` included: one code path) when training ends; checkpoints go up after every epoch.
    """
    local = tempfile.mkdtemp(prefix="sparkdl_pipe-rank-")
    try:
        return _train_rank(p, local)
    finally:
        shutil.rmtree(local, ignore_errors=True)


def _train_rank(p: dict, local: str) -> dict:
    # Unpickling this function imported sparkdl_pipe, whose _env set TF_USE_LEGACY_KERAS already.
    from sparkdl_pipe.executor.devices import pin_task_gpu

    devices = pin_task_gpu()  # the GPU Spark gave this rank's task, before TensorFlow is imported
    import tensorflow as tf

    threads = int(p["threads"])
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(max(1, threads))
    import horovod.tensorflow as hvd_tf
    import horovod.tensorflow.keras as hvd
    import tf_keras as keras

    from sparkdl_pipe.executor.checkpoint import restore_and_broadcast, save_checkpoint
    from sparkdl_pipe.executor.data import make_cached_train_dataset, make_train_dataset
    from sparkdl_pipe.executor.heartbeat import Heartbeat
    from sparkdl_pipe.models.registry import get_builder

    hvd.init()
    rank, size = hvd.rank(), hvd.size()
    hb = Heartbeat(p["heartbeat_dir"], rank).start() if p.get("heartbeat_dir") else None
    t_start = time.time()
    seed = int(p["seed"])
    keras.utils.set_random_seed(seed + rank)
    shape = tuple(p["shape"])
    n_cls = int(p["num_classes"])
    steps = int(p["steps_per_epoch"])
    bs = int(p["batch_size"])
    if rank == 0:
        print(f"[rank 0] {size} ranks x {steps} steps/epoch x batch {bs} (equal on every rank), "
              f"{threads} thread(s) per rank", flush=True)

    kind = p.get("kind", "image")  # the dataset's kind, from its manifest
    model = get_builder(p["model"])(shape, n_cls, **p.get("builder_kwargs", {}))
    base_lr = float(p["learning_rate"])
    opt = keras.optimizers.Adam(learning_rate=base_lr * size)
    opt = hvd.DistributedOptimizer(opt)
    model.compile(optimizer=opt, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    # --resume: rank 0 restores weights + optimizer state + epoch, every rank gets them by broadcast
    resumed = restore_and_broadcast(p.get("resume_from"), model, rank)
    first_epoch = int(resumed["epoch"]) if resumed else 0
    if rank == 0 and resumed:
        print(f"[rank 0] resumed from the checkpoint of epoch {first_epoch}", flush=True)

    if p.get("cache_shard"):
        ds, cached_rows = make_cached_train_dataset(p["train_url"], shape, bs, shard=rank, shard_count=size,
                                                    seed=seed, kind=kind)
        if rank == 0:
            print(f"[rank 0] input: shard of {cached_rows} rows cached in memory", flush=True)
    else:
        ds = make_train_dataset(p["train_url"], shape, bs, shard=rank, shard_count=size, seed=seed,
                                buffer=int(p["shuffle_buffer"]), kind=kind)
        if rank == 0:
            print("[rank 0] input: streamed from Petastorm every epoch", flush=True)

    def allreduce_sum(arr: np.ndarray) -> np.ndarray:
        return np.asarray(hvd_tf.allreduce(tf.constant(arr, dtype=tf.float64), op=hvd_tf.Sum,
                                           name=None))

    val_shards = int(p["val_shards"])

    def eval_split(url: str | None, shards: int, expected_rows: int) -> dict:
        local = np.zeros(3 + n_cls * n_cls)
        if url and rank < shards:
            local = evaluate_shard(model, url, shape, rank if shards > 1 else None,
                                   shards if shards > 1 else None, n_cls, kind, hb.progress if hb else None)
        tot = allreduce_sum(local)
        if int(tot[2]) != expected_rows:  # every rank sees the same sum, so all raise together
            raise RuntimeError(f"evaluation read {int(tot[2])} rows of {url}, the manifest says {expected_rows}")
        n = max(tot[2], 1.0)
        return {"loss": tot[0] / n, "accuracy": tot[1] / n, "rows": int(tot[2]),
                "confusion": tot[3:].reshape(n_cls, n_cls).astype(int).tolist()}

    class WarmupAndAverage(keras.callbacks.Callback):
        """LR warm-up from base to base*size (Goyal et al.), metric averaging and validation."""

        def __init__(self) -> None:
            super().__init__()
            self.history: list[dict] = list(resumed["history"]) if resumed else []
            self.t0 = time.time()

        def on_train_batch_end(self, batch, logs=None):
            if hb is not None:
                hb.progress(self.epoch + 1)

        def on_train_batch_begin(self, batch, logs=None):
            warm = int(p["warmup_epochs"]) * steps
            done = self.epoch * steps + batch + 1
            if warm and done <= warm and size > 1:
                lr = base_lr * (1 + (size - 1) * done / warm)
                self.model.optimizer.learning_rate.assign(lr)

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch
            self.t0 = time.time()

        def on_epoch_end(self, epoch, logs=None):
            logs = logs if logs is not None else {}
            keys = sorted(k for k in ("loss", "accuracy") if k in logs)
            avg = allreduce_sum(np.array([logs[k] for k in keys], dtype=np.float64)) / size
            for k, v in zip(keys, avg, strict=False):
                logs[k] = float(v)
            secs = time.time() - self.t0
            if p.get("val_url"):  # every rank takes this branch or none does
                val = eval_split(p["val_url"], val_shards, int(p["val_rows"]))
                logs["val_loss"], logs["val_accuracy"] = val["loss"], val["accuracy"]
                keys += ["val_loss", "val_accuracy"]
            rec = {"epoch": epoch + 1, **{k: float(logs[k]) for k in keys},
                   "samples_per_s": steps * bs * size / max(secs, 1e-9), "seconds": secs,
                   "learning_rate": float(keras.backend.get_value(self.model.optimizer.learning_rate))}
            self.history.append(rec)
            if rank == 0:
                left = (int(p["epochs"]) - epoch - 1) * secs
                val_txt = (f" val_loss {rec['val_loss']:.4f} val_acc {rec['val_accuracy']:.4f}"
                           if "val_accuracy" in rec else "")
                print(f"[rank 0] epoch {epoch + 1}/{p['epochs']} loss {rec['loss']:.4f} acc "
                      f"{rec['accuracy']:.4f}{val_txt} {rec['samples_per_s']:.0f} samples/s, "
                      f"~{left:.0f}s left", flush=True)
                if p.get("checkpoint_dir"):
                    save_checkpoint(p["checkpoint_dir"], self.model, epoch + 1, self.history,
                                    p.get("checkpoint_about", {}))

    cb = WarmupAndAverage()
    from sparkdl_pipe.executor.callbacks import make_rank_callbacks  # rank 0: progress + TensorBoard

    tb_local = os.path.join(local, "tensorboard") if p.get("tensorboard_url") else None
    callbacks = [hvd.callbacks.BroadcastGlobalVariablesCallback(0), cb,
                 *make_rank_callbacks({**p, "tensorboard_dir": tb_local}, rank, size, cb.history)]
    model.fit(ds, epochs=int(p["epochs"]), initial_epoch=first_epoch, steps_per_epoch=steps, callbacks=callbacks,
              verbose=0)

    test = eval_split(p["test_url"], int(p["test_shards"]), int(p["test_rows"])) if p.get("test_url") else None
    digest = weights_digest(model.get_weights())
    model_file: dict = {}
    if rank == 0 and p.get("model_url"):
        from sparkdl_pipe import storage
        from sparkdl_pipe.model_card import file_sha256

        # Save an uncompiled copy: the Horovod-wrapped optimizer is not part of the served model.
        clean = keras.models.clone_model(model)
        clean.set_weights(model.get_weights())
        path = os.path.join(local, "model.keras")
        clean.save(path)
        model_file = {"sha256": file_sha256(path), "bytes": os.path.getsize(path)}
        storage.upload(path, p["model_url"])
        if tb_local and os.path.isdir(tb_local):
            storage.upload(tb_local, p["tensorboard_url"])
    if hb is not None:
        hb.stop()
    return {"rank": rank, "size": size, "history": cb.history, "test": test,
            "weights_digest": digest, "model_file": model_file, "steps_per_epoch": steps, "seconds": time.time() - t_start,
            "devices": devices.with_tf_gpus().to_dict(), "horovod_loop": horovod_loop(),
            "host": socket.gethostname()}

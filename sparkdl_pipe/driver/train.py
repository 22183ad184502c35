"""run_training: Horovod-on-Spark data-parallel Keras training of an ingested dataset.

Runs on: driver. The per-rank loop is :func:`sparkdl_pipe.executor.train_worker.train_rank`.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone

from sparkdl_pipe import model_card as mc
from sparkdl_pipe import storage
from sparkdl_pipe._env import EXECUTOR_ENV, worker_env
from sparkdl_pipe.config import TrainConfig
from sparkdl_pipe.driver.progress import ProgressServer
from sparkdl_pipe.driver.report import write_run_report
from sparkdl_pipe.driver.resume import prepare_checkpoints, work_dir
from sparkdl_pipe.driver.session import require_slots, task_slots
from sparkdl_pipe.driver.tracking import TrackingConfig, track_training
from sparkdl_pipe.driver.transport import launcher_env, resolve_transport
from sparkdl_pipe.driver.watchdog import run_ranks
from sparkdl_pipe.errors import DatasetError, TrainingError
from sparkdl_pipe.executor.checkpoint import read_last
from sparkdl_pipe.manifest import load_dataset_info, versions
from sparkdl_pipe.models.registry import get_builder, resolve_model
from sparkdl_pipe.preprocess.spec import TextSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced."""

    output: str
    model_id: str
    num_proc: int
    steps_per_epoch: int
    history: list[dict]
    val_accuracy: float | None
    test_accuracy: float | None
    weights_digests: list[str]
    seconds: float
    transport: str = "gloo"  # how the ranks exchanged gradients: gloo or mpi

    def summary(self) -> str:
        test = f"{self.test_accuracy:.4f}" if self.test_accuracy is not None else "n/a (no test split)"
        val = f"{self.val_accuracy:.4f}" if self.val_accuracy is not None else "n/a (no val split)"
        return (f"trained on {self.num_proc} ranks ({self.transport}) x {self.steps_per_epoch} steps/epoch in "
                f"{self.seconds:.1f}s: "
                f"val accuracy {val}, test accuracy {test}; model {self.output}")


def copy_vocabulary(info, model_dir: str, card: dict) -> None:
    """Copy a text dataset's vocabulary into the model directory (a URL) and name it in the card."""
    from sparkdl_pipe.preprocess.text import VOCAB_FILE, load_vocabulary, save_vocabulary

    vocab = load_vocabulary(storage.join(info.url, info.doc["vocabulary"]["path"]))
    if vocab.fingerprint() != info.spec.vocab_fingerprint:  # type: ignore[union-attr]
        raise DatasetError("the dataset's vocabulary file does not match its manifest",
                           info.spec.vocab_fingerprint, vocab.fingerprint(), "Re-ingest the dataset")  # type: ignore[union-attr]
    save_vocabulary(vocab, storage.join(model_dir, VOCAB_FILE))
    card["vocabulary_file"] = VOCAB_FILE


def _threads_per_rank(spark, num_proc: int) -> int:
    sc = spark.sparkContext
    if sc.master.startswith("local"):
        return max(1, task_slots(spark) // num_proc)
    return max(1, int(sc.getConf().get("spark.task.cpus", "1")))


def run_training(spark, cfg: TrainConfig, tracking: TrackingConfig | None = None) -> TrainResult:
    """Train ``cfg.model`` on ``cfg.dataset`` with ``num_proc`` Horovod ranks in Spark executors.

    Runs on: driver.

    >>> res = run_training(spark, TrainConfig("datasets/fmnist", "models/fmnist", model="cnn",
    ...                                       epochs=5, num_proc=2))  # doctest: +SKIP
    >>> res.test_accuracy  # doctest: +SKIP
    0.91

    Rank 0's per-epoch progress is streamed to the driver's console (see :mod:`.progress`); the
    model directory gets TensorBoard scalars (``tensorboard/``) and a run report (``report.md``,
    ``plots/``); with ``tracking`` the run is also recorded in MLflow.
    """
    t0 = time.time()
    info = load_dataset_info(cfg.dataset)
    spec = info.spec
    model_name = resolve_model(cfg.model, info.kind)
    builder = get_builder(model_name)  # unknown names fail here, before any rank starts
    labels = info.labels
    if len(labels) < 2:
        raise DatasetError(f"dataset {cfg.dataset} has {len(labels)} label(s)", "at least 2 to train a classifier")
    n_train = info.count("train")
    if n_train == 0:
        raise DatasetError(f"dataset {cfg.dataset} has an empty train split")
    num_proc = cfg.num_proc or max(1, task_slots(spark))  # a fresh cluster session may have no executors yet
    require_slots(spark, num_proc)
    if info.row_groups("train") < num_proc:
        raise DatasetError(f"the train split has {info.row_groups('train')} row groups, fewer than "
                           f"{num_proc} ranks", fix="Re-ingest with a smaller --row-group-mb or use fewer ranks")
    steps = cfg.steps_per_epoch or max(1, n_train // (cfg.batch_size * num_proc))
    out = storage.to_url(cfg.output)
    storage.filesystem(out)  # an unsupported scheme is one line here, before any work
    storage.prepare_output(out, cfg.overwrite)
    about = {"model": model_name, "dataset_fingerprint": info.fingerprint, "shape": list(spec.shape),
             "num_classes": len(labels)}
    ck_dir, hb_dir, resumed = prepare_checkpoints(out, cfg.resume, about, cfg.epochs)
    staging = storage.staging_url(out)  # published by storage.staged_output below
    threads = cfg.threads_per_rank or _threads_per_rank(spark, num_proc)
    transport = resolve_transport(cfg.transport,
                                  float(spark.sparkContext.getConf().get("spark.task.resource.gpu.amount", "0")))
    # The biggest shard, with a margin: Petastorm deals whole row groups, so shards differ in size.
    item_bytes = 4 if isinstance(spec, TextSpec) else 1  # int32 token ids, uint8 pixels
    shard_mb = n_train / num_proc * 1.25 * math.prod(spec.shape) * item_bytes / 2**20
    cache_shard = shard_mb <= cfg.cache_mb
    params = {
        "train_url": info.split_url("train"),
        "val_url": info.split_url("val") if info.count("val") else None,
        "test_url": info.split_url("test") if info.count("test") else None,
        "val_shards": max(1, min(num_proc, info.row_groups("val"))),
        "test_shards": max(1, min(num_proc, info.row_groups("test"))),
        "val_rows": info.count("val"), "test_rows": info.count("test"),
        "shape": list(spec.shape), "num_classes": len(labels), "model": model_name, "kind": info.kind,
        "builder_kwargs": {"vocab_size": spec.vocab_len} if isinstance(spec, TextSpec) else {},
        "epochs": cfg.epochs, "batch_size": cfg.batch_size, "learning_rate": cfg.learning_rate,
        "warmup_epochs": cfg.warmup_epochs, "steps_per_epoch": steps, "seed": cfg.seed,
        "threads": threads, "shuffle_buffer": cfg.shuffle_buffer, "cache_shard": cache_shard,
        "checkpoint_dir": ck_dir, "checkpoint_about": about, "heartbeat_dir": hb_dir,
        "resume_from": ck_dir if resumed else None,
        # rank 0 writes these on its own disk and uploads them here (any scheme, file:// included)
        "model_url": storage.join(staging, mc.MODEL_FILE),
        "tensorboard_url": storage.join(staging, "tensorboard"),
    }
    log.info("training %s (%s) on %d ranks x %d steps/epoch (every rank the same), %d thread(s) each, "
             "over %s; input %s", model_name, builder.__name__, num_proc, steps, threads, transport,
             f"cached in memory (~{shard_mb:.0f} MiB per rank)" if cache_shard else "streamed from Petastorm")
    env = launcher_env(transport, worker_env({**os.environ, **EXECUTOR_ENV}))
    from sparkdl_pipe.executor.train_worker import train_rank

    with storage.staged_output(out, cfg.overwrite, staging=staging):
        try:
            with ProgressServer(spark.sparkContext.getConf().get("spark.driver.host", "127.0.0.1")) as srv:
                params["progress_address"] = f"{srv.address[0]}:{srv.address[1]}"  # rank 0 streams epochs here
                results = run_ranks(spark, train_rank, params, num_proc, env, hb_dir, cfg.rank_timeout,
                                    transport=transport)
        except TrainingError as e:
            last = read_last(ck_dir)
            hint = (f" Checkpoints up to epoch {last['epoch']} are kept in {ck_dir}: rerun the same command "
                    "with --resume to continue from there" if last else "")
            raise TrainingError(f"{e}.{hint}") from e
        if storage.exists(ck_dir):
            storage.move(ck_dir, storage.join(staging, "checkpoints"))
        results = sorted(results, key=lambda r: r["rank"])
        digests = [r["weights_digest"] for r in results]
        if len(set(digests)) != 1:
            raise TrainingError(f"ranks ended with different weights: {digests}")
        r0 = results[0]
        model_url = storage.join(staging, mc.MODEL_FILE)
        uploaded = storage.size(model_url)
        if uploaded != r0["model_file"]["bytes"]:
            raise TrainingError(f"rank 0 saved a model of {r0['model_file']['bytes']} bytes, but "
                                f"{model_url} has {uploaded}: the upload did not complete")
        model_id = r0["model_file"]["sha256"][:16]  # hashed by rank 0 before the upload
        hist = r0["history"]
        val_acc = float(hist[-1]["val_accuracy"]) if hist and params["val_url"] else None
        test = r0["test"] if params["test_url"] else None
        card = {
            "format": mc.FORMAT, "format_version": mc.FORMAT_VERSION,
            "name": model_name, "model_id": model_id, "model_file": mc.MODEL_FILE, "kind": info.kind,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "input_shape": list(spec.shape), "input_dtype": "int32" if info.kind == "text" else "uint8",
            "output": "softmax probabilities",
            "labels": labels,
            "preprocess": spec.to_dict(), "preprocess_fingerprint": spec.fingerprint(),
            "dataset": {"url": info.url, "fingerprint": info.fingerprint,
                        "counts": {s: info.count(s) for s in storage.SPLITS}},
            "training": {**cfg.to_dict(), "model": model_name, "resumed_from_epoch": resumed["epoch"] if resumed else None,
                         "num_proc": num_proc, "steps_per_epoch": steps, "transport": transport,
                         "transport_requested": cfg.transport, "threads_per_rank": threads, "input": "cached" if cache_shard else "streamed",
                         "effective_learning_rate": cfg.learning_rate * num_proc,
                         "seconds": time.time() - t0, "devices": [r.get("devices") for r in results],
                         "hosts": [r.get("host") for r in results],  # by rank
                         "horovod_loop": r0.get("horovod_loop")},
            "history": hist,
            "final": {"val_accuracy": val_acc, "val_loss": float(hist[-1]["val_loss"]) if val_acc is not None else None,
                      "test_accuracy": test["accuracy"] if test else None,
                      "test_loss": test["loss"] if test else None, "test_rows": test["rows"] if test else 0,
                      "test_confusion": test["confusion"] if test else None},
            "weights_digest": digests[0],
            "versions": versions(),
        }
        if isinstance(spec, TextSpec):  # scoring raw text needs only the model directory
            copy_vocabulary(info, staging, card)
        storage.write_json(storage.join(staging, mc.CARD_FILE), card)
        report_dir = tempfile.mkdtemp(prefix="sparkdl_pipe-report-")  # drawn here, then uploaded
        try:
            write_run_report(card, report_dir)
            storage.upload(report_dir, staging)
        finally:
            shutil.rmtree(report_dir, ignore_errors=True)
    storage.remove(work_dir(out))
    if tracking is not None:
        track_training(tracking, out)
    res = TrainResult(out, model_id, num_proc, steps, hist, val_acc,
                      test["accuracy"] if test else None, digests, time.time() - t0, transport)
    log.info(res.summary())
    return res

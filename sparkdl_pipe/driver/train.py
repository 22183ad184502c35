"""run_training: Horovod-on-Spark data-parallel Keras training of an ingested dataset.

Runs on: driver. The per-rank loop is :func:`sparkdl_pipe.executor.train_worker.train_rank`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np

from sparkdl_pipe import modalities, storage, tasks
from sparkdl_pipe import model_card as mc
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
from sparkdl_pipe.executor.plan import RankPlan, SplitPlan
from sparkdl_pipe.manifest import load_dataset_info, versions
from sparkdl_pipe.models.registry import get_builder, resolve_model

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
    val_loss: float | None = None
    test_loss: float | None = None  # autoencoder: the mean reconstruction error of the test split
    final: dict = dataclasses.field(default_factory=dict)  # the card's final metrics (regression: test_mae...)
    selection: dict | None = None  # --model auto with candidates: the card's "selection" (who was trained, who won)

    def summary(self) -> str:
        if self.test_accuracy is None and self.val_accuracy is None and "test_mae" not in self.final and \
                "val_mae" not in self.final and (self.val_loss, self.test_loss) != (None, None):  # autoencoder
            losses = ", ".join(f"{k} loss {v:.5f}" for k, v in (("val", self.val_loss), ("test", self.test_loss))
                               if v is not None)
            return (f"trained on {self.num_proc} ranks ({self.transport}) x {self.steps_per_epoch} steps/epoch in "
                    f"{self.seconds:.1f}s: {losses}; model {self.output}")
        test = f"{self.test_accuracy:.4f}" if self.test_accuracy is not None else "n/a (no test split)"
        val = f"{self.val_accuracy:.4f}" if self.val_accuracy is not None else "n/a (no val split)"
        metrics = f"val accuracy {val}, test accuracy {test}"
        if self.final.get("test_mae") is not None or self.final.get("val_mae") is not None:
            metrics = ", ".join(f"{k.replace('_', ' ')} {self.final[k]:.4f}" for k in
                                ("val_mae", "test_mae", "test_rmse", "test_r2") if self.final.get(k) is not None)
        chosen = f"; {self.selection['reason']}" if self.selection else ""
        return (f"trained on {self.num_proc} ranks ({self.transport}) x {self.steps_per_epoch} steps/epoch in "
                f"{self.seconds:.1f}s: {metrics}{chosen}; model {self.output}")


def _threads_per_rank(spark, num_proc: int) -> int:
    sc = spark.sparkContext
    if sc.master.startswith("local"):
        return max(1, task_slots(spark) // num_proc)
    return max(1, int(sc.getConf().get("spark.task.cpus", "1")))


def _check_dataset(info, cfg: TrainConfig, task, num_proc: int) -> None:
    """Refuse, before any rank starts, a dataset the task cannot learn from or the ranks cannot share."""
    task.check_dataset(info.labels, cfg.dataset)
    if info.count("train") == 0:
        raise DatasetError(f"dataset {cfg.dataset} has an empty train split")
    if info.row_groups("train") < num_proc:
        raise DatasetError(f"the train split has {info.row_groups('train')} row groups, fewer than "
                           f"{num_proc} ranks", fix="Re-ingest with a smaller --row-group-mb or use fewer ranks")


def _check_task_kind(info, cfg: TrainConfig, task) -> None:
    """Refuse, on the driver, a task that cannot learn from this kind of data (autoencoder on text)."""
    if task.kinds is not None and info.kind not in task.kinds:
        raise DatasetError(f"task {task.name} cannot learn from dataset {cfg.dataset}: it is for "
                           f"{' or '.join(task.kinds)} datasets, this one is {info.kind}",
                           fix=f"Use --task {' or '.join(n for n in tasks.names() if n != task.name)}")


def _split_plan(info, split: str, num_proc: int) -> SplitPlan:
    n = info.count(split)
    return SplitPlan(info.split_url(split) if n else None, max(1, min(num_proc, info.row_groups(split))), n)


def _model_card(cfg: TrainConfig, info, modality, task, plan: RankPlan, results: list[dict], model_id: str,
                resumed, transport: str, num_proc: int, t0: float, parent=None) -> dict:
    """The model card: what the model was trained on, how, how to feed it, and how it did."""
    spec = info.spec
    r0 = results[0]
    hist = r0["history"]
    val_acc = float(hist[-1]["val_accuracy"]) if hist and plan.val.url and "val_accuracy" in hist[-1] else None
    val_loss = float(hist[-1]["val_loss"]) if hist and plan.val.url else None
    test = r0["test"] if plan.test.url else None
    final_extra = {f"val_{k}": hist[-1].get(f"val_{k}") for k in task.summary_keys} if hist and plan.val.url else {}
    final_extra.update({f"test_{k}": test.get(k) for k in task.summary_keys} if test else {})
    return {
        "format": mc.FORMAT, "format_version": mc.FORMAT_VERSION,
        "name": plan.model, "model_id": model_id, "model_file": mc.MODEL_FILE, "kind": info.kind,
        "task": task.name,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "input_shape": list(spec.shape), "input_dtype": np.dtype(modality.dtype).name,
        "output": task.output_doc,
        "labels": info.labels,
        "preprocess": spec.to_dict(), "preprocess_fingerprint": spec.fingerprint(),
        "dataset": {"url": info.url, "fingerprint": info.fingerprint,
                    "counts": {s: info.count(s) for s in storage.SPLITS}},
        "training": {**cfg.to_dict(), "model": plan.model, "resumed_from_epoch": resumed["epoch"] if resumed else None,
                     "num_proc": num_proc, "steps_per_epoch": plan.steps_per_epoch, "transport": transport,
                     "transport_requested": cfg.transport, "threads_per_rank": plan.threads,
                     "input": "cached" if plan.cache_shard else "streamed",
                     "effective_learning_rate": cfg.learning_rate * num_proc,
                     "seconds": time.time() - t0, "devices": [r.get("devices") for r in results],
                     "hosts": [r.get("host") for r in results],  # by rank
                     "horovod_loop": r0.get("horovod_loop")},
        "history": hist,
        "final": {"val_accuracy": val_acc, "val_loss": val_loss,
                  "test_accuracy": test.get("accuracy") if test else None,
                  "test_loss": test["loss"] if test else None, "test_rows": test["rows"] if test else 0,
                  "test_confusion": test.get("confusion") if test else None, **final_extra,
                  **task.final_extras(r0.get("val") if plan.val.url else None, test)},
        "task_options": plan.task_options,
        "parent": parent.to_dict() if parent is not None else None,
        "weights_digest": r0["weights_digest"],
        "versions": versions(),
    }


def _checked_results(results: list[dict], model_url: str) -> tuple[list[dict], str]:
    """The ranks' results in rank order and the model id, after checking the ranks agree and the upload."""
    results = sorted(results, key=lambda r: r["rank"])
    digests = [r["weights_digest"] for r in results]
    if len(set(digests)) != 1:
        raise TrainingError(f"ranks ended with different weights: {digests}")
    r0 = results[0]
    uploaded = storage.size(model_url)
    if uploaded != r0["model_file"]["bytes"]:
        raise TrainingError(f"rank 0 saved a model of {r0['model_file']['bytes']} bytes, but "
                            f"{model_url} has {uploaded}: the upload did not complete")
    return results, r0["model_file"]["sha256"][:16]  # hashed by rank 0 before the upload


def run_training(spark, cfg: TrainConfig, tracking: TrackingConfig | None = None) -> TrainResult:
    """Train ``cfg.model`` on ``cfg.dataset`` with ``num_proc`` Horovod ranks in Spark executors.

    Runs on: driver.

    ``model="auto"`` on a text classification dataset with a val split trains each of the text
    modality's cheap candidates (textcnn, fasttext) with the same options and publishes the one with
    the best val accuracy, the others under ``<output>/candidates/`` (:mod:`.auto_select`); anything
    else trains one model (:func:`train_single`).

    >>> res = run_training(spark, TrainConfig("datasets/news", "models/news"))  # doctest: +SKIP
    >>> res.selection["winner"], res.selection["candidates"][1]["val_accuracy"]  # doctest: +SKIP
    ('fasttext', 0.8568)
    """
    from sparkdl_pipe.driver.auto_select import run_selection, selection_candidates

    candidates = selection_candidates(cfg)
    if candidates:
        return run_selection(spark, cfg, candidates, tracking)
    return train_single(spark, cfg, tracking)


def train_single(spark, cfg: TrainConfig, tracking: TrackingConfig | None = None) -> TrainResult:
    """Train one model, ``cfg.model`` (``auto``: the task's or the dataset kind's default), and publish it.

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
    modality, task = modalities.get(info.kind), tasks.get(cfg.task or info.task)
    spec = info.spec
    _check_task_kind(info, cfg, task)
    model_name = resolve_model(task.default_model if cfg.model == "auto" and task.default_model else cfg.model,
                               info.kind)
    builder = get_builder(model_name)  # unknown names fail here, before any rank starts
    task_options = task.plan_options(cfg, info)  # a task's options it does not take: one line, here
    parent = None
    if cfg.init_from:  # a shape or layer that does not fit: one line, before any rank starts
        from sparkdl_pipe.models.finetune import resolve_parent

        parent = resolve_parent(cfg.init_from, cfg.init_layer, tuple(spec.shape))
        model_name = parent.name
    num_proc = cfg.num_proc or max(1, task_slots(spark))  # a fresh cluster session may have no executors yet
    require_slots(spark, num_proc)
    _check_dataset(info, cfg, task, num_proc)
    n_train = info.count("train")
    steps = cfg.steps_per_epoch or max(1, n_train // (cfg.batch_size * num_proc))
    out = storage.to_url(cfg.output)
    storage.filesystem(out)  # an unsupported scheme is one line here, before any work
    storage.prepare_output(out, cfg.overwrite)
    about = {"model": model_name, "dataset_fingerprint": info.fingerprint, "shape": list(spec.shape),
             "num_classes": len(info.labels)}
    ck_dir, hb_dir, resumed = prepare_checkpoints(out, cfg.resume, about, cfg.epochs)
    staging = storage.staging_url(out)  # published by storage.staged_output below
    threads = cfg.threads_per_rank or _threads_per_rank(spark, num_proc)
    transport = resolve_transport(cfg.transport,
                                  float(spark.sparkContext.getConf().get("spark.task.resource.gpu.amount", "0")))
    # The biggest shard, with a margin: Petastorm deals whole row groups, so shards differ in size.
    shard_mb = n_train / num_proc * 1.25 * math.prod(spec.shape) * np.dtype(modality.dtype).itemsize / 2**20
    plan = RankPlan(
        train_url=info.split_url("train"), val=_split_plan(info, "val", num_proc),
        test=_split_plan(info, "test", num_proc), shape=tuple(spec.shape), kind=info.kind,
        modality_ref=modality.ref,
        cache_shard=shard_mb <= cfg.cache_mb, shuffle_buffer=cfg.shuffle_buffer,
        model=model_name, task=task.name, n_outputs=task.n_outputs_for(info.labels, cfg),
        builder_kwargs=modality.model_extras(spec), task_options=task_options,
        init_from=parent.model_url if parent else None, init_id=parent.model_id if parent else None,
        init_layer=parent.layer if parent else None,
        freeze_epochs=cfg.freeze_epochs,
        epochs=cfg.epochs, batch_size=cfg.batch_size, learning_rate=cfg.learning_rate,
        warmup_epochs=cfg.warmup_epochs, steps_per_epoch=steps, seed=cfg.seed, threads=threads,
        model_url=storage.join(staging, mc.MODEL_FILE), tensorboard_url=storage.join(staging, "tensorboard"),
        checkpoint_dir=ck_dir, checkpoint_about=about, resume_from=ck_dir if resumed else None,
        heartbeat_dir=hb_dir)
    log.info("training %s (%s) on %d ranks x %d steps/epoch (every rank the same), %d thread(s) each, "
             "over %s; input %s", model_name, builder.__name__, num_proc, steps, threads, transport,
             f"cached in memory (~{shard_mb:.0f} MiB per rank)" if plan.cache_shard else "streamed from Petastorm")
    env = launcher_env(transport, worker_env({**os.environ, **EXECUTOR_ENV}))
    from sparkdl_pipe.executor.train_worker import train_rank

    with storage.staged_output(out, cfg.overwrite, staging=staging):
        try:
            with ProgressServer(spark.sparkContext.getConf().get("spark.driver.host", "127.0.0.1")) as srv:
                plan = dataclasses.replace(plan, progress_address=f"{srv.address[0]}:{srv.address[1]}")
                results = run_ranks(spark, train_rank, plan, num_proc, env, hb_dir, cfg.rank_timeout,
                                    transport=transport)
        except TrainingError as e:
            last = read_last(ck_dir)
            hint = (f" Checkpoints up to epoch {last['epoch']} are kept in {ck_dir}: rerun the same command "
                    "with --resume to continue from there" if last else "")
            raise TrainingError(f"{e}.{hint}") from e
        if storage.exists(ck_dir):
            storage.move(ck_dir, storage.join(staging, "checkpoints"))
        results, model_id = _checked_results(results, storage.join(staging, mc.MODEL_FILE))
        card = _model_card(cfg, info, modality, task, plan, results, model_id, resumed, transport, num_proc, t0,
                           parent)
        modality.copy_artifacts(info, staging, card)  # scoring needs nothing but the model directory
        storage.write_json(storage.join(staging, mc.CARD_FILE), card)
        report_dir = tempfile.mkdtemp(prefix="sparkdl_pipe-report-")  # drawn here, then uploaded
        try:
            write_run_report(card, report_dir, results[0].get("samples"))
            storage.upload(report_dir, staging)
        finally:
            shutil.rmtree(report_dir, ignore_errors=True)
    storage.remove(work_dir(out))
    if tracking is not None:
        track_training(tracking, out)
    final = card["final"]
    res = TrainResult(out, model_id, num_proc, steps, card["history"], final["val_accuracy"],
                      final["test_accuracy"], [r["weights_digest"] for r in results], time.time() - t0, transport,
                      final["val_loss"], final["test_loss"],
                      {k: v for k, v in final.items() if k not in ("test_confusion", "reconstruction_error")})
    log.info(res.summary())
    return res

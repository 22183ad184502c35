"""The plan each Horovod rank runs: one frozen, typed record built on the driver.

A misspelt field fails on the driver when the plan is built, not inside rank 3 an hour later
(the way Horovod builds its task function from explicit values). Plain values only: it is pickled
to every rank.

Runs on: driver (built by :func:`sparkdl_pipe.driver.train.run_training`) and executors (read by
:func:`sparkdl_pipe.executor.train_worker.train_rank`).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SplitPlan:
    """One evaluation split: where it is, how many ranks read a shard of it, how many rows it holds."""

    url: str | None
    shards: int
    rows: int


@dataclass(frozen=True)
class RankPlan:
    """Everything a rank needs: data, model, optimisation, outputs, and the job's side channels."""

    # data
    train_url: str
    val: SplitPlan
    test: SplitPlan
    shape: tuple[int, ...]
    kind: str  # the dataset's kind of data
    modality_ref: str  # its Modality, as ``module:attribute`` (ranks are processes of their own)
    cache_shard: bool
    shuffle_buffer: int
    # model and task
    model: str
    task: str
    n_outputs: int
    builder_kwargs: dict = field(default_factory=dict)
    task_options: dict = field(default_factory=dict)  # Task.with_options: a target's scale, the loss
    # fine-tuning: the parent model file (any URL) whose body is kept up to ``init_layer`` (None: the
    # input of its head), the task's new head on top; the body frozen for the first ``freeze_epochs``
    init_from: str | None = None
    init_id: str | None = None  # the parent file's SHA-256 prefix: each node's copy is checked against it
    init_layer: str | None = None
    freeze_epochs: int = 0
    # optimisation
    epochs: int = 5
    batch_size: int = 64
    learning_rate: float = 1e-3
    warmup_epochs: int = 1
    steps_per_epoch: int = 1
    seed: int = 42
    threads: int = 1
    # outputs: rank 0 writes these on its own disk and uploads them here (any scheme)
    model_url: str | None = None
    tensorboard_url: str | None = None
    checkpoint_dir: str | None = None
    checkpoint_about: dict = field(default_factory=dict)
    resume_from: str | None = None
    # side channels: heartbeat files the watchdog reads, the driver's progress server
    heartbeat_dir: str | None = None
    progress_address: str | None = None

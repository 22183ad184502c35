"""Frozen configuration objects, one per job, validated when built.

Runs on: driver. Executors receive plain values taken from these.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from sparkdl_pipe.errors import UserInputError
from sparkdl_pipe.preprocess.spec import ImageSpec, TextSpec


def _check_fraction(name: str, v: float) -> None:
    if not 0.0 <= v < 1.0:
        raise UserInputError(name, "a fraction in [0, 1)", v)


def _check_max_rejects(v: int | None) -> None:
    if v is not None and v < 0:
        raise UserInputError("--max-rejects", "0 (fail on any reject) or more", v)


@dataclass(frozen=True)
class SplitConfig:
    """How records are assigned to train / val / test when the input does not say.

    Assignment is by a stable hash of the record's path relative to the input root and the seed, so
    the same input gives the same split on every run and cluster size. Where the input carries its
    own split (top folders ``train/``, ``val/``, ``test/`` or a split column), it is kept; if it has
    train but no val, ``val_fraction`` of train becomes val.
    """

    val_fraction: float = 0.1
    test_fraction: float = 0.1
    seed: int = 42

    def __post_init__(self) -> None:
        _check_fraction("val_fraction", self.val_fraction)
        _check_fraction("test_fraction", self.test_fraction)
        if self.val_fraction + self.test_fraction >= 1.0:
            raise UserInputError("val_fraction + test_fraction", "less than 1",
                                 self.val_fraction + self.test_fraction)


@dataclass(frozen=True)
class IngestConfig:
    """Ingest any kind of data into Petastorm splits, rejects and a manifest: the one config the
    pipeline (:func:`sparkdl_pipe.driver.ingest.run_ingest`) reads.

    ``spec`` is the kind's frozen spec (its ``kind`` names the modality: ``image``, ``text``, or one
    you registered). ``input_format``: ``auto``, ``folder`` or a table format. Table columns:
    ``main_col`` holds what the kind reads from a table (an image path, a text), ``label_col`` the
    label, ``id_col`` the record id (content tables; default a hash of the content), ``split_col``
    an optional train/val/test split, kept.
    """

    input: str
    output: str
    spec: Any
    split: SplitConfig = field(default_factory=SplitConfig)
    input_format: str = "auto"
    main_col: str = "path"
    label_col: str = "label"
    id_col: str | None = None
    split_col: str = "split"
    row_group_mb: float = 1.0
    overwrite: bool = False
    labels: tuple[str, ...] | None = None  # only these labels are accepted; others: unknown_label
    max_rejects: int | None = None  # more rejects than this fail the job, nothing is published

    def __post_init__(self) -> None:
        _check_max_rejects(self.max_rejects)
        if self.labels is not None and not [lab for lab in self.labels if lab.strip()]:
            raise UserInputError("--labels", "a comma-separated list of label names", ",".join(self.labels))
        if not self.input:
            raise UserInputError("--input", "a folder or a table file", self.input)
        if not self.output:
            raise UserInputError("--output", "a dataset directory or URL", self.output)
        if not 0.01 <= self.row_group_mb <= 1024:
            raise UserInputError("row_group_mb", "between 0.01 and 1024", self.row_group_mb)

    @property
    def kind(self) -> str:
        return str(self.spec.kind)

    def to_dict(self) -> dict:
        return asdict(self)


def as_ingest_config(cfg) -> IngestConfig:
    """The generic :class:`IngestConfig` of any ingest config (``IngestImagesConfig``, ``IngestTextConfig``)."""
    return cfg if isinstance(cfg, IngestConfig) else cfg.as_ingest_config()


@dataclass(frozen=True)
class IngestImagesConfig:
    """Ingest a folder of labelled images (``root/<label>/*.png``) or a manifest into Petastorm."""

    input: str
    output: str
    image: ImageSpec
    split: SplitConfig = field(default_factory=SplitConfig)
    manifest_path_col: str = "path"
    manifest_label_col: str = "label"
    manifest_split_col: str = "split"
    row_group_mb: float = 1.0
    overwrite: bool = False
    labels: tuple[str, ...] | None = None  # only these labels are accepted; others: unknown_label
    max_rejects: int | None = None  # more rejects than this fail the job, nothing is published

    def __post_init__(self) -> None:
        _check_max_rejects(self.max_rejects)
        if self.labels is not None and not [lab for lab in self.labels if lab.strip()]:
            raise UserInputError("--labels", "a comma-separated list of label names", ",".join(self.labels))
        if not self.input:
            raise UserInputError("--input", "a folder of images or a manifest (.csv/.parquet)", self.input)
        if not self.output:
            raise UserInputError("--output", "a dataset directory or URL", self.output)
        if not 0.01 <= self.row_group_mb <= 1024:
            raise UserInputError("row_group_mb", "between 0.01 and 1024", self.row_group_mb)

    def to_dict(self) -> dict:
        return asdict(self)

    def as_ingest_config(self) -> IngestConfig:
        return IngestConfig(self.input, self.output, self.image, self.split, "auto", self.manifest_path_col,
                            self.manifest_label_col, None, self.manifest_split_col, self.row_group_mb,
                            self.overwrite, self.labels, self.max_rejects)


@dataclass(frozen=True)
class IngestTextConfig:
    """Ingest a text corpus (CSV/TSV, JSON Lines, Parquet, or ``root/<label>/*.txt``) into Petastorm.

    ``text`` says how text becomes token ids (the vocabulary is built over the train split);
    ``input_format`` is ``auto`` or one of csv, tsv, jsonl, parquet, txt.
    """

    input: str
    output: str
    text: TextSpec = field(default_factory=TextSpec)
    split: SplitConfig = field(default_factory=SplitConfig)
    input_format: str = "auto"
    text_col: str = "text"
    label_col: str = "label"
    id_col: str | None = None
    split_col: str = "split"
    row_group_mb: float = 1.0
    overwrite: bool = False
    labels: tuple[str, ...] | None = None  # only these labels are accepted; others: unknown_label
    max_rejects: int | None = None  # more rejects than this fail the job, nothing is published

    def __post_init__(self) -> None:
        _check_max_rejects(self.max_rejects)
        if self.labels is not None and not [lab for lab in self.labels if lab.strip()]:
            raise UserInputError("--labels", "a comma-separated list of label names", ",".join(self.labels))
        if not self.input:
            raise UserInputError("--input", "a text file (.csv/.tsv/.jsonl/.parquet) or a folder", self.input)
        if not self.output:
            raise UserInputError("--output", "a dataset directory or URL", self.output)
        if self.input_format not in ("auto", "csv", "tsv", "jsonl", "parquet", "txt"):
            raise UserInputError("--input-format", "auto, csv, tsv, jsonl, parquet or txt", self.input_format)
        if not 0.01 <= self.row_group_mb <= 1024:
            raise UserInputError("row_group_mb", "between 0.01 and 1024", self.row_group_mb)

    def to_dict(self) -> dict:
        return asdict(self)

    def as_ingest_config(self) -> IngestConfig:
        return IngestConfig(self.input, self.output, self.text, self.split, self.input_format, self.text_col,
                            self.label_col, self.id_col, self.split_col, self.row_group_mb, self.overwrite,
                            self.labels, self.max_rejects)


#: How Horovod's ranks exchange gradients (sparkdl_pipe.driver.transport).
TRANSPORTS = ("auto", "gloo", "mpi")


@dataclass(frozen=True)
class TrainConfig:
    """Horovod-on-Spark training of a registered (or user) model on an ingested dataset."""

    dataset: str
    output: str
    model: str = "auto"  # cnn for image datasets, textcnn for text (models.registry.DEFAULT_MODEL)
    epochs: int = 5
    batch_size: int = 64
    learning_rate: float = 1e-3
    warmup_epochs: int = 1
    num_proc: int | None = None
    steps_per_epoch: int | None = None
    threads_per_rank: int | None = None
    shuffle_buffer: int = 4096
    seed: int = 42
    overwrite: bool = False
    #: Per-rank memory budget (MiB) for caching the rank's shard after its first read; 0 streams
    #: every epoch from Petastorm.
    cache_mb: int = 1024
    resume: bool = False  # continue from the last checkpoint (weights, optimizer state, epoch)
    rank_timeout: float = 300.0  # a rank silent or without progress this long ends the job
    #: Horovod transport: auto (MPI's shared memory when Open MPI is installed and no GPU is asked
    #: for, else Gloo), gloo or mpi. See sparkdl_pipe.driver.transport.
    transport: str = "auto"

    def __post_init__(self) -> None:
        if self.transport not in TRANSPORTS:
            raise UserInputError("--transport", " or ".join(TRANSPORTS), self.transport)
        if self.cache_mb < 0:
            raise UserInputError("--cache-mb", "0 (stream every epoch) or a budget in MiB", self.cache_mb)
        if not 5 <= self.rank_timeout <= 86400:
            raise UserInputError("--rank-timeout", "seconds between 5 and 86400", self.rank_timeout)
        if self.epochs < 1:
            raise UserInputError("--epochs", "at least 1", self.epochs)
        if not 1 <= self.batch_size <= 65536:
            raise UserInputError("--batch-size", "between 1 and 65536", self.batch_size)
        if not 0 < self.learning_rate < 10:
            raise UserInputError("--learning-rate", "a positive number below 10", self.learning_rate)
        if self.warmup_epochs < 0:
            raise UserInputError("--warmup-epochs", "0 or more", self.warmup_epochs)
        if self.num_proc is not None and self.num_proc < 1:
            raise UserInputError("--num-proc", "at least 1", self.num_proc)
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise UserInputError("--steps-per-epoch", "at least 1", self.steps_per_epoch)
        if self.threads_per_rank is not None and self.threads_per_rank < 1:
            raise UserInputError("--threads-per-rank", "at least 1", self.threads_per_rank)

    def to_dict(self) -> dict:
        return asdict(self)


#: auto, image inputs (folder, manifest), an ingested split (petastorm), raw text inputs.
SCORE_INPUT_FORMATS = ("auto", "folder", "manifest", "petastorm", "csv", "tsv", "jsonl", "parquet", "txt")


@dataclass(frozen=True)
class ScoreConfig:
    """Batch scoring of raw images (folder, manifest) or an ingested split with a trained model."""

    model: str
    input: str
    output: str
    batch_size: int = 1024
    input_format: str = "auto"
    manifest_path_col: str = "path"
    overwrite: bool = False
    # Raw text input (text models): which columns hold the text, the true label and the record id.
    text_col: str = "text"
    label_col: str = "label"
    id_col: str | None = None
    max_rejects: int | None = None  # more rejects than this fail the job, nothing is published

    def __post_init__(self) -> None:
        _check_max_rejects(self.max_rejects)
        if not 1 <= self.batch_size <= 1_000_000:
            raise UserInputError("--batch-size", "between 1 and 1000000", self.batch_size)
        if self.input_format not in SCORE_INPUT_FORMATS:
            raise UserInputError("--input-format", ", ".join(SCORE_INPUT_FORMATS), self.input_format)

    def to_dict(self) -> dict:
        return asdict(self)

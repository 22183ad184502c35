"""The ``sparkdl-pipe`` command: subcommands derived from the config dataclasses, dispatched from a table.

Each subcommand is a :class:`Command`: its config class (every option, default and help text comes
from the config's fields, :mod:`sparkdl_pipe.options`), its help and example, and the function that
runs it. Maps this package's errors to one line on stderr and their exit status (2 for user
mistakes); only here are errors caught broadly. Runs on: driver.
"""

from __future__ import annotations

import argparse
import logging
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass

from sparkdl_pipe import options
from sparkdl_pipe.config import (
    BaselineTextConfig,
    BenchOptions,
    DemoConfig,
    IngestImagesConfig,
    IngestTextConfig,
    ScoreConfig,
    TrainConfig,
)
from sparkdl_pipe.errors import SparkdlPipeError, UserInputError

EPILOG_INGEST = """\
examples:
  sparkdl-pipe ingest-images --input photos/ --output datasets/photos --image-size 64 --channels 3
  sparkdl-pipe ingest-images --input files.csv --path-col file --label-col class --output datasets/x

input: a folder laid out as <label>/<image> (optionally under train/, val/, test/ top folders, whose
split is kept) or a manifest (.csv/.tsv/.parquet) with a path and a label column (and optionally a
split column). Output: <output>/{train,val,test} Petastorm datasets, <output>/rejects (Parquet:
path, reason, message) and <output>/_sparkdl_manifest.json."""

EPILOG_INGEST_TEXT = """\
examples:
  sparkdl-pipe ingest-text --input reviews.csv --text-col review --label-col sentiment --output datasets/reviews
  sparkdl-pipe ingest-text --input corpus/ --output datasets/corpus --max-len 128 --vocab-size 30000

input: CSV/TSV (header row; quoted fields may hold newlines), JSON Lines, Parquet (a file or a folder
of part files; .gz/.bz2 compressed text files too), or a folder of <label>/*.txt files (optionally
under train/, val/, test/; the label is the first folder, files below it are found recursively;
each file is read on its own, so an unreadable file, a broken symlink or a FIFO is one reject). Text is NFKC-normalised, lower-cased (unless --keep-case), tokenized into
words, numbers and punctuation; the vocabulary (top --vocab-size tokens seen at least --min-count
times, ids 0 = padding, 1 = out-of-vocabulary) is built from the train split only. Output:
<output>/{train,val,test} Petastorm datasets of --max-len int32 token ids, <output>/vocab.json,
<output>/rejects and <output>/_sparkdl_manifest.json (counts, truncated documents, vocabulary).
Long documents: --max-len auto (the train split's 95th percentile of token counts, capped at
--max-len-cap) and --truncation head-tail (keep the first and last halves)."""

EPILOG_TRAIN = """\
examples:
  sparkdl-pipe train --dataset datasets/photos --output models/photos --model cnn --epochs 5 --num-proc 2
  sparkdl-pipe train --dataset datasets/photos --output models/mine --model mypkg.models:build_resnet

Models: mlp, cnn (images), textcnn, bilstm, fasttext (text), or a function 'module:function' taking
(input_shape, num_classes) (text: also vocab_size) and returning a tf_keras model: a body, on which
the task puts its head (a softmax over the labels), or a complete softmax classifier, kept as it is. --batch-size is per
rank. Output: <output>/model.keras, <output>/model_card.json, <output>/checkpoints/, <output>/report.md +
plots/*.png (run report), <output>/tensorboard/ (TensorBoard scalars); with --mlflow an MLflow run
(params, per-epoch metrics, model + card as artifacts, dataset fingerprint as a tag). Progress is
printed per epoch.

--model auto (the default): cnn for image datasets. For a text classification dataset with a val
split, auto trains both cheap text models, textcnn then fasttext, one after the other with the same
options (ranks, epochs, batch size, learning rate, seed), and publishes the one with the higher val
accuracy (a tie: lower val loss, then textcnn); the test split plays no part. It takes the two
models' time. The other one is kept, without its checkpoints, in <output>/candidates/<name>/;
model_card.json ("selection") and report.md list both with their val accuracy and why the winner
won. No val split, --task regression or --init-from: auto is textcnn alone. --resume continues the
candidate that was interrupted and reuses the finished one. Name a model to train only that one."""

EPILOG_SCORE = """\
examples:
  sparkdl-pipe score --model models/photos --input new_photos/ --output scores/photos
  sparkdl-pipe score --model models/photos --input datasets/photos/test --output scores/test

input: a folder of images, a manifest (.csv/.parquet with a path column) or a split of an ingested
dataset; for a text model, raw text in any format ingest-text reads (--text-col, optional --label-col
for accuracy, --id-col), tokenized with the model's own vocabulary. Output: <output>/predictions (path, prediction, label_name, probability, true_label,
model_name, model_id), <output>/rejects and <output>/_sparkdl_score.json."""

EPILOG_BASELINE_TEXT = """\
example:
  sparkdl-pipe baseline-text --dataset datasets/reviews
Fits MLlib HashingTF + IDF + LogisticRegression on the train split of an ingested text dataset, from
its stored token ids (the tokens our models see: the same tokenizer, vocabulary and --max-len), picks
regParam on the val split and prints the validation and test accuracy, to compare with the model
card of `train` on the same dataset. Writes nothing."""
EPILOG_DEMO = """\
example:
  sparkdl-pipe demo --workdir /tmp/sparkdl-demo

  sparkdl-pipe demo --dataset text --workdir /tmp/sparkdl-demo

Writes Fashion-MNIST (Debian package dataset-fashion-mnist) as 70,000 PNG files, ingests them, trains
a CNN with Horovod on 2 ranks and scores the raw test images. Falls back to scikit-learn's digits.
--dataset text: Rotten Tomatoes snippets (fresh/rotten) -> CSV -> ingest-text -> BiLSTM -> score raw text."""


def _common(p: argparse.ArgumentParser, overwrite: bool) -> None:
    g = p.add_argument_group("spark")
    g.add_argument("--master", help="Spark master URL (default: local[*], or what spark-submit set)")
    g.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE",
                   help="extra Spark setting, repeatable (e.g. --conf spark.driver.memory=8g)")
    if overwrite:  # commands whose config has no overwrite field
        p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])


def _tracking_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("tracking")
    g.add_argument("--mlflow", action="store_true", help="record the run in MLflow (default store: <output>/mlruns)")
    g.add_argument("--mlflow-uri", default=None, help="MLflow tracking URI (implies --mlflow)")
    g.add_argument("--mlflow-experiment", default="sparkdl_pipe", help="MLflow experiment name")


def _spark(args):
    from sparkdl_pipe.driver.session import make_spark_session

    conf = {}
    for kv in args.conf:
        if "=" not in kv:
            raise UserInputError("--conf", "KEY=VALUE", kv)
        k, v = kv.split("=", 1)
        conf[k] = v
    return make_spark_session(args.master, app_name=f"sparkdl_pipe {args.command}", conf=conf)


def _ingest(spark, cfg, args) -> str:
    from sparkdl_pipe.driver.ingest import run_ingest

    return run_ingest(spark, cfg).summary()


def _train(spark, cfg, args) -> str:
    from sparkdl_pipe.driver.tracking import TrackingConfig
    from sparkdl_pipe.driver.train import run_training

    tracking = TrackingConfig(args.mlflow_uri, args.mlflow_experiment) if args.mlflow or args.mlflow_uri else None
    return run_training(spark, cfg, tracking=tracking).summary()


def _score(spark, cfg, args) -> str:
    from sparkdl_pipe.driver.score import run_scoring

    return run_scoring(spark, cfg).summary()


def _baseline_text(spark, cfg: BaselineTextConfig, args) -> str:
    from sparkdl_pipe.driver.baseline import run_text_baseline

    return run_text_baseline(spark, cfg).summary()


def _demo(spark, cfg: DemoConfig, args) -> str:
    from sparkdl_pipe.driver.demo import run_demo

    epochs = cfg.epochs or (2 if cfg.dataset == "text" else 8)
    return run_demo(spark, cfg.workdir, epochs=epochs, num_proc=cfg.num_proc, batch_size=cfg.batch_size,
                    dataset=cfg.dataset, model=cfg.model).render()


def _bench(spark, cfg: BenchOptions, args) -> str:
    from sparkdl_pipe.bench.run import SIZES, run_benchmark, save_result

    if cfg.size == "scale":
        from sparkdl_pipe.bench.scale import (
            ScaleConfig,
            parse_sizes,
            run_scale_benchmark,
            save_scale_result,
            scale_markdown,
        )

        scale = run_scale_benchmark(spark, ScaleConfig(sizes=parse_sizes(cfg.scale_sizes)), cfg.workdir)
        return scale_markdown(scale) + "\nwrote " + " and ".join(save_scale_result(scale, cfg.out))
    res = run_benchmark(spark, SIZES[cfg.size], cfg.workdir, size=cfg.size)
    return res.markdown() + "\nwrote " + " and ".join(save_result(res, cfg.out))


@dataclass(frozen=True)
class Command:
    """One subcommand: its config (the options), help, example, and what runs it."""

    name: str
    config: type
    help: str
    run: Callable
    epilog: str | None = None
    preflight: bool = False  # checks that need no Spark, before the session starts
    stage: str | None = None  # Spark stage progress printed under this name
    extra: Callable[[argparse.ArgumentParser], None] | None = None


COMMANDS = (
    Command("ingest-images", IngestImagesConfig, "raw image files -> Petastorm train/val/test + rejects", _ingest,
            EPILOG_INGEST, preflight=True, stage="ingest"),
    Command("ingest-text", IngestTextConfig, "raw text -> vocabulary + Petastorm train/val/test + rejects",
            _ingest, EPILOG_INGEST_TEXT, preflight=True, stage="ingest"),
    Command("train", TrainConfig, "Horovod-on-Spark Keras training of an ingested dataset", _train,
            EPILOG_TRAIN, preflight=True, extra=_tracking_options),
    Command("score", ScoreConfig, "batch scoring with a trained model (vectorized Spark UDF)", _score,
            EPILOG_SCORE, preflight=True, stage="score"),
    Command("baseline-text", BaselineTextConfig, "MLlib TF-IDF + LogisticRegression on an ingested text dataset "
            "(the classic baseline, same splits and token ids as train)", _baseline_text, EPILOG_BASELINE_TEXT, preflight=True),
    Command("demo", DemoConfig, "Fashion-MNIST (or text) from raw files to a scored table", _demo, EPILOG_DEMO),
    Command("bench", BenchOptions, "benchmark every stage against its limits; writes JSON + Markdown", _bench),
)
_BY_NAME = {c.name: c for c in COMMANDS}


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="sparkdl-pipe", formatter_class=fmt,
        description="Deep learning at data-lake scale on Spark: ingest raw images or text to Petastorm, train "
                    "Keras models with Horovod in Spark executors, score with a vectorized Spark UDF.",
        epilog=textwrap.dedent("""\
            example, from raw files to a scored table:
              sparkdl-pipe ingest-images --input photos/ --output ds/ --image-size 64 --channels 3
              sparkdl-pipe train --dataset ds/ --output model/ --model cnn --num-proc 2
              sparkdl-pipe score --model model/ --input new_photos/ --output scores/

            run 'sparkdl-pipe COMMAND --help' for each command's options."""))
    from sparkdl_pipe import __version__

    parser.add_argument("--version", action="version", version=f"sparkdl-pipe {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for c in COMMANDS:
        p = sub.add_parser(c.name, help=c.help, epilog=c.epilog, formatter_class=_Formatter)
        options.add_options(p, c.config)
        if c.extra is not None:
            c.extra(p)
        _common(p, overwrite=not any(f.name == "overwrite" for f in _fields(c.config)))
    return parser


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """The epilog as written, and an option's default in its help line (the config field's default),
    unless it is empty or the help already says it."""

    def _get_help_string(self, action):
        text = action.help or ""
        d = action.default
        if "default" in text or d in (None, False, [], argparse.SUPPRESS) or not action.option_strings:
            return text
        shown = " ".join(map(str, d)) if isinstance(d, list) else d
        return f"{text} (default: {shown})"


def _fields(cls: type):
    import dataclasses

    return dataclasses.fields(cls)


def _run(args) -> int:
    from sparkdl_pipe.driver.preflight import preflight  # user mistakes found before Spark starts
    from sparkdl_pipe.driver.progress import StageProgress

    command = _BY_NAME[args.command]
    cfg = options.build(command.config, args)
    if command.preflight:
        preflight(cfg)
    spark = _spark(args)
    if command.stage:
        with StageProgress(spark, command.stage):
            print(command.run(spark, cfg, args))
    else:
        print(command.run(spark, cfg, args))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``sparkdl-pipe`` console script and of the ``jobs/`` files."""
    from sparkdl_pipe import config_file

    parser = build_parser()
    config_file.add_config_options(parser)  # --config FILE.yaml / --print-config on every subcommand
    try:
        args = config_file.parse_args(parser, argv)
    except UserInputError as e:
        print(f"sparkdl-pipe: error: {e}", file=sys.stderr)
        return e.exit_code
    if not args.command:
        parser.print_help()
        return 2
    if args.print_config:
        print(config_file.dump(args), end="")
        return 0
    # Our own loggers at the asked level; the libraries' (py4j's connection chatter) at WARNING.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("sparkdl_pipe").setLevel(getattr(logging, args.log_level))
    try:
        status = _run(args)
        config_file.save_resolved(args, getattr(args, "output", None) or getattr(args, "workdir", None) or "")
        return status
    except SparkdlPipeError as e:
        print(f"sparkdl-pipe {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"sparkdl-pipe {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        from pyspark.sql import SparkSession

        active = SparkSession.getActiveSession()
        if active is not None:
            active.stop()


if __name__ == "__main__":
    sys.exit(main())

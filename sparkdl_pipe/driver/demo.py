"""run_demo: the whole path on real data, from raw files to a scored table, written once.

A demo case is what differs between the datasets: which raw files are written (:mod:`.demo_data`),
the ingest config, the model, and what is scored. Then the same three steps run for every case:
ingest, train with Horovod on Spark, score the raw test records.

- ``fashion-mnist`` (Debian package ``dataset-fashion-mnist``) or ``digits`` (scikit-learn's,
  the fallback, and the report says so): PNG files in ``train/<label>/`` and ``test/<label>/``,
  a CNN, the raw test images scored;
- ``text``: Rotten Tomatoes snippets as a CSV, a BiLSTM (or textcnn), the raw test CSV scored.

Runs on: driver.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sparkdl_pipe.config import IngestConfig, ScoreConfig, SplitConfig, TrainConfig
from sparkdl_pipe.driver.demo_data import (
    FASHION_CLASSES,
    fashion_mnist_available,
    load_digits_split,
    load_fashion_mnist,
    write_png_folders,
    write_rotten_tomatoes_csv,
)
from sparkdl_pipe.preprocess.spec import ImageSpec, TextSpec

__all__ = ["DemoCase", "DemoReport", "fashion_mnist_available", "load_digits_split", "load_fashion_mnist",
           "run_demo", "write_png_folders"]


@dataclass
class DemoReport:
    """What a demo run did; the image and the text demo both print it. Runs on: driver."""

    dataset: str
    images_written: int
    stages: dict[str, float] = field(default_factory=dict)
    counts: dict = field(default_factory=dict)
    val_accuracy: float | None = None
    test_accuracy_training: float | None = None
    test_accuracy_scored: float | None = None
    scored_rows: int = 0
    rejected_rows: int = 0
    note: str = ""
    inputs_label: str = "raw image files"
    inputs_detail: str = ""
    scored_from: str = "raw files"

    def render(self) -> str:
        detail = f" ({self.inputs_detail})" if self.inputs_detail else ""
        lines = [f"sparkdl_pipe demo: {self.dataset}" + (f" ({self.note})" if self.note else ""),
                 f"  {self.inputs_label + ':':<24}{self.images_written}{detail}"]
        for k, v in self.counts.items():
            lines.append(f"  {k + ':':<24}{v}")
        for k, v in self.stages.items():
            lines.append(f"  time {k + ':':<19}{v:.1f}s")
        def f(v):
            return "n/a" if v is None else f"{v:.4f}"
        lines += [f"  validation accuracy:    {f(self.val_accuracy)}",
                  f"  test accuracy (ranks):  {f(self.test_accuracy_training)}",
                  f"  test accuracy (scored from {self.scored_from}): {f(self.test_accuracy_scored)}"
                  f" over {self.scored_rows} rows, {self.rejected_rows} rejected"]
        return "\n".join(lines)


@dataclass
class DemoCase:
    """One demo dataset: its raw files (written), how to ingest, train and score them."""

    report: DemoReport
    ingest: IngestConfig
    model: str
    score: ScoreConfig
    learning_rate: float = 1e-3
    extra_counts: Callable = field(default=lambda ing: {})


def image_case(workdir: str, dataset: str) -> DemoCase:
    """Fashion-MNIST (or the digits) as PNG folders."""
    use_fashion = dataset == "fashion-mnist" or (dataset == "auto" and fashion_mnist_available())
    if use_fashion:
        data, names, size, name, note = load_fashion_mnist(), FASHION_CLASSES, 28, "fashion-mnist", ""
    else:
        data, names, size, name = load_digits_split(), [str(i) for i in range(10)], 8, "digits"
        note = ("Fashion-MNIST not installed: 'apt-get install dataset-fashion-mnist' for the full demo; "
                "using scikit-learn's bundled digits") if dataset == "auto" else ""
    raw = os.path.join(workdir, f"{name}-raw")
    rep = DemoReport(name, 0, note=note)
    t = time.time()
    rep.images_written = write_png_folders(data, names, raw)
    rep.stages["write PNGs"] = time.time() - t
    ingest = IngestConfig(raw, os.path.join(workdir, f"{name}-dataset"), ImageSpec(size, size, 1),
                          split=SplitConfig(val_fraction=0.1, test_fraction=0.1, seed=42), overwrite=True)
    score = ScoreConfig(model=os.path.join(workdir, f"{name}-model"), input=os.path.join(raw, "test"),
                        output=os.path.join(workdir, f"{name}-scores"), overwrite=True)
    return DemoCase(rep, ingest, "cnn", score)


def text_case(workdir: str, model: str) -> DemoCase:
    """Rotten Tomatoes review snippets (fresh/rotten) as a CSV."""
    t = time.time()
    all_csv, test_csv, rows = write_rotten_tomatoes_csv(os.path.join(workdir, "rotten-tomatoes-raw"))
    rep = DemoReport("rotten-tomatoes text", rows, note=model, inputs_label="raw review snippets",
                     inputs_detail="fresh/rotten", scored_from="raw text")
    rep.stages["write CSV"] = time.time() - t
    ingest = IngestConfig(all_csv, os.path.join(workdir, "rotten-tomatoes-dataset"),
                          TextSpec(max_len=64, vocab_size=20000, min_count=2),
                          split=SplitConfig(val_fraction=0.1, test_fraction=0.1, seed=42), main_col="text",
                          label_col="category", id_col="id", overwrite=True)
    score = ScoreConfig(os.path.join(workdir, f"rotten-tomatoes-{model}"), test_csv,
                        os.path.join(workdir, f"rotten-tomatoes-scores-{model}"), text_col="text",
                        label_col="category", id_col="id", overwrite=True)
    return DemoCase(rep, ingest, model, score, extra_counts=lambda ing: {
        "vocabulary ids": ing.vocab_size, "truncated at 64": ing.truncated})


def run_demo(spark, workdir: str, epochs: int = 8, num_proc: int = 2, batch_size: int = 64,
             dataset: str = "auto", model: str | None = None) -> DemoReport:
    """Run ingest -> train -> score on a demo dataset: ``auto``/``fashion-mnist``/``digits``
    (images) or ``text``. Runs on: driver."""
    from sparkdl_pipe.driver.ingest import run_ingest
    from sparkdl_pipe.driver.score import run_scoring
    from sparkdl_pipe.driver.train import run_training

    workdir = os.path.abspath(workdir)
    case = text_case(workdir, model or "bilstm") if dataset == "text" else image_case(workdir, dataset)
    rep = case.report

    t = time.time()
    ing = run_ingest(spark, case.ingest)
    rep.stages["ingest"] = time.time() - t
    rep.counts = {"ingested train": ing.counts["train"], "ingested val": ing.counts["val"],
                  "ingested test": ing.counts["test"], "ingest rejects": ing.rejected, **case.extra_counts(ing)}
    print(ing.summary(), flush=True)

    t = time.time()
    tr = run_training(spark, TrainConfig(dataset=case.ingest.output, output=case.score.model,
                                         model=model or case.model, epochs=epochs, batch_size=batch_size,
                                         num_proc=num_proc, learning_rate=case.learning_rate, overwrite=True))
    rep.stages["train"] = time.time() - t
    rep.val_accuracy, rep.test_accuracy_training = tr.val_accuracy, tr.test_accuracy
    print(tr.summary(), flush=True)

    t = time.time()
    sc = run_scoring(spark, case.score)
    rep.stages["score"] = time.time() - t
    rep.test_accuracy_scored, rep.scored_rows, rep.rejected_rows = sc.accuracy, sc.scored, sc.rejected
    print(sc.summary(), flush=True)
    return rep

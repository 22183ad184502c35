"""Evidence for the autoencoder task (issue 22), on real data through the whole pipeline.

Fashion-MNIST (Debian package ``dataset-fashion-mnist``) written as PNG files in folders with NO
label folders (the labels stay in this script, for evaluation only), ingested, an autoencoder
trained on 2 Horovod ranks without labels, the raw PNG files scored:

(a) features: a ``pyspark.ml`` LogisticRegression fitted on the training images' embeddings and
    evaluated on the test images' embeddings (the labels joined by file name here);
(b) anomaly: a second autoencoder trained on the nine classes other than ``--held-out``, the full
    test set (ten classes) scored with ``--anomaly-quantile 0.99``; the ROC AUC of
    ``reconstruction_error`` for "is the held-out class", and how many rows ``is_anomaly`` flags.

Run: ``PYTHONPATH=. .venv/bin/python benchmarks/autoencoder_evidence.py --train-rows 20000``.
Results are printed and written to ``--workdir``/evidence.json; see benchmarks/NOTES.md.
Runs on: driver (a local[2] Spark session).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time

import numpy as np


def write_unlabeled(images: np.ndarray, labels: np.ndarray, root: str, keep) -> dict[str, int]:
    """PNG files directly under ``root`` (no label folders); returns file name -> label."""
    from PIL import Image

    os.makedirs(root, exist_ok=True)
    names = {}
    for i, (img, lab) in enumerate(zip(images, labels, strict=True)):
        if not keep(lab):
            continue
        name = f"img-{i:05d}.png"
        Image.fromarray(img).save(os.path.join(root, name))
        names[name] = int(lab)
    return names


def train_autoencoder(spark, folder: str, work: str, tag: str, args) -> tuple[str, dict]:
    from sparkdl_pipe.config import IngestImagesConfig, TrainConfig
    from sparkdl_pipe.driver.ingest import run_ingest_images
    from sparkdl_pipe.driver.train import run_training
    from sparkdl_pipe.preprocess.spec import ImageSpec

    t0 = time.time()
    ing = run_ingest_images(spark, IngestImagesConfig(folder, f"{work}/{tag}-ds", ImageSpec(28, 28, 1)))
    t1 = time.time()
    tr = run_training(spark, TrainConfig(f"{work}/{tag}-ds", f"{work}/{tag}-model", task="autoencoder",
                                         bottleneck=args.bottleneck, epochs=args.epochs, batch_size=64,
                                         num_proc=2, learning_rate=1e-3))
    card = json.load(open(f"{work}/{tag}-model/model_card.json"))
    return f"{work}/{tag}-model", {
        "ingest": {"counts": ing.counts, "rejected": ing.rejected, "labels": ing.labels, "seconds": t1 - t0},
        "train": {"seconds": tr.seconds, "ranks": tr.num_proc, "weights_equal": len(set(tr.weights_digests)) == 1,
                  "val_loss": tr.val_loss, "test_loss": tr.test_loss,
                  "reconstruction_error": {k: {q: v for q, v in (d or {}).items() if q != "histogram"}
                                           for k, d in card["final"]["reconstruction_error"].items()
                                           if k in ("val", "test")}}}


def score(spark, model: str, folder: str, out: str, quantile: float | None = None):
    import pandas as pd

    from sparkdl_pipe.config import ScoreConfig
    from sparkdl_pipe.driver.score import run_scoring

    res = run_scoring(spark, ScoreConfig(model, folder, out, anomaly_quantile=quantile))
    preds = pd.read_parquet(os.path.join(out, "predictions"))
    preds["name"] = preds["path"].str.rsplit("/", n=1).str[-1]
    return res, preds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default="/tmp/sparkdl-ae-evidence")
    ap.add_argument("--train-rows", type=int, default=20000, help="first N Fashion-MNIST training images")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--bottleneck", type=int, default=32)
    ap.add_argument("--held-out", type=int, default=0, help="the class left out of (b)'s training (0: T-shirt/top)")
    ap.add_argument("--skip", choices=("a", "b"), default=None)
    args = ap.parse_args()

    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.functions import array_to_vector
    from sklearn.metrics import roc_auc_score

    from sparkdl_pipe.driver.demo_data import FASHION_CLASSES, load_fashion_mnist
    from sparkdl_pipe.driver.session import make_spark_session

    work = args.workdir
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    data = load_fashion_mnist()
    xtr, ytr = data["train"][0][:args.train_rows], data["train"][1][:args.train_rows]
    xte, yte = data["test"]
    t0 = time.time()
    test_names = write_unlabeled(xte, yte, f"{work}/test-png", lambda lab: True)
    out: dict = {"train_rows": int(len(ytr)), "test_rows": int(len(yte)), "epochs": args.epochs,
                 "bottleneck": args.bottleneck, "write_png_s": 0.0}
    spark = make_spark_session("local[2]", app_name="autoencoder-evidence", conf={"spark.driver.memory": "4g"})
    try:
        if args.skip != "a":
            train_names = write_unlabeled(xtr, ytr, f"{work}/train-png", lambda lab: True)
            out["write_png_s"] = time.time() - t0
            model, out["a"] = train_autoencoder(spark, f"{work}/train-png", work, "all", args)
            sc_tr, p_tr = score(spark, model, f"{work}/train-png", f"{work}/scores-train")
            sc_te, p_te = score(spark, model, f"{work}/test-png", f"{work}/scores-test")
            p_tr["label"] = p_tr["name"].map(train_names).astype(float)
            p_te["label"] = p_te["name"].map(test_names).astype(float)
            assert sc_tr.input_rows == len(ytr) == sc_tr.scored and sc_te.input_rows == len(yte) == sc_te.scored
            cols = ["embedding", "label"]
            tr_df = spark.createDataFrame(p_tr[cols]).withColumn("features", array_to_vector("embedding"))
            te_df = spark.createDataFrame(p_te[cols]).withColumn("features", array_to_vector("embedding"))
            t1 = time.time()
            lr = LogisticRegression(maxIter=200, regParam=1e-3, featuresCol="features", labelCol="label").fit(tr_df)
            pred = lr.transform(te_df).select("label", "prediction").toPandas()
            out["a"]["logistic_regression"] = {"test_accuracy": float((pred["label"] == pred["prediction"]).mean()),
                                               "test_rows": int(len(pred)), "train_rows": int(len(p_tr)),
                                               "seconds": time.time() - t1}
            out["a"]["score_seconds"] = {"train": sc_tr.seconds, "test": sc_te.seconds}
            print(json.dumps(out["a"], indent=1), flush=True)
        if args.skip != "b":
            h = args.held_out
            names9 = write_unlabeled(xtr, ytr, f"{work}/train9-png", lambda lab: lab != h)
            model9, out["b"] = train_autoencoder(spark, f"{work}/train9-png", work, "nine", args)
            sc, p = score(spark, model9, f"{work}/test-png", f"{work}/scores-anomaly", quantile=0.99)
            p["label"] = p["name"].map(test_names)
            y = (p["label"] == h).to_numpy()
            err = p["reconstruction_error"].to_numpy()
            flagged = p["is_anomaly"].to_numpy(dtype=bool)
            out["b"].update({
                "held_out": h, "held_out_name": FASHION_CLASSES[h], "train_rows": len(names9),
                "scored": sc.scored, "rejected": sc.rejected,
                "roc_auc": float(roc_auc_score(y, err)),
                "mean_error_held_out": float(err[y].mean()), "mean_error_others": float(err[~y].mean()),
                "is_anomaly_q0.99": {"flagged_held_out": int(flagged[y].sum()), "held_out_rows": int(y.sum()),
                                     "flagged_others": int(flagged[~y].sum()), "other_rows": int((~y).sum())},
                "roc_auc_per_class_vs_rest_in_test": {
                    FASHION_CLASSES[c]: float(roc_auc_score((p["label"] == c).to_numpy(), err)) for c in range(10)},
            })
            print(json.dumps(out["b"], indent=1), flush=True)
    finally:
        spark.stop()
    out["seconds"] = time.time() - t0
    with open(f"{work}/evidence.json", "w") as f:
        json.dump(out, f, indent=1)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()

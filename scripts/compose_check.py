"""The two in-container steps of ``make compose-test`` (scripts/compose-test.sh): write the images, check the results.

Runs in the client container of docker-compose.yml (the image's venv python), never in a Spark task:

    python scripts/compose_check.py write-data --root /data/ct/raw --train 4000 --test 1000
    python scripts/compose_check.py check --workdir /data/ct --train 4000 --test 1000 \
        --min-accuracy 0.75 --hosts spark-worker-1,spark-worker-2

``write-data`` writes the first N train and M test images of Fashion-MNIST (the Debian package
``dataset-fashion-mnist``, installed in the image) as PNG files in ``<root>/{train,test}/<class>/``,
with the demo's own writer. ``check`` reads what the three spark-submit jobs wrote under
``--workdir`` (``dataset/``, ``model/``, ``scores/``) and checks that the counts reconcile from the
raw files to the scored rows, that the test accuracy (the ranks' and the one scored from the raw
files) is over the bar, and that the model card shows one rank on each expected host. It prints
what it checked and exits 1 with one line per failed check.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys

import pyarrow.parquet as pq


def write_data(root: str, n_train: int, n_test: int) -> int:
    from sparkdl_pipe.driver.demo import (
        FASHION_CLASSES,
        fashion_mnist_available,
        load_fashion_mnist,
        write_png_folders,
    )

    if not fashion_mnist_available():
        print("compose_check: Fashion-MNIST is not in this image (apt-get install dataset-fashion-mnist)",
              file=sys.stderr)
        return 1
    full = load_fashion_mnist()
    data = {"train": (full["train"][0][:n_train], full["train"][1][:n_train]),
            "test": (full["test"][0][:n_test], full["test"][1][:n_test])}
    n = write_png_folders(data, FASHION_CLASSES, root)
    print(f"wrote {n} Fashion-MNIST PNGs ({n_train} train, {n_test} test) under {root}")
    return 0


def _json(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def _rows(folder: str) -> int:
    return sum(pq.ParquetFile(p).metadata.num_rows for p in glob.glob(os.path.join(folder, "**", "*.parquet"),
                                                                      recursive=True))


def check(workdir: str, n_train: int, n_test: int, min_accuracy: float, hosts: list[str]) -> int:
    manifest = _json(os.path.join(workdir, "dataset", "_sparkdl_manifest.json"))
    card = _json(os.path.join(workdir, "model", "model_card.json"))
    score = _json(os.path.join(workdir, "scores", "_sparkdl_score.json"))
    splits = {s: manifest["splits"][s]["count"] for s in ("train", "val", "test")}
    rejects = manifest["rejects"]["count"]
    training, final = card["training"], card["final"]
    predictions = _rows(os.path.join(workdir, "scores", "predictions"))
    checks = [
        (f"raw files {n_train + n_test} = ingested input records {manifest['input_records']}",
         manifest["input_records"] == n_train + n_test),
        (f"input {manifest['input_records']} = train {splits['train']} + val {splits['val']} + test "
         f"{splits['test']} + rejects {rejects}", manifest["input_records"] == sum(splits.values()) + rejects),
        (f"no rejects ({rejects})", rejects == 0),
        (f"the test folder is the test split ({n_test} = {splits['test']})", splits["test"] == n_test),
        (f"model trained on this dataset (fingerprint {card['dataset']['fingerprint']})",
         card["dataset"]["fingerprint"] == manifest["fingerprint"]),
        (f"ranks evaluated every test row ({final['test_rows']} = {splits['test']})",
         final["test_rows"] == splits["test"]),
        (f"2 ranks ({training['num_proc']})", training["num_proc"] == 2),
        (f"the ranks ran on different hosts {training.get('hosts')}, one on each of {hosts}",
         sorted(training.get("hosts") or []) == sorted(hosts) and len(set(hosts)) == len(hosts)),
        (f"test accuracy of the ranks {final['test_accuracy']:.4f} >= {min_accuracy}",
         final["test_accuracy"] >= min_accuracy),
        (f"scored input rows {score['input_rows']} = raw test files {n_test}", score["input_rows"] == n_test),
        (f"scored {score['scored']} + rejected {score['rejected']} = {score['input_rows']}, none rejected",
         score["scored"] + score["rejected"] == score["input_rows"] and score["rejected"] == 0),
        (f"prediction rows in scores/predictions {predictions} = scored {score['scored']}",
         predictions == score["scored"]),
        (f"accuracy scored from the raw files {score['accuracy']:.4f} >= {min_accuracy}",
         score["accuracy"] is not None and score["accuracy"] >= min_accuracy),
        (f"scored accuracy = the ranks' test accuracy ({score['accuracy']:.4f}, {final['test_accuracy']:.4f})",
         abs(score["accuracy"] - final["test_accuracy"]) < 1e-6),
        (f"scored with the trained model ({score['model_id']})", score["model_id"] == card["model_id"]),
    ]
    failed = [what for what, ok in checks if not ok]
    for what, ok in checks:
        print(f"  {'ok  ' if ok else 'FAIL'} {what}")
    print("result: " + json.dumps({
        "raw_files": n_train + n_test, "splits": splits, "rejects": rejects, "transport": training["transport"],
        "hosts": training.get("hosts"), "epochs": training["epochs"], "val_accuracy": final["val_accuracy"],
        "test_accuracy": final["test_accuracy"], "scored_accuracy": score["accuracy"],
        "scored_rows": score["scored"], "train_seconds": round(training["seconds"], 1)}))
    for what in failed:
        print(f"compose_check: FAILED: {what}", file=sys.stderr)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    w = sub.add_parser("write-data", help="write Fashion-MNIST PNGs in <root>/{train,test}/<class>/")
    w.add_argument("--root", required=True)
    c = sub.add_parser("check", help="check the dataset, model card and scores under --workdir")
    c.add_argument("--workdir", required=True, help="holds dataset/, model/ and scores/")
    c.add_argument("--min-accuracy", type=float, required=True)
    c.add_argument("--hosts", required=True, help="comma-separated hosts the two ranks must have run on")
    for q in (w, c):
        q.add_argument("--train", type=int, required=True, help="train images written")
        q.add_argument("--test", type=int, required=True, help="test images written")
    a = p.parse_args(argv)
    if a.command == "write-data":
        return write_data(a.root, a.train, a.test)
    return check(a.workdir, a.train, a.test, a.min_accuracy, a.hosts.split(","))


if __name__ == "__main__":
    sys.exit(main())

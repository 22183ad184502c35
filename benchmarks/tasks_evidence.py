"""Evidence for regression and fine-tuning, each figure measured through the whole pipeline from raw files.

(a) rotation regression: Fashion-MNIST images rotated by a known random angle in [-45, 45] degrees,
    written as JPEG files with a manifest CSV of angles -> ingest (--target-col angle) -> 2-rank CNN
    with a linear head (--standardize-target) -> scoring of the raw test JPEGs: test MAE in degrees
    (a constant predictor scores about 22.5).
(b) transfer: a CNN classifier pretrained on Fashion-MNIST, fine-tuned (--init-from, --freeze-epochs)
    on a small labelled subset of scikit-learn's digits upscaled to 28x28, against the same model
    trained from scratch on the same subset; test accuracy of both from scoring the raw test PNGs.

Nothing is downloaded (Fashion-MNIST from the Debian package dataset-fashion-mnist, digits from
scikit-learn). Run it from the repository with the project's environment::

    .venv/bin/python benchmarks/tasks_evidence.py --workdir /tmp/tasks-evidence
    .venv/bin/python benchmarks/tasks_evidence.py --only rotation --rot-train 12000 --rot-test 2000

Results are printed and written to ``<workdir>/tasks_evidence.json``. Runs on: driver (local[2]).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time

import numpy as np
import pandas as pd


def write_rotated(images: np.ndarray, angles: np.ndarray, root: str, split: str) -> list[tuple[str, float, str]]:
    """Each image rotated by its angle (degrees, counter-clockwise, black fill), saved as a JPEG."""
    from PIL import Image

    os.makedirs(os.path.join(root, split), exist_ok=True)
    rows = []
    for i, (a, ang) in enumerate(zip(images, angles, strict=True)):
        name = f"{split}/{i:05d}.jpg"
        Image.fromarray(a).rotate(float(ang), resample=Image.BILINEAR).save(os.path.join(root, name), quality=95)
        rows.append((name, round(float(ang), 3), split))
    return rows


def rotation(spark, work: str, n_train: int, n_test: int, epochs: int, seed: int = 0) -> dict:
    from sparkdl_pipe.config import IngestImagesConfig, ScoreConfig, SplitConfig, TrainConfig
    from sparkdl_pipe.driver.demo_data import load_fashion_mnist
    from sparkdl_pipe.driver.ingest import run_ingest
    from sparkdl_pipe.driver.score import run_scoring
    from sparkdl_pipe.driver.train import run_training
    from sparkdl_pipe.preprocess.spec import ImageSpec

    rng = np.random.default_rng(seed)
    data = load_fashion_mnist()
    tr_x = data["train"][0][rng.permutation(len(data["train"][0]))[:n_train]]
    te_x = data["test"][0][rng.permutation(len(data["test"][0]))[:n_test]]
    root = os.path.join(work, "rotated")
    t = time.time()
    rows = write_rotated(tr_x, rng.uniform(-45, 45, len(tr_x)), root, "train")
    test_rows = write_rotated(te_x, rng.uniform(-45, 45, len(te_x)), root, "test")
    pd.DataFrame(rows + test_rows, columns=["file", "angle", "split"]).to_csv(os.path.join(root, "angles.csv"),
                                                                             index=False)
    pd.DataFrame(test_rows, columns=["file", "angle", "split"]).to_csv(os.path.join(root, "test.csv"), index=False)
    t_write = time.time() - t
    ds, model, scores = (os.path.join(work, d) for d in ("rot-ds", "rot-model", "rot-scores"))
    ing = run_ingest(spark, IngestImagesConfig(os.path.join(root, "angles.csv"), ds, ImageSpec(28, 28, 1),
                                               SplitConfig(val_fraction=0.1), manifest_path_col="file",
                                               target_col="angle", overwrite=True))
    tr = run_training(spark, TrainConfig(ds, model, model="cnn", epochs=epochs, batch_size=64, num_proc=2,
                                         learning_rate=1e-3, standardize_target=True, overwrite=True))
    sc = run_scoring(spark, ScoreConfig(model, os.path.join(root, "test.csv"), scores, manifest_path_col="file",
                                        label_col="angle", overwrite=True))
    test_angles = np.array([r[1] for r in test_rows])
    return {"train_images": n_train, "test_images": n_test, "epochs": epochs,
            "ingest": {"counts": ing.counts, "rejected": ing.rejected, "seconds": round(ing.seconds, 1)},
            "train_seconds": round(tr.seconds, 1), "write_seconds": round(t_write, 1),
            "ranks_test": {k: tr.final.get(k) for k in ("test_mae", "test_rmse", "test_r2", "test_rows")},
            "scored_from_raw": {"rows": sc.scored, "rejected": sc.rejected, **sc.metrics,
                                "seconds": round(sc.seconds, 1)},
            "constant_predictor_mae": float(np.abs(test_angles - np.median(test_angles)).mean())}


def _png_folder(images: np.ndarray, labels: np.ndarray, root: str, split: str) -> None:
    from PIL import Image

    for i, (a, y) in enumerate(zip(images, labels, strict=True)):
        d = os.path.join(root, split, str(int(y)))
        os.makedirs(d, exist_ok=True)
        Image.fromarray(a).save(os.path.join(d, f"{i:05d}.png"))


def transfer(spark, work: str, n_pretrain: int, subsets: list[int], pre_epochs: int, epochs: int,
             freeze_epochs: int, seed: int = 0, train_seed: int = 42, reuse_parent: bool = False) -> dict:
    from PIL import Image
    from sklearn.datasets import load_digits

    from sparkdl_pipe.config import IngestImagesConfig, ScoreConfig, SplitConfig, TrainConfig
    from sparkdl_pipe.driver.demo_data import load_fashion_mnist
    from sparkdl_pipe.driver.ingest import run_ingest
    from sparkdl_pipe.driver.score import run_scoring
    from sparkdl_pipe.driver.train import run_training
    from sparkdl_pipe.preprocess.spec import ImageSpec

    rng = np.random.default_rng(seed)
    fm = load_fashion_mnist()
    idx = rng.permutation(len(fm["train"][0]))[:n_pretrain]
    fm_root = os.path.join(work, "fashion-png")
    fm_ds, parent = os.path.join(work, "fashion-ds"), os.path.join(work, "fashion-cnn")
    if reuse_parent and os.path.exists(os.path.join(parent, "model_card.json")):
        pre_val = json.load(open(os.path.join(parent, "model_card.json")))["final"]["val_accuracy"]
    else:
        shutil.rmtree(fm_root, ignore_errors=True)
        _png_folder(fm["train"][0][idx], fm["train"][1][idx], fm_root, "train")
        run_ingest(spark, IngestImagesConfig(fm_root, fm_ds, ImageSpec(28, 28, 1), SplitConfig(val_fraction=0.1),
                                             overwrite=True))
        pre_val = run_training(spark, TrainConfig(fm_ds, parent, model="cnn", epochs=pre_epochs, batch_size=64,
                                                  num_proc=2, overwrite=True)).val_accuracy
    d = load_digits()
    up = np.stack([np.asarray(Image.fromarray(np.clip(x * 255 / 16, 0, 255).astype(np.uint8)).resize(
        (28, 28), Image.BILINEAR)) for x in d.images])
    order = rng.permutation(len(up))
    n_test = 597
    test_i = order[:n_test]
    dg_root = os.path.join(work, "digits-png")
    _png_folder(up[test_i], d.target[test_i], dg_root, "test")
    out: dict = {"pretrain": {"images": n_pretrain, "epochs": pre_epochs, "val_accuracy": pre_val},
                 "test_images": n_test, "train_seed": train_seed, "runs": []}
    for n in subsets:
        tr_i = order[n_test:n_test + n]
        sub_root = os.path.join(work, f"digits-{n}")
        shutil.rmtree(sub_root, ignore_errors=True)
        _png_folder(up[tr_i], d.target[tr_i], sub_root, "train")
        ds = os.path.join(work, f"digits-{n}-ds")
        run_ingest(spark, IngestImagesConfig(sub_root, ds, ImageSpec(28, 28, 1), SplitConfig(val_fraction=0.1),
                                             overwrite=True))
        for how, extra in (("scratch", {}), ("fine-tuned", {"init_from": parent, "freeze_epochs": freeze_epochs})):
            m = os.path.join(work, f"digits-{n}-{how}")
            tr = run_training(spark, TrainConfig(ds, m, model="cnn", epochs=epochs, batch_size=32, num_proc=2,
                                                 seed=train_seed, overwrite=True, **extra))
            sc = run_scoring(spark, ScoreConfig(m, os.path.join(dg_root, "test"), m + "-scores", overwrite=True))
            out["runs"].append({"labelled": n, "model": how, "seed": train_seed, "test_accuracy_scored": sc.accuracy,
                                "scored_rows": sc.labelled_rows, "val_accuracy": tr.val_accuracy,
                                "train_seconds": round(tr.seconds, 1)})
            print(out["runs"][-1], flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workdir", default="tasks-evidence")
    p.add_argument("--only", choices=("rotation", "transfer"), default=None)
    p.add_argument("--rot-train", type=int, default=12000)
    p.add_argument("--rot-test", type=int, default=2000)
    p.add_argument("--rot-epochs", type=int, default=15)
    p.add_argument("--pretrain", type=int, default=20000)
    p.add_argument("--pretrain-epochs", type=int, default=5)
    p.add_argument("--subsets", default="1000,200")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--freeze-epochs", type=int, default=2)
    p.add_argument("--seed", type=int, default=42, help="training seed of the digits runs (weights, shuffles)")
    p.add_argument("--reuse-parent", action="store_true", help="keep a pretrained model already in --workdir")
    a = p.parse_args()
    from sparkdl_pipe.driver.session import make_spark_session

    os.makedirs(a.workdir, exist_ok=True)
    spark = make_spark_session("local[2]", app_name="tasks-evidence", conf={"spark.driver.memory": "4g"})
    res: dict = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    try:
        if a.only in (None, "rotation"):
            res["rotation"] = rotation(spark, a.workdir, a.rot_train, a.rot_test, a.rot_epochs)
            print(json.dumps(res["rotation"], indent=1), flush=True)
        if a.only in (None, "transfer"):
            res["transfer"] = transfer(spark, a.workdir, a.pretrain, [int(s) for s in a.subsets.split(",")],
                                       a.pretrain_epochs, a.epochs, a.freeze_epochs, train_seed=a.seed,
                                       reuse_parent=a.reuse_parent)
            print(json.dumps(res["transfer"], indent=1), flush=True)
    finally:
        spark.stop()
    with open(os.path.join(a.workdir, f"tasks_evidence-{a.only or 'all'}-seed{a.seed}.json"), "w") as f:
        json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()

"""The run report beside every trained model: ``report.md`` and PNG plots drawn from the model card.

Runs on: driver. Everything comes from the model card (per-epoch history, the test confusion
matrix), so the numbers in the report are the card's numbers. matplotlib runs with the Agg backend.

Files (under the model directory): ``report.md``, ``plots/curves.png`` (loss and accuracy, train vs
validation, per epoch), ``plots/confusion.png`` (test split), ``plots/per_class.png`` (test
precision and recall per class); for an autoencoder, ``plots/reconstructions.png`` (validation
inputs vs reconstructions) and the reconstruction-error distribution instead of the class plots.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

REPORT_FILE = "report.md"
PLOTS_DIR = "plots"


@dataclass(frozen=True)
class ClassMetrics:
    """Per-class precision and recall from a confusion matrix (rows: true, columns: predicted)."""

    labels: list[str]
    precision: list[float | None]
    recall: list[float | None]
    support: list[int]


def per_class_metrics(confusion: list[list[int]], labels: list[str]) -> ClassMetrics:
    """Precision/recall per class; None where a class was never predicted / has no true rows."""
    cm = np.asarray(confusion, dtype=np.int64)
    tp = np.diag(cm)
    pred, true = cm.sum(axis=0), cm.sum(axis=1)
    prec = [float(tp[i] / pred[i]) if pred[i] else None for i in range(len(labels))]
    rec = [float(tp[i] / true[i]) if true[i] else None for i in range(len(labels))]
    return ClassMetrics(list(labels), prec, rec, [int(t) for t in true])


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_curves(history: list[dict], path: str) -> None:
    """Loss and accuracy per epoch, train vs validation, side by side."""
    plt = _plt()
    epochs = [h["epoch"] for h in history]
    second = "accuracy" if any("accuracy" in h or "val_accuracy" in h for h in history) else "mae"
    keys = ["loss"] + ([second] if any(second in h or f"val_{second}" in h for h in history) else [])  # autoencoder: loss
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 4), dpi=100, squeeze=False)
    for ax, key, title in ((axes[0][i], k, k) for i, k in enumerate(keys)):
        if any(key in h for h in history):
            ax.plot(epochs, [h.get(key) for h in history], "o-", label="train")
        if any(f"val_{key}" in h for h in history):
            ax.plot(epochs, [h.get(f"val_{key}") for h in history], "s-", label="validation")
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_confusion(confusion: list[list[int]], labels: list[str], path: str) -> None:
    """The test confusion matrix with counts in the cells."""
    plt = _plt()
    cm = np.asarray(confusion)
    n = len(labels)
    size = min(12.0, 3.0 + 0.5 * n)
    fig, ax = plt.subplots(figsize=(size, size), dpi=100)
    im = ax.imshow(cm, cmap="Blues")
    tilt = n > 6 and max(len(str(lab)) for lab in labels) > 2
    ax.set_xticks(range(n), labels, rotation=45 if tilt else 0, ha="right" if tilt else "center")
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"test confusion matrix ({int(cm.sum())} rows)")
    if n <= 30:
        hi = cm.max() / 2 if cm.size else 0
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=8,
                        color="white" if cm[i, j] > hi else "black")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_per_class(m: ClassMetrics, path: str) -> None:
    """Precision and recall per class as grouped bars."""
    plt = _plt()
    n = len(m.labels)
    x = np.arange(n)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * n + 2), 4), dpi=100)
    ax.bar(x - 0.2, [p or 0.0 for p in m.precision], 0.4, label="precision")
    ax.bar(x + 0.2, [r or 0.0 for r in m.recall], 0.4, label="recall")
    ax.set_xticks(x, m.labels, rotation=45 if n > 6 and max(len(str(lab)) for lab in m.labels) > 2 else 0)
    ax.set_ylim(0, 1.18)
    ax.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    ax.set_title("test precision and recall per class")
    ax.legend(loc="upper right", ncol=2)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_reconstructions(samples: dict, path: str) -> None:
    """A grid of inputs (top row) and their reconstructions (bottom row), each with its error."""
    plt = _plt()
    inputs, recon = np.asarray(samples["inputs"]), np.asarray(samples["reconstructions"])
    n = len(inputs)
    fig, axes = plt.subplots(2, n, figsize=(1.3 * n + 0.6, 3.0), dpi=100, squeeze=False)
    for i in range(n):
        for row, img in ((0, inputs[i]), (1, recon[i])):
            ax = axes[row][i]
            gray = img.shape[-1] == 1
            ax.imshow(img[..., 0] if gray else img, cmap="gray" if gray else None, vmin=0, vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[1][i].set_xlabel(f"{samples['errors'][i]:.4f}", fontsize=7)
    axes[0][0].set_ylabel("input")
    axes[1][0].set_ylabel("reconstruction")
    fig.suptitle("validation images and their reconstructions (per-row MSE below)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _fmt(v: float | None, digits: int = 4) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def render_markdown(card: dict, plots: dict[str, str]) -> str:
    """The report's Markdown (numbers taken from ``card``; ``plots`` maps plot name -> relative path)."""
    tr, fin, hist = card["training"], card["final"], card["history"]
    lines = [
        f"# Run report: {card['name']} ({card['model_id']})", "",
        f"Created {card['created_at']}. Dataset `{card['dataset']['url']}` "
        f"(fingerprint `{card['dataset']['fingerprint']}`), counts {card['dataset']['counts']}.", "",
        f"Trained on {tr['num_proc']} Horovod ranks x {tr['steps_per_epoch']} steps/epoch, batch "
        f"{tr['batch_size']} per rank, {tr['epochs']} epochs, learning rate {tr['learning_rate']} per rank, "
        f"{tr['seconds']:.1f} s.", "",
        "## Result", "",
        "| metric | value |", "|---|---|",
    ]
    acc = not hist or any("accuracy" in h for h in hist)  # a task without accuracy (autoencoder): no n/a columns
    for name, key in (("validation accuracy", "val_accuracy"), ("validation loss", "val_loss"),
                      ("test accuracy", "test_accuracy"), ("test loss", "test_loss")):
        if acc or "accuracy" not in key:
            lines.append(f"| {name} | {_fmt(fin.get(key))} |")
    lines += [f"| {split} {name} | {_fmt(fin.get(f'{pre}_{key}'))} |" for split, pre in (("validation", "val"),
                                                                                       ("test", "test"))
              for key, name in (("mae", "MAE"), ("rmse", "RMSE"), ("r2", "R²")) if f"{pre}_{key}" in fin]
    cols = [(n, k) for n, k in (("loss", "loss"), ("accuracy", "accuracy"), ("val loss", "val_loss"),
                                ("val accuracy", "val_accuracy")) if acc or "accuracy" not in k]
    cols += [(f"val {n}", f"val_{k}") for n, k in (("MAE", "mae"), ("RMSE", "rmse"), ("R²", "r2"))
             if any(f"val_{k}" in h for h in hist)]  # regression
    lines += [f"| test rows | {fin.get('test_rows', 0)} |", "", "## Per epoch", "",
              "| epoch | " + " | ".join(n for n, _ in cols) + " | samples/s | seconds |",
              "|---|" + "---|" * (len(cols) + 2)]
    for h in hist:
        lines.append(f"| {h['epoch']} | " + " | ".join(_fmt(h.get(k)) for _, k in cols) +
                     f" | {h['samples_per_s']:.0f} | {h['seconds']:.1f} |")
    lines += ["", f"![loss and accuracy]({plots['curves']})", ""]
    rec = fin.get("reconstruction_error")
    if rec is not None:
        lines += ["## Reconstruction error", "", f"{rec['metric']}; the anomaly score scoring writes.", "",
                  "| split | rows | mean | p50 | p95 | p99 |", "|---|---|---|---|---|---|"]
        for split in ("val", "test"):
            d = rec.get(split)
            if d:
                lines.append(f"| {split} | {d['rows']} | {_fmt(d['mean'], 5)} | {_fmt(d['p50'], 5)} | "
                             f"{_fmt(d['p95'], 5)} | {_fmt(d['p99'], 5)} |")
        lines.append("")
        if "reconstructions" in plots:
            lines += [f"![inputs and reconstructions]({plots['reconstructions']})", ""]
    elif fin.get("test_confusion") is not None:
        m = per_class_metrics(fin["test_confusion"], card["labels"])
        lines += ["## Test split", "", "| class | precision | recall | rows |", "|---|---|---|---|"]
        for i, lab in enumerate(m.labels):
            lines.append(f"| {lab} | {_fmt(m.precision[i])} | {_fmt(m.recall[i])} | {m.support[i]} |")
        lines += ["", f"![confusion matrix]({plots['confusion']})", "",
                  f"![precision and recall]({plots['per_class']})", ""]
    else:
        lines += ["No test split: no confusion matrix or per-class metrics.", ""]
    lines += _selection_markdown(card.get("selection"))
    return "\n".join(lines)


def _selection_markdown(sel: dict | None) -> list[str]:
    """``--model auto``'s choice among its candidates (:mod:`.auto_select`), when the card has one."""
    if not sel:
        return []
    lines = ["## Model selection (`--model auto`)", "",
             f"{sel['reason']}. Rule: {sel['rule']}. The test split plays no part in the choice.", "",
             "| candidate | val accuracy | val loss | test accuracy | epochs | train s | published as |",
             "|---|---|---|---|---|---|---|"]
    for c in sel["candidates"]:
        name = f"**{c['name']}**" if c["name"] == sel["winner"] else c["name"]
        lines.append(f"| {name} | {_fmt(c['val_accuracy'])} | {_fmt(c['val_loss'])} | {_fmt(c['test_accuracy'])} "
                     f"| {c['epochs']} | {c['seconds']:.1f} | `{c['published_as']}` |")
    return [*lines, ""]


def plot_names(card: dict, samples: dict | None = None) -> dict[str, str]:
    """The plots :func:`write_run_report` draws for ``card``: name -> path relative to the model directory."""
    plots = {"curves": f"{PLOTS_DIR}/curves.png"}
    if card["final"].get("test_confusion") is not None:
        plots.update(confusion=f"{PLOTS_DIR}/confusion.png", per_class=f"{PLOTS_DIR}/per_class.png")
    if samples and "reconstructions" in samples:
        plots["reconstructions"] = f"{PLOTS_DIR}/reconstructions.png"
    return plots


def write_run_report(card: dict, model_dir: str, samples: dict | None = None) -> str:
    """Write ``report.md`` and the PNG plots into ``model_dir`` (a local path); returns the report path.

    ``samples``: an autoencoder's inputs and reconstructions from rank 0, drawn as
    ``plots/reconstructions.png``. Runs on: driver.
    """
    plots_dir = os.path.join(model_dir, PLOTS_DIR)
    os.makedirs(plots_dir, exist_ok=True)
    plots = plot_names(card, samples)
    if card["history"]:
        plot_curves(card["history"], os.path.join(model_dir, plots["curves"]))
    conf = card["final"].get("test_confusion")
    if conf is not None:
        plot_confusion(conf, card["labels"], os.path.join(model_dir, plots["confusion"]))
        plot_per_class(per_class_metrics(conf, card["labels"]), os.path.join(model_dir, plots["per_class"]))
    if samples and "reconstructions" in plots:
        plot_reconstructions(samples, os.path.join(model_dir, plots["reconstructions"]))
    path = os.path.join(model_dir, REPORT_FILE)
    with open(path, "w", encoding="utf-8") as f:
        f.write(render_markdown(card, plots))
    return path

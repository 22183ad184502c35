"""Regression: one number per record, a linear output, MSE (or Huber) loss, MAE/RMSE/R².

Stored target: ``target`` (float32), from the table column ``--target-col`` at ingest (a missing or
non-numeric cell is a ``missing_target``/``invalid_target`` reject, never a NaN in training).

Target standardisation (``train --standardize-target``): the ranks train on ``(y - mean) / std``
(the train split's mean and standard deviation, from the manifest), so the loss is in standard
units; the evaluation totals are taken in the target's own units. When rank 0 saves the model the
scale is folded into the output layer's kernel and bias, so the model file predicts in the
target's own units and every reader (scoring, SQL functions, a plain ``load_model``) undoes it.

Scoring writes ``prediction`` (double) and, where the input has the target, ``target`` and
``error`` (prediction - target); the score summary gives MAE, RMSE and R².

Runs on: driver and executors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from sparkdl_pipe.errors import DatasetError
from sparkdl_pipe.tasks.base import Task

#: Losses ``train --loss`` offers for regression (Keras names).
LOSSES = ("mse", "huber")


def parse_target(cell) -> tuple[float | None, str | None]:
    """(the target as a float, None) or (None, reason) for one table cell: ``missing_target`` for a
    null or blank cell, ``invalid_target`` for text that is not a finite number (NaN and inf too)."""
    from sparkdl_pipe.rejects import INVALID_TARGET, MISSING_TARGET

    if cell is None or (isinstance(cell, float) and math.isnan(cell)):  # a null cell, as pandas holds it
        return None, MISSING_TARGET
    text = str(cell).strip()
    if text == "":
        return None, MISSING_TARGET
    try:
        v = float(text)
    except ValueError:
        return None, INVALID_TARGET
    if not math.isfinite(v) or not math.isfinite(float(np.float32(v))):
        return None, INVALID_TARGET
    return v, None


@dataclass(frozen=True)
class Regression(Task):
    """A linear head over the body's features; ``mean``/``std``: the target scale trained in."""

    mean: float = 0.0
    std: float = 1.0
    loss_name: str = "mse"

    name = "regression"
    loss = "mse"
    metrics = ()
    output_doc = "the predicted target (one number)"
    label_column = "target"
    label_dtype = "float32"
    summary_keys = ("loss", "mae", "rmse", "r2")

    def plan_options(self, cfg, info) -> dict:
        opts: dict = {"loss_name": "mse" if cfg.loss == "auto" else cfg.loss}
        if cfg.standardize_target:
            train = info.doc.get("target", {}).get("splits", {}).get("train", {})
            if not train.get("std"):
                raise DatasetError(f"--standardize-target: the train split of {info.url} has no target spread",
                                   "a train split whose targets differ", train.get("std"))
            opts.update(mean=float(train["mean"]), std=float(train["std"]))
        return opts

    def with_options(self, options: dict):
        return replace(self, **{k: options[k] for k in ("mean", "std", "loss_name") if k in options})

    def n_outputs(self, labels: list[str]) -> int:
        return 1

    def check_dataset(self, labels: list[str], where: str) -> None:
        if labels:
            raise DatasetError(f"dataset {where} has labels, not a numeric target",
                               fix="Ingest it with --target-col to train a regression")

    def head(self, features, n_outputs: int):
        import tf_keras as keras

        return keras.layers.Dense(1, activation=None, name="prediction")(features)

    def is_complete(self, model, n_outputs: int) -> bool:
        """A user's model ending in one linear unit is kept as it is."""
        act = getattr(getattr(model.layers[-1], "activation", None), "__name__", "")
        return tuple(model.output_shape) == (None, 1) and act == "linear"

    def compile_loss(self):
        import tf_keras as keras

        return keras.losses.Huber() if self.loss_name == "huber" else keras.losses.MeanSquaredError()

    def scale_targets(self, y):
        return (y - self.mean) / self.std if self.scales_targets() else y

    def scales_targets(self) -> bool:
        return (self.mean, self.std) != (0.0, 1.0)

    def finalize_model(self, model) -> None:
        """Fold the target scale into the output layer: ``std * (W h + b) + mean``."""
        if not self.scales_targets():
            return
        last = model.layers[-1]
        kernel, bias = last.get_weights()
        last.set_weights([kernel * self.std, bias * self.std + self.mean])

    # ---- evaluation: [loss sum, rows, error sum, |error| sum, error² sum, y sum, y² sum] ---------
    def eval_size(self, n_outputs: int) -> int:
        return 7

    def _unscaled(self, outputs: np.ndarray) -> np.ndarray:
        return np.asarray(outputs, dtype=np.float64).reshape(-1) * self.std + self.mean

    def eval_totals(self, outputs: np.ndarray, y: np.ndarray, n_outputs: int) -> np.ndarray:
        pred = self._unscaled(outputs)
        y = np.asarray(y, dtype=np.float64).reshape(-1)
        err = pred - y
        z = err / self.std  # the loss is in the units trained in
        if self.loss_name == "huber":
            a = np.abs(z)
            per_row = np.where(a <= 1.0, 0.5 * z * z, a - 0.5)
        else:
            per_row = z * z
        return np.array([per_row.sum(), len(y), err.sum(), np.abs(err).sum(), (err * err).sum(), y.sum(),
                         (y * y).sum()], dtype=np.float64)

    def summarize(self, totals: np.ndarray, n_outputs: int) -> dict:
        loss, n, _e, ae, se, sy, syy = (float(t) for t in totals)
        rows = max(n, 1.0)
        sst = syy - sy * sy / rows
        return {"loss": loss / rows, "mae": ae / rows, "rmse": math.sqrt(se / rows),
                "r2": 1.0 - se / sst if sst > 0 else None, "mean_error": _e / rows, "rows": int(n)}

    # ---- stored labels -------------------------------------------------------------------------
    def label_fields_json(self) -> list[dict]:
        return [{"name": "target", "dtype": "float32", "shape": []}]

    def label_arrow_fields(self) -> list:
        import pyarrow as pa

        return [("target", pa.float32())]

    def stored_labels(self, label, label_name, target) -> tuple:
        return (float(target),)

    # ---- scoring ---------------------------------------------------------------------------------
    truth_column = "target"

    def known_truth(self, value, labels) -> str | None:
        v, reason = parse_target(value)
        return None if reason else repr(v)

    def prediction_schema(self, id_col: str):
        import pyarrow as pa

        return pa.schema([(id_col, pa.string()), ("prediction", pa.float64()), ("target", pa.float64()),
                          ("error", pa.float64()), ("model_name", pa.string()), ("model_id", pa.string())])

    def prediction_columns(self, outputs: np.ndarray, ok: np.ndarray, labels: list[str]) -> dict:
        pred = np.full(len(ok), np.nan)
        if len(outputs):
            pred[ok] = np.asarray(outputs, dtype=np.float64).reshape(-1)
        return {"prediction": pred}

    def truth_columns(self, cols: dict, true: list) -> dict:
        target = np.array([float(t) if t is not None else np.nan for t in true], dtype=np.float64)
        return {"target": target, "error": cols["prediction"] - target}

    def score_summary(self, predictions_url: str) -> dict:
        """MAE, RMSE and R² over the scored rows that have a target (driver, from the written table)."""
        import pyarrow.parquet as pq

        from sparkdl_pipe import storage

        fs, path = storage.filesystem(predictions_url)
        table = pq.read_table(path, columns=["target", "error"], filesystem=fs)
        t = table.column("target").to_numpy(zero_copy_only=False)
        e = table.column("error").to_numpy(zero_copy_only=False)
        has = ~np.isnan(t)
        if not has.any():
            return {"target_rows": 0}
        totals = np.array([0.0, has.sum(), e[has].sum(), np.abs(e[has]).sum(), (e[has] ** 2).sum(), t[has].sum(),
                           (t[has] ** 2).sum()])
        got = Regression().summarize(totals, 1)
        return {"target_rows": int(has.sum()), "mae": got["mae"], "rmse": got["rmse"], "r2": got["r2"],
                "mean_error": got["mean_error"]}


TASK = Regression()

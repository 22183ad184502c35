"""Classification: a softmax over the dataset's labels, cross-entropy, accuracy and a confusion matrix.

Stored labels: ``label`` (int32 index into the manifest's sorted labels) and ``label_name``.
Scoring writes ``prediction`` (class index), ``label_name`` and ``probability`` (of that class).

Runs on: driver and executors.
"""

from __future__ import annotations

import numpy as np

from sparkdl_pipe.errors import DatasetError, UserInputError
from sparkdl_pipe.tasks.base import Task


class Classification(Task):
    name = "classification"
    loss = "sparse_categorical_crossentropy"
    metrics = ("accuracy",)
    output_doc = "softmax probabilities"
    output_columns = ("prediction", "label_name", "probability")

    def n_outputs(self, labels: list[str]) -> int:
        return len(labels)

    def check_dataset(self, labels: list[str], where: str) -> None:
        if len(labels) < 2:
            raise DatasetError(f"dataset {where} has {len(labels)} label(s)", "at least 2 to train a classifier",
                               fix=None if labels else "An unlabeled dataset trains with --task autoencoder")

    def head(self, features, n_outputs: int):
        if n_outputs < 2:
            raise UserInputError("number of classes", "at least 2", n_outputs, "The dataset needs at least two labels")
        import tf_keras as keras

        return keras.layers.Dense(n_outputs, activation="softmax", name="probabilities")(features)

    def is_complete(self, model, n_outputs: int) -> bool:
        """True when ``model`` (a user's builder) already ends in this task's head: kept as it is."""
        last = model.layers[-1]
        return tuple(model.output_shape) == (None, n_outputs) and \
            getattr(getattr(last, "activation", None), "__name__", "") == "softmax"

    # ---- evaluation: [loss sum, correct, rows] + a flattened confusion matrix ----------------
    def eval_size(self, n_outputs: int) -> int:
        return 3 + n_outputs * n_outputs

    def eval_totals(self, outputs: np.ndarray, y: np.ndarray, n_outputs: int) -> np.ndarray:
        totals = np.zeros(self.eval_size(n_outputs), dtype=np.float64)
        pred = outputs.argmax(axis=1)
        totals[0] = float(-np.log(np.clip(outputs[np.arange(len(y)), y], 1e-7, 1.0)).sum())
        totals[1] = float((pred == y).sum())
        totals[2] = len(y)
        np.add.at(totals[3:], y * n_outputs + pred, 1)
        return totals

    def summarize(self, totals: np.ndarray, n_outputs: int) -> dict:
        n = max(totals[2], 1.0)
        return {"loss": totals[0] / n, "accuracy": totals[1] / n, "rows": int(totals[2]),
                "confusion": totals[3:].reshape(n_outputs, n_outputs).astype(int).tolist()}

    # ---- stored labels -------------------------------------------------------------------------
    def label_fields_json(self) -> list[dict]:
        return [{"name": "label", "dtype": "int32", "shape": []},
                {"name": "label_name", "dtype": "string", "shape": []}]

    def label_arrow_fields(self) -> list:
        import pyarrow as pa

        return [("label", pa.int32()), ("label_name", pa.string())]

    def stored_labels(self, label, label_name, target) -> tuple:
        return int(label), label_name

    # ---- scoring ---------------------------------------------------------------------------------
    def prediction_schema(self, id_col: str):
        import pyarrow as pa

        return pa.schema([(id_col, pa.string()), ("prediction", pa.int32()), ("label_name", pa.string()),
                          ("probability", pa.float64()), ("true_label", pa.string()), ("model_name", pa.string()),
                          ("model_id", pa.string())])

    def best_class(self, probs: np.ndarray, ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(class index, its probability) per row; -1 and NaN where ``ok`` is False."""
        pred = np.full(len(ok), -1, dtype=np.int64)
        prob = np.full(len(ok), np.nan)
        if len(probs):
            pred[ok] = probs.argmax(axis=1)
            prob[ok] = probs.max(axis=1)
        return pred, prob

    def prediction_columns(self, outputs: np.ndarray, ok: np.ndarray, labels: list[str]) -> dict:
        import pandas as pd

        pred, prob = self.best_class(outputs, ok)
        names = np.asarray(labels, dtype=object)
        good = pred >= 0
        return {"prediction": pd.Series(np.where(good, pred, 0), dtype="Int32").mask(~good).values,
                "label_name": [names[i] if i >= 0 else None for i in pred],
                "probability": prob}


TASK = Classification()

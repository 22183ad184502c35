"""Autoencoder (unsupervised): reconstruct the input pixels through a small bottleneck.

No labels are needed (an unlabeled dataset trains; labels, when the dataset has them, are kept for
evaluation only). The head the task puts on a body's features is a linear bottleneck layer named
``embedding`` (its size is the run's ``--bottleneck``) and a convolutional decoder back to the
input's (H, W, C), ending in a sigmoid layer named ``reconstruction``. The loss is the mean squared
error against the input pixels scaled to [0, 1].

Evaluation totals (summed across ranks with allreduce, so the figures are exact): the sum of the
per-row reconstruction errors, the row count, and a histogram of the per-row errors on a log scale
(:data:`BINS_PER_DECADE` bins per decade from :data:`LOW` to 1). The model card keeps the validation
and test histograms, so any quantile can be read back later (within one bin, 0.6%), and their
mean, p50, p95 and p99.

Scoring writes ``embedding`` (array<float>, the bottleneck) and ``reconstruction_error`` (the row's
mean squared error, the anomaly score); with ``--anomaly-quantile q`` also ``is_anomaly``
(the error is above the q-quantile of the validation errors recorded in the card).

Runs on: driver and executors (TensorFlow imported inside the methods that build layers).
"""

from __future__ import annotations

import math

import numpy as np

from sparkdl_pipe.errors import DatasetError, UserInputError
from sparkdl_pipe.tasks.base import Task

#: The error histogram: log10 bins from LOW to 1.0 (errors of pixels in [0, 1] are at most 1).
LOW = 1e-7
BINS_PER_DECADE = 400
N_BINS = int(round(-math.log10(LOW))) * BINS_PER_DECADE
#: Quantiles the model card lists (any other is computed from the histogram).
CARD_QUANTILES = (0.5, 0.95, 0.99)


def row_errors(outputs: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Per-row mean squared error between reconstructions in [0, 1] and uint8 inputs, float64 (N,)."""
    if len(x) == 0:
        return np.zeros(0)
    target = np.asarray(x, dtype=np.float32).reshape(len(x), -1) / np.float32(255.0)
    diff = np.asarray(outputs, dtype=np.float32).reshape(len(x), -1) - target
    return np.mean(np.square(diff, dtype=np.float64), axis=1)


def error_bins(err: np.ndarray) -> np.ndarray:
    """The histogram bin of each error (bin 0 holds everything below LOW, the last everything above 1)."""
    pos = (np.log10(np.maximum(err, LOW)) - math.log10(LOW)) * BINS_PER_DECADE
    return np.clip(pos.astype(np.int64), 0, N_BINS - 1)


def histogram_quantile(counts: np.ndarray, q: float) -> float:
    """The q-quantile of the errors counted in ``counts`` (interpolated in log space within its bin)."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    if total <= 0:
        raise DatasetError("no reconstruction errors recorded", "a model trained with a validation split")
    cum = np.cumsum(counts)
    target = q * total
    b = int(np.searchsorted(cum, target, side="left"))
    b = min(b, N_BINS - 1)
    before = cum[b - 1] if b else 0.0
    frac = (target - before) / counts[b] if counts[b] else 0.0
    return float(10 ** (math.log10(LOW) + (b + min(max(frac, 0.0), 1.0)) / BINS_PER_DECADE))


def sparse_histogram(counts: np.ndarray) -> list[list[int]]:
    """[[bin, count], ...] of the non-empty bins (what the model card stores)."""
    return [[int(i), int(counts[i])] for i in np.flatnonzero(counts)]


def dense_histogram(pairs: list[list[int]]) -> np.ndarray:
    counts = np.zeros(N_BINS, dtype=np.float64)
    for i, c in pairs:
        counts[int(i)] += c
    return counts


def check_quantile(q: float) -> float:
    if not (isinstance(q, (int, float)) and 0.0 < q < 1.0):
        raise UserInputError("--anomaly-quantile", "a fraction strictly between 0 and 1 (e.g. 0.99)", q)
    return float(q)


class Autoencoder(Task):
    name = "autoencoder"
    loss = "mse"
    metrics = ()
    output_doc = "reconstructed pixels in [0, 1], shape of the input"
    kinds = ("image",)
    default_model = "conv_autoencoder"
    embedding_layer = "embedding"
    summary_keys = ("loss",)
    output_columns = ("embedding", "reconstruction_error")

    def n_outputs(self, labels: list[str]) -> int:
        return 32

    def n_outputs_for(self, labels: list[str], cfg) -> int:
        return int(cfg.bottleneck)  # the head's size here is the bottleneck's

    def output_size(self, labels: list[str], input_shape) -> int:
        return int(input_shape[-1])

    def check_dataset(self, labels: list[str], where: str) -> None:
        """Labels are optional: nothing to refuse."""

    def head(self, features, n_outputs: int):
        raise NotImplementedError("the autoencoder's head needs the input shape: use Autoencoder.model")

    def model(self, body, n_outputs: int):
        """The body's features -> a linear ``embedding`` of ``n_outputs`` -> a decoder to the input's shape."""
        import tf_keras as keras

        shape = tuple(int(d) for d in body.inputs[0].shape[1:])
        if len(shape) != 3:
            raise UserInputError("autoencoder input", "images (height, width, channels)", shape)
        if n_outputs < 1:
            raise UserInputError("--bottleneck", "at least 1", n_outputs)
        h, w, c = shape
        h4, w4 = -(-h // 4), -(-w // 4)
        x = body.outputs[0]
        if len(x.shape) > 2:
            x = keras.layers.Flatten()(x)
        emb = keras.layers.Dense(n_outputs, name="embedding")(x)
        d = keras.layers.Dense(h4 * w4 * 64, activation="relu")(emb)
        d = keras.layers.Reshape((h4, w4, 64))(d)
        d = keras.layers.Conv2DTranspose(64, 3, strides=2, padding="same", activation="relu")(d)
        d = keras.layers.Conv2DTranspose(32, 3, strides=2, padding="same", activation="relu")(d)
        if (4 * h4, 4 * w4) != (h, w):
            d = keras.layers.Cropping2D(((0, 4 * h4 - h), (0, 4 * w4 - w)))(d)
        out = keras.layers.Conv2D(c, 3, padding="same", activation="sigmoid", name="reconstruction")(d)
        return keras.Model(body.inputs, out, name=body.name)

    def is_complete(self, model, n_outputs: int) -> bool:
        """A user's builder that already reconstructs its input (output shape = input shape) is kept."""
        return tuple(model.output_shape[1:]) == tuple(model.input_shape[1:])

    def train_target(self, x, y):
        import tensorflow as tf

        return tf.cast(x, tf.float32) / 255.0

    def eval_target(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return x

    # ---- evaluation: [error sum, rows, histogram of per-row errors] ---------------------------------
    def eval_size(self, n_outputs: int) -> int:
        return 2 + N_BINS

    def eval_totals(self, outputs: np.ndarray, y: np.ndarray, n_outputs: int) -> np.ndarray:
        totals = np.zeros(self.eval_size(n_outputs), dtype=np.float64)
        err = row_errors(outputs, y)
        totals[0] = float(err.sum())
        totals[1] = len(err)
        np.add.at(totals[2:], error_bins(err), 1)
        return totals

    def summarize(self, totals: np.ndarray, n_outputs: int) -> dict:
        n = max(totals[1], 1.0)
        hist = totals[2:]
        out: dict = {"loss": totals[0] / n, "rows": int(totals[1]), "mean": totals[0] / n,
                     "histogram": sparse_histogram(hist)}
        for q in CARD_QUANTILES:
            out[f"p{round(q * 100)}"] = histogram_quantile(hist, q) if totals[1] else None
        return out

    def final_extras(self, val: dict | None, test: dict | None) -> dict:
        def dist(s: dict | None) -> dict | None:
            if not s:
                return None
            return {"rows": s["rows"], "mean": s["mean"], **{f"p{round(q * 100)}": s[f"p{round(q * 100)}"]
                                                             for q in CARD_QUANTILES},
                    "histogram": {"low": LOW, "bins_per_decade": BINS_PER_DECADE, "counts": s["histogram"]}}

        return {"reconstruction_error": {"metric": "per-row mean squared error of pixels scaled to [0, 1]",
                                         "val": dist(val), "test": dist(test)}}

    def report_samples(self, model, x: np.ndarray) -> dict | None:
        x = np.asarray(x[:8])
        recon = np.asarray(model(x.astype(np.float32 if model.inputs[0].dtype == "float32" else x.dtype),
                                 training=False))
        return {"inputs": x.astype(np.uint8), "reconstructions": np.clip(recon * 255.0, 0, 255).astype(np.uint8),
                "errors": row_errors(recon, x).tolist()}

    # ---- stored labels: an unlabeled image dataset is stored as a classification one (label -1) ----
    def label_fields_json(self) -> list[dict]:
        from sparkdl_pipe.tasks.classification import TASK as CLASSIFICATION

        return CLASSIFICATION.label_fields_json()

    def label_arrow_fields(self) -> list:
        from sparkdl_pipe.tasks.classification import TASK as CLASSIFICATION

        return CLASSIFICATION.label_arrow_fields()

    def stored_labels(self, label, label_name, target) -> tuple:
        from sparkdl_pipe.tasks.classification import TASK as CLASSIFICATION

        return CLASSIFICATION.stored_labels(label, label_name, target)

    # ---- scoring ---------------------------------------------------------------------------------
    def prediction_schema(self, id_col: str):
        import pyarrow as pa

        return pa.schema([(id_col, pa.string()), ("embedding", pa.list_(pa.float32())),
                          ("reconstruction_error", pa.float64()), ("true_label", pa.string()),
                          ("model_name", pa.string()), ("model_id", pa.string())])

    def extra_prediction_fields(self, options: dict) -> list:
        import pyarrow as pa

        return [pa.field("is_anomaly", pa.bool_())] if options.get("anomaly_threshold") is not None else []

    def score_options(self, card: dict, score_cfg) -> dict:
        q = getattr(score_cfg, "anomaly_quantile", None)
        return {} if q is None else anomaly_options(card, q)

    def prediction_columns(self, outputs: np.ndarray, ok: np.ndarray, labels: list[str]) -> dict:
        raise NotImplementedError("the autoencoder's columns need the inputs: use scored_columns")

    def scored_columns(self, outputs, ok, labels, x, embedding, options) -> dict:
        n = len(ok)
        err = np.full(n, np.nan)
        err[ok] = row_errors(outputs, x)
        emb: list = [None] * n
        if embedding is not None:
            for i, j in enumerate(np.flatnonzero(ok)):
                emb[j] = embedding[i]
        cols: dict = {"embedding": emb, "reconstruction_error": err}
        t = options.get("anomaly_threshold")
        if t is not None:
            cols["is_anomaly"] = [bool(e > t) if good else None for e, good in zip(err, ok, strict=True)]
        return cols


def anomaly_options(card: dict, q: float) -> dict:
    """The scoring options that add ``is_anomaly``: the quantile and its threshold (:func:`anomaly_threshold`).
    Runs on: driver (the CLI's ``--anomaly-quantile``, the Spark ML Model's ``anomalyQuantile``)."""
    return {"anomaly_quantile": check_quantile(q), "anomaly_threshold": anomaly_threshold(card, q)}


def anomaly_threshold(card: dict, q: float) -> float:
    """The q-quantile of the validation reconstruction errors recorded in a model card. Runs on: driver."""
    q = check_quantile(q)
    val = ((card.get("final") or {}).get("reconstruction_error") or {}).get("val")
    if not val or not val.get("rows"):
        raise DatasetError("the model card has no validation reconstruction errors to take a quantile of",
                           fix="Train with a validation split (--val-fraction above 0 at ingest)")
    return histogram_quantile(dense_histogram(val["histogram"]["counts"]), q)


TASK = Autoencoder()

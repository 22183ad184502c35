"""The scoring batch function (run by ``mapInPandas``) and its per-Python-worker model cache.

The model is loaded at most once per Python worker (Spark reuses workers across tasks) and never
pickled from the driver: tasks receive only the model file's URL and id, and fetch the file once
per node into a local cache (:func:`sparkdl_pipe.model_fetch.fetch_model`).

Runs on: executors.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np
import pandas as pd

from sparkdl_pipe.executor.devices import DeviceAssignment, pin_task_gpu, task_gpu_addresses
from sparkdl_pipe.executor.ingest import label_from_rel_path, relative_to, root_prefix
from sparkdl_pipe.executor.reading import read_bytes
from sparkdl_pipe.executor.worker import prune_zip_importers
from sparkdl_pipe.preprocess.image import decode_image, stack_images
from sparkdl_pipe.preprocess.spec import ImageSpec
from sparkdl_pipe.rejects import MISSING_FILE
from sparkdl_pipe.schema import decode_pixels

#: Spark DDL of what :func:`score_batches` yields.
SCORED_DDL = ("path string, true_label string, prediction int, label_name string, probability double, "
              "model_name string, model_id string, reason string, message string, device string")

#: Spark DDL of what :func:`write_scored` yields: summary rows, never the predictions themselves.
#: ``kind`` is ``file`` (a part file: name, n rows), ``count`` (per reason, null for scored rows: n,
#: labelled, correct, and one example id in ``name``) or ``device`` (a task's device JSON in ``name``).
SCORE_SUMMARY_DDL = "kind string, reason string, n long, labelled long, correct long, name string"

#: Predictions buffered per task before a row group is written.
PREDICTION_GROUP_ROWS = 65536


class ModelCache:
    """Holds the one model this Python worker is scoring with, keyed by (model URL, model id)."""

    def __init__(self) -> None:
        self._key: tuple[str, str] | None = None
        self._model = None
        self._lock = threading.Lock()
        self.loads = 0
        self.devices: DeviceAssignment | None = None

    def get(self, url: str, model_id: str, threads: int | None = None):
        """The model at ``url`` (path or any storage URL), fetched to this node and loaded once."""
        with self._lock:
            if self._key != (url, model_id):
                if self.devices is None:  # first model in this worker: its task's GPU, before TF import
                    self.devices = pin_task_gpu()
                # Importing this module ran sparkdl_pipe/__init__ (TF_USE_LEGACY_KERAS) already.
                import tensorflow as tf

                if threads:
                    try:
                        tf.config.threading.set_intra_op_parallelism_threads(threads)
                        tf.config.threading.set_inter_op_parallelism_threads(1)
                    except RuntimeError:
                        pass  # already initialised in this worker; keep its settings
                from sparkdl_pipe.model_fetch import fetch_model
                from sparkdl_pipe.safe_model import load_model_safely

                # safe_mode: a model file cannot run arbitrary code when loaded.
                self._model = load_model_safely(fetch_model(url, model_id))
                self._key = (url, model_id)
                self.loads += 1
            return self._model


MODEL_CACHE = ModelCache()


def _true_labels(pdf: pd.DataFrame, root_path: str | None, known: set[str]) -> list:
    if "true_label" in pdf:  # a manifest's label column: a label the model never saw is no true label
        return [lab if isinstance(lab, str) and lab in known else None for lab in pdf["true_label"]]
    if root_path is None:
        return [None] * len(pdf)
    labels = [label_from_rel_path(relative_to(p, root_path))[0] for p in pdf["path"]]
    return [lab if lab in known else None for lab in labels]


def _device_record() -> str:
    """JSON: the GPUs this task was given and the ones this worker's TensorFlow was pinned to.

    A Python worker pins the GPU of the first task it loads a model for; Spark may later reuse the
    worker for a task given another GPU (``task_gpus`` then differs from ``cuda_visible_devices``).
    """
    pinned = MODEL_CACHE.devices
    addrs, source = task_gpu_addresses()
    cuda = pinned.cuda_visible_devices if pinned else None
    import tensorflow as tf

    return DeviceAssignment(addrs, source, cuda, len(tf.config.list_physical_devices("GPU"))).to_json()


_FORWARD: dict[int, tuple] = {}


def forward_function(model):
    """``model``'s forward pass (inference mode) as one graph-compiled function for any batch size.

    Traced once per model (the worker's one model: :class:`ModelCache`). Unlike
    ``predict_on_batch``, a call builds no ``tf.data`` iterator: that was about a fifth of a
    scoring worker's time (py-spy, benchmarks/NOTES.md). Models with several inputs get
    ``predict_on_batch``.
    """
    got = _FORWARD.get(id(model))
    if got is not None and got[0] is model:
        return got[1]
    if len(model.inputs) != 1:
        return model.predict_on_batch
    import tensorflow as tf

    dtype = model.inputs[0].dtype
    spec = tf.TensorSpec([None, *model.inputs[0].shape[1:]], dtype)
    graph = tf.function(lambda t: model(t, training=False), input_signature=[spec])
    _FORWARD.clear()  # never hold on to an older model

    def forward(x: np.ndarray):
        return graph(x.astype(dtype.as_numpy_dtype, copy=False))

    _FORWARD[id(model)] = (model, forward)
    return forward


def predict_arrays(model, x: np.ndarray, batch_size: int) -> np.ndarray:
    """Class probabilities for (N, ...) inputs, ``batch_size`` rows per call of the compiled model."""
    if len(x) == 0:
        return np.zeros((0, model.output_shape[-1]), dtype=np.float32)
    forward = forward_function(model)
    return np.concatenate([np.asarray(forward(x[i:i + batch_size])) for i in range(0, len(x), batch_size)])


def predict_column(model, blobs: pd.Series, spec: ImageSpec, source: str, batch_size: int
                   ) -> tuple[np.ndarray, np.ndarray, list[str | None], list[str | None]]:
    """(class index or -1, max probability or NaN, reject reason, message) for one batch of inputs.

    ``source``: ``content`` (image file bytes), ``path`` (read the file here) or ``pixels`` (stored
    Petastorm pixels). Runs on: executors.
    """
    n = len(blobs)
    reason: list[str | None] = [None] * n
    message: list[str | None] = [None] * n
    if source == "pixels":
        x = decode_pixels(list(blobs), spec.shape)
        ok = np.ones(n, dtype=bool)
    else:
        arrays: list[np.ndarray] = []
        ok_list: list[bool] = []
        for i, blob in enumerate(blobs):
            if blob is None or (source == "path" and not isinstance(blob, str)):
                reason[i], message[i] = MISSING_FILE, "no input (null)"
                ok_list.append(False)
                continue
            if source == "path":
                blob, why, msg = read_bytes(blob)
                if why is not None:
                    reason[i], message[i] = why, msg
                    ok_list.append(False)
                    continue
            res = decode_image(blob, spec)
            if res.array is not None:
                arrays.append(res.array)
                ok_list.append(True)
            else:
                reason[i], message[i] = res.reason, res.message
                ok_list.append(False)
        ok = np.asarray(ok_list, dtype=bool)
        x = stack_images(arrays, spec)
    pred, prob = best_class(predict_arrays(model, x, batch_size), ok)
    return pred, prob, reason, message


def best_class(probs: np.ndarray, ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(class index, its probability) per row; -1 and NaN where ``ok`` is False (rejected rows).

    ``probs`` holds one row per ``ok`` row. Runs on: executors (image and text scoring).
    """
    pred = np.full(len(ok), -1, dtype=np.int64)
    prob = np.full(len(ok), np.nan)
    if len(probs):
        pred[ok] = probs.argmax(axis=1)
        prob[ok] = probs.max(axis=1)
    return pred, prob


def scored_frame(key_col: str, keys, true_label, pred: np.ndarray, prob: np.ndarray, names: np.ndarray,
                 model_name: str, model_id: str, reason: list, message: list, device) -> pd.DataFrame:
    """The rows :data:`SCORED_DDL` describes (``key_col`` is ``path`` for images, ``id`` for text)."""
    ok = pred >= 0
    return pd.DataFrame({
        key_col: keys,
        "true_label": true_label,
        "prediction": pd.Series(np.where(ok, pred, 0), dtype="Int32").mask(~ok).values,
        "label_name": [names[i] if i >= 0 else None for i in pred],
        "probability": prob,
        "model_name": model_name,
        "model_id": model_id,
        "reason": reason,
        "message": message,
        "device": device,
    })


def score_batches(batches: Iterator[pd.DataFrame], model_path: str, model_id: str, model_name: str,
                  spec_dict: dict, labels: list[str], batch_size: int, source: str,
                  threads: int | None = None, root: str | None = None) -> Iterator[pd.DataFrame]:
    """Score a partition. ``source`` says what the input holds:

    ``content`` (raw file bytes), ``path`` (read the file here: folders and manifests) or
    ``pixels`` (a Petastorm split's stored pixels). One output row per input row; rows that cannot
    be decoded carry ``reason``/``message`` and no prediction. With ``root`` (folder input), the
    true label is the file's label folder when the model knows that label.
    """
    prune_zip_importers()  # cheap task starts in this reused worker (executor/worker.py)
    spec = ImageSpec.from_dict(spec_dict)
    root_path = root_prefix(root) if root else None
    known = set(labels)
    model = MODEL_CACHE.get(model_path, model_id, threads)
    names = np.asarray(labels, dtype=object)
    device = _device_record()
    for pdf in batches:
        col = {"pixels": "image", "content": "content", "path": "path"}[source]
        pred, prob, reason, message = predict_column(model, pdf[col], spec, source, batch_size)
        yield scored_frame("path", pdf["path"].astype(str).values, _true_labels(pdf, root_path, known), pred,
                           prob, names, model_name, model_id, reason, message, device)


def append_predictions(batches: Iterator[pd.DataFrame], input_col: str, source: str, model_path: str,
                       model_id: str, spec_dict: dict, labels: list[str], batch_size: int,
                       out_cols: dict[str, str], threads: int | None = None) -> Iterator[pd.DataFrame]:
    """Keep every input column and add prediction, predicted label, probability and reject reason.

    The batch function behind the Spark ML Transformer
    (:class:`sparkdl_pipe.ml.KerasImageClassifierModel`). ``out_cols`` maps ``prediction``,
    ``label``, ``probability`` and ``reason`` to output column names. Runs on: executors.
    """
    prune_zip_importers()  # cheap task starts in this reused worker (executor/worker.py)
    spec = ImageSpec.from_dict(spec_dict)
    model = MODEL_CACHE.get(model_path, model_id, threads)
    names = np.asarray(labels, dtype=object)
    for pdf in batches:
        pred, prob, reason, _ = predict_column(model, pdf[input_col], spec, source, batch_size)
        ok = pred >= 0
        out = pdf.copy()
        out[out_cols["prediction"]] = pd.Series(np.where(ok, pred, 0), dtype="Int32").mask(~ok).values
        out[out_cols["label"]] = [names[i] if i >= 0 else None for i in pred]
        out[out_cols["probability"]] = prob
        out[out_cols["reason"]] = reason
        yield out


def predictions_schema(id_col: str):
    """The Arrow schema of the predictions table (``id_col``: ``path`` for images, ``id`` for text)."""
    import pyarrow as pa

    return pa.schema([(id_col, pa.string()), ("prediction", pa.int32()), ("label_name", pa.string()),
                      ("probability", pa.float64()), ("true_label", pa.string()), ("model_name", pa.string()),
                      ("model_id", pa.string())])


def write_scored(frames: Iterator[pd.DataFrame], staging: str, id_col: str) -> Iterator[pd.DataFrame]:
    """Write scored frames (:data:`SCORED_DDL` rows) as this task's part files of ``predictions`` and
    ``rejects`` under ``staging`` (:mod:`sparkdl_pipe.executor.parts`); yield only summary rows
    (:data:`SCORE_SUMMARY_DDL`). Runs on: executors."""
    import pyarrow as pa

    from sparkdl_pipe.executor.parts import PartWriter
    from sparkdl_pipe.rejects import arrow_schema

    preds = PartWriter(staging, "predictions", predictions_schema(id_col))
    rejects = PartWriter(staging, "rejects", arrow_schema(id_col))
    pending: list = []
    counts: dict[str | None, list[int]] = {}
    first: dict[str, str] = {}
    devices: set[str] = set()
    for f in frames:
        bad = f["reason"].notna().to_numpy()
        good = f.loc[~bad]
        pending.append(pa.Table.from_pandas(good[list(preds.schema.names)], schema=preds.schema,
                                            preserve_index=False))
        if sum(t.num_rows for t in pending) >= PREDICTION_GROUP_ROWS:
            preds.write(pa.concat_tables(pending))
            pending = []
        c = counts.setdefault(None, [0, 0, 0])
        c[0] += len(good)
        c[1] += int(good["true_label"].notna().sum())
        c[2] += int((good["true_label"] == good["label_name"]).sum())
        if bad.any():
            b = f.loc[bad]
            rejects.write(pa.table([pa.array(b[id_col].astype(str), pa.string()), pa.array(b["reason"], pa.string()),
                                    pa.array(b["message"], pa.string()), pa.array(["score"] * len(b), pa.string())],
                                   schema=rejects.schema))
            for reason, key in zip(b["reason"], b[id_col], strict=True):
                counts.setdefault(reason, [0, 0, 0])[0] += 1
                first.setdefault(reason, str(key))
        devices.update(d for d in f["device"] if isinstance(d, str))
    if pending:
        preds.write(pa.concat_tables(pending))
    summary: list[tuple] = [("file", None, rows, 0, 0, name)
                            for name, rows in filter(None, (preds.close(), rejects.close()))]
    summary += [("count", r, n, labelled, correct, first.get(r) if r else None)
                for r, (n, labelled, correct) in counts.items()]
    summary += [("device", None, 0, 0, 0, d) for d in sorted(devices)]
    yield pd.DataFrame(summary, columns=["kind", "reason", "n", "labelled", "correct", "name"])


def score_and_write(batches: Iterator[pd.DataFrame], score, staging: str, id_col: str) -> Iterator[pd.DataFrame]:
    """``score`` (a batch function yielding :data:`SCORED_DDL` frames) then :func:`write_scored`."""
    yield from write_scored(score(batches), staging, id_col)

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
from sparkdl_pipe.executor.ingest import read_and_prepare
from sparkdl_pipe.executor.reading import read_bytes
from sparkdl_pipe.executor.worker import prune_zip_importers
from sparkdl_pipe.records import clean_label, content_id, label_from_rel_path, relative_to, root_prefix
from sparkdl_pipe.rejects import MISSING_FILE
from sparkdl_pipe.schema import decode_features

#: What :func:`score_batches` yields (the record key is the modality's: ``path`` for images, ``id`` for text).
SCORED_DDL = ("<key> string, true_label string, prediction int, label_name string, probability double, "
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


_WITH_EMBEDDING: dict[tuple[int, str], tuple] = {}


def forward_with_embedding(model, layer: str):
    """``model``'s forward pass returning (outputs, the embedding layer's output), compiled once.

    ``layer``: a layer name, or ``""`` for the input of the head (:func:`~sparkdl_pipe.safe_model.embedding_layer`).
    """
    got = _WITH_EMBEDDING.get((id(model), layer))
    if got is not None and got[0] is model:
        return got[1]
    import tensorflow as tf
    import tf_keras as keras

    from sparkdl_pipe.safe_model import embedding_layer

    both = keras.Model(model.inputs, [model.outputs[0], embedding_layer(model, layer or None).output])
    dtype = model.inputs[0].dtype
    graph = tf.function(lambda t: both(t, training=False),
                        input_signature=[tf.TensorSpec([None, *model.inputs[0].shape[1:]], dtype)])
    _WITH_EMBEDDING.clear()

    def forward(x: np.ndarray):
        out, emb = graph(x.astype(dtype.as_numpy_dtype, copy=False))
        return np.asarray(out), np.asarray(emb, dtype=np.float32).reshape(len(x), -1)

    _WITH_EMBEDDING[(id(model), layer)] = (model, forward)
    return forward


def predict_with_embeddings(model, x: np.ndarray, batch_size: int, layer: str) -> tuple[np.ndarray, np.ndarray]:
    """(outputs, embeddings as float32 (N, d)) for (N, ...) inputs, ``batch_size`` rows per call."""
    forward = forward_with_embedding(model, layer)
    if len(x) == 0:
        return np.zeros((0, model.output_shape[-1]), dtype=np.float32), np.zeros((0, 0), dtype=np.float32)
    parts = [forward(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def embedding_column(emb: np.ndarray, ok: np.ndarray) -> list:
    """One float32 array per row (None for rejected rows), from the embeddings of the ``ok`` rows."""
    out: list = [None] * len(ok)
    for i, j in enumerate(np.flatnonzero(ok)):
        out[j] = emb[i]
    return out


def predict_arrays(model, x: np.ndarray, batch_size: int) -> np.ndarray:
    """Class probabilities for (N, ...) inputs, ``batch_size`` rows per call of the compiled model."""
    if len(x) == 0:
        return np.zeros((0, model.output_shape[-1]), dtype=np.float32)
    forward = forward_function(model)
    return np.concatenate([np.asarray(forward(x[i:i + batch_size])) for i in range(0, len(x), batch_size)])


def model_inputs(modality, spec, artifacts, values, source: str, decoded_by_reader: bool = False
                 ) -> tuple[np.ndarray, np.ndarray, list[str | None], list[str | None]]:
    """(model input for the usable rows, usable mask, reject reason, message) for one batch.

    ``source``: ``stored`` (an ingested split's feature cells), ``path`` (read each file here) or
    ``content`` (the record's bytes). Raw records go through the modality's :meth:`prepare` and
    :meth:`encode`, exactly as ingest did. Runs on: executors.
    """
    n = len(values)
    reason: list[str | None] = [None] * n
    message: list[str | None] = [None] * n
    if source == "stored":
        return decode_features(list(values), spec.shape, modality.dtype), np.ones(n, dtype=bool), reason, message
    rows: list[np.ndarray] = []
    ok = np.zeros(n, dtype=bool)
    for i, v in enumerate(values):
        if (v is None and modality.table_reads == "path") or (source == "path" and not isinstance(v, str)):
            reason[i], message[i] = MISSING_FILE, "no input (null)"  # a null text is the modality's to judge
            continue
        if isinstance(v, str) and source == "content":
            v = v.encode("utf-8")  # a string cell: its text, decoded strictly like any bytes
        value, reason[i], message[i], _ = read_and_prepare(modality, spec, v, v, source == "content",
                                                           decoded_by_reader)
        if reason[i] is None:
            rows.append(modality.encode(value, spec, artifacts))
            ok[i] = True
    x = np.stack(rows) if rows else np.zeros((0, *spec.shape), dtype=np.dtype(modality.dtype).newbyteorder("="))
    return x, ok, reason, message


def _keys_and_labels(pdf: pd.DataFrame, source: str, root_path: str | None, known: set[str], key_col: str,
                     task=None):
    """(record keys, true labels the model knows) of a batch: a label column, else the label folder."""
    if source == "content":
        keys = [k if isinstance(k, str) and k != "" else content_id(c if c is not None else b)
                for k, c, b in zip(pdf["path"], pdf["content"], pdf.get("malformed", [None] * len(pdf)), strict=True)]
    else:
        keys = [str(k) for k in pdf[key_col]]
    if "true_label" in pdf:  # a label column: a label the model never saw is no true label
        labels = [clean_label(x) for x in pdf["true_label"]]
    elif root_path is not None:
        labels = [label_from_rel_path(relative_to(p, root_path))[0] for p in pdf["path"]]
    else:
        labels = [None] * len(pdf)
    if task is not None:  # the task says which truths it can compare with (regression: finite numbers)
        return keys, [task.known_truth(lab, known) for lab in labels]
    return keys, [lab if lab in known else None for lab in labels]


def score_batches(batches: Iterator[pd.DataFrame], model_path: str, model_id: str, model_name: str,
                  modality_ref: str, spec_dict: dict, model_dir: str, card: dict, labels: list[str],
                  batch_size: int, source: str, threads: int | None = None, root: str | None = None,
                  decoded_by_reader: bool = False, task_name: str = "classification",
                  embeddings: str | None = None, task_options: dict | None = None) -> Iterator[pd.DataFrame]:
    """Score a partition of any kind of data. ``source`` says what the input holds:

    ``stored`` (an ingested split: the modality's feature column, ``true_label``), ``path`` (files
    to read: folders and path tables) or ``content`` (table rows holding the record: ``path`` is
    then its id or null, with ``content`` and ``malformed``). One output row per input row (the
    columns of :data:`SCORED_DDL`); rows that cannot be used carry ``reason``/``message`` and no
    prediction. With ``root`` (folder input), the true label is the file's label folder when the
    model knows that label. ``embeddings`` (``""``: the input of the head, or a layer's name) adds
    an ``embedding`` column (float32 arrays) computed in the same forward pass. ``task_options``:
    the task's scoring options from the driver (:meth:`~sparkdl_pipe.tasks.base.Task.score_options`).
    """
    from sparkdl_pipe import tasks
    from sparkdl_pipe.modalities import resolve

    prune_zip_importers()  # cheap task starts in this reused worker (executor/worker.py)
    modality = resolve(modality_ref)
    task = tasks.get(task_name)
    spec = modality.spec_type.from_dict(spec_dict)
    artifacts = modality.load_artifacts(model_dir, spec, card)
    root_path = root_prefix(root) if root else None
    known = set(labels)
    model = MODEL_CACHE.get(model_path, model_id, threads)
    device = _device_record()
    col = {"stored": modality.feature, "content": "content", "path": "path"}[source]
    key_col = modality.key if source == "stored" else "path"
    for pdf in batches:
        x, ok, reason, message = model_inputs(modality, spec, artifacts, pdf[col], source, decoded_by_reader)
        keys, true = _keys_and_labels(pdf, source, root_path, known, key_col, task)
        extra: dict = {}
        emb = None
        if embeddings is None:
            outputs = predict_arrays(model, x, batch_size)
        else:
            outputs, emb = predict_with_embeddings(model, x, batch_size, embeddings)
            extra["embedding"] = embedding_column(emb, ok)
        cols = task.scored_columns(outputs, ok, labels, x, emb, task_options or {})
        cols.update(task.truth_columns(cols, true))
        yield pd.DataFrame({modality.key: keys, "true_label": true, **cols, **extra, "model_name": model_name,
                            "model_id": model_id, "reason": reason, "message": message, "device": device})


def _batch_setup(modality_ref: str, task_name: str, spec_dict: dict, model_dir: str, card: dict, model_path: str,
                 model_id: str, threads: int | None):
    """(modality, task, spec, fitted artifacts, model) for a Spark ML batch function, once per task."""
    from sparkdl_pipe import tasks
    from sparkdl_pipe.modalities import resolve

    prune_zip_importers()  # cheap task starts in this reused worker (executor/worker.py)
    modality = resolve(modality_ref)
    spec = modality.spec_type.from_dict(spec_dict)
    return (modality, tasks.get(task_name), spec, modality.load_artifacts(model_dir, spec, card),
            MODEL_CACHE.get(model_path, model_id, threads))


def append_predictions(batches: Iterator[pd.DataFrame], input_col: str, source: str, model_path: str,
                       model_id: str, modality_ref: str, spec_dict: dict, model_dir: str, card: dict,
                       labels: list[str], batch_size: int, out_cols: dict[str, str],
                       threads: int | None = None, task_name: str = "classification") -> Iterator[pd.DataFrame]:
    """Keep every input column and add prediction (a double), predicted label, every class's
    probability (an array of doubles) and reject reason.

    The batch function behind the Spark ML Transformers (:mod:`sparkdl_pipe.ml`). ``out_cols`` maps
    ``prediction``, ``label``, ``probability`` and ``reason`` to output column names. Runs on: executors.
    """
    modality, task, spec, artifacts, model = _batch_setup(modality_ref, task_name, spec_dict, model_dir, card,
                                                          model_path, model_id, threads)
    for pdf in batches:
        x, ok, reason, _ = model_inputs(modality, spec, artifacts, pdf[input_col], source)
        outputs = predict_arrays(model, x, batch_size)
        cols = task.prediction_columns(outputs, ok, labels)
        out = pdf.copy()
        # Spark ML's conventions, as its evaluators expect: the prediction a double, the probability
        # every class's (an array here, a Vector once the Model converts it); null where not scored.
        out[out_cols["prediction"]] = pd.to_numeric(pd.Series(cols["prediction"]), errors="coerce") \
            .astype("float64").values
        out[out_cols["label"]] = cols["label_name"]
        out[out_cols["probability"]] = embedding_column(np.asarray(outputs, dtype=np.float64), ok)
        out[out_cols["reason"]] = reason
        yield out


def task_columns(task, model, x: np.ndarray, ok: np.ndarray, labels: list[str], batch_size: int,
                 options: dict | None = None) -> dict:
    """The task's columns of one batch (:meth:`~sparkdl_pipe.tasks.base.Task.scored_columns`): one
    forward pass, with the task's embedding layer read in the same pass when it has one (an
    autoencoder's bottleneck). ``x``: the model inputs of the ``ok`` rows. Runs on: executors."""
    emb = None
    if task.embedding_layer is None:
        outputs = predict_arrays(model, x, batch_size)
    else:
        outputs, emb = predict_with_embeddings(model, x, batch_size, task.embedding_layer)
    return task.scored_columns(outputs, ok, labels, x, emb, options or {})


def append_task_outputs(batches: Iterator[pd.DataFrame], input_col: str, source: str, model_path: str,
                        model_id: str, modality_ref: str, spec_dict: dict, model_dir: str, card: dict,
                        labels: list[str], batch_size: int, out_cols: dict[str, str], reason_col: str,
                        threads: int | None = None, task_name: str = "regression",
                        task_options: dict | None = None) -> Iterator[pd.DataFrame]:
    """Keep every input column and add the task's output columns (``out_cols``: the task's name ->
    the output column's) and the reject reason. The batch function behind the Spark ML Models of
    tasks other than classification; ``task_options``: the task's scoring options from the driver
    (an autoencoder's anomaly threshold). Runs on: executors."""
    modality, task, spec, artifacts, model = _batch_setup(modality_ref, task_name, spec_dict, model_dir, card,
                                                          model_path, model_id, threads)
    for pdf in batches:
        x, ok, reason, _ = model_inputs(modality, spec, artifacts, pdf[input_col], source)
        cols = task_columns(task, model, x, ok, labels, batch_size, task_options)
        out = pdf.copy()
        for name, col in out_cols.items():
            out[col] = cols[name]
        out[reason_col] = reason
        yield out


def append_embeddings(batches: Iterator[pd.DataFrame], input_col: str, source: str, model_path: str,
                      model_id: str, modality_ref: str, spec_dict: dict, model_dir: str, card: dict,
                      batch_size: int, layer: str, out_col: str, reason_col: str | None,
                      threads: int | None = None) -> Iterator[pd.DataFrame]:
    """Keep every input column and add ``out_col`` (the embedding, float32 arrays; null for rows that
    cannot be used) and, when named, ``reason_col``. The batch function behind
    :class:`sparkdl_pipe.ml.KerasFeaturizer`. Runs on: executors."""
    from sparkdl_pipe.modalities import resolve

    prune_zip_importers()  # cheap task starts in this reused worker (executor/worker.py)
    modality = resolve(modality_ref)
    spec = modality.spec_type.from_dict(spec_dict)
    artifacts = modality.load_artifacts(model_dir, spec, card)
    model = MODEL_CACHE.get(model_path, model_id, threads)
    for pdf in batches:
        x, ok, reason, _ = model_inputs(modality, spec, artifacts, pdf[input_col], source)
        _, emb = predict_with_embeddings(model, x, batch_size, layer)
        out = pdf.copy()
        out[out_col] = embedding_column(emb, ok)
        if reason_col:
            out[reason_col] = reason
        yield out


def mixed_inputs(modality, spec, artifacts, values) -> tuple[np.ndarray, np.ndarray, list[str | None]]:
    """:func:`model_inputs` for a column whose cells are bytes (the record) or strings (a path to
    read for kinds whose tables name files, else the record itself), as SQL functions get them."""
    n = len(values)
    reason: list[str | None] = [None] * n
    data: list = [None] * n
    for i, v in enumerate(values):
        if isinstance(v, str) and modality.table_reads == "path":
            data[i], reason[i], _ = read_bytes(v)
        elif isinstance(v, str):
            data[i] = v.encode("utf-8")
        elif v is None:
            reason[i] = MISSING_FILE
        else:
            data[i] = bytes(v)
    keep = [i for i in range(n) if reason[i] is None]
    x, ok_kept, why, _ = model_inputs(modality, spec, artifacts, [data[i] for i in keep], "content")
    ok = np.zeros(n, dtype=bool)
    for j, i in enumerate(keep):
        ok[i], reason[i] = ok_kept[j], why[j]
    return x, ok, reason


def predictions_schema(id_col: str, task_name: str = "classification", embeddings: bool = False,
                       task_options: dict | None = None):
    """The Arrow schema of the predictions table (``id_col``: the modality's record key), with an
    ``embedding`` list<float> column when embeddings are asked for (and the task's does not have
    one already) and the columns the task's options add (an autoencoder's ``is_anomaly``)."""
    import pyarrow as pa

    from sparkdl_pipe import tasks

    task = tasks.get(task_name)
    schema = task.prediction_schema(id_col)
    for f in task.extra_prediction_fields(task_options or {}):
        schema = schema.append(f)
    if embeddings and "embedding" not in schema.names:
        schema = schema.append(pa.field("embedding", pa.list_(pa.float32())))
    return schema


def write_scored(frames: Iterator[pd.DataFrame], staging: str, id_col: str, task_name: str = "classification",
                 embeddings: bool = False, task_options: dict | None = None) -> Iterator[pd.DataFrame]:
    """Write scored frames (:data:`SCORED_DDL` rows) as this task's part files of ``predictions`` and
    ``rejects`` under ``staging`` (:mod:`sparkdl_pipe.executor.parts`); yield only summary rows
    (:data:`SCORE_SUMMARY_DDL`). Runs on: executors."""
    import pyarrow as pa

    from sparkdl_pipe.executor.parts import PartWriter
    from sparkdl_pipe.rejects import arrow_schema

    preds = PartWriter(staging, "predictions", predictions_schema(id_col, task_name, embeddings, task_options))
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
        if "label_name" in good:
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


def score_and_write(batches: Iterator[pd.DataFrame], score, staging: str, id_col: str,
                    task_name: str = "classification", embeddings: bool = False,
                    task_options: dict | None = None) -> Iterator[pd.DataFrame]:
    """``score`` (a batch function yielding :data:`SCORED_DDL` frames) then :func:`write_scored`."""
    yield from write_scored(score(batches), staging, id_col, task_name, embeddings, task_options)

"""Fine-tuning from a pretrained model the user has (``train --init-from``): its body, a new head.

The parent is a Keras model file (``.keras``, ``.h5``) or one of our model directories (its
``model.keras``, checked against the card's model id). Its body is every layer up to the input of its
head (the layer before the last one) or up to ``--init-layer NAME``; the task's head goes on top.
Files are loaded with Keras' safe mode, as scoring loads them.

Runs on: driver (:func:`resolve_parent`: checks, before any rank starts) and executors
(:func:`load_parent_body`, in every Horovod rank). TensorFlow is imported inside the functions.
"""

from __future__ import annotations

from dataclasses import dataclass

from sparkdl_pipe.errors import DatasetError, UserInputError

#: Model file suffixes ``--init-from`` takes (else a model directory with a model card).
MODEL_SUFFIXES = (".keras", ".h5", ".hdf5")


@dataclass(frozen=True)
class ParentModel:
    """The model fine-tuning starts from, as the card records it."""

    model_url: str  # the model file (any storage URL)
    model_id: str  # the parent's card's model id, or the file's SHA-256 prefix
    source: str  # what the user gave
    layer: str  # the layer whose output is the body's output
    name: str  # the parent's model name

    def to_dict(self) -> dict:
        return {"model_id": self.model_id, "source": self.source, "layer": self.layer, "name": self.name}


def _sha256_prefix(url: str) -> str:
    """The first 16 hex digits of a file's SHA-256 (a model id, as the cards write it), read through pyarrow."""
    import hashlib

    from sparkdl_pipe import storage

    fs, path = storage.filesystem(url)
    h = hashlib.sha256()
    with fs.open_input_file(path) as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def _load(path: str):
    from sparkdl_pipe.safe_model import load_model_safely

    if path.endswith((".h5", ".hdf5")):
        import h5py
        import tf_keras as keras

        # HDF5 files have no safe mode: refuse a Lambda layer (Python bytecode) before loading anything.
        with h5py.File(path, "r") as f:
            config = f.attrs.get("model_config")
        text = config.decode() if isinstance(config, bytes) else str(config)
        if config is None or '"class_name": "Lambda"' in text:
            raise DatasetError(f"model file {path} refused: " + ("it has no model config (weights only?)"
                               if config is None else "it contains a Lambda layer (Python code)"),
                               fix="Give a .keras file or a model of built-in layers")
        try:
            return keras.models.load_model(path, compile=False)
        except (ValueError, TypeError, OSError) as e:
            raise DatasetError(f"model file {path} cannot be loaded: {str(e).splitlines()[0][:300]}") from e
    return load_model_safely(path)


def body_of(model, layer: str | None):
    """(the body: ``model``'s inputs to ``layer``'s output, or to its head's input; that layer's name)."""
    import tf_keras as keras

    from sparkdl_pipe.safe_model import embedding_layer

    cut = embedding_layer(model, layer)
    return keras.Model(model.inputs, cut.output, name=model.name), cut.name


def resolve_parent(init_from: str, layer: str | None, input_shape: tuple[int, ...]) -> ParentModel:
    """Check, on the driver, that ``init_from`` is a model whose body takes ``input_shape``
    (the dataset's) and gives flat features at the cut; one line when not."""
    from sparkdl_pipe import storage
    from sparkdl_pipe.model_fetch import fetch_model

    url = storage.to_url(init_from)
    if not storage.exists(url):
        raise UserInputError("--init-from", "a Keras model file (.keras/.h5) or a model directory", init_from)
    if url.rstrip("/").lower().endswith(MODEL_SUFFIXES):
        model_url, parent_id = url, _sha256_prefix(url)
    else:
        from sparkdl_pipe.model_card import load_model_info

        try:
            info = load_model_info(url)
        except DatasetError as e:
            raise UserInputError("--init-from", "a Keras model file (.keras/.h5) or a model directory", init_from,
                                 str(e)) from e
        model_url, parent_id = info.model_url, info.model_id
    path = fetch_model(model_url, parent_id)  # this node's verified copy (a model directory: the card's id)
    model = _load(path)
    got = tuple(model.input_shape[1:]) if not isinstance(model.input_shape, list) else None
    if got != tuple(input_shape):
        raise UserInputError(f"--init-from {init_from}: the model's input shape does not match the dataset's",
                             f"input shape {tuple(input_shape)} (the dataset)", got,
                             "Re-ingest with the parent's image size and channels, or pick another model")
    body, cut = body_of(model, layer)
    if len(body.output_shape) != 2:
        raise UserInputError(f"--init-layer {cut}", "a layer with flat (batch, features) output",
                             tuple(body.output_shape), "Name a layer after the Flatten/pooling layer")
    return ParentModel(model_url, parent_id, init_from, cut, model.name)


def load_parent_body(model_url: str, parent_id: str, layer: str | None, task, n_outputs: int):
    """The model to fine-tune: the parent's body (its weights) with ``task``'s new head. Executors
    (each node fetches the file once and checks its SHA-256 against ``parent_id``)."""
    from sparkdl_pipe.model_fetch import fetch_model
    from sparkdl_pipe.models.builders import with_head

    body, _ = body_of(_load(fetch_model(model_url, parent_id)), layer)
    return with_head(body, task, n_outputs)

"""Loading a model file without running code from it, and checking it against its model card.

Models are loaded with Keras' safe mode: a ``Lambda`` layer (Python bytecode in the file) or a
class Keras does not know is refused, never executed. Scoring calls :func:`check_model_file` once
on the driver before any task starts, so a refused model is one clear line, not a failed Spark task.

Runs on: driver (the check) and executors (:func:`load_model_safely`, via the scoring model cache).
"""

from __future__ import annotations

from sparkdl_pipe.errors import DatasetError


def load_model_safely(path: str):
    """``tf_keras.models.load_model(path, compile=False, safe_mode=True)`` with our error messages."""
    import tf_keras as keras

    from sparkdl_pipe.models.layers import ensure_registered

    ensure_registered()  # the package's own layers (fasttext's HashedBigrams) load from its code
    try:
        return keras.models.load_model(path, compile=False, safe_mode=True)
    except (ValueError, TypeError) as e:
        text = str(e)
        if "Lambda" in text or "lambda" in text:
            raise DatasetError(f"model file {path} refused: it contains a Lambda layer (Python code), which "
                               "safe mode never loads", fix="Rebuild the model with built-in layers "
                               "(see README, 'Safety')") from e
        if "Could not locate" in text or "Unknown layer" in text or "custom" in text.lower():
            raise DatasetError(f"model file {path} refused: it needs custom code Keras does not know "
                               f"({text.splitlines()[0][:200]})",
                               fix="Only built-in Keras layers are loaded") from e
        raise DatasetError(f"model file {path} cannot be loaded: {text.splitlines()[0][:300]}") from e
    except OSError as e:
        raise DatasetError(f"model file {path} cannot be read: {e}") from e


def embedding_layer(model, name: str | None = None):
    """The layer whose output is a model's embedding: the one named ``name``, or by default the
    input of the task's head (the layer before the last one: what the body computed).

    >>> embedding_layer(model).name  # doctest: +SKIP
    'dense'
    """
    if name:
        try:
            return model.get_layer(name)
        except ValueError as e:
            names = [lay.name for lay in model.layers]
            raise DatasetError(f"the model has no layer {name!r}", f"one of {names}", name) from e
    head = model.layers[-1]
    inbound = head._inbound_nodes[0].inbound_layers if head._inbound_nodes else None
    layer = inbound[0] if isinstance(inbound, list) else inbound
    if layer is None or len(layer.output_shape) != 2:
        raise DatasetError("the model's head does not sit on a flat feature layer",
                           fix="Name the layer whose output you want with --embedding-layer")
    return layer


def check_model_file(path: str, input_shape: tuple[int, ...], num_classes: int, embedding: str | None = None) -> None:
    """Load ``path`` safely and check it takes ``input_shape`` and outputs ``num_classes`` (the card's);
    with ``embedding`` (``""``: the default layer, or a layer's name), that the embedding layer exists."""
    model = load_model_safely(path)
    if embedding is not None:
        embedding_layer(model, embedding or None)
    got_in = tuple(model.input_shape[1:]) if not isinstance(model.input_shape, list) else None
    got_out = model.output_shape[-1] if not isinstance(model.output_shape, list) else None
    if got_in != tuple(input_shape):
        raise DatasetError(f"model file {path} does not match its model card", f"input shape {tuple(input_shape)}",
                           got_in)
    if got_out != num_classes:
        raise DatasetError(f"model file {path} does not match its model card", f"{num_classes} output classes",
                           got_out)

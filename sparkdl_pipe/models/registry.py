"""Model registry: built-in builders by name, or a user's own as ``module:function``.

Runs on: driver (validation) and executors (building).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from sparkdl_pipe.errors import UserInputError
from sparkdl_pipe.models import builders, text_builders

#: Built-in classifiers by name (body + softmax head), the historical ``(input_shape, num_classes)`` API.
_BUILTIN: dict[str, Callable] = {
    "mlp": builders.build_mlp,
    "cnn": builders.build_cnn,
    "bilstm": text_builders.build_bilstm,
    "textcnn": text_builders.build_textcnn,
    "conv_autoencoder": builders.build_conv_autoencoder,
    "fasttext": text_builders.build_fasttext,
}
#: Built-in bodies by name: ``(input_shape, **modality extras)`` -> a model whose output is features.
BODIES: dict[str, Callable] = {
    "mlp": builders.mlp_body,
    "cnn": builders.cnn_body,
    "bilstm": text_builders.bilstm_body,
    "textcnn": text_builders.textcnn_body,
    "conv_autoencoder": builders.conv_encoder_body,
    "fasttext": text_builders.fasttext_body,
}

#: The dataset kind (manifest ``kind``) each built-in model takes.
MODEL_KINDS = {"mlp": "image", "cnn": "image", "bilstm": "text", "textcnn": "text", "fasttext": "text",
               "conv_autoencoder": "image"}


def list_models(kind: str | None = None) -> list[str]:
    """Names of the built-in models (for one dataset kind, if given)."""
    return sorted(n for n in _BUILTIN if kind is None or MODEL_KINDS[n] == kind)


def resolve_model(name: str, kind: str) -> str:
    """The model to train on a dataset of ``kind``: ``auto`` picks the kind's default; a built-in
    model of the other kind is refused here, on the driver, before any rank starts. (``auto`` on a
    text classification dataset trains several candidates and keeps the best on val: that choice is
    :mod:`sparkdl_pipe.driver.auto_select`'s, which trains each with its own name.)

    >>> resolve_model("auto", "text")
    'textcnn'
    """
    if name == "auto":
        from sparkdl_pipe import modalities

        return modalities.get(kind).default_model
    if name in MODEL_KINDS and MODEL_KINDS[name] != kind:
        raise UserInputError(f"model {name!r} is for {MODEL_KINDS[name]} datasets, this dataset is {kind}",
                             f"one of {list_models(kind)} or 'module:function'", name)
    return name


def get_builder(name: str) -> Callable:
    """The builder for a registered name, or a user function named ``package.module:function``.

    A user module is imported only from the exact ``module:function`` the user names.

    >>> get_builder("cnn").__name__
    'build_cnn'
    """
    if name in _BUILTIN:
        return _BUILTIN[name]
    if ":" not in name:
        raise UserInputError("model", f"one of {list_models()} or 'module:function'", name)
    module_name, _, func_name = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise UserInputError(f"cannot import model module {module_name!r}", fix=f"({e}). Make it "
                             "importable on the driver and on every executor") from e
    func = getattr(module, func_name, None)
    if not callable(func):
        raise UserInputError(f"model builder {name!r}", f"a function {func_name} in {module_name}",
                             type(func).__name__ if func is not None else "nothing")
    return func


def build_model(name: str, input_shape, task, n_outputs: int, extras: dict):
    """The model to train: a built-in body with ``task``'s head, or a user's ``module:function``.

    A user function is called as ``f(input_shape, n_outputs, **extras)``; when what it returns
    already ends in the task's head (a softmax over ``n_outputs``) it is kept as it is, else the
    task's head is put on top of its output. Runs on: executors (ranks) and the driver (tests).
    """
    from sparkdl_pipe.models.builders import with_head

    if name in BODIES:
        return with_head(BODIES[name](input_shape, **extras), task, n_outputs)
    model = get_builder(name)(input_shape, n_outputs, **extras)
    is_complete = getattr(task, "is_complete", None)
    return model if is_complete is not None and is_complete(model, n_outputs) else with_head(model, task, n_outputs)

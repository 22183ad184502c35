"""Model registry: built-in builders by name, or a user's own as ``module:function``.

Runs on: driver (validation) and executors (building).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from sparkdl_pipe.errors import UserInputError
from sparkdl_pipe.models import builders, text_builders

_BUILTIN: dict[str, Callable] = {
    "mlp": builders.build_mlp,
    "cnn": builders.build_cnn,
    "bilstm": text_builders.build_bilstm,
    "textcnn": text_builders.build_textcnn,
}

#: The dataset kind (manifest ``kind``) each built-in model takes, and the default model per kind.
MODEL_KINDS = {"mlp": "image", "cnn": "image", "bilstm": "text", "textcnn": "text"}
DEFAULT_MODEL = {"image": "cnn", "text": "textcnn"}


def list_models(kind: str | None = None) -> list[str]:
    """Names of the built-in models (for one dataset kind, if given)."""
    return sorted(n for n in _BUILTIN if kind is None or MODEL_KINDS[n] == kind)


def resolve_model(name: str, kind: str) -> str:
    """The model to train on a dataset of ``kind``: ``auto`` picks the kind's default; a built-in
    model of the other kind is refused here, on the driver, before any rank starts.

    >>> resolve_model("auto", "text")
    'textcnn'
    """
    if name == "auto":
        return DEFAULT_MODEL[kind]
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

"""Model registry: built-in builders by name, or a user's own as ``module:function``.

Runs on: driver (validation) and executors (building).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from sparkdl_pipe.errors import UserInputError
from sparkdl_pipe.models import builders

_BUILTIN: dict[str, Callable] = {
    "mlp": builders.build_mlp,
    "cnn": builders.build_cnn,
}


def list_models() -> list[str]:
    """Names of the built-in models."""
    return sorted(_BUILTIN)


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

"""Kinds of data, by name: each one module behind :class:`~sparkdl_pipe.modalities.base.Modality`.

``image`` and ``text`` are built in. A kind of your own is one registration line, made before the
job runs (on the driver; executors find the object by the same ``module:attribute``)::

    from sparkdl_pipe import modalities
    modalities.register("npy", "mypkg.npy_modality:NPY")

Runs on: driver and executors.
"""

from __future__ import annotations

import importlib

from sparkdl_pipe.errors import UserInputError
from sparkdl_pipe.modalities.base import Modality, Prepared

__all__ = ["Modality", "Prepared", "get", "kinds", "ref_of", "register", "resolve"]

#: kind -> ``module:attribute`` of its Modality instance.
_REGISTRY: dict[str, str] = {
    "image": "sparkdl_pipe.modalities.image:IMAGE",
    "text": "sparkdl_pipe.modalities.text:TEXT",
}


def register(kind: str, ref: str) -> None:
    """Register the Modality instance at ``ref`` (``module:attribute``, importable on every node)."""
    if ":" not in ref:
        raise UserInputError("modality reference", "'module:attribute'", ref)
    _REGISTRY[kind] = ref


def kinds() -> list[str]:
    return sorted(_REGISTRY)


def ref_of(kind: str) -> str:
    if kind not in _REGISTRY:
        raise UserInputError("kind of data", f"one of {kinds()}", kind,
                             "Register your own with sparkdl_pipe.modalities.register")
    return _REGISTRY[kind]


def resolve(ref: str) -> Modality:
    """The Modality instance at ``module:attribute`` (executors get references, not objects)."""
    module, _, attr = ref.partition(":")
    obj = getattr(importlib.import_module(module), attr, None)
    if not isinstance(obj, Modality):
        raise UserInputError(f"modality {ref!r}", "a Modality instance", type(obj).__name__)
    return obj


def get(kind: str) -> Modality:
    """The registered Modality of a dataset or model ``kind`` ('image', 'text', ...)."""
    return resolve(ref_of(kind))

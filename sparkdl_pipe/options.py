"""Command-line options declared beside the config fields they set: one default and one help text
per setting, in the frozen config dataclasses (:mod:`sparkdl_pipe.config`, the specs).

:func:`option` makes a dataclass field that carries its option; :func:`add_options` adds every
option of a config class (nested configs included) to an argparse parser; :func:`build` makes the
config back from the parsed arguments. The ``sparkdl-pipe`` CLI is derived this way
(:mod:`sparkdl_pipe.cli`), so a new field is a new flag, a config-file key and a ``--help`` line.

Runs on: driver (the fields themselves are plain dataclass fields everywhere).
"""

from __future__ import annotations

import argparse
import typing
from collections.abc import Callable
from dataclasses import MISSING, Field, field, fields
from typing import Any


def option(default: Any = MISSING, *, help: str, flag: str | None = None, factory: Callable | None = None,
           choices: typing.Sequence | None = None, metavar: str | None = None, nargs: str | None = None,
           invert: bool = False, parse: Callable | None = None, expand: Callable | None = None) -> Any:
    """A dataclass field with its command-line option.

    ``flag``: the option (default ``--field-name``); ``invert``: a boolean flag that sets the field
    to False (``--keep-case`` for ``lowercase``); ``parse``: converts the flag's string (``A,B`` ->
    a tuple); ``expand``: the flag's value -> several fields (``--image-size H W`` -> height, width).
    """
    cli = {"help": help, "flag": flag, "choices": choices, "metavar": metavar, "nargs": nargs,
           "invert": invert, "parse": parse, "expand": expand}
    if factory is not None:
        return field(default_factory=factory, metadata={"cli": cli})
    if default is MISSING:
        return field(metadata={"cli": cli})
    return field(default=default, metadata={"cli": cli})


def nested(factory: Callable) -> Any:
    """A field holding another config (a spec, the split rule) whose options are this config's too."""
    return field(default_factory=factory, metadata={"nested": True})


def _plain(tp: Any) -> Any:
    """``X`` of ``X | None``."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return args[0] if args and type(None) in typing.get_args(tp) else tp


def _dest(f: Field) -> str:
    flag = f.metadata["cli"]["flag"] or "--" + f.name.replace("_", "-")
    return flag.lstrip("-").replace("-", "_")


def _walk(cls: type):
    """(field, its type, the dataclass it belongs to) for every option of ``cls``, nested ones included."""
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        if f.metadata.get("nested"):
            yield from _walk(_plain(hints[f.name]))
        elif "cli" in f.metadata:
            yield f, _plain(hints[f.name]), cls


def add_options(parser: argparse.ArgumentParser | Any, cls: type, skip: typing.Container[str] = ()) -> None:
    """Add every option of the config class ``cls`` to ``parser`` (its defaults are the fields')."""
    for f, tp, _owner in _walk(cls):
        cli = f.metadata["cli"]
        dest = _dest(f)
        if dest in skip:
            continue
        flag = "--" + dest.replace("_", "-")
        default = f.default if f.default is not MISSING else (
            f.default_factory() if f.default_factory is not MISSING else None)
        kw: dict[str, Any] = {"dest": dest, "help": cli["help"]}
        if tp is bool:
            kw.update(action="store_true", default=False)
        else:
            if cli["parse"] is None and tp in (int, float, str):
                kw["type"] = tp
            elif cli["nargs"]:
                kw["type"] = type(default)
            if cli["nargs"]:
                kw["nargs"] = cli["nargs"]
                default = [default] if default is not None else None
            kw["default"] = default  # with ``parse``, build() converts it like a given flag
            if cli["choices"] is not None:
                kw["choices"] = list(cli["choices"])
            if cli["metavar"]:
                kw["metavar"] = cli["metavar"]
            if f.default is MISSING and f.default_factory is MISSING:
                kw["required"] = True
        parser.add_argument(flag, **kw)


def build(cls: type, args: argparse.Namespace) -> Any:
    """The config ``cls`` from parsed arguments (validated by its ``__post_init__``)."""
    hints = typing.get_type_hints(cls)
    kw: dict[str, Any] = {}
    for f in fields(cls):
        if f.metadata.get("nested"):
            kw[f.name] = build(_plain(hints[f.name]), args)
            continue
        cli = f.metadata.get("cli")
        if not cli or not hasattr(args, _dest(f)):
            continue
        v = getattr(args, _dest(f))
        if cli["invert"]:
            v = not v
        if cli["parse"] is not None and v is not None:
            v = cli["parse"](v)
        if cli["expand"] is not None:
            kw.update(cli["expand"](v))
        else:
            kw[f.name] = v
    return cls(**kw)


def is_option_field(f: Field) -> bool:
    return "cli" in f.metadata or bool(f.metadata.get("nested"))

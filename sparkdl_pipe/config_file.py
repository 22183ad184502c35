"""YAML configuration files for every CLI subcommand and job: file first, then flags.

Generic over argparse: every key of the file is an option's ``dest`` (``batch_size``; the flag
spelling ``batch-size`` is accepted too) of the chosen subcommand, so subcommands and options added
later get config-file support without code here. Unknown keys, wrong types and values outside
``choices`` are user mistakes (:class:`~sparkdl_pipe.errors.UserInputError`, one line, exit 2).

Runs on: driver.

>>> # train.yaml:  {dataset: ds/, output: model/, epochs: 3}
>>> # sparkdl-pipe train --config train.yaml --epochs 5   -> epochs 5 (flags override the file)
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from sparkdl_pipe.errors import UserInputError

#: Written beside every output a CLI command or job produced.
RESOLVED_FILE = "_sparkdl_config.yaml"
#: Options that are about reading the configuration, not part of it.
_META = ("config", "print_config", "command", "help")


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The subcommand parsers of ``parser`` by name (empty when it has none)."""
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            return dict(a.choices)
    return {}


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """Give every subcommand ``--config FILE.yaml`` and ``--print-config``."""
    for sub in subparsers(parser).values():
        g = sub.add_argument_group("configuration")
        g.add_argument("--config", metavar="FILE.yaml",
                       help="YAML file of options (keys: option names, e.g. batch_size: 64); flags override it")
        g.add_argument("--print-config", action="store_true",
                       help="print the resolved configuration (file + flags) as YAML and exit")


def load_yaml(path: str) -> dict[str, Any]:
    """A config file's mapping; a missing, unreadable or non-mapping file is a user mistake."""
    import yaml

    if not os.path.isfile(path):
        raise UserInputError(f"--config {path} does not exist", fix="Give a YAML file of option: value lines")
    try:
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserInputError(f"--config {path} is not valid YAML ({first})") from e
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise UserInputError(f"--config {path}", "a mapping of option: value", type(doc).__name__)
    return doc


def _coerce(action: argparse.Action, key: str, value: Any, path: str) -> Any:
    """A YAML value checked and converted the way argparse would treat the flag."""
    where = f"--config {path}: {key}"
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        if not isinstance(value, bool):
            raise UserInputError(where, "true or false", value)
        return value
    if isinstance(action, argparse._AppendAction):
        if isinstance(value, dict):  # conf: {spark.x: y} -> ["spark.x=y"]
            return [f"{k}={v}" for k, v in value.items()]
        return [str(v) for v in (value if isinstance(value, list) else [value])]
    many = action.nargs in ("+", "*") or isinstance(action.nargs, int)
    items = value if isinstance(value, list) else [value]
    if not many and isinstance(value, (list, dict)):
        raise UserInputError(where, "a single value", value)
    out = []
    for v in items:
        if v is not None and action.type is not None and callable(action.type):
            try:
                v = action.type(v)  # type: ignore[misc]
            except (TypeError, ValueError) as e:
                name = getattr(action.type, "__name__", "value")
                raise UserInputError(where, f"a{'n' if name[0] in 'aeiou' else ''} {name}", v) from e
        if action.choices is not None and v not in action.choices:
            raise UserInputError(where, f"one of {list(action.choices)}", v)
        out.append(v)
    return out if many else out[0]


def apply_config_file(sub: argparse.ArgumentParser, path: str) -> dict[str, Any]:
    """Set ``sub``'s defaults from the YAML file at ``path``; returns the values applied."""
    doc = load_yaml(path)
    actions = {a.dest: a for a in sub._actions if a.dest not in _META and a.dest != argparse.SUPPRESS}
    values: dict[str, Any] = {}
    for raw_key, value in doc.items():
        key = str(raw_key).lstrip("-").replace("-", "_")
        if key not in actions:
            known = ", ".join(sorted(actions))
            raise UserInputError(f"--config {path}: unknown option {raw_key!r}", f"one of: {known}")
        values[key] = _coerce(actions[key], key, value, path)
    for key in values:
        actions[key].required = False  # given by the file; a flag may still override it
    sub.set_defaults(**values)
    return values


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse ``argv`` with the subcommand's ``--config`` file applied first (flags override it).

    Raises :class:`UserInputError` for a bad file; argparse's own errors exit 2 as usual.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    subs = subparsers(parser)
    command = next((a for a in argv if a in subs), None)
    if command is not None:
        pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)  # "--conf k=v" is not "--config"
        pre.add_argument("--config")
        known, _ = pre.parse_known_args(argv[argv.index(command) + 1:])
        if known.config:
            apply_config_file(subs[command], known.config)
    return parser.parse_args(argv)


def resolved(args: argparse.Namespace) -> dict[str, Any]:
    """The resolved configuration of a parsed command line, without the meta options."""
    return {k: v for k, v in sorted(vars(args).items()) if k not in _META}


def dump(args: argparse.Namespace) -> str:
    """The resolved configuration as YAML, loadable again with ``--config``."""
    import yaml

    head = f"# sparkdl-pipe {args.command}: resolved configuration (file + flags)\n"
    return head + yaml.safe_dump(resolved(args), sort_keys=True, default_flow_style=False)


def save_resolved(args: argparse.Namespace, output_dir: str) -> str | None:
    """Write the resolved configuration into ``output_dir`` (a local directory) when it exists."""
    from sparkdl_pipe import storage

    if not output_dir:
        return None
    url = storage.to_url(output_dir)
    if not storage.exists(url):
        return None
    target = storage.join(url, RESOLVED_FILE)
    if storage.is_local(url):
        with open(storage.local_path(target), "w", encoding="utf-8") as f:
            f.write(dump(args))
    else:
        fs, p = storage.filesystem(target)
        with fs.open_output_stream(p) as out:
            out.write(dump(args).encode())
    return target

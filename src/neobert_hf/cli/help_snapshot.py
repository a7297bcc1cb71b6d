"""The recipe subcommands' `--help`, shipped with the package so that even the first one prints in a fraction of a second.

`neobert-hf pretrain --help` lists every field of the argument dataclasses, which subclass transformers'
`TrainingArguments`: building that parser imports torch, accelerate and transformers' training stack (5-7 s on a
2-core machine). This module stores, per recipe subcommand, what the parser's help is made of: its prog, description
and each argument's option strings, nargs, choices, metavar and fully expanded help (defaults included), in
`neobert_hf/cli/help/<command>.json`. `--help` rebuilds a plain `argparse` parser from it (no transformers, no torch)
and lets argparse format it for the current terminal, so the text is the one the real parser prints.

A snapshot is used only when it still describes the real parser:

- the installed transformers is the version it was generated with (`TrainingArguments` changes between releases);
- the files that define the parser (the subcommand module, the recipe parser, and every `neobert_hf` module that
  defines one of the argument dataclasses or their bases) have the content it was generated from (sha256), so an
  edited checkout never shows stale help.

Otherwise `--help` builds the real parser and caches its text ([`neobert_hf.cli.help_cache`]). The test
`tests/cli/test_help_snapshot.py` fails when a shipped snapshot no longer matches; regenerate them with

    python -m neobert_hf.cli.help_snapshot --write
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib
import importlib.metadata
import json
import os
import sys
from pathlib import Path


__all__ = ["RECIPE_COMMANDS", "describe", "replica", "shipped_help", "snapshot"]

_FORMAT = 1
_PACKAGE_ROOT = Path(__file__).resolve().parent.parent
SNAPSHOT_DIR = Path(__file__).resolve().with_name("help")

# The subcommands whose parser is built over transformers' TrainingArguments (or imports its stack).
RECIPE_COMMANDS = ("pretrain", "preprocess", "glue", "contrastive", "mteb")

# argparse actions that formatting can reproduce from their recorded fields alone.
_PLAIN_ACTIONS = (
    argparse._StoreAction,
    argparse._StoreConstAction,
    argparse._StoreTrueAction,
    argparse._StoreFalseAction,
    argparse._AppendAction,
    argparse._HelpAction,
)


def _formatter_name(parser: argparse.ArgumentParser) -> str:
    formatter = parser.formatter_class
    if getattr(formatter, "__module__", None) != "argparse" or formatter is argparse.MetavarTypeHelpFormatter:
        raise ValueError(f"Cannot snapshot help formatted by {formatter!r}: only argparse's own formatters are known.")
    return formatter.__name__


def describe(parser: argparse.ArgumentParser) -> dict:
    """What `parser.format_help()` is made of, as JSON-serialisable data.

    Every argument's help is stored expanded (`%(default)s` and the formatter's "(default: ...)" already filled in),
    so the replica needs no defaults or types.

    Raises:
        `ValueError`: the parser uses something the replica cannot reproduce (a custom action or formatter, a mutually
        exclusive group).
    """
    if parser._mutually_exclusive_groups:
        raise ValueError("Cannot snapshot a parser with mutually exclusive groups.")
    group_of = {}
    groups = []
    for index, group in enumerate(parser._action_groups):
        if index >= 2:  # the first two are argparse's own "positional arguments" and "options"
            groups.append({"title": group.title, "description": group.description})
        for action in group._group_actions:
            group_of[id(action)] = index
    formatter = parser._get_formatter()
    actions = []
    for action in parser._actions:
        if not isinstance(action, _PLAIN_ACTIONS):
            raise ValueError(f"Cannot snapshot {type(action).__name__} ({action.option_strings or action.dest}).")
        text = action.help
        if text == argparse.SUPPRESS:
            text = "==SUPPRESS=="
        elif text:
            text = formatter._expand_help(action)
        actions.append(
            {
                "option_strings": list(action.option_strings),
                "dest": action.dest,
                "nargs": action.nargs,
                "choices": None if action.choices is None else [str(choice) for choice in action.choices],
                "metavar": list(action.metavar) if isinstance(action.metavar, tuple) else action.metavar,
                "required": action.required,
                "help": text,
                "group": group_of[id(action)],
            }
        )
    return {
        "prog": parser.prog,
        "usage": parser.usage,
        "description": parser.description,
        "epilog": parser.epilog,
        "formatter": _formatter_name(parser),
        "groups": groups,
        "actions": actions,
    }


class _Shown(argparse.Action):
    """An argument that is only ever shown, never parsed."""

    def __call__(self, parser, namespace, values, option_string=None):  # pragma: no cover - never parsed
        raise RuntimeError("A help replica does not parse arguments.")


def replica(description: dict) -> argparse.ArgumentParser:
    """A plain `argparse` parser whose `format_help()` equals that of the parser [`describe`] was given."""
    base = getattr(argparse, description["formatter"])

    class Formatter(base):
        def _get_help_string(self, action):
            return action.help  # already expanded, with its "%" escaped

    parser = argparse.ArgumentParser(
        prog=description["prog"],
        usage=description["usage"],
        description=description["description"],
        epilog=description["epilog"],
        formatter_class=Formatter,
        add_help=False,
        allow_abbrev=False,
    )
    groups = parser._action_groups[:2] + [
        parser.add_argument_group(group["title"], group["description"]) for group in description["groups"]
    ]
    for action in description["actions"]:
        text = action["help"]
        if text == "==SUPPRESS==":
            text = argparse.SUPPRESS
        elif text:
            text = text.replace("%", "%%")
        kwargs = {
            "action": _Shown,
            "nargs": action["nargs"],
            "choices": action["choices"],
            "metavar": tuple(action["metavar"]) if isinstance(action["metavar"], list) else action["metavar"],
            "help": text,
        }
        if action["option_strings"]:
            groups[action["group"]].add_argument(
                *action["option_strings"], dest=action["dest"], required=action["required"], **kwargs
            )
        else:
            groups[action["group"]].add_argument(action["dest"], **kwargs)
    return parser


def _sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _defining_modules(command: str, parser: argparse.ArgumentParser) -> list[str]:
    """The `neobert_hf` modules the parser's text comes from: the subcommand, the recipe parser, and the modules of
    every argument dataclass and its bases."""
    names = {f"neobert_hf.cli.{command}", type(parser).__module__}
    for dtype in getattr(parser, "dataclass_types", ()):
        for klass in dtype.__mro__:
            if dataclasses.is_dataclass(klass) or klass is dtype:
                names.add(klass.__module__)
    return sorted(name for name in names if name == "neobert_hf" or name.startswith("neobert_hf."))


def _source_paths(modules: list[str]) -> dict[str, str]:
    paths = {}
    for name in modules:
        path = Path(sys.modules[name].__file__).resolve()
        paths[path.relative_to(_PACKAGE_ROOT).as_posix()] = str(path)
    return paths


def _transformers_version() -> str | None:
    try:
        return importlib.metadata.version("transformers")
    except importlib.metadata.PackageNotFoundError:
        return None


def snapshot(command: str) -> dict:
    """Build `command`'s real parser and return its snapshot (what `--write` stores)."""
    module = importlib.import_module(f"neobert_hf.cli.{command}")
    parser = module.build_argument_parser()
    sources = _source_paths(_defining_modules(command, parser))
    return {
        "format": _FORMAT,
        "command": command,
        "transformers": _transformers_version(),
        "sources": {relative: _sha256(Path(path)) for relative, path in sorted(sources.items())},
        "parser": describe(parser),
    }


def _path(command: str) -> Path:
    return SNAPSHOT_DIR / f"{command}.json"


def load(command: str) -> dict | None:
    """The shipped snapshot of `command`, or None when there is none (or it cannot be read)."""
    try:
        entry = json.loads(_path(command).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return entry if isinstance(entry, dict) else None


def stale_reason(entry: dict | None) -> str | None:
    """Why `entry` does not describe the installed parser (None when it does)."""
    if entry is None:
        return "no snapshot is shipped"
    if entry.get("format") != _FORMAT:
        return f"snapshot format {entry.get('format')!r}, expected {_FORMAT}"
    installed = _transformers_version()
    if entry.get("transformers") != installed:
        return f"generated with transformers {entry.get('transformers')}, installed {installed}"
    for relative, digest in entry.get("sources", {}).items():
        if _sha256(_PACKAGE_ROOT / relative) != digest:
            return f"neobert_hf/{relative} changed since the snapshot was generated"
    return None


def shipped_help(command: str) -> str | None:
    """`command`'s help text from its shipped snapshot, or None when there is no valid one."""
    entry = load(command)
    if stale_reason(entry) is not None:
        return None
    try:
        return replica(entry["parser"]).format_help()
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def main(argv: list[str] | None = None) -> int:
    cli = argparse.ArgumentParser(
        prog="python -m neobert_hf.cli.help_snapshot",
        description="Write or check the shipped help snapshots of the recipe subcommands.",
    )
    action = cli.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", action="store_true", help=f"regenerate {SNAPSHOT_DIR}/<command>.json")
    action.add_argument("--check", action="store_true", help="exit 1 when a shipped snapshot is stale")
    options = cli.parse_args(argv)
    stale = []
    for command in RECIPE_COMMANDS:
        if options.write:
            try:
                text = json.dumps(snapshot(command), indent=1, sort_keys=True) + "\n"
                SNAPSHOT_DIR.mkdir(exist_ok=True)
                temporary = _path(command).with_suffix(".json.tmp")
                temporary.write_text(text, encoding="utf-8")
                os.replace(temporary, _path(command))  # a snapshot is whole or absent
            except (OSError, ValueError) as error:
                print(f"error: cannot write the help snapshot of {command}: {error}", file=sys.stderr)
                return 1
            print(f"wrote {_path(command)}")
        else:
            reason = stale_reason(load(command))
            if reason is not None:
                stale.append(f"{command}: {reason}")
    if stale:
        print("Stale help snapshots (regenerate with `python -m neobert_hf.cli.help_snapshot --write`):")
        print("\n".join(f"  {line}" for line in stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

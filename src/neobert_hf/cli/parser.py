"""`HfArgumentParser` that reads `--config recipe.yaml`, lets command-line flags win, and rejects unknown keys.

YAML values are checked exactly like command-line values: each YAML entry is turned into the `--key value` tokens
it stands for and parsed by the same argparse actions, placed before the real command line so that a flag given
there overrides the recipe. Precedence: command line > YAML > dataclass defaults.

Recipes are read strictly: a key given twice is an error (naming the key and both lines), and only `true`/`false`
are booleans (YAML 1.1's `yes`, `no`, `on`, `off` stay the strings they look like, so `eval_strategy: no` means
"no" and a string option never silently becomes `False`). Any optional key of a recipe is unset from the command
line with `--key none` (or `null`); `report_to none` keeps its own meaning (no integrations).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import os
import re
from collections.abc import Sequence
from typing import Any

import yaml
from transformers import HfArgumentParser


__all__ = ["ConfigError", "NeoBERTArgumentParser", "follow_disable_tqdm"]


class ConfigError(ValueError):
    """A recipe or command line that names an unknown key or gives a value of the wrong type."""


# Options whose value "none" means something other than "unset".
_NONE_IS_A_VALUE = {"report_to"}
NONE_SPELLINGS = ("none", "null")

_YAML_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")


class _RecipeLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` with YAML 1.2 booleans (only true/false) that refuses a key given twice."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise ConfigError(
                    f"Recipe {key_node.start_mark.name}: key {key!r} is given twice (lines {seen[key]} and {line}); "
                    "keep one."
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


_RecipeLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_RecipeLoader.add_implicit_resolver("tag:yaml.org,2002:bool", _YAML_BOOL, list("tTfF"))


def _none_or(parse):
    def parse_or_none(value: str):
        if isinstance(value, str) and value.lower() in ("none", "null"):
            return None
        return parse(value)

    parse_or_none.__name__ = getattr(parse, "__name__", "value")  # argparse names it in "invalid <type> value"
    return parse_or_none


class NeoBERTArgumentParser(HfArgumentParser):
    """Parses dataclasses from a YAML recipe plus command-line overrides.

    Args:
        dataclass_types: the argument dataclasses (for example model, data and training arguments).
        kwargs: passed to [`~transformers.HfArgumentParser`] (`prog`, `description`, ...).

    Example:

    ```python
    >>> parser = NeoBERTArgumentParser((ModelArguments, DataArguments, NeoBERTTrainingArguments))
    >>> model_args, data_args, training_args = parser.parse_args_and_config(
    ...     ["--config", "recipes/tiny/pretrain.yaml", "--max_steps", "10"]
    ... )
    ```
    """

    def __init__(self, dataclass_types, **kwargs):
        # No prefix matching: `--warmup_step` must be an error, not a silent `--warmup_steps`.
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(dataclass_types, **kwargs)
        self.add_argument(
            "--config",
            type=str,
            default=None,
            help="YAML recipe whose keys are any of the flags below; flags given on the command line win. Unset an "
            "optional key of the recipe with --key none (or null).",
        )
        self._optional_lists: set[str] = set()
        self._accept_none_for_optional_fields()

    def _accept_none_for_optional_fields(self) -> None:
        """`--key none` (or `null`) sets any optional field (one whose type admits None) to None, e.g. to unset on
        the command line a key that the recipe sets. `report_to none` keeps its meaning (no integrations)."""
        optional = set()
        for dtype in self.dataclass_types:
            # The annotations, not `field.type`: HfArgumentParser replaces `int | None` there by `int`.
            annotations = {}
            for klass in reversed(dtype.__mro__):
                annotations.update(getattr(klass, "__annotations__", {}))
            optional.update(
                f.name for f in dataclasses.fields(dtype) if f.init and "None" in str(annotations.get(f.name, ""))
            )
        for action in self._actions:
            if action.dest not in optional or action.dest in _NONE_IS_A_VALUE or action.type is None:
                continue
            action.type = _none_or(action.type)
            if action.choices is not None and None not in action.choices:
                action.choices = [*action.choices, None]
            if action.nargs in ("+", "*"):
                self._optional_lists.add(action.dest)

    def error(self, message: str):
        """argparse calls this for a bad value or choice: raise instead of printing the usage and exiting."""
        raise ConfigError(f"{message.rstrip('.')}. Run with --help for every valid key and value.")

    def field_names(self) -> list[str]:
        return sorted({f.name for dtype in self.dataclass_types for f in dataclasses.fields(dtype) if f.init})

    def _unknown(self, keys: Sequence[str], where: str) -> ConfigError:
        names = self.field_names()
        shown = []
        for key in keys:
            close = difflib.get_close_matches(key, names, n=3, cutoff=0.6)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            shown.append(f"{key}{hint}")
        return ConfigError(f"Unknown {where} key(s): {'; '.join(shown)}. Run with --help for every valid key.")

    def yaml_to_argv(self, path: str | os.PathLike) -> tuple[list[str], dict[str, Any]]:
        """Reads a recipe and returns the equivalent command-line tokens, plus the keys set to `null` (applied
        after parsing, since a command line cannot say None)."""
        if not os.path.isfile(path):
            raise ConfigError(f"Recipe file {path!r} does not exist.")
        with open(path, encoding="utf-8") as handle:
            try:
                values = yaml.load(handle, Loader=_RecipeLoader) or {}
            except yaml.YAMLError as err:
                raise ConfigError(f"Recipe {path!r} is not valid YAML: {' '.join(str(err).split())}") from err
            except UnicodeDecodeError as err:
                raise ConfigError(f"Recipe {path!r} is not UTF-8 text ({err.reason} at byte {err.start}).") from err
        if not isinstance(values, dict):
            raise ConfigError(f"Recipe {path!r} must be a mapping of flag names to values, got {type(values).__name__}.")
        known = set(self.field_names())
        unknown = [key for key in values if key not in known]
        if unknown:
            from ..migration import is_original_config, refusal_message

            if is_original_config(values):  # the original trainer's nested YAML: name the convert command
                raise ConfigError(refusal_message(str(path), self.prog))
            raise self._unknown(unknown, f"recipe ({path})")
        argv: list[str] = []
        nulls: dict[str, Any] = {}
        for key, value in values.items():
            if value is None:
                nulls[key] = None
                continue
            argv.append(f"--{key}")
            if isinstance(value, bool):
                argv.append(str(value).lower())
            elif isinstance(value, (list, tuple)):
                if not value:
                    raise ConfigError(f"Recipe key {key!r} is an empty list; remove it to keep the default.")
                argv.extend(json.dumps(v) if isinstance(v, (dict, list)) else str(v) for v in value)
            elif isinstance(value, dict):
                argv.append(json.dumps(value))
            else:
                argv.append(str(value))
        return argv, nulls

    def parse_args_and_config(self, args: Sequence[str] | None = None) -> tuple:
        """Parses `args` (defaults to `sys.argv[1:]`) after the recipe named by `--config`, if any.

        Returns:
            `tuple`: one instance per dataclass, in the order given to the constructor.

        Raises:
            `ConfigError`: unknown keys (with the closest valid names) or values that do not parse.
        """
        import sys

        args = list(sys.argv[1:] if args is None else args)
        # Find --config alone: the full parser would already demand required fields that the recipe may provide.
        probe = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
        probe.add_argument("--config", type=str, default=None)
        config_probe, _ = probe.parse_known_args(args)
        yaml_argv, nulls = ([], {})
        if config_probe.config:
            yaml_argv, nulls = self.yaml_to_argv(config_probe.config)
        namespace, remaining = super().parse_known_args(yaml_argv + args)
        if remaining:
            flags = [token.lstrip("-").split("=")[0] for token in remaining if token.startswith("-")]
            if flags:
                raise self._unknown(flags, "command-line")
            raise ConfigError(f"Unexpected command-line values: {remaining}")
        values = vars(namespace)
        values.pop("config", None)
        for key in self._optional_lists:  # `--splits none` unsets a list
            if isinstance(values.get(key), list) and values[key] and all(v is None for v in values[key]):
                values[key] = None
        # keys set to null in the recipe, unless the command line gave a value
        given_on_command_line = {token.lstrip("-").split("=")[0] for token in args if token.startswith("--")}
        for key, value in nulls.items():
            if key not in given_on_command_line:
                values[key] = value
        outputs = []
        for dtype in self.dataclass_types:
            names = {f.name for f in dataclasses.fields(dtype) if f.init}
            outputs.append(dtype(**{k: v for k, v in values.items() if k in names}))
        return tuple(outputs)


def follow_disable_tqdm(training_args) -> None:
    """With `disable_tqdm`, the command's console shows no progress bar at all: transformers' Trainer honours the flag
    for its own bars, but `save_pretrained` draws one per checkpoint ("Writing model shards") and Hub downloads draw
    theirs regardless. Only the commands call this: it switches transformers' bars off for the whole process."""
    if training_args.disable_tqdm:
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()

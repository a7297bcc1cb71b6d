"""Reading the original trainer's YAML: `variables`, dotted overrides, the legacy `optimizer.hparams` block, unknown
keys, and recognising such a file given to `--config`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from .base import _ORIGINAL_MARKERS, _ORIGINAL_TOP_LEVEL, SECTIONS, MigrationError
from .table import _rules_by_key


_VAR_EXACT = re.compile(r"^\$variables\.([A-Za-z0-9_.-]+)$")
_VAR_INLINE = re.compile(r"\{\$variables\.([A-Za-z0-9_.-]+)\}|\$\{variables\.([A-Za-z0-9_.-]+)\}")


def _resolve_variables(config: dict[str, Any]) -> dict[str, Any]:
    variables = config.pop("variables", None)
    if variables is None:
        return config
    if not isinstance(variables, dict):
        raise MigrationError("Top-level 'variables' must be a mapping.")

    def lookup(path: str, where: str) -> Any:
        node: Any = variables
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                raise MigrationError(f"{where}: unknown variable $variables.{path}")
            node = node[part]
        return node

    def resolve(node: Any, where: str, depth: int = 0) -> Any:
        if depth > 20:
            raise MigrationError(f"{where}: variables refer to each other in a cycle")
        if isinstance(node, dict):
            return {k: resolve(v, f"{where}.{k}" if where else str(k), depth) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v, where, depth) for v in node]
        if isinstance(node, str):
            exact = _VAR_EXACT.match(node)
            if exact:
                return resolve(lookup(exact.group(1), where), where, depth + 1)
            return _VAR_INLINE.sub(
                lambda m: str(resolve(lookup(m.group(1) or m.group(2), where), where, depth + 1)), node
            )
        return node

    return resolve(config, "")


def load_original_config(path: str) -> dict[str, Any]:
    """Read an original trainer's YAML file as that trainer did (PyYAML `safe_load`, `variables` resolved).

    Raises:
        `MigrationError`: the file is missing, not YAML, or not a mapping.
    """
    import os

    import yaml

    if not os.path.isfile(path):
        raise MigrationError(f"Config file {path!r} does not exist.")
    try:
        with open(path, encoding="utf-8") as handle:
            config = yaml.safe_load(handle) or {}
    except yaml.YAMLError as err:
        raise MigrationError(f"Config {path!r} is not valid YAML: {' '.join(str(err).split())}") from err
    except UnicodeDecodeError as err:
        raise MigrationError(f"Config {path!r} is not UTF-8 text ({err.reason} at byte {err.start}).") from err
    if not isinstance(config, dict):
        raise MigrationError(f"Config {path!r} must be a mapping of sections, got {type(config).__name__}.")
    return _resolve_variables(config)


def is_original_config(values: Any) -> bool:
    """Whether a parsed YAML mapping is in the original trainer's nested format: a section key (`model:`,
    `trainer:`, ...) holding a mapping, or a top-level key that only that format has (`task`, `use_deepspeed`, ...)."""
    if not isinstance(values, dict):
        return False
    return any(
        (key in _ORIGINAL_MARKERS and isinstance(value, dict)) or key in _ORIGINAL_TOP_LEVEL
        for key, value in values.items()
    )


def converted_path(path: str) -> str:
    """Where `neobert-hf convert-config` is told to write the recipe of `path`: `<stem>.recipe.yaml` beside it."""
    import os

    stem, _ = os.path.splitext(path)
    return f"{stem}.recipe.yaml"


def refusal_message(path: str, prog: str) -> str:
    """What `neobert-hf <subcommand> --config OLD.yaml` says about an original-format config: the exact command."""
    import shlex

    output = converted_path(path)
    return (
        f"Recipe {path!r} is a config of the original NeoBERT trainer (nested sections such as model:, trainer:, "
        f"optimizer:), not a flat recipe. Convert it first, which prints what becomes of every key: "
        f"neobert-hf convert-config {shlex.quote(path)} -o {shlex.quote(output)} ; then run: "
        f"{prog} --config {shlex.quote(output)} (see docs/migrating.md)."
    )


def _parse_override_tokens(tokens: Sequence[str]) -> list[tuple[str, str]]:
    """`--section.key value`, `--section.key=value` or `section.key=value`, as the original trainer accepted."""
    pairs: list[tuple[str, str]] = []
    index = 0
    tokens = list(tokens)
    while index < len(tokens):
        token = str(tokens[index]).strip()
        if token.startswith("--"):
            body = token[2:]
            if "=" in body:
                key, value = body.split("=", 1)
                index += 1
            else:
                if index + 1 >= len(tokens) or str(tokens[index + 1]).startswith("--"):
                    raise MigrationError(f"Override {token} has no value (use --section.key value).")
                key, value = body, str(tokens[index + 1])
                index += 2
        elif "=" in token:
            key, value = token.split("=", 1)
            index += 1
        else:
            raise MigrationError(f"Unexpected argument {token!r}: overrides are --section.key value.")
        if not key or key.startswith(".") or key.endswith("."):
            raise MigrationError(f"Override {token!r} needs a dotted key such as --trainer.max_steps.")
        pairs.append((key.strip(), value))
    return pairs


def apply_overrides(config: dict[str, Any], tokens: Sequence[str]) -> dict[str, Any]:
    """Applies dotted overrides (`--trainer.max_steps 10`) to a nested config; values are read as YAML scalars
    (`10` -> 10, `true` -> True, `[0.9, 0.95]` -> a list, `null` -> None)."""
    import yaml

    for key, raw in _parse_override_tokens(tokens):
        node = config
        parts = key.split(".")
        for part in parts[:-1]:
            if node.get(part) is None:  # an empty section (`wandb:`) reads as null
                node[part] = {}
            child = node[part]
            if not isinstance(child, dict):
                raise MigrationError(f"Override --{key}: {part!r} is not a section in the config.")
            node = child
        try:
            value = yaml.safe_load(raw) if raw.strip() else raw
        except yaml.YAMLError:
            value = raw
        node[parts[-1]] = value
    return config


def _flatten(config: dict[str, Any]) -> dict[str, Any]:
    """Dotted keys of the original config; the legacy `optimizer.hparams` block is read as `optimizer.*`."""
    flat: dict[str, Any] = {}
    unknown: list[str] = []
    table = _rules_by_key()

    optimizer = config.get("optimizer")
    if isinstance(optimizer, dict) and "hparams" in optimizer:
        hparams = optimizer.pop("hparams") or {}
        if not isinstance(hparams, dict):
            raise MigrationError(f"optimizer.hparams must be a mapping, got {hparams!r}.")
        for key, value in hparams.items():
            if key in optimizer and optimizer[key] != value:
                raise MigrationError(
                    f"optimizer.hparams.{key} ({value!r}) and optimizer.{key} ({optimizer[key]!r}) disagree; keep one."
                )
            optimizer.setdefault(key, value)

    def visit(node: dict[str, Any], prefix: str) -> None:
        for key, value in node.items():
            dotted = f"{prefix}{key}"
            if dotted in SECTIONS:
                if value is None:
                    continue
                if not isinstance(value, dict):
                    raise MigrationError(f"{dotted} must be a mapping (a section), got {value!r}.")
                visit(value, dotted + ".")
            elif dotted in table:
                flat[dotted] = value
            else:
                unknown.append(dotted)

    visit(config, "")
    if unknown:
        raise MigrationError(
            f"Unknown key(s) in the original config: {', '.join(sorted(unknown))}. They are not keys of the original "
            "trainer's format (see docs/migrating.md for every key); fix or remove them."
        )
    return flat

"""[`convert_config`]: an original config (plus overrides) to a flat recipe and one report row per key;
[`coerce_to_fields`]: the values typed by their target fields, read from the subcommand's parser.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .base import ABSENT, PRETRAIN, SUBCOMMAND_OF_TASK, Context, MigrationError, NoEquivalent, Rule
from .converters import _NULL_AWARE
from .reading import _flatten, apply_overrides
from .table import RULES, _default_reason, _rule_for


@dataclass
class ReportRow:
    """What happened to one key of the input."""

    old: str
    value: Any
    outcome: str  # "mapped", "renamed", "default", "dropped", "refused"
    written: dict[str, Any] = field(default_factory=dict)
    reason: str = ""


@dataclass
class Conversion:
    """The result of [`convert_config`]: the subcommand, its flat recipe and one report row per key."""

    subcommand: str
    recipe: dict[str, Any]
    report: list[ReportRow]

    @property
    def refused(self) -> list[ReportRow]:
        return [row for row in self.report if row.outcome == "refused"]


def _resolve_alias(key: str, subcommand: str) -> tuple[str, Rule | None, Rule | None]:
    """(canonical key, the alias row or None, the canonical row for `subcommand` or None)."""
    rule = _rule_for(key, subcommand)
    alias = None
    seen = set()
    while rule is not None and rule.alias_of is not None:
        if key in seen:
            raise RuntimeError(f"alias cycle at {key}")
        seen.add(key)
        alias = alias or rule
        key = rule.canonical(subcommand) or key
        rule = _rule_for(key, subcommand)
    return key, alias, rule


def _same(a: Any, b: Any) -> bool:
    """Equal values, counting `'1e-4'` (PyYAML's string) and `1.0e-4` as one number."""
    if a == b:
        return True
    try:
        return not isinstance(a, bool) and not isinstance(b, bool) and float(a) == float(b)
    except (TypeError, ValueError):
        return False


def convert_config(config: dict[str, Any], overrides: Sequence[str] = ()) -> Conversion:
    """Converts a nested original config (as read by [`load_original_config`]) into a flat recipe.

    Args:
        config: the nested mapping; dotted `overrides` are applied to it first.
        overrides: `--section.key value` tokens, as the original trainer took them.

    Returns:
        [`Conversion`]: values are still as YAML gave them; [`coerce_to_fields`] types them by their target fields.

    Raises:
        `MigrationError`: an unknown key, an unknown task, two keys that set one value differently.
    """
    import copy

    config = apply_overrides(copy.deepcopy(config), overrides)
    flat = _flatten(config)
    task = str(flat.pop("task", None) or "pretraining").strip().lower()
    if task not in SUBCOMMAND_OF_TASK:
        raise MigrationError(f"task must be one of {', '.join(SUBCOMMAND_OF_TASK)}, got {task!r}.")
    subcommand = SUBCOMMAND_OF_TASK[task]

    # Legacy aliases: read as their canonical key (two spellings with different values are an error).
    canonical_values: dict[str, Any] = {}
    spelled: dict[str, str] = {}
    for key, value in flat.items():
        canonical, _, _ = _resolve_alias(key, subcommand)
        if canonical in canonical_values and value is not None and canonical_values[canonical] is not None:
            if not _same(canonical_values[canonical], value):
                raise MigrationError(
                    f"{spelled[canonical]} ({canonical_values[canonical]!r}) and {key} ({value!r}) set the same "
                    "value differently; keep one."
                )
        if canonical not in canonical_values or canonical_values[canonical] is None:
            canonical_values[canonical] = value
            spelled[canonical] = key
    ctx = Context(values=canonical_values, subcommand=subcommand)

    recipe: dict[str, Any] = {}
    source_of: dict[str, str] = {}
    report: list[ReportRow] = []

    def write(old: str, written: dict[str, Any]) -> None:
        for new_key, new_value in written.items():
            if new_key in recipe and not _same(recipe[new_key], new_value):
                raise MigrationError(
                    f"{source_of[new_key]} and {old} both set {new_key} ({recipe[new_key]!r} vs {new_value!r}); "
                    "keep one."
                )
            recipe[new_key] = new_value
            source_of[new_key] = old

    def run(rule: Rule, old: str, value: Any, alias: Rule | None) -> ReportRow:
        convert = (alias.convert if alias is not None and alias.convert is not None else None) or rule.convert
        if value is None and convert not in _NULL_AWARE:
            return ReportRow(old, value, "dropped", reason="null: neobert-hf's default applies")
        try:
            if convert is None:
                written = {rule.new[0]: value}
            else:
                written = convert(value, ctx)
        except NoEquivalent as reason:
            return ReportRow(old, value, "refused", reason=str(reason))
        except MigrationError as err:
            raise MigrationError(f"{old}: {err}") from None
        stray = set(written) - set(rule.new)
        if stray:
            raise RuntimeError(f"converter of {rule.old} wrote {stray}, not declared in its row")
        if not written:
            return ReportRow(old, value, "dropped", reason=rule.note or "matches neobert-hf's behaviour")
        write(old, written)
        outcome = "mapped" if (rule.status == "mapped" and alias is None) else "renamed"
        return ReportRow(old, value, outcome, written)

    for key, value in flat.items():
        canonical, alias, rule = _resolve_alias(key, subcommand)
        if alias is not None and spelled.get(canonical) != key:
            if value is None:
                report.append(ReportRow(key, value, "dropped", reason=f"null; {spelled[canonical]} gives the value"))
            else:
                report.append(ReportRow(key, value, "dropped", reason=f"same value as {spelled[canonical]}"))
            continue
        if alias is not None and value is None:
            report.append(ReportRow(key, value, "dropped", reason=f"null (legacy alias of {canonical}): no value"))
            continue
        if rule is None:
            report.append(ReportRow(key, value, "refused", reason=_default_reason(canonical, subcommand)))
            continue
        if not rule.new and rule.convert is None:
            report.append(ReportRow(key, value, "refused", reason=rule.note))
            continue
        report.append(run(rule, key, value, alias))

    if subcommand == PRETRAIN:
        # Absent keys meant the original trainer's defaults; write those that differ from neobert-hf's.
        for rule in RULES:
            if rule.carry is ABSENT or subcommand not in rule.where or rule.old in canonical_values:
                continue
            row = run(rule, rule.old, rule.carry, None)
            if row.outcome in ("mapped", "renamed"):
                report.append(ReportRow(rule.old, rule.carry, "default", row.written,
                                        "absent: the original's default"))
    return Conversion(subcommand, recipe, report)


# ---------------------------------------------------------------------------------------------------------------------
# Types of the target fields
# ---------------------------------------------------------------------------------------------------------------------


def subcommand_parser(subcommand: str):
    """The `NeoBERTArgumentParser` of a subcommand, built by its CLI module (imports transformers)."""
    import importlib

    # By module name: the CLI's entry point (`neobert_hf.cli.main`) imports this package for `convert-config`.
    return importlib.import_module(f"neobert_hf.cli.{subcommand}").build_argument_parser()


def subcommand_fields(subcommand: str) -> set[str]:
    """Every recipe key of a subcommand, read from its parser's dataclasses."""
    return set(subcommand_parser(subcommand).field_names())


def coerce_to_fields(recipe: dict[str, Any], subcommand: str, parser=None) -> dict[str, Any]:
    """Types each value by its target field, with the subcommand's own argparse conversions: `'1e-4'` becomes
    1e-4 for a float field, `'16'` 16 for an int field (`1e6` too), `'true'` True for a bool.

    Raises:
        `MigrationError`: a value that its field does not accept (naming key and value).
    """
    parser = parser or subcommand_parser(subcommand)
    actions = {action.dest: action for action in parser._actions}
    missing = sorted(set(recipe) - set(actions))
    if missing:
        raise RuntimeError(f"recipe keys {missing} are not fields of `neobert-hf {subcommand}`")
    typed: dict[str, Any] = {}
    for key, value in recipe.items():
        action = actions[key]
        typed[key] = _coerce(key, value, action)
    return typed


def _coerce(key: str, value: Any, action) -> Any:
    if value is None:
        return None
    if action.nargs in ("+", "*"):
        items = value if isinstance(value, (list, tuple)) else [value]
        return [_coerce_one(key, item, action) for item in items]
    if isinstance(value, (list, tuple, dict)):
        if action.type is None or action.type is str:
            import json

            return json.dumps(value)
        raise MigrationError(f"{key}: expected one value, got {value!r}")
    return _coerce_one(key, value, action)


def _coerce_one(key: str, value: Any, action) -> Any:
    convert = action.type
    text = str(value).lower() if isinstance(value, bool) else str(value)
    name = getattr(convert, "__name__", "")
    try:
        if convert is int or name == "int":
            number = float(text)
            if not number.is_integer():
                raise ValueError
            result: Any = int(number)
        elif convert is float or name == "float":
            result = value if isinstance(value, int) and not isinstance(value, bool) else float(text)
        elif convert is None:
            result = value
        else:
            result = convert(text)
    except (TypeError, ValueError) as err:
        raise MigrationError(f"{key}: {value!r} is not a valid value ({err or 'wrong type'}).") from None
    if action.choices is not None and result not in action.choices:
        shown = ", ".join(str(getattr(c, "value", c)) for c in action.choices if c is not None)
        raise MigrationError(f"{key}: {value!r} is not one of {shown}.")
    result = getattr(result, "value", result)  # enums (save_strategy, ...) are written by value
    return result

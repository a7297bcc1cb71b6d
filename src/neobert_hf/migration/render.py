"""The table printed by `neobert-hf convert-config` and `docs/migrating.md`, both generated from [`RULES`].
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .base import ABSENT, SUBCOMMANDS, Rule
from .convert import Conversion
from .table import RULES, _rules_by_key


def _show(value: Any) -> str:
    if isinstance(value, str):
        return value if value else "''"
    if isinstance(value, bool) or value is None:
        return str(value).lower() if value is not None else "null"
    return str(value)


def render_report(conversion: Conversion) -> str:
    """The table printed by `neobert-hf convert-config`: every key of the input and what became of it."""
    rows = [("original key", "value", "outcome", "neobert-hf recipe / reason")]
    for row in conversion.report:
        written = ", ".join(f"{k}: {_show(v)}" for k, v in row.written.items())
        detail = written if row.outcome in ("mapped", "renamed", "default") else row.reason
        if row.outcome == "default":
            detail = f"{written} ({row.reason})"
        rows.append((row.old, _show(row.value) if row.outcome != "default" else "(absent)", row.outcome, detail))
    widths = [min(max(len(r[i]) for r in rows), limit) for i, limit in zip(range(3), (44, 24, 8))]
    lines = []
    for index, (old, value, outcome, detail) in enumerate(rows):
        value = value if len(value) <= 24 else value[:21] + "..."
        lines.append(f"{old:<{widths[0]}}  {value:<{widths[1]}}  {outcome:<{widths[2]}}  {detail}")
        if index == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 26)
    counts = {o: sum(r.outcome == o for r in conversion.report) for o in ("mapped", "renamed", "default", "dropped",
                                                                           "refused")}  # fmt: skip
    lines.append(
        f"{len(conversion.report)} keys for `neobert-hf {conversion.subcommand}`: "
        + ", ".join(f"{n} {o}" for o, n in counts.items())
        + " (refused: no equivalent, not in the recipe; dropped: nothing to write)"
    )
    return "\n".join(lines)


def _where(rule: Rule) -> str:
    return "all" if set(rule.where) == set(SUBCOMMANDS) else ", ".join(rule.where)


def counts() -> dict[str, int]:
    """Rows of [`RULES`] by status (a key with rows for several subcommands counts once per row)."""
    result = {"mapped": 0, "renamed": 0, "refused": 0, "structural": 0}
    for rule in RULES:
        result[rule.status] += 1
    return result


_INTRO = """\
# Coming from the original NeoBERT trainer

This page is for users of the original NeoBERT training code (`scripts/pretraining/pretrain.py config.yaml`,
`scripts/contrastive/finetune.py`, its GLUE and MTEB scripts). One command turns one of its configs into a
`neobert-hf` recipe:

```bash
neobert-hf convert-config old.yaml -o recipe.yaml                      # prints what became of every key
neobert-hf convert-config old.yaml -o recipe.yaml --trainer.max_steps 1000   # dotted overrides, as before
neobert-hf pretrain --config recipe.yaml                               # or glue / contrastive / mteb
```

What changes:

- **Flat recipes, one per subcommand.** The original file is nested (`model:`, `trainer:`, `optimizer:`, ...)
  and its `task:` picks the script. A `neobert-hf` recipe is flat: every key is a field of the subcommand's
  argument dataclasses, parsed by transformers' `HfArgumentParser` (`neobert-hf pretrain --help` lists them);
  command-line flags win over the recipe (`--max_steps 10`, not `--trainer.max_steps 10`). `task: pretraining`
  becomes `neobert-hf pretrain`, `glue`, `contrastive` and `mteb` keep their names. Unknown keys are an error,
  as they were.
- **The training loop is transformers' `Trainer`.** Optimizer, schedule, precision, logging and checkpoint keys
  are the usual `TrainingArguments` (`learning_rate`, `warmup_steps`, `bf16`, `max_grad_norm`, `report_to`,
  `save_total_limit`, ...). Distributed training (DDP, FSDP2, DeepSpeed) is chosen by
  `accelerate launch --config_file` (see [distributed.md](distributed.md)), not by `use_deepspeed`.
- **One checkpoint tree.** `<output_dir>/checkpoints/<step>/` holds the model (`config.json`,
  `model.safetensors`), its tokenizer and the training state together; `resume_from_checkpoint: latest`
  continues from the newest (streamed data too). The original's `model_checkpoints/` and `checkpoints/` pair
  is gone (see [checkpoints.md](checkpoints.md)).
- **Absent keys.** In the original, a key you did not write took that trainer's default. For pretraining the
  converter writes those defaults explicitly where `neobert-hf`'s differ (rows marked *carried* below: e.g.
  `learning_rate: 1e-4`, `mlm_probability: 0.15`, `packing: false`, `max_grad_norm: 0.0`), so the converted run
  trains like the original one. GLUE, contrastive and MTEB configs convert only the keys they contain.
- **Types.** PyYAML reads `lr: 1e-4` as a string; the converter types every value by its target field.

`neobert-hf pretrain|glue|contrastive|mteb --config old.yaml` refuses an original-format file and prints the
`convert-config` command to run.

## Every key

*mapped*: same name and meaning; *renamed*: another name or unit (the note says which); *refused*: no
equivalent, with the reason (the converter prints it and leaves the key out); *structural*: read while loading.
A key can have one row per group of subcommands; in a subcommand that none of its rows names, the key is refused
as belonging to another subcommand (e.g. `datacollator.mlm_probability` in a GLUE config). Legacy keys of the
original (its "Legacy Key Mapping") are converted exactly as the key they stand for.
"""


def render_markdown() -> str:
    """`docs/migrating.md`: the introduction and the key-by-key table, generated from [`RULES`]."""
    lines = [_INTRO]
    c = counts()
    lines.append(
        f"{len(RULES)} rows over {len(_rules_by_key())} keys: {c['mapped']} mapped, {c['renamed']} renamed, "
        f"{c['refused']} refused, {c['structural']} structural.\n"
    )
    section = None
    for rule in RULES:
        top = rule.old.split(".", 1)[0] if "." in rule.old else "(top level)"
        if top != section:
            section = top
            lines.append(f"\n### {section}\n")
            lines.append("| original key | subcommands | status | neobert-hf key | note |")
            lines.append("| --- | --- | --- | --- | --- |")
        if rule.alias_of is not None:
            target = f"`{rule.alias_of}`" if isinstance(rule.alias_of, str) else "; ".join(
                f"`{v}` ({'other tasks' if k == '*' else k})" for k, v in rule.alias_of.items()
            )
            new, note = "", f"Legacy alias of {target}. {rule.note}".strip()
        else:
            new = ", ".join(f"`{n}`" for n in rule.new)
            note = rule.note
        if rule.carry is not ABSENT:
            note = f"{note} *Carried* when absent (pretraining): `{_show(rule.carry)}`.".strip()
        where = "" if rule.structural or rule.alias_of is not None else _where(rule)
        note = note.replace("|", "\\|")
        lines.append(f"| `{rule.old}` | {where} | {rule.status} | {new} | {note} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m neobert_hf.migration", description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", action="store_true", help="Print docs/migrating.md.")
    args = parser.parse_args(argv)
    if args.markdown:
        sys.stdout.write(render_markdown())
        return 0
    parser.print_help()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

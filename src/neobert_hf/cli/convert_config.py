"""`neobert-hf convert-config`: turn the original NeoBERT trainer's nested YAML config into a flat recipe.

```bash
neobert-hf convert-config old.yaml -o recipe.yaml
neobert-hf convert-config old.yaml -o recipe.yaml --trainer.max_steps 1000 --optimizer.lr 2e-4
neobert-hf pretrain --config recipe.yaml      # the subcommand named in the header of recipe.yaml
```

The config's `task` picks the subcommand (pretraining -> pretrain, glue, contrastive, mteb). Dotted overrides
(`--section.key value`, as the original trainer took them) are applied to the old config before converting. A table
of every key and what became of it (mapped, renamed, refused with the reason) is printed; an unknown key, or two
keys that set one value differently, is an error and nothing is written. The key-by-key table is in
docs/migrating.md (`python -m neobert_hf.migration --markdown`).
"""

from __future__ import annotations

import argparse
import os
import sys


__all__ = ["HELP", "add_parser", "build_argument_parser", "parse_args", "run"]

HELP = "Convert an original NeoBERT trainer config (nested YAML) into a neobert-hf recipe."


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `convert-config`; its arguments are parsed by [`build_argument_parser`] in [`run`] (every remaining
    token goes there, so that the original trainer's `--section.key value` overrides pass through)."""
    parser = subparsers.add_parser("convert-config", help=HELP, description=HELP, add_help=False, prefix_chars="+")
    parser.add_argument("argv", nargs=argparse.REMAINDER)
    return parser


def build_argument_parser() -> argparse.ArgumentParser:
    """`OLD.yaml -o recipe.yaml [--force]`; any other `--section.key value` tokens are overrides."""
    parser = argparse.ArgumentParser(
        prog="neobert-hf convert-config",
        description=HELP + " Every key is mapped or reported with the reason it has no equivalent (docs/migrating.md).",
        epilog="Overrides after the file use the original trainer's dotted keys: --trainer.max_steps 10 "
        "(or --trainer.max_steps=10).",
        allow_abbrev=False,
    )
    parser.add_argument("config", help="The original trainer's YAML config.")
    parser.add_argument("-o", "--output", required=True, help="Where to write the flat recipe (YAML).")
    parser.add_argument("--force", action="store_true", help="Overwrite the output file if it exists.")
    return parser


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """`(options, overrides)`; argparse usage errors become one-line errors (exit status 2)."""
    from ..migration import MigrationError

    parser = build_argument_parser()

    def error(message: str):
        raise MigrationError(
            f"{message}. Usage: neobert-hf convert-config OLD.yaml -o recipe.yaml [--section.key value ...]"
        )

    parser.error = error  # type: ignore[method-assign]
    return parser.parse_known_args(argv)


def _header(source: str, subcommand: str, output: str) -> str:
    return (
        f"# Converted by `neobert-hf convert-config {source}` from the original NeoBERT trainer's config.\n"
        f"#   neobert-hf {subcommand} --config {output}\n"
        "# Keys without an equivalent are listed, with the reason, in the table the command printed and in\n"
        "# docs/migrating.md.\n"
    )


def run(args: argparse.Namespace) -> int:
    """Convert, print the table, write the recipe. Returns 0; bad input raises (exit status 2, nothing written)."""
    import yaml

    from ..migration import MigrationError, coerce_to_fields, convert_config, load_original_config, render_report

    args, overrides = parse_args(list(args.argv))
    if os.path.exists(args.output) and not args.force:
        raise MigrationError(f"{args.output} exists; choose another -o path or pass --force to overwrite it.")
    if os.path.abspath(args.output) == os.path.abspath(args.config):
        raise MigrationError("The output would overwrite the original config; choose another -o path.")
    conversion = convert_config(load_original_config(args.config), overrides)
    recipe = coerce_to_fields(conversion.recipe, conversion.subcommand)
    print(render_report(conversion))
    text = _header(args.config, conversion.subcommand, args.output) + yaml.safe_dump(
        recipe, sort_keys=False, default_flow_style=False, allow_unicode=True, width=120
    )
    folder = os.path.dirname(os.path.abspath(args.output))
    if not os.path.isdir(folder):
        raise MigrationError(f"Folder {folder} of the output does not exist.")
    with open(args.output, "w", encoding="utf-8") as handle:
        handle.write(text)
    print(f"Wrote {args.output}: run it with `neobert-hf {conversion.subcommand} --config {args.output}`.")
    sys.stdout.flush()
    return 0

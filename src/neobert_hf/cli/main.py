"""Entry point of the `neobert-hf` command (`neobert-hf = neobert_hf.cli.main:main`).

Subcommands are registered in `SUBCOMMANDS` and their modules imported lazily: parsing `neobert-hf --help`
imports none of them, and `neobert-hf env ...` imports only `neobert_hf.cli.env`. Nothing here imports torch:
`neobert-hf --help` and `neobert-hf <command> --help` answer in a fraction of a second. The recipe subcommands'
help lists transformers' `TrainingArguments`, so it is printed from a snapshot shipped with the package
([`neobert_hf.cli.help_snapshot`]), or, when the installed transformers or sources differ from the snapshot's, built
once and then read from a cache ([`neobert_hf.cli.help_cache`]). Before a subcommand that loads models runs, the command registers NeoBERT with the
Auto classes (which `import neobert_hf` does in any other process).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.metadata
import sys
from collections.abc import Sequence


__all__ = ["SUBCOMMANDS", "build_parser", "main"]


# name -> (module exposing `add_parser(subparsers)` and `run(args)`, one-line help shown by `neobert-hf --help`).
# The module's `add_parser` uses the same help text; tests/cli/test_main.py checks that they agree.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "env": ("neobert_hf.cli.env", "Print versions, hardware and which optional backends are usable."),
    "pretrain": ("neobert_hf.cli.pretrain", "Pretrain NeoBERT with masked language modelling from a YAML recipe."),
    "preprocess": ("neobert_hf.cli.preprocess", "Tokenize a dataset and save it to disk for `neobert-hf pretrain`."),
    "contrastive": ("neobert_hf.cli.contrastive", "Contrastive fine-tuning of NeoBERT with sentence-transformers."),
    "mteb": ("neobert_hf.cli.mteb", "Evaluate a NeoBERT embedding model on MTEB tasks (registry or local files)."),
    "glue": ("neobert_hf.cli.glue", "Fine-tune and evaluate NeoBERT on a GLUE task from a YAML recipe."),
    "glue-summary": ("neobert_hf.cli.glue_summary", "Tabulate GLUE runs and the GLUE score; names missing tasks."),
    "export": ("neobert_hf.cli.export", "Export a checkpoint as a clean, self-contained model folder."),
    "push": ("neobert_hf.cli.push", "Push a clean exported model folder to the Hugging Face Hub."),
    "pppl": ("neobert_hf.cli.pppl", "Pseudo-perplexity of a masked LM on long documents (CSV)."),
    "convert-config": (
        "neobert_hf.cli.convert_config",
        "Convert an original NeoBERT trainer config (nested YAML) into a neobert-hf recipe.",
    ),
}

# Subcommands that never load a model through the Auto classes, so they skip importing the modeling stack.
_NO_MODEL_COMMANDS = frozenset({"env", "glue-summary", "preprocess"})


def _package_version() -> str:
    try:
        return importlib.metadata.version("neobert-hf")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


def _chosen_subcommand(argv: Sequence[str]) -> str | None:
    # The top-level parser has only flags without values (-h, --version), so the first positional token is the
    # subcommand name.
    for token in argv:
        if not token.startswith("-"):
            return token if token in SUBCOMMANDS else None
    return None


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """Build the `neobert-hf` parser, importing only the subcommand named in `argv`.

    Every registered subcommand appears in the help; the full arguments are added only for the one that `argv`
    selects (pass `argv=[name]` to build a given subcommand's parser).

    Args:
        argv (`Sequence[str]`, *optional*):
            Command-line arguments without the program name.

    Returns:
        `argparse.ArgumentParser`: the top-level parser.
    """
    parser = argparse.ArgumentParser(
        prog="neobert-hf",
        description="NeoBERT as a native HuggingFace transformers model: tools and recipes.",
    )
    parser.add_argument("--version", action="version", version=f"neobert-hf {_package_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="<command>", title="commands")
    chosen = _chosen_subcommand(argv)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        if name == chosen:
            importlib.import_module(module_name).add_parser(subparsers)
        else:
            subparsers.add_parser(name, help=help_text)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `neobert-hf` command.

    Args:
        argv (`Sequence[str]`, *optional*):
            Command-line arguments without the program name; defaults to `sys.argv[1:]`.

    Returns:
        `int`: the exit status: 0, 1 when a run failed once under way (e.g. disk full), 2 on bad input (one message,
        nothing written), 130 when interrupted (see [`neobert_hf.cli.errors`]).
    """
    from ..import_utils import hold_back_import_notices

    hold_back_import_notices()
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    module = importlib.import_module(SUBCOMMANDS[args.command][0])
    if _asks_for_recipe_help(module, args):
        from .help_cache import cached_help
        from .help_snapshot import shipped_help

        def build_help() -> str:
            # Packages imported on the way may print (wandb: "[INFO] Running in WANDB offline mode"); stdout
            # carries the help text only.
            with contextlib.redirect_stdout(sys.stderr):
                return module.build_argument_parser().format_help()

        # The text shipped with the package when it still describes the installed parser, else built once and cached.
        sys.stdout.write(shipped_help(args.command) or cached_help(args.command, build_help))
        sys.stdout.flush()
        raise SystemExit(0)  # as argparse's own --help does
    from .errors import run_command

    def run() -> int | None:
        if args.command not in _NO_MODEL_COMMANDS:
            import neobert_hf

            neobert_hf.register_auto_classes()
        return module.run(args)

    # One error boundary for every subcommand: bad input gives one line and exit status 2, never a traceback.
    return run_command(args.command, run)


def _asks_for_recipe_help(module, args: argparse.Namespace) -> bool:
    """A recipe subcommand (its tokens go whole to `build_argument_parser`) asked for `-h`/`--help`."""
    tokens = getattr(args, "argv", None)
    return hasattr(module, "build_argument_parser") and isinstance(tokens, list) and bool(
        {"-h", "--help"} & set(tokens)
    )


if __name__ == "__main__":
    sys.exit(main())

"""The `neobert-hf` command line.

One entry point, `neobert-hf`, with one subcommand per task. To add a subcommand `foo`:

1. Write `neobert_hf/cli/foo.py` exposing

   - `add_parser(subparsers) -> argparse.ArgumentParser`: calls `subparsers.add_parser("foo", help=...)`
     with the same help text as the registry line, adds the arguments, and returns the parser;
   - `run(args: argparse.Namespace) -> int | None`: does the work; the return value is the exit status
     (`None` means 0).

2. Add one line to `SUBCOMMANDS` in `neobert_hf/cli/main.py`: `"foo": ("neobert_hf.cli.foo", "help text")`.

3. Add a test that runs `neobert-hf foo` end to end.

Only the chosen subcommand's module is imported, so `neobert-hf --help` stays fast whatever the subcommands
import.
"""

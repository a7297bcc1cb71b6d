"""`neobert-hf mteb`: evaluate a NeoBERT sentence-transformers model on MTEB tasks (registry or local files).

```bash
neobert-hf mteb --model runs/contrastive/checkpoints/1000 --tasks STSBenchmark SciFact --output_folder mteb_results
neobert-hf mteb --model runs/pretrain/checkpoints/100000 --pooling mean --task_types STS
neobert-hf mteb --model runs/contrastive/checkpoints/1000 --benchmark "MTEB(eng, v2)"
neobert-hf mteb --model runs/contrastive/checkpoints/1000 --task_types all --languages eng
neobert-hf mteb --model runs/tiny/checkpoints/4 --local_tasks my-sts=data/sts.jsonl my-beir=data/beir
```

Results are written in mteb's own format under `<output_folder>/results/`; `<output_folder>/summary.{json,md}` holds
per-category averages and names every missing task. The exit status is 0 when every task was evaluated, 1 when some
are missing, 2 on bad input (an unknown task or type, a bad option), in which case nothing is written.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


__all__ = ["HELP", "add_parser", "build_argument_parser", "parse_args", "run"]

HELP = "Evaluate a NeoBERT embedding model on MTEB tasks (registry or local files)."

def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `mteb`; its arguments are parsed by [`build_argument_parser`] in [`run`]."""
    parser = subparsers.add_parser("mteb", help=HELP, description=HELP, add_help=False, prefix_chars="+")
    parser.add_argument("argv", nargs=argparse.REMAINDER)
    return parser


def build_argument_parser():
    """The recipe parser over `MTEBArguments`."""
    from ..integrations.mteb import MTEBArguments
    from .parser import NeoBERTArgumentParser

    return NeoBERTArgumentParser(
        (MTEBArguments,),
        prog="neobert-hf mteb",
        description=HELP + " Usage: neobert-hf mteb --model PATH (--tasks ... | --task_types ... | --benchmark NAME | --local_tasks ...).",
    )


def parse_args(argv: Sequence[str]):
    (args,) = build_argument_parser().parse_args_and_config(list(argv))
    return args


def run(args: argparse.Namespace) -> int:
    """Resolve the tasks (every name checked first), evaluate, summarise."""
    from ..integrations.mteb import evaluate, render_summary_markdown, resolve_tasks

    mteb_args = parse_args(args.argv)
    tasks = resolve_tasks(
        mteb_args.tasks, mteb_args.task_types, mteb_args.local_tasks, mteb_args.benchmark, mteb_args.languages
    )
    summary = evaluate(mteb_args, tasks)  # errors: see neobert_hf.cli.errors
    print(render_summary_markdown(summary))
    if summary["missing_tasks"]:
        print(
            f"neobert-hf mteb: {len(summary['missing_tasks'])} task(s) missing: {', '.join(summary['missing_tasks'])}",
            file=sys.stderr,
        )
        return 1
    return 0

"""`neobert-hf push`: upload a clean model folder to the Hugging Face Hub.

```
neobert-hf push exported/tiny --repo-id my-org/neobert-tiny [--private] [--revision dev]
neobert-hf push runs/tiny/checkpoints/200 --repo-id my-org/neobert-tiny   # exported to a temporary folder first
neobert-hf push exported/tiny --repo-id my-org/neobert-tiny --dry-run      # list what would be uploaded
neobert-hf push exported/tiny --repo-id my-org/neobert-tiny --include eval/results.json
```

Only the files of the clean export's allow-list are uploaded (weights, config, code, tokenizer, card, and the files
named with `--include`), and they are printed first: never optimizer, scheduler, RNG or trainer state, nor the
checkpoint tree, nor anything nested or hidden. See [`neobert_hf.export.push_to_hub`].
"""

from __future__ import annotations

import argparse
import sys

from .export import add_export_options, export_kwargs


__all__ = ["HELP", "add_parser", "run"]

HELP = "Push a clean exported model folder to the Hugging Face Hub."


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("push", help=HELP, description=HELP)
    parser.add_argument(
        "source", help="An exported folder, a checkpoints/<step>/ folder or a run's output_dir (latest checkpoint)."
    )
    parser.add_argument("--repo-id", default=None, help="Hub repository, org/name (created if it does not exist).")
    parser.add_argument("--private", action="store_true", help="Create the repository as private.")
    parser.add_argument("--revision", default=None, help="Branch to push to (created if needed). Default: main.")
    parser.add_argument("--commit-message", default=None, help="Commit message.")
    parser.add_argument("--token", default=None, help="Hub token (default: HF_TOKEN or the logged-in token).")
    parser.add_argument(
        "--include", action="append", default=[], metavar="FILE",
        help="Also upload this file of the source folder (relative path; repeatable). Training state and hidden "
        "files are refused.",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="Print the files that would be uploaded; upload nothing."
    )
    add_export_options(parser)
    return parser


def _given_export_options(args: argparse.Namespace) -> dict:
    """Export options that differ from their defaults: they only make sense for a checkpoint."""
    kwargs = export_kwargs(args)
    defaults = {"task": None, "dtype": "auto", "sentence_transformers": False, "pooling": "mean", "normalize": False,
                "tokenizer": None}
    given = {k: v for k, v in kwargs.items() if k in defaults and v != defaults[k]}
    facts = kwargs["card_facts"]
    if set(facts) - {"license"} or facts.get("license") != "apache-2.0":
        given["card_facts"] = facts
    return given


def run(args: argparse.Namespace) -> int:
    from neobert_hf.export import push_to_hub

    kwargs = _given_export_options(args)
    source = args.source

    def announce(files: list[str]) -> None:
        verb = "Would upload" if args.dry_run else "Uploading"
        print(f"{verb} {len(files)} files of {source} to {args.repo_id}:")
        for name in files:
            print(f"  {name}")
        sys.stdout.flush()

    info = push_to_hub(  # errors: see neobert_hf.cli.errors
        source,
        args.repo_id,
        private=args.private or None,
        revision=args.revision,
        token=args.token,
        commit_message=args.commit_message,
        include=args.include,
        dry_run=args.dry_run,
        announce=announce,
        **kwargs,
    )
    if args.dry_run:
        print("Dry run: nothing was uploaded.")
    else:
        print(f"Pushed {source} to {info.repo_id}: {info.commit_url}")
    return 0

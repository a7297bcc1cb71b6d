"""`neobert-hf preprocess`: tokenize a text source once (several processes) and save it for reuse.

```bash
neobert-hf preprocess --config recipes/tiny/preprocess.yaml
neobert-hf pretrain --config recipes/tiny/pretrain.yaml --dataset_name data/tokenized/corpus
```

The output folder holds the tokenized `DatasetDict` (`save_to_disk`, one `input_ids` column per split), the tokenizer
in `tokenizer/` and `preprocess_info.json`. `neobert-hf pretrain --dataset_name <folder>` reads it without
tokenizing again, with the tokenizer saved next to it unless `tokenizer_name` is given (which must then match).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil


__all__ = ["HELP", "add_parser", "build_argument_parser", "run", "run_preprocess"]

HELP = "Tokenize a dataset and save it to disk for `neobert-hf pretrain`."

def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `preprocess`; its arguments are parsed by [`build_argument_parser`] in [`run`] (see
    `neobert_hf.cli.pretrain.add_parser`)."""
    parser = subparsers.add_parser("preprocess", help=HELP, description=HELP, add_help=False, prefix_chars="+")
    parser.add_argument("argv", nargs=argparse.REMAINDER)
    return parser


def build_argument_parser():
    from ..training.pretrain_arguments import PreprocessArguments
    from .parser import NeoBERTArgumentParser

    return NeoBERTArgumentParser(
        (PreprocessArguments,),
        prog="neobert-hf preprocess",
        description=HELP + " Usage: neobert-hf preprocess --config recipe.yaml [--key value ...].",
    )


def run_preprocess(args) -> dict:
    """Tokenize and save as [`PreprocessArguments`] say; returns the `preprocess_info.json` content."""
    from ..data import preprocess

    from ..training.output_dir import check_output_dir, failed_start_cleanup

    output = args.output_dir
    check_output_dir(output)
    if os.path.exists(output) and os.listdir(output) and not args.overwrite_output_dir:
        raise ValueError(
            f"{output} exists and is not empty. Pass --overwrite_output_dir true to replace it, or choose another "
            "output_dir."
        )
    # Written next to the output and moved there once complete: a run that fails leaves the earlier output as it was.
    staging = f"{os.path.normpath(output)}.tmp-{os.getpid()}"
    with failed_start_cleanup(output, started=lambda: False):
        try:
            preprocess(
                args.source(),
                args.tokenizer_name,
                staging,
                config_name=args.dataset_config_name,
                splits=args.splits,
                text_column=args.text_column,
                num_proc=args.preprocessing_num_workers,
                batch_size=args.tokenize_batch_size,
                cache_dir=args.cache_dir,
            )
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    if os.path.exists(output):
        shutil.rmtree(output)
    os.replace(staging, output)
    with open(os.path.join(output, "preprocess_info.json")) as handle:
        return json.load(handle)


def run(args: argparse.Namespace) -> int:
    """Parse, tokenize and save. Returns 0 on success; errors: see [`neobert_hf.cli.errors`]."""
    (preprocess_args,) = build_argument_parser().parse_args_and_config(list(args.argv))
    info = run_preprocess(preprocess_args)
    for name, split in info["splits"].items():
        print(f"{name}: {split['documents']:,} documents, {split['tokens']:,} tokens")
    print(f"Saved to {preprocess_args.output_dir}; train on it with: neobert-hf pretrain --config <recipe> "
          f"--dataset_name {preprocess_args.output_dir}")
    return 0


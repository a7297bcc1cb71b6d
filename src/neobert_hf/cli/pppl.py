"""`neobert-hf pppl`: pseudo-perplexity of a masked language model on long documents, written as a resumable CSV.

```
neobert-hf pppl --model exported/tiny --data docs.jsonl --output pppl.csv [--batch-size 64] [--max-length 512]
```

Every token is masked in turn (many masked copies per forward pass); documents longer than the window are scored in
overlapping windows, each token once, in the window where it is most central. See
[`neobert_hf.evaluation.pppl`] for the exact convention and the CSV columns.
"""

from __future__ import annotations

import argparse
import logging
import sys


__all__ = ["HELP", "add_parser", "run"]

HELP = "Pseudo-perplexity of a masked LM on long documents (CSV)."


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("pppl", help=HELP, description=HELP)
    parser.add_argument(
        "--model", required=True, help="Model folder, checkpoints/<step>/ folder, run output_dir or Hub id."
    )
    parser.add_argument(
        "--data",
        required=True,
        help="Documents: a .jsonl file (one object per line with a text field and optionally an id field) or a text "
        "file (one document per non-empty line, id = line number from 0).",
    )
    parser.add_argument("--output", required=True, help="CSV to write, or to resume (documents in it are skipped).")
    parser.add_argument("--batch-size", type=int, default=32, help="Masked copies per forward pass.")
    parser.add_argument(
        "--max-length",
        type=int,
        default=None,
        help="Tokens per window including [CLS]/[SEP]. Default: min(512, the model's max_position_embeddings).",
    )
    parser.add_argument(
        "--stride",
        type=int,
        default=None,
        help="Offset between window starts, in document tokens (1 .. window). Default: half the window.",
    )
    parser.add_argument("--limit", type=int, default=None, help="Score only the first N documents.")
    parser.add_argument("--text-field", default="text", help="Text key of a .jsonl file.")
    parser.add_argument("--id-field", default="id", help="Id key of a .jsonl file (default: the record index).")
    parser.add_argument("--tokenizer", default=None, help="Tokenizer folder or id (default: the model's).")
    parser.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32", help="Model dtype.")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: CUDA when available).")
    parser.add_argument(
        "--trust-remote-code", action="store_true", help="Allow remote code for non-NeoBERT models."
    )
    return parser


def run(args: argparse.Namespace) -> int:
    from neobert_hf.evaluation.pppl import pseudo_perplexity

    progress = logging.getLogger("neobert_hf.evaluation.pppl")  # one line per scored document, on stderr
    if not progress.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        progress.addHandler(handler)
    progress.setLevel(logging.INFO)
    summary = pseudo_perplexity(  # errors: see neobert_hf.cli.errors
        args.model,
        args.data,
        args.output,
        batch_size=args.batch_size,
        max_length=args.max_length,
        stride=args.stride,
        limit=args.limit,
        text_field=args.text_field,
        id_field=args.id_field,
        tokenizer=args.tokenizer,
        dtype=args.dtype,
        device=args.device,
        trust_remote_code=args.trust_remote_code,
    )
    print(
        f"Scored {summary.scored} documents ({summary.tokens:,} tokens), skipped {summary.skipped} already in "
        f"{summary.output}; corpus pseudo-perplexity {summary.pppl:.4f}"
    )
    return 0

"""`neobert-hf export`: a clean, self-contained model folder from a training checkpoint.

```
neobert-hf export runs/tiny/checkpoints/200 exported/tiny
neobert-hf export runs/tiny exported/tiny-st --sentence-transformers --pooling mean --normalize
```

The folder holds the weights, `config.json` with the `auto_map`, the modeling code, the tokenizer, a model card and
(with `--sentence-transformers`) the sentence-transformers files; never optimizer, scheduler, RNG or trainer state.
See [`neobert_hf.export.export_model`].
"""

from __future__ import annotations

import argparse


__all__ = ["HELP", "add_export_options", "add_parser", "export_kwargs", "run"]

HELP = "Export a checkpoint as a clean, self-contained model folder."

TASK_CHOICES = ("mlm", "base", "sequence-classification", "token-classification", "question-answering")


def add_export_options(parser: argparse.ArgumentParser) -> None:
    """The options shared by `export` and `push` (how a checkpoint becomes a clean folder)."""
    group = parser.add_argument_group("export")
    group.add_argument(
        "--task",
        choices=TASK_CHOICES,
        default=None,
        help="Head to export. Default: the checkpoint's own architecture, or 'base' with --sentence-transformers. "
        "'base' leaves the checkpoint's head out; any other missing or unexpected weight is an error.",
    )
    group.add_argument(
        "--dtype",
        choices=("auto", "float32", "bfloat16", "float16"),
        default="auto",
        help="dtype of the exported weights ('auto': as stored).",
    )
    group.add_argument(
        "--sentence-transformers",
        action="store_true",
        help="Also write the sentence-transformers files so that SentenceTransformer(<out>) loads it.",
    )
    group.add_argument(
        "--pooling",
        default="mean",
        help="Sentence-transformers pooling: mean, cls or max (with --sentence-transformers).",
    )
    group.add_argument(
        "--normalize",
        action="store_true",
        help="Add a Normalize module: unit-length sentence embeddings (with --sentence-transformers).",
    )
    group.add_argument(
        "--tokenizer", default=None, help="Tokenizer folder, when the checkpoint has none (default: the checkpoint's)."
    )
    card = parser.add_argument_group("model card")
    card.add_argument("--model-name", default=None, help="Title of the model card (default: the output folder's name).")
    card.add_argument("--dataset", default=None, help="Training data named in the card (default: from the run's args).")
    card.add_argument("--license", default="apache-2.0", help="Licence of the weights in the card metadata.")
    card.add_argument("--base-model", default=None, help="Hub id of the model this one was trained from.")
    card.add_argument("--language", default=None, help="Language code(s) for the card metadata, comma-separated.")


def export_kwargs(args: argparse.Namespace) -> dict:
    """Keyword arguments of [`~neobert_hf.export.export_model`] from the parsed options."""
    facts = {"license": args.license}
    for name in ("model_name", "dataset", "base_model"):
        if getattr(args, name) is not None:
            facts[name] = getattr(args, name)
    if args.language:
        languages = [code.strip() for code in args.language.split(",") if code.strip()]
        facts["language"] = languages[0] if len(languages) == 1 else languages
    return {
        "task": args.task,
        "dtype": args.dtype,
        "sentence_transformers": args.sentence_transformers,
        "pooling": args.pooling,
        "normalize": args.normalize,
        "tokenizer": args.tokenizer,
        "card_facts": facts,
    }


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("export", help=HELP, description=HELP)
    parser.add_argument(
        "checkpoint",
        help="A checkpoints/<step>/ folder, a run's output_dir (its latest complete checkpoint) or a model folder.",
    )
    parser.add_argument("output_dir", help="Folder to write; must not exist or be empty (see --overwrite).")
    parser.add_argument(
        "--overwrite", action="store_true", help="Replace a non-empty output_dir once the new export is complete."
    )
    add_export_options(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    from neobert_hf.export import export_model

    kwargs = export_kwargs(args)
    kwargs["card_facts"].setdefault("model_id", args.output_dir)
    result = export_model(args.checkpoint, args.output_dir, overwrite=args.overwrite, **kwargs)  # see cli.errors
    print(f"Exported {result.task} model ({result.num_parameters:,} parameters) to {result.output_dir}:")
    for name in result.files:
        print(f"  {name}")
    return 0

"""`neobert-hf contrastive`: contrastive fine-tuning of a NeoBERT checkpoint with sentence-transformers.

```bash
neobert-hf contrastive --config recipes/neobert/contrastive.yaml
neobert-hf contrastive --config recipes/tiny/contrastive.yaml --model_name_or_path runs/tiny/checkpoints/100
neobert-hf contrastive --config recipes/neobert/contrastive.yaml --resume_from_checkpoint latest
```

Every recipe key is a flag of `neobert-hf contrastive --help` (the [`ContrastiveArguments`] and the
`SentenceTransformerTrainingArguments`); flags given on the command line win. Bad input (an unknown key, pooling or
loss name, a checkpoint whose keys do not match, a broken data file) fails with one message before anything is
written.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence


__all__ = ["HELP", "add_parser", "build_argument_parser", "parse_args", "run"]

HELP = "Contrastive fine-tuning of NeoBERT with sentence-transformers."

def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `contrastive`; its arguments are parsed by [`build_argument_parser`] in [`run`] (every remaining
    token, `--help` included, goes to the recipe parser)."""
    parser = subparsers.add_parser("contrastive", help=HELP, description=HELP, add_help=False, prefix_chars="+")
    parser.add_argument("argv", nargs=argparse.REMAINDER)
    return parser


def build_argument_parser():
    """The recipe parser over (`ContrastiveArguments`, `ContrastiveTrainingArguments`)."""
    from ..integrations.contrastive import ContrastiveArguments, ContrastiveTrainingArguments
    from .parser import NeoBERTArgumentParser

    return NeoBERTArgumentParser(
        (ContrastiveArguments, ContrastiveTrainingArguments),
        prog="neobert-hf contrastive",
        description=HELP + " Usage: neobert-hf contrastive --config recipe.yaml [--key value ...].",
    )


def parse_args(argv: Sequence[str]):
    """`(contrastive_args, training_args)` from a command line (recipe via `--config`)."""
    return build_argument_parser().parse_args_and_config(list(argv))


def _setup_logging() -> None:
    package_logger = logging.getLogger("neobert_hf")
    if not any(getattr(h, "_neobert_cli", False) for h in package_logger.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler._neobert_cli = True  # type: ignore[attr-defined]
        package_logger.addHandler(handler)
    package_logger.setLevel(logging.INFO)
    # Records still propagate: a process that runs the command in-process (tests, notebooks) keeps its own logging.


def run(args: argparse.Namespace) -> int:
    """Parse, check, train, evaluate. Returns 0 on success; errors go through [`neobert_hf.cli.errors.run_command`]
    (2 on bad input, with nothing written; 1 when the run fails once under way)."""
    from ..integrations.contrastive import prepare_contrastive
    from .errors import training_phase
    from .parser import follow_disable_tqdm

    contrastive_args, training_args = parse_args(args.argv)
    follow_disable_tqdm(training_args)
    setup = prepare_contrastive(contrastive_args, training_args)
    _setup_logging()
    logger = logging.getLogger("neobert_hf.contrastive")
    if training_args.should_log:
        logger.info(setup.summary())
    with training_phase():
        trainer = setup.train()
        metrics = {}
        if setup.evaluators or setup.eval_dataset is not None:
            metrics = trainer.evaluate()
    if trainer.is_world_process_zero():
        from ..checkpoints import latest_checkpoint

        final = latest_checkpoint(training_args.output_dir)
        if metrics:
            with open(os.path.join(training_args.output_dir, "eval_results.json"), "w") as handle:
                json.dump(metrics, handle, indent=2)
            logger.info("final evaluation: " + json.dumps(metrics))
        logger.info(
            f"Done: {trainer.state.global_step} steps. Sentence-transformers model and training state in {final}\n"
            f"  load: SentenceTransformer('{final}', trust_remote_code=True)"
        )
    return 0

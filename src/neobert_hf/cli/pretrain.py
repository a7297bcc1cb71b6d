"""`neobert-hf pretrain`: MLM pretraining from a YAML recipe plus command-line overrides.

```bash
neobert-hf pretrain --config recipes/tiny/pretrain.yaml
neobert-hf pretrain --config recipes/tiny/pretrain.yaml --max_steps 50 --output_dir runs/try
neobert-hf pretrain --config recipes/tiny/pretrain.yaml --resume_from_checkpoint latest
```

Every key of the recipe is a flag of `neobert-hf pretrain --help` (model, data and training arguments); flags given on
the command line win over the recipe. Bad input fails with one clear message before anything is written.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence


__all__ = ["HELP", "add_parser", "build_argument_parser", "parse_args", "run"]

HELP = "Pretrain NeoBERT with masked language modelling from a YAML recipe."

def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `pretrain`; its arguments are parsed by [`build_argument_parser`] in [`run`].

    The subparser takes every remaining token as is (`prefix_chars="+"` keeps argparse from reading `--flags`
    here), so that the recipe parser sees the whole command line, `--help` included.
    """
    parser = subparsers.add_parser(
        "pretrain", help=HELP, description=HELP, add_help=False, prefix_chars="+"
    )
    parser.add_argument("argv", nargs=argparse.REMAINDER)
    return parser


def build_argument_parser():
    """The recipe parser over (ModelArguments, DataArguments, NeoBERTTrainingArguments, PrecisionArguments)."""
    from ..converters.arguments import PrecisionArguments
    from ..training import NeoBERTTrainingArguments
    from ..training.pretrain_arguments import DataArguments, ModelArguments
    from .parser import NeoBERTArgumentParser

    return NeoBERTArgumentParser(
        (ModelArguments, DataArguments, NeoBERTTrainingArguments, PrecisionArguments),
        prog="neobert-hf pretrain",
        description=HELP + " Usage: neobert-hf pretrain --config recipe.yaml [--key value ...].",
    )


def parse_args(argv: Sequence[str]):
    """`(model_args, data_args, training_args, precision_args)` from a command line (recipe via `--config`)."""
    return build_argument_parser().parse_args_and_config(list(argv))


class _StdoutHandler(logging.StreamHandler):
    """Writes to whatever `sys.stdout` is at the time of the message (it may be replaced after setup)."""

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, value):
        pass


def setup_logging() -> None:
    """Show the run's progress messages (setup summary, where checkpoints go) on the console."""
    run_logger = logging.getLogger("neobert_hf.pretrain")
    if not any(isinstance(h, _StdoutHandler) for h in run_logger.handlers):
        handler = _StdoutHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        run_logger.addHandler(handler)
    run_logger.setLevel(logging.INFO)
    # Records still propagate: a process that runs the command in-process (tests, notebooks) keeps its own logging.


def run(args: argparse.Namespace) -> int:
    """Parse, check and train. Returns 0 on success; errors go through [`neobert_hf.cli.errors.run_command`] (2 on
    bad input, with nothing written; 1 when the run fails once under way)."""
    from ..training import NonFiniteLossError
    from ..training.callbacks import NonFiniteGradientError
    from ..training.pretrain import prepare_pretraining
    from .errors import training_phase
    from .parser import follow_disable_tqdm

    model_args, data_args, training_args, precision_args = parse_args(args.argv)
    follow_disable_tqdm(training_args)
    setup = prepare_pretraining(model_args, data_args, training_args, precision_args)
    setup_logging()
    logger = logging.getLogger("neobert_hf.pretrain")
    if training_args.should_log:
        logger.info(setup.summary())
    with training_phase(NonFiniteLossError, NonFiniteGradientError):
        trainer = setup.train()  # a start that fails leaves no new output folder and run_args.json unchanged
    if training_args.should_log:
        from ..checkpoints import latest_checkpoint

        final = latest_checkpoint(training_args.output_dir)
        if final is not None:
            logger.info(
                f"Done: {trainer.state.global_step} steps. Model, tokenizer and training state in {final}\n"
                f"  fill [MASK]: python -c \"from transformers import pipeline; import neobert_hf; "
                f"print(pipeline('fill-mask', model='{final}')('a [MASK] is a domestic animal.'))\""
            )
    return 0

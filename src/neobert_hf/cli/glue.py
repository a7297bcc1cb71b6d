"""`neobert-hf glue`: fine-tune and evaluate NeoBERT on one GLUE task from a YAML recipe plus command-line overrides.

```bash
neobert-hf glue --config recipes/neobert/glue/cola.yaml
neobert-hf glue --config recipes/neobert/glue/rte.yaml --model_name_or_path outputs/glue/neobert/mnli
neobert-hf glue --config recipes/neobert/glue/sst2.yaml --use_peft true --lora_r 16
neobert-hf glue --config recipes/neobert/glue/mrpc.yaml --train_file train.csv --validation_file dev.csv
neobert-hf glue --model_name_or_path chandar-lab/NeoBERT --train_file reviews.csv --validation_file dev.csv \
    --output_dir outputs/reviews   # no task name: labels and text columns read from the files, as run_glue.py
```

Every key of the recipe is a flag of `neobert-hf glue --help`; flags given on the command line win. Bad input (an
unknown task, missing columns, labels that disagree with the task, a checkpoint whose weights do not all load) fails
with one message before anything is written. The run writes `<output_dir>/checkpoints/<step>/`,
`glue_results.json` (read by `neobert-hf glue-summary`), `run_args.json` and `predictions_<set>.tsv`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence


__all__ = ["HELP", "add_parser", "build_argument_parser", "parse_args", "run"]

HELP = "Fine-tune and evaluate NeoBERT on a GLUE task from a YAML recipe."

def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `glue`; its arguments are parsed by [`build_argument_parser`] in [`run`].

    The subparser takes every remaining token as is (`prefix_chars="+"` keeps argparse from reading `--flags` here),
    so that the recipe parser sees the whole command line, `--help` included.
    """
    parser = subparsers.add_parser("glue", help=HELP, description=HELP, add_help=False, prefix_chars="+")
    parser.add_argument("argv", nargs=argparse.REMAINDER)
    return parser


def build_argument_parser():
    """The recipe parser over the model, data and training arguments of
    [`~neobert_hf.integrations.glue.GlueArguments`]; every field of the three is one flat flag and recipe key."""
    from ..integrations.glue import GlueDataArguments, GlueModelArguments, GlueTrainingArguments
    from .parser import NeoBERTArgumentParser

    return NeoBERTArgumentParser(
        (GlueModelArguments, GlueDataArguments, GlueTrainingArguments),
        prog="neobert-hf glue",
        description=HELP + " Usage: neobert-hf glue --config recipe.yaml [--key value ...].",
    )


def parse_args(argv: Sequence[str]):
    """The [`~neobert_hf.integrations.glue.GlueArguments`] of a command line (recipe via `--config`)."""
    from ..integrations.glue import GlueArguments

    model_args, data_args, training_args = build_argument_parser().parse_args_and_config(list(argv))
    return GlueArguments(model=model_args, data=data_args, training=training_args)


def run(args: argparse.Namespace) -> int:
    """Parse, check, fine-tune, evaluate. Returns 0 on success; errors go through
    [`neobert_hf.cli.errors.run_command`] (2 on bad input, with nothing written; 1 when the run fails once under
    way)."""
    from ..integrations.glue import prepare_glue, run_glue
    from .errors import training_phase
    from .parser import follow_disable_tqdm

    glue_args = parse_args(args.argv)
    follow_disable_tqdm(glue_args.training)
    setup = prepare_glue(glue_args)
    with training_phase():
        results = run_glue(setup)
    if glue_args.training.should_log:
        scores = ", ".join(f"{k} {100 * v:.2f}" for k, v in results["scores"].items())
        score = results["task_score"]
        print(
            f"GLUE {results['task']}: {scores}"
            + (f" (task score {100 * score:.2f})" if score is not None else "")
            + f"; best checkpoint {results['best_checkpoint']} of {glue_args.training.output_dir}"
        )
    return 0

"""Every GLUE recipe parses strictly through `neobert-hf glue`'s parser and carries the shared fine-tuning settings; the
recipes' README table agrees with them. (The mrpc recipe also trains end to end in test_glue_run.py.)"""

import argparse
import re

import pytest
import torch
import yaml
from helpers.glue import RECIPES

from neobert_hf.cli import glue as glue_cli
from neobert_hf.cli.glue import build_argument_parser, parse_args
from neobert_hf.cli.glue_summary import add_parser as add_summary_parser
from neobert_hf.cli.parser import ConfigError
from neobert_hf.integrations.glue import GLUE_TASKS


TRANSFER_FROM_MNLI = {"rte", "mrpc", "stsb"}
# The recipes train in bf16 on a GPU; transformers refuses bf16 without one, so a CPU-only machine parses them in fp32.
CPU = [] if torch.cuda.is_available() else ["--bf16", "false"]


def test_there_is_one_recipe_per_task():
    assert sorted(p.stem for p in RECIPES.glob("*.yaml")) == sorted(GLUE_TASKS)


@pytest.mark.parametrize("task", list(GLUE_TASKS))
def test_recipe_parses_with_the_shared_settings(task):
    assert yaml.safe_load((RECIPES / f"{task}.yaml").read_text())["bf16"] is True
    args = parse_args(["--config", str(RECIPES / f"{task}.yaml"), *CPU])
    model, data, training = args.model, args.data, args.training
    assert data.task_name == task
    assert training.learning_rate == 2e-5 and training.weight_decay == 0.01
    assert (training.adam_beta1, training.adam_beta2, training.adam_epsilon) == (0.9, 0.999, 1e-8)
    assert training.lr_scheduler_type.value == "linear" and training.warmup_steps == 0.1
    assert training.num_train_epochs == 3 and training.per_device_train_batch_size == 32
    assert training.early_stopping_patience == 5 and training.load_best_model_at_end
    assert training.eval_strategy.value == "steps" and training.eval_steps == training.save_steps
    assert training.metric_for_best_model == GLUE_TASKS[task].best_metric and training.greater_is_better
    assert model.classifier_dropout == 0.1
    assert data.max_seq_length == (256 if task == "rte" else 128)
    expected_source = "outputs/glue/neobert/mnli" if task in TRANSFER_FROM_MNLI else "chandar-lab/NeoBERT"
    assert model.model_name_or_path == expected_source and not model.transfer_head
    assert training.output_dir == f"outputs/glue/neobert/{task}"


def test_command_line_wins_and_unknown_keys_fail(tmp_path):
    args = parse_args(["--config", str(RECIPES / "cola.yaml"), "--learning_rate", "3e-5", "--use_peft", "true", *CPU])
    assert args.training.learning_rate == 3e-5
    assert args.model.use_peft and args.model.lora_target_modules == ["qkv", "wo", "w12", "w3"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**yaml.safe_load((RECIPES / "cola.yaml").read_text()), "early_stoping": 3}))
    with pytest.raises(ConfigError, match="early_stoping.*did you mean early_stopping_patience"):
        parse_args(["--config", str(bad)])


def test_every_flag_the_docs_mention_exists():
    """The recipes' README and the command's docstring only name flags that `neobert-hf glue`/`glue-summary` parse."""
    glue_flags = {s for a in build_argument_parser()._actions for s in a.option_strings}
    summary = add_summary_parser(argparse.ArgumentParser().add_subparsers())
    summary_flags = {s for a in summary._actions for s in a.option_strings}
    for text in ((RECIPES / "README.md").read_text(), glue_cli.__doc__):
        for line in text.splitlines():
            known = summary_flags if "glue-summary" in line else glue_flags
            for flag in re.findall(r"(?<![\w-])(--[a-z][a-z0-9_-]*)", line):
                assert flag in known, (flag, line)


def test_readme_table_matches_the_recipes():
    text = (RECIPES / "README.md").read_text()
    rows = re.findall(r"^\| (\w+) \| (\d+) \| (\d+) steps \| ([^|]+) \| (\w+) \|$", text, flags=re.M)
    assert sorted(r[0] for r in rows) == sorted(GLUE_TASKS)
    for task, length, steps, _, source in rows:
        recipe = yaml.safe_load((RECIPES / f"{task}.yaml").read_text())
        assert recipe["max_seq_length"] == int(length) and recipe["eval_steps"] == int(steps), task
        assert (source == "MNLI") == (task in TRANSFER_FROM_MNLI), task
    for task in GLUE_TASKS:
        assert f"recipes/neobert/glue/{task}.yaml" in text

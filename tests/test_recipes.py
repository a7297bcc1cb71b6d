"""Every recipe under recipes/ parses strictly with the parser of the command that runs it, the recipes README indexes
them all, and every tiny pretraining recipe trains end to end through `neobert-hf pretrain`."""

import importlib
import json
import re
from pathlib import Path

import pytest
import torch
import yaml

from neobert_hf.cli.main import SUBCOMMANDS, main


ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"
# recipes/accelerate/ holds `accelerate launch` configs, not neobert-hf recipes (tests/training/test_distributed.py launches them).
ALL_RECIPES = sorted(p for p in RECIPES.rglob("*.yaml") if p.relative_to(RECIPES).parts[0] != "accelerate")
TINY_PRETRAIN = sorted((RECIPES / "tiny").glob("pretrain*.yaml"))

# Shrinks any tiny recipe to seconds: a one-layer model, a few hundred documents, three steps.
FAST = [
    "--hidden_size", "32", "--num_hidden_layers", "1", "--num_attention_heads", "2", "--intermediate_size", "64",
    "--train_split", "train[:300]", "--eval_split", "validation[:40]", "--max_seq_length", "64",
    "--tokens_per_batch", "256", "--max_steps", "3", "--warmup_steps", "1", "--logging_steps", "1",
    "--eval_steps", "2", "--eval_max_batches", "2", "--save_steps", "2", "--report_to", "none", "--disable_tqdm", "true",
    "--preprocessing_num_workers", "1",
]  # fmt: skip


def command_of(recipe: Path) -> str:
    """The subcommand that runs a recipe: `glue/` recipes are `glue`'s, otherwise the file name up to the first '-'
    (`pretrain-4096.yaml` -> `pretrain`)."""
    relative = recipe.relative_to(RECIPES)
    if "glue" in relative.parts[:-1]:
        return "glue"
    return recipe.stem.split("-")[0]


def recipe_parser(recipe: Path):
    command = command_of(recipe)
    assert command in SUBCOMMANDS, f"{recipe}: no `neobert-hf {command}` subcommand runs this recipe"
    module = importlib.import_module(SUBCOMMANDS[command][0])
    assert hasattr(module, "build_argument_parser"), f"`neobert-hf {command}` does not read recipes"
    return module.build_argument_parser()


def test_there_are_recipes():
    names = {str(p.relative_to(RECIPES)) for p in ALL_RECIPES}
    assert {
        "neobert/pretrain.yaml",
        "neobert/pretrain-4096.yaml",
        "neobert/pretrain-muonclip.yaml",
        "neobert/pretrain-single-gpu.yaml",
        "tiny/pretrain.yaml",
        "tiny/preprocess.yaml",
    } <= names


@pytest.mark.parametrize("recipe", ALL_RECIPES, ids=lambda p: str(p.relative_to(RECIPES)))
def test_recipe_parses_strictly(recipe):
    parser = recipe_parser(recipe)
    values = yaml.safe_load(recipe.read_text())
    assert isinstance(values, dict) and values, f"{recipe} is empty"
    unknown = set(values) - set(parser.field_names())
    assert not unknown, f"{recipe}: unknown keys {sorted(unknown)}"
    extra = []
    if "use_cpu" in parser.field_names() and not torch.cuda.is_available() and values.get("bf16"):
        extra = ["--use_cpu", "true"]  # transformers refuses bf16 without a GPU unless the run is on the CPU
    parsed = parser.parse_args_and_config(["--config", str(recipe), *extra])
    if command_of(recipe) not in ("pretrain", "preprocess"):
        return
    # Every value of the recipe arrived where it belongs (type-checked by argparse on the way).
    fields = {}
    for instance in parsed:
        fields.update(vars(instance))
    for key, value in values.items():
        got = fields[key]
        got = getattr(got, "value", got)  # enums (lr_scheduler_type, eval_strategy, ...)
        if key == "lr_scheduler_type" and fields.get("final_lr_ratio") is not None:
            continue  # mapped onto the floor-decay scheduler, see NeoBERTTrainingArguments
        if key == "report_to" and value == "none":
            assert got in ([], ["none"], "none"), key
            continue
        if isinstance(value, list):
            assert list(got) == value, key
        elif isinstance(value, float):
            assert got == pytest.approx(value), key
        elif value is not None:
            assert got == value or str(got) == str(value), key


def test_readme_indexes_every_recipe_with_runnable_commands():
    readme = (RECIPES / "README.md").read_text()
    for recipe in ALL_RECIPES:
        relative = str(recipe.relative_to(ROOT))
        if command_of(recipe) in ("pretrain", "preprocess"):
            assert relative in readme, f"{relative} is not in recipes/README.md"
    for command, path in re.findall(r"neobert-hf (\w[\w-]*) --config (\S+\.yaml)", readme):
        assert (ROOT / path).is_file(), path
        assert command == command_of(ROOT / path), f"{path} is run by `neobert-hf {command_of(ROOT / path)}`"


def test_paper_recipe_batch_is_two_million_tokens():
    """The arithmetic stated in the recipes' headers: tokens_per_batch x microbatches x accumulation x 8 GPUs."""
    for name in ("pretrain.yaml", "pretrain-4096.yaml", "pretrain-muonclip.yaml"):
        values = yaml.safe_load((RECIPES / "neobert" / name).read_text())
        tokens = (
            values["tokens_per_batch"] * values["per_device_train_batch_size"] * values["gradient_accumulation_steps"]
        )
        assert tokens * 8 == 2**21, name
    paper = yaml.safe_load((RECIPES / "neobert" / "pretrain.yaml").read_text())
    assert (paper["num_hidden_layers"], paper["hidden_size"], paper["num_attention_heads"]) == (28, 768, 12)
    assert paper["max_seq_length"] == 1024 and paper["mlm_probability"] == 0.2 and paper["mask_all"] is True
    assert (paper["learning_rate"], paper["adam_beta2"], paper["weight_decay"]) == (6e-4, 0.95, 0.1)
    assert (paper["warmup_steps"], paper["final_lr_ratio"], paper["max_steps"]) == (2000, 0.1, 1_000_000)
    assert paper["bf16"] is True and paper["packing"] is True and paper["streaming"] is True


def _without(argv: list[str], *flags: str) -> list[str]:
    out = list(argv)
    for flag in flags:
        if flag in out:
            index = out.index(flag)
            del out[index : index + 2]
    return out


@pytest.mark.integration
@pytest.mark.parametrize("recipe", TINY_PRETRAIN, ids=lambda p: p.name)
def test_tiny_recipe_trains(recipe, tmp_path, capsys):
    values = yaml.safe_load(recipe.read_text())
    fast = FAST if values.get("packing", True) else _without(FAST, "--tokens_per_batch")
    if values.get("model_name_or_path"):
        # A continuation recipe: first make the checkpoint it continues from, with the main tiny recipe.
        base = tmp_path / "base"
        assert main(["pretrain", "--config", str(RECIPES / "tiny" / "pretrain.yaml"), *FAST,
                     "--output_dir", str(base)]) == 0  # fmt: skip
        fast = _without(fast, "--hidden_size", "--num_hidden_layers", "--num_attention_heads", "--intermediate_size")
        fast += ["--model_name_or_path", str(base / "checkpoints" / "3")]
    output_dir = tmp_path / "run"
    status = main(["pretrain", "--config", str(recipe), *fast, "--output_dir", str(output_dir)])
    captured = capsys.readouterr()
    assert status == 0, captured.err[-3000:]
    assert re.search(r"step 3/3 \| loss \d", captured.out)
    final = output_dir / "checkpoints" / "3"
    state = json.loads((final / "trainer_state.json").read_text())
    assert state["global_step"] == 3
    assert any("eval_loss" in entry for entry in state["log_history"])
    from transformers import AutoModelForMaskedLM

    model = AutoModelForMaskedLM.from_pretrained(final)
    assert type(model).__name__ == "NeoBERTForMaskedLM"


def test_readme_maps_every_original_key_to_an_existing_flag():
    """The table of recipes/README.md that tells users of the original NeoBERT trainer where each of its keys went."""
    from neobert_hf.cli.pretrain import build_argument_parser

    parser = build_argument_parser()
    fields = set(parser.field_names())
    values = {str(c) for action in parser._actions for c in (action.choices or [])}
    values |= {"save_to_disk", "latest", "grad_norm", "cu_seq_lens"}  # prose, not flags
    table = (RECIPES / "README.md").read_text().split("## Where the original NeoBERT trainer's keys went")[1]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    assert len(rows) > 30
    for row in rows:
        here = row.split("|")[2]
        for token in re.findall(r"`([a-z_0-9]+)`", here):
            assert token in fields or token in values, f"{token!r} in: {row}"

"""The recipe parser: command line > YAML > defaults; unknown keys and bad values are errors naming the key."""

import dataclasses

import pytest
from transformers import TrainingArguments

from neobert_hf.cli.parser import ConfigError, NeoBERTArgumentParser


@dataclasses.dataclass
class Extra:
    mlm_probability: float = dataclasses.field(default=0.15, metadata={"help": "masking rate"})
    kind: str = dataclasses.field(default="a", metadata={"help": "a kind", "choices": ["a", "b"]})
    tags: list[str] | None = dataclasses.field(default=None, metadata={"help": "tags"})
    note: str | None = dataclasses.field(default="x", metadata={"help": "nullable"})
    size: int | None = dataclasses.field(default=None, metadata={"help": "optional int"})
    count: int = dataclasses.field(default=3, metadata={"help": "required int"})


def write(tmp_path, text):
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return str(path)


@pytest.fixture
def parser():
    return NeoBERTArgumentParser((Extra, TrainingArguments))


def test_precedence(tmp_path, parser):
    recipe = write(
        tmp_path,
        f"output_dir: {tmp_path}/out\nlearning_rate: 0.001\nmlm_probability: 0.2\nbf16: false\n"
        "tags: [x, y]\nlr_scheduler_kwargs: {min_lr_rate: 0.1}\nnote: null\n",
    )
    extra, args = parser.parse_args_and_config(["--config", recipe, "--learning_rate", "0.5"])
    assert args.learning_rate == 0.5  # command line wins
    assert extra.mlm_probability == 0.2  # YAML beats the default
    assert args.weight_decay == TrainingArguments.weight_decay  # default
    assert extra.tags == ["x", "y"] and extra.note is None
    assert args.lr_scheduler_kwargs == {"min_lr_rate": 0.1}


def test_null_overridden_on_command_line(tmp_path, parser):
    recipe = write(tmp_path, f"output_dir: {tmp_path}\nnote: null\n")
    extra, _ = parser.parse_args_and_config(["--config", recipe, "--note", "y"])
    assert extra.note == "y"


def test_command_line_none_unsets_an_optional_recipe_value(tmp_path, parser):
    """`--key none`/`null` switches off an optional value that the recipe sets; other values still parse; a field
    that cannot be None keeps refusing it."""
    recipe = write(tmp_path, f"output_dir: {tmp_path}\nsize: 256\nnote: y\neval_steps: 10\n")
    extra, args = parser.parse_args_and_config(["--config", recipe])
    assert extra.size == 256 and extra.note == "y" and args.eval_steps == 10
    extra, args = parser.parse_args_and_config(["--config", recipe, "--size", "None", "--report_to", "none"])
    assert extra.size is None and args.report_to == []  # a string field keeps "none" as its value
    extra, _ = parser.parse_args_and_config(["--config", recipe, "--size", "null"])
    assert extra.size is None
    extra, _ = parser.parse_args_and_config(["--config", recipe, "--size", "7"])
    assert extra.size == 7
    with pytest.raises(ConfigError, match="invalid int value: 'x'"):
        parser.parse_args_and_config(["--config", recipe, "--size", "x"])
    with pytest.raises(ConfigError, match="invalid int value: 'none'"):
        parser.parse_args_and_config(["--config", recipe, "--count", "none"])


@pytest.mark.parametrize(
    "text, message",
    [
        ("learnin_rate: 0.1\n", "did you mean learning_rate"),
        ("learning_rate: fast\n", "invalid float value: 'fast'"),
        ("kind: c\n", "invalid choice: 'c'"),
        ("bf16: maybe\n", "bf16"),
        ("- a\n- b\n", "must be a mapping"),
        ("tags: []\n", "empty list"),
    ],
)
def test_bad_recipes(tmp_path, parser, text, message):
    recipe = write(tmp_path, f"output_dir: {tmp_path}\n" + text if not text.startswith("-") else text)
    with pytest.raises(ConfigError, match=message):
        parser.parse_args_and_config(["--config", recipe])


def test_unknown_and_abbreviated_flags(tmp_path, parser):
    with pytest.raises(ConfigError, match="did you mean warmup_steps"):
        parser.parse_args_and_config(["--output_dir", str(tmp_path), "--warmup_step", "3"])
    with pytest.raises(ConfigError, match="does not exist"):
        parser.parse_args_and_config(["--config", str(tmp_path / "missing.yaml")])


@dataclasses.dataclass
class Required:
    model: str = dataclasses.field(metadata={"help": "required, may come from the recipe"})


def test_required_field_from_recipe(tmp_path):
    parser = NeoBERTArgumentParser((Required,))
    (required,) = parser.parse_args_and_config(["--config", write(tmp_path, "model: from-yaml\n")])
    assert required.model == "from-yaml"
    (required,) = parser.parse_args_and_config(["--config", write(tmp_path, "model: from-yaml\n"), "--model", "cli"])
    assert required.model == "cli"
    with pytest.raises(ConfigError, match="required"):
        parser.parse_args_and_config([])


def test_recipes_are_read_strictly(tmp_path, parser):
    """A key given twice is an error naming it and both lines; YAML 1.1's yes/no/on/off stay strings (never a silent
    False for a string option); a bool option refuses `off`."""
    recipe = write(tmp_path, f"output_dir: {tmp_path}\nlearning_rate: 0.1\nmlm_probability: 0.2\nlearning_rate: 0.2\n")
    with pytest.raises(ConfigError, match=r"key 'learning_rate' is given twice \(lines 2 and 4\)"):
        parser.parse_args_and_config(["--config", recipe])
    recipe = write(tmp_path, f"output_dir: {tmp_path}\nnote: no\neval_strategy: no\nhub_model_id: on\nbf16: false\n")
    extra, args = parser.parse_args_and_config(["--config", recipe])
    assert extra.note == "no" and args.hub_model_id == "on" and args.eval_strategy == "no" and args.bf16 is False
    with pytest.raises(ConfigError, match="bf16"):
        parser.parse_args_and_config(["--config", write(tmp_path, f"output_dir: {tmp_path}\nbf16: off\n")])


def test_none_unsets_every_optional_field(tmp_path, parser):
    """`--key none` (or null) unsets an optional string or list as well as a number; a string that cannot be None
    keeps "none" as a value it refuses or accepts on its own terms."""
    recipe = write(tmp_path, f"output_dir: {tmp_path}\nnote: y\ntags: [a, b]\nhub_model_id: me/model\n")
    extra, args = parser.parse_args_and_config(
        ["--config", recipe, "--note", "none", "--tags", "NULL", "--hub_model_id", "none"]
    )
    assert extra.note is None and extra.tags is None and args.hub_model_id is None
    with pytest.raises(ConfigError, match="invalid choice: 'none'"):
        parser.parse_args_and_config(["--config", recipe, "--kind", "none"])

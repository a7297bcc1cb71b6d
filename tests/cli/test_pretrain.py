"""`neobert-hf pretrain` and `neobert-hf preprocess` end to end: bad input fails before anything is written, the
preprocessed folder trains, `--resume_from_checkpoint latest` continues exactly, the final checkpoint fills [MASK]."""

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from helpers.modeling import tiny_config
from neobert_hf import NeoBERTForMaskedLM
from helpers.cli import CORPUS, TINY, TOKENIZER, log_history, parse, pretrain, without
from neobert_hf.cli.main import main
from neobert_hf.cli.pretrain import build_argument_parser
from neobert_hf.model_card import display_path
from neobert_hf.training.pretrain import prepare_pretraining



# A one-layer model on 300 documents: each run takes a few seconds.










# ---------------------------------------------------------------------------------------------------------------------
# --help
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command, flags",
    [
        ("pretrain", ["--config", "--tokens_per_batch", "--mlm_probability", "--mask_all", "--model_name_or_path",
                      "--attn_implementation", "--learning_rate", "--final_lr_ratio", "--resume_from_checkpoint"]),
        ("preprocess", ["--config", "--dataset_name", "--tokenizer_name", "--output_dir", "--splits",
                        "--preprocessing_num_workers"]),
    ],
)  # fmt: skip
def test_help_lists_every_argument(command, flags, capsys):
    with pytest.raises(SystemExit) as excinfo:
        main([command, "--help"])
    assert excinfo.value.code == 0
    out = capsys.readouterr().out
    assert f"neobert-hf {command}" in out
    for flag in flags:
        assert flag in out, flag


# ---------------------------------------------------------------------------------------------------------------------
# Bad input: one clear message, nothing written
# ---------------------------------------------------------------------------------------------------------------------


def _fails_cleanly(capsys, output_dir, *extra: str, message: str, existing: bool = False, base=TINY) -> None:
    before = sorted(p.relative_to(output_dir) for p in Path(output_dir).rglob("*")) if existing else None
    assert pretrain(output_dir, *extra, base=base) == 2
    err = capsys.readouterr().err
    assert "neobert-hf pretrain: error:" in err
    assert message.lower() in err.lower(), err
    assert "Traceback" not in err
    if existing:
        assert sorted(p.relative_to(output_dir) for p in Path(output_dir).rglob("*")) == before
    else:
        assert not os.path.exists(output_dir)


def test_unknown_recipe_key(tmp_path, capsys):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("learnin_rate: 0.1\n")
    _fails_cleanly(capsys, tmp_path / "out", "--config", str(recipe), message="did you mean learning_rate")


def test_unknown_command_line_flag(tmp_path, capsys):
    _fails_cleanly(capsys, tmp_path / "out", "--tokens_per_batc", "512", message="did you mean tokens_per_batch")


def test_fp16_is_refused(tmp_path, capsys):
    _fails_cleanly(capsys, tmp_path / "out", "--fp16", "true", message="fp16 is not supported")


def test_max_seq_length_above_max_position_embeddings(tmp_path, capsys):
    _fails_cleanly(
        capsys, tmp_path / "out", "--max_seq_length", "256", message="larger than the model's max_position_embeddings"
    )


def test_checkpoint_vocabulary_smaller_than_the_tokenizer(tmp_path, capsys):
    model_dir = tmp_path / "small-vocab"
    NeoBERTForMaskedLM(tiny_config(vocab_size=128)).save_pretrained(model_dir)
    _fails_cleanly(
        capsys,
        tmp_path / "out",
        "--model_name_or_path", str(model_dir),
        "--hidden_size", "64", "--num_hidden_layers", "2", "--num_attention_heads", "4", "--intermediate_size", "192",
        "--max_position_embeddings", "512",
        message="cannot be synced",
    )  # fmt: skip


def test_changing_the_architecture_of_a_checkpoint(tmp_path, capsys):
    model_dir = tmp_path / "model"
    NeoBERTForMaskedLM(tiny_config(vocab_size=8192)).save_pretrained(model_dir)
    _fails_cleanly(capsys, tmp_path / "out", "--model_name_or_path", str(model_dir), message="hidden_size: checkpoint 64")


def test_empty_dataset(tmp_path, capsys):
    data = tmp_path / "empty.jsonl"
    data.write_text('{"text": ""}\n{"text": "   "}\n')
    _fails_cleanly(
        capsys, tmp_path / "out", "--dataset_name", str(data), "--train_split", "train", "--eval_split", "train",
        message="no tokens",
    )  # fmt: skip


def test_empty_file(tmp_path, capsys):
    data = tmp_path / "empty.jsonl"
    data.write_text("")
    _fails_cleanly(capsys, tmp_path / "out", "--dataset_name", str(data), "--train_split", "train", message="empty")


def test_missing_text_column(tmp_path, capsys):
    _fails_cleanly(capsys, tmp_path / "out", "--text_column", "body", message="Text column 'body' not found")


def test_cuda_only_attention_on_cpu(tmp_path, capsys):
    _fails_cleanly(capsys, tmp_path / "out", "--attn_implementation", "torch_varlen", message="needs a CUDA GPU")


def test_max_steps_or_epochs_is_required(tmp_path, capsys):
    _fails_cleanly(capsys, tmp_path / "out", "--max_steps", "-1", "--num_train_epochs", "0", message="num_train_epochs")
    # a stream has no length: epochs cannot be turned into steps before it is read
    _fails_cleanly(
        capsys, tmp_path / "out", "--max_steps", "-1", "--streaming", "true",
        message="num_train_epochs without max_steps needs map-style data",
    )  # fmt: skip


def test_dataloader_workers_are_refused(tmp_path, capsys):
    _fails_cleanly(capsys, tmp_path / "out", "--dataloader_num_workers", "2", message="dataloader_num_workers must be 0")


def test_evaluation_without_eval_data_is_skipped_with_a_warning(tmp_path, capsys, caplog):
    # No eval split found (and none named): as the original trainer did, training runs without evaluation.
    data = tmp_path / "docs.jsonl"
    data.write_text("".join(json.dumps({"text": f"document number {i} about dogs and cats."}) + "\n" for i in range(80)))
    base = without(TINY, "--dataset_name", "--eval_split")
    with caplog.at_level("WARNING"):
        code = pretrain(tmp_path / "out", "--data_files", str(data), "--train_split", "train", "--eval_strategy",
                        "steps", "--eval_steps", "1", base=base)  # fmt: skip
    assert code == 0
    shown = caplog.text + capsys.readouterr().err
    assert "eval_strategy=steps but there is no eval data" in shown and "eval_strategy set to no" in shown
    # Best-model selection depends on evaluation: then it is an error, before anything is written.
    _fails_cleanly(
        capsys, tmp_path / "out2", "--data_files", str(data), "--train_split", "train", "--eval_strategy", "steps",
        "--save_strategy", "steps", "--load_best_model_at_end", "true",
        message="load_best_model_at_end needs eval data", base=base,
    )  # fmt: skip


def test_resume_latest_without_checkpoint(tmp_path, capsys):
    _fails_cleanly(
        capsys, tmp_path / "out", "--resume_from_checkpoint", "latest", message="no complete checkpoint"
    )


def test_resume_from_an_incomplete_checkpoint(tmp_path, capsys):
    output_dir = tmp_path / "out"
    broken = output_dir / "checkpoints" / "2"
    broken.mkdir(parents=True)
    (broken / "config.json").write_text("{}")
    for spec in ("2", str(broken)):
        _fails_cleanly(
            capsys, output_dir, "--resume_from_checkpoint", spec, message="no trainer_state.json", existing=True
        )


def test_new_run_over_an_earlier_one_is_refused(tmp_path, capsys):
    output_dir = tmp_path / "out"
    assert pretrain(output_dir, "--max_steps", "1") == 0
    capsys.readouterr()
    _fails_cleanly(capsys, output_dir, message="--resume_from_checkpoint latest", existing=True)
    # Resuming a finished run with the same max_steps would train past it: refused, nothing written.
    _fails_cleanly(
        capsys, output_dir, "--max_steps", "1", "--resume_from_checkpoint", "latest", message="that run is complete",
        existing=True,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------------
# Tokenizer and config sync
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.integration
def test_padded_vocabulary_is_synced_into_config_and_saved_tokenizer(tmp_path):
    args = parse(tmp_path / "out", "--pad_vocab_to_multiple_of", "3000", "--max_steps", "1")
    setup = prepare_pretraining(*args)
    assert setup.config.vocab_size == len(setup.tokenizer) == 9000  # 8192 entries padded up to 3 x 3000
    assert setup.config.pad_token_id == setup.tokenizer.pad_token_id == 0
    assert setup.model.decoder.out_features == 9000
    trainer = setup.build_trainer()
    trainer.train()
    final = tmp_path / "out" / "checkpoints" / "1"
    from transformers import AutoTokenizer

    assert len(AutoTokenizer.from_pretrained(final)) == json.loads((final / "config.json").read_text())["vocab_size"]


def test_config_name_with_size_overrides(tmp_path):
    config_dir = tmp_path / "config"
    tiny_config(hidden_size=48, num_attention_heads=3, rope_theta=500.0).save_pretrained(config_dir)
    argv = without(TINY, "--hidden_size")  # the hidden size comes from the config
    args = build_argument_parser().parse_args_and_config(
        [*argv, "--output_dir", str(tmp_path / "out"), "--config_name", str(config_dir)]
    )
    setup = prepare_pretraining(*args)
    config = setup.config
    assert (config.hidden_size, config.num_attention_heads, config.rope_theta) == (48, 2, 500.0)  # heads overridden
    assert (config.num_hidden_layers, config.intermediate_size) == (1, 64)
    assert config.vocab_size == 8192  # from the tokenizer, not the config's 128
    assert not (tmp_path / "out").exists()


@pytest.mark.integration
def test_continuing_pads_the_tokenizer_to_the_checkpoint_vocabulary(tmp_path):
    model_dir = tmp_path / "model"
    config = tiny_config(vocab_size=8320, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=128)  # fmt: skip
    NeoBERTForMaskedLM(config).save_pretrained(model_dir)
    setup = prepare_pretraining(*parse(tmp_path / "out", "--model_name_or_path", str(model_dir),
                                       "--max_position_embeddings", "256", "--dropout", "0.1"))  # fmt: skip
    assert len(setup.tokenizer) == setup.config.vocab_size == 8320
    assert setup.config.max_position_embeddings == 256 and setup.config.dropout == 0.1
    reference = NeoBERTForMaskedLM.from_pretrained(model_dir)
    for (name, a), (_, b) in zip(setup.model.state_dict().items(), reference.state_dict().items()):
        assert torch.equal(a, b), name
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------------------------------
# preprocess -> pretrain
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.integration
def test_preprocess_then_pretrain_from_the_saved_folder(tmp_path, capsys):
    tokenized = tmp_path / "tokenized"
    status = main([
        "preprocess", "--dataset_name", CORPUS, "--tokenizer_name", TOKENIZER, "--output_dir", str(tokenized),
        "--splits", "train[:300]", "validation[:40]", "--preprocessing_num_workers", "2",
    ])  # fmt: skip
    assert status == 0, capsys.readouterr().err
    info = json.loads((tokenized / "preprocess_info.json").read_text())
    assert info["splits"]["train"]["documents"] == 300 and info["splits"]["train"]["tokens"] > 300
    assert (tokenized / "tokenizer" / "tokenizer.json").is_file()
    # Again into the same folder: refused unless asked.
    assert main(["preprocess", "--dataset_name", CORPUS, "--tokenizer_name", TOKENIZER,
                 "--output_dir", str(tokenized)]) == 2  # fmt: skip
    assert "overwrite_output_dir" in capsys.readouterr().err

    # No tokenizer_name: the tokenizer saved next to the data is used; the data is not tokenized again.
    argv = [*without(TINY, "--tokenizer_name"), "--dataset_name", str(tokenized), "--train_split", "train",
            "--eval_split", "validation"]  # fmt: skip
    (model_args, data_args, training_args, *rest) = build_argument_parser().parse_args_and_config(
        [*argv, "--output_dir", str(tmp_path / "out")]
    )
    setup = prepare_pretraining(model_args, data_args, training_args, *rest)
    assert setup.data.tokenized and setup.data.text_column is None
    assert "pre-tokenized" in setup.data.description
    assert main(["pretrain", *argv, "--output_dir", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "checkpoints" / "3" / "model.safetensors").is_file()

    # A different tokenizer than the one that made the data is refused.
    other = tmp_path / "other-tokenizer"
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(TOKENIZER)
    tokenizer.add_tokens(["zzzyyyxxx"])
    tokenizer.save_pretrained(other)
    vocab = json.loads((other / "tokenizer.json").read_text())
    vocab["model"]["vocab"] = {k: (v + 1) % len(vocab["model"]["vocab"]) for k, v in vocab["model"]["vocab"].items()}
    (other / "tokenizer.json").write_text(json.dumps(vocab))
    capsys.readouterr()
    assert main(["pretrain", *argv, "--tokenizer_name", str(other), "--output_dir", str(tmp_path / "out2")]) == 2
    assert "tokenized with the tokenizer" in capsys.readouterr().err
    assert not (tmp_path / "out2").exists()


# ---------------------------------------------------------------------------------------------------------------------
# Resume and the final checkpoint
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.integration
def test_resume_latest_continues_exactly(tmp_path):
    run = ["--max_steps", "4", "--save_strategy", "steps", "--save_steps", "2", "--gradient_accumulation_steps", "2"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert pretrain(straight, *run) == 0
    assert sorted(os.listdir(straight / "checkpoints")) == ["2", "4"]
    shutil.copytree(straight / "checkpoints" / "2", resumed / "checkpoints" / "2")
    assert pretrain(resumed, *run, "--resume_from_checkpoint", "latest") == 0

    expected = {e["step"]: e["loss"] for e in log_history(straight / "checkpoints" / "4") if "loss" in e}
    got = {e["step"]: e["loss"] for e in log_history(resumed / "checkpoints" / "4") if "loss" in e}
    assert got == expected and set(got) == {1, 2, 3, 4}
    from safetensors.torch import load_file

    a = load_file(straight / "checkpoints" / "4" / "model.safetensors")
    b = load_file(resumed / "checkpoints" / "4" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.integration
def test_resume_with_other_packing_settings_is_refused(tmp_path, capsys):
    output_dir = tmp_path / "out"
    assert pretrain(output_dir, "--max_steps", "2") == 0
    capsys.readouterr()
    _fails_cleanly(
        capsys, output_dir, "--max_steps", "4", "--tokens_per_batch", "512", "--resume_from_checkpoint", "latest",
        message="other settings", existing=True,
    )  # fmt: skip


@pytest.mark.integration
def test_final_checkpoint_loads_and_fills_mask(tmp_path, capsys):
    output_dir = tmp_path / "out"
    assert pretrain(output_dir, "--eval_strategy", "steps", "--eval_steps", "2") == 0
    out = capsys.readouterr().out
    assert "step 1/3 | loss" in out and "tok/s" in out  # the compact console line
    assert "eval step 2/3 | loss" in out
    assert "Done: 3 steps" in out
    final = output_dir / "checkpoints" / "3"
    from transformers import AutoModelForMaskedLM, AutoTokenizer, pipeline

    model = AutoModelForMaskedLM.from_pretrained(final)
    tokenizer = AutoTokenizer.from_pretrained(final)
    assert type(model).__name__ == "NeoBERTForMaskedLM" and len(tokenizer) == model.config.vocab_size
    fill = pipeline("fill-mask", model=model, tokenizer=tokenizer, device="cpu")
    predictions = fill("a [MASK] is a domestic animal.")
    assert len(predictions) == 5 and all(isinstance(p["token_str"], str) for p in predictions)
    assert abs(sum(p["score"] for p in predictions)) <= 1.0 + 1e-6


@pytest.mark.integration
def test_run_args_record_names_the_data_in_checkpoint_cards(tmp_path):
    """`run_args.json` holds every parsed argument of the run, so each checkpoint's model card names its data and
    model; a run refused before training writes no record."""
    output_dir = tmp_path / "out"
    assert pretrain(output_dir, "--save_strategy", "steps", "--save_steps", "2") == 0
    record = json.loads((output_dir / "run_args.json").read_text())
    assert record["dataset_name"] == CORPUS and record["train_split"] == "train[:300]"
    assert record["hidden_size"] == 32 and record["tokens_per_batch"] == 256 and record["max_steps"] == 3
    assert record["learning_rate"] == 1e-3 and record["output_dir"] == str(output_dir)
    for step in (2, 3):
        card = (output_dir / "checkpoints" / str(step) / "README.md").read_text()
        assert f"| data | {display_path(CORPUS)} |" in card, card  # no local absolute path in a card

    refused = tmp_path / "refused"
    assert pretrain(refused, "--fp16", "true") == 2
    assert not refused.exists()

"""Checkpoints of the original NeoBERT trainer (`model.safetensors` with split `ffn.w1`/`ffn.w2` and no decoder bias,
its nested `config.yaml`, a `tokenizer/` folder, accelerate state, no `config.json`) load as this package's models:
the converted folder gives the same logits as the model that wrote it, and bad folders are refused by name."""

from __future__ import annotations

import json
import os

import pytest
import torch
import yaml
from helpers.modeling import tiny_config
from helpers.training import tiny_tokenizer

from neobert_hf import NeoBERTForMaskedLM
from neobert_hf.migration import MigrationError
from neobert_hf.migration.checkpoint import (
    as_model_folder,
    convert_original_checkpoint,
    find_original_checkpoint,
    is_original_checkpoint,
)


def original_model(seed: int = 0) -> NeoBERTForMaskedLM:
    torch.manual_seed(seed)
    model = NeoBERTForMaskedLM(tiny_config(tie_word_embeddings=False, decoder_bias=False))
    with torch.no_grad():  # a decoder trained apart from the embedding
        model.decoder.weight.add_(0.01 * torch.randn_like(model.decoder.weight))
    return model


def write_original_checkpoint(folder, model: NeoBERTForMaskedLM, **model_overrides) -> str:
    """A step folder as the original trainer writes it, from `model`."""
    from safetensors.torch import save_file

    os.makedirs(folder, exist_ok=True)
    config = model.config
    tensors = {}
    for name, tensor in model.state_dict().items():
        if name.endswith("ffn.w12.weight"):
            gate, up = tensor.chunk(2, dim=0)
            tensors[name.replace("w12", "w1")] = gate.contiguous()
            tensors[name.replace("w12", "w2")] = up.contiguous()
        else:
            tensors[name] = tensor.contiguous()
    save_file(tensors, os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})
    saved = {
        "task": "pretraining",
        "model": {
            "hidden_size": config.hidden_size,
            "num_hidden_layers": config.num_hidden_layers,
            "num_attention_heads": config.num_attention_heads,
            "intermediate_size": config.intermediate_size,
            "max_position_embeddings": config.max_position_embeddings,
            "vocab_size": config.vocab_size,
            "hidden_act": "SwiGLU",
            "dropout_prob": 0.0,
            "norm_eps": str(config.norm_eps),  # numbers come back from PyYAML as strings
            "rms_norm": True,
            "rope": True,
            "ngpt": False,
            "pad_token_id": 0,
            "embedding_init_range": "0.02",
            "decoder_init_range": 0.02,
            "classifier_init_range": 0.02,
            **model_overrides,
        },
        "trainer": {"per_device_train_batch_size": 16, "train_batch_size": None, "max_steps": 100},
        "optimizer": {"name": "adamw", "lr": "1e-4"},
    }
    with open(os.path.join(folder, "config.yaml"), "w") as handle:
        yaml.safe_dump(saved, handle)
    tiny_tokenizer().save_pretrained(os.path.join(folder, "tokenizer"))
    with open(os.path.join(folder, "tokenizer_info.json"), "w") as handle:
        json.dump({"vocab_size": config.vocab_size}, handle)
    for name in ("optimizer.bin", "scheduler.bin", "random_states_0.pkl", "custom_checkpoint_0.pkl"):
        with open(os.path.join(folder, name), "wb") as handle:
            handle.write(b"accelerate state")
    return str(folder)


def _logits(model, ids):
    model.eval()
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits


def test_converted_checkpoint_gives_the_logits_of_the_model_that_wrote_it(tmp_path):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    model = original_model()
    folder = write_original_checkpoint(tmp_path / "run" / "model_checkpoints" / "100", model)
    assert is_original_checkpoint(folder)
    out = convert_original_checkpoint(folder, tmp_path / "hf")
    loaded, info = AutoModelForMaskedLM.from_pretrained(out, output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    assert loaded.config.tie_word_embeddings is False and loaded.config.decoder_bias is False
    ids = torch.randint(5, 128, (2, 11))
    torch.testing.assert_close(_logits(loaded, ids), _logits(model, ids), rtol=0, atol=0)
    assert not torch.equal(loaded.decoder.weight, loaded.model.encoder.weight)  # untied, as stored
    assert AutoTokenizer.from_pretrained(out).mask_token == "[MASK]"


def test_the_newest_step_of_a_run_folder_is_found(tmp_path):
    model = original_model()
    write_original_checkpoint(tmp_path / "run" / "model_checkpoints" / "100", model)
    write_original_checkpoint(tmp_path / "run" / "checkpoints" / "900", model)
    write_original_checkpoint(tmp_path / "run" / "checkpoints" / "1000", model)
    assert find_original_checkpoint(tmp_path / "run") == str(tmp_path / "run" / "checkpoints" / "1000")
    assert find_original_checkpoint(tmp_path / "run", step=100).endswith(os.path.join("model_checkpoints", "100"))
    with pytest.raises(MigrationError, match=r"no original checkpoint for step 5; it has steps \[100, 900, 1000\]"):
        find_original_checkpoint(tmp_path / "run", step=5)
    assert find_original_checkpoint(tmp_path) is None
    first = as_model_folder(tmp_path / "run")
    assert as_model_folder(tmp_path / "run") == first and os.path.isfile(os.path.join(first, "config.json"))


def test_bad_original_checkpoints_are_refused_by_name(tmp_path):
    from safetensors.torch import load_file, save_file

    model = original_model()
    folder = write_original_checkpoint(tmp_path / "a", model)
    tensors = load_file(os.path.join(folder, "model.safetensors"))
    del tensors["model.transformer_encoder.1.ffn.w2.weight"]
    tensors["pooler.weight"] = torch.zeros(2)
    save_file(tensors, os.path.join(folder, "model.safetensors"))
    with pytest.raises(MigrationError, match=r"missing \['model.transformer_encoder.1.ffn.w2.weight'\].*unexpected \['pooler.weight'\]"):
        convert_original_checkpoint(folder, tmp_path / "out_a")

    folder = write_original_checkpoint(tmp_path / "b", model, hidden_size=2 * model.config.hidden_size)
    with pytest.raises(MigrationError, match="does not belong to these weights"):
        convert_original_checkpoint(folder, tmp_path / "out_b")

    folder = write_original_checkpoint(tmp_path / "c", model, ngpt=True)
    with pytest.raises(MigrationError, match="nGPT"):
        convert_original_checkpoint(folder, tmp_path / "out_c")

    os.makedirs(tmp_path / "d")
    with pytest.raises(MigrationError, match="needs config.yaml and model.safetensors"):
        convert_original_checkpoint(tmp_path / "d", tmp_path / "out_d")
    assert not (tmp_path / "out_a").exists() and not (tmp_path / "out_b").exists()


# --- through the command line: export, GLUE fine-tuning and continued pretraining from an original run folder -----


@pytest.fixture
def original_run(tmp_path):
    model = original_model()
    write_original_checkpoint(tmp_path / "old_run" / "model_checkpoints" / "50", original_model(seed=1))
    write_original_checkpoint(tmp_path / "old_run" / "model_checkpoints" / "100", model)
    return tmp_path / "old_run", model


def test_export_of_an_original_run_folder_is_the_model_that_wrote_it(original_run, tmp_path, monkeypatch):
    from transformers import AutoModelForMaskedLM

    from neobert_hf.cli.main import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    run, model = original_run
    assert main(["export", str(run), str(tmp_path / "exported")]) == 0
    exported = AutoModelForMaskedLM.from_pretrained(tmp_path / "exported")
    ids = torch.randint(5, 128, (2, 9))
    torch.testing.assert_close(_logits(exported, ids), _logits(model, ids), rtol=0, atol=0)  # step 100, the newest
    assert (tmp_path / "exported" / "tokenizer.json").is_file() and (tmp_path / "exported" / "README.md").is_file()


@pytest.mark.integration
def test_glue_and_continued_pretraining_start_from_an_original_checkpoint(original_run, tmp_path, monkeypatch):
    from helpers.glue import task_files

    from neobert_hf.cli.main import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    run, _ = original_run
    files = task_files(tmp_path / "sst2", "sst2", n_train=8, n_eval=4)
    common = ["--use_cpu", "true", "--report_to", "none", "--disable_tqdm", "true", "--max_steps", "1"]
    assert main([
        "glue", "--task_name", "sst2", "--model_name_or_path", str(run / "model_checkpoints" / "100"),
        "--train_file", files["train_file"], "--validation_file", files["validation_file"],
        "--max_seq_length", "32", "--output_dir", str(tmp_path / "glue"), *common,
    ]) == 0  # fmt: skip
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"text": " ".join(f"w{5 + (i * 7 + k) % 120}" for k in range(30))}) + "\n"
                              for i in range(200)))  # fmt: skip
    assert main([
        "pretrain", "--model_name_or_path", str(run), "--dataset_name", str(corpus), "--max_seq_length", "32",
        "--tokens_per_batch", "128", "--per_device_train_batch_size", "1", "--eval_strategy", "no",
        "--output_dir", str(tmp_path / "continued"), *common,
    ]) == 0  # fmt: skip
    assert (tmp_path / "continued" / "checkpoints" / "1" / "model.safetensors").is_file()

"""Command lines of a one-layer `neobert-hf pretrain` run, shared by the CLI tests."""

import json
import os
import shutil
from pathlib import Path
import pytest
import torch
from helpers.modeling import tiny_config
from neobert_hf import NeoBERTForMaskedLM
from neobert_hf.cli.main import main
from neobert_hf.cli.pretrain import build_argument_parser
from neobert_hf.model_card import display_path
from neobert_hf.training.pretrain import prepare_pretraining


ROOT = Path(__file__).resolve().parents[2]


CORPUS = str(ROOT / "data" / "corpus")


TOKENIZER = str(ROOT / "data" / "tokenizer")


TINY = [
    "--tokenizer_name", TOKENIZER,
    "--hidden_size", "32", "--num_hidden_layers", "1", "--num_attention_heads", "2", "--intermediate_size", "64",
    "--max_position_embeddings", "128",
    "--dataset_name", CORPUS, "--train_split", "train[:300]", "--eval_split", "validation[:40]",
    "--max_seq_length", "64", "--tokens_per_batch", "256", "--per_device_train_batch_size", "1",
    "--mlm_probability", "0.2", "--mask_all", "true",
    "--learning_rate", "1e-3", "--max_steps", "3", "--logging_steps", "1",
    "--use_cpu", "true", "--report_to", "none", "--disable_tqdm", "true", "--save_strategy", "no",
]  # fmt: skip


def without(argv: list[str], *flags: str) -> list[str]:
    """`argv` without the given flags and their values."""
    out = list(argv)
    for flag in flags:
        index = out.index(flag)
        del out[index : index + 2]
    return out


def pretrain(output_dir, *extra: str, base: list[str] = TINY) -> int:
    return main(["pretrain", *base, "--output_dir", str(output_dir), *extra])


def parse(output_dir, *extra: str):
    """The parsed argument dataclasses of `neobert-hf pretrain` (model, data, training, ...)."""
    return build_argument_parser().parse_args_and_config([*TINY, "--output_dir", str(output_dir), *extra])


def log_history(checkpoint) -> list[dict]:
    return json.loads((Path(checkpoint) / "trainer_state.json").read_text())["log_history"]


WORDS = "the a cat dog sat ran on mat house red blue tree it was and of to in is big small old new".split()


def corpus_lines(n: int = 80) -> str:
    return "".join(
        json.dumps({"text": " ".join(WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(6 + i % 5))}) + "\n"
        for i in range(n)
    )


def contrastive_checkpoint(path: Path) -> str:
    import torch
    from helpers.modeling import tiny_config
    from transformers import AutoTokenizer

    from neobert_hf import NeoBERTForMaskedLM

    torch.manual_seed(0)
    NeoBERTForMaskedLM(tiny_config(vocab_size=8192)).save_pretrained(path)
    AutoTokenizer.from_pretrained(TOKENIZER).save_pretrained(path)
    return str(path)

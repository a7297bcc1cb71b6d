"""Tiny NeoBERT configs and packed/padded batches built in memory."""

from pathlib import Path

import torch

from neobert_hf import NeoBERTConfig, NeoBERTForMaskedLM


TOKENIZER = Path(__file__).resolve().parents[2] / "data" / "tokenizer"  # the shipped 8192-token WordPiece


def tiny_config(**overrides) -> NeoBERTConfig:
    """A 2-layer, 64-wide NeoBERT (4 heads of 16) with a 128-token vocabulary."""
    values = dict(
        vocab_size=128,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=192,
        max_position_embeddings=512,
        pad_token_id=0,
    )
    values.update(overrides)
    return NeoBERTConfig(**values)


def released_config_json(**overrides) -> dict:
    """The released `chandar-lab/NeoBERT` config.json, key for key (full size), with `overrides` applied."""
    values = {
        "architectures": ["NeoBERTLMHead"],
        "auto_map": {
            "AutoConfig": "model.NeoBERTConfig",
            "AutoModel": "model.NeoBERT",
            "AutoModelForMaskedLM": "model.NeoBERTLMHead",
            "AutoModelForSequenceClassification": "model.NeoBERTForSequenceClassification",
        },
        "classifier_init_range": 0.02,
        "decoder_init_range": 0.02,
        "dim_head": 64,
        "dropout": 0.0,
        "embedding_init_range": 0.02,
        "flash_attention": True,
        "hidden_act": "SwiGLU",
        "hidden_size": 768,
        "intermediate_size": 3072,
        "kwargs": {
            "classifier_dropout": 0.1,
            "classifier_init_range": 0.02,
            "pretrained_model_name_or_path": "google-bert/bert-base-uncased",
            "trust_remote_code": True,
        },
        "max_length": 4096,
        "model_type": "neobert",
        "ngpt": False,
        "norm_eps": 1e-05,
        "num_attention_heads": 12,
        "num_hidden_layers": 28,
        "pad_token_id": 0,
        "rms_norm": True,
        "rope": True,
        "torch_dtype": "float32",
        "transformers_version": "4.48.2",
        "vocab_size": 30522,
    }
    values.update(overrides)
    return values


def save_tiny_checkpoint(path, model_class=NeoBERTForMaskedLM, tokenizer: bool = True, **overrides) -> str:
    """A tiny NeoBERT (seed 0) with the shipped tokenizer's 8192-token vocabulary, saved with that tokenizer."""
    from transformers import AutoTokenizer

    torch.manual_seed(0)
    model_class(tiny_config(vocab_size=8192, **overrides)).save_pretrained(path)
    if tokenizer:
        AutoTokenizer.from_pretrained(TOKENIZER).save_pretrained(path)
    return str(path)


def random_lengths(n: int, low: int = 1, high: int = 40, seed: int = 0) -> list[int]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(low, high + 1, (n,), generator=g).tolist()


def make_sequences(lengths: list[int], vocab_size: int = 128, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(5, vocab_size, (length,), generator=g) for length in lengths]


def pack(sequences: list[torch.Tensor]) -> dict:
    """The `DataCollatorWithFlattening` format: `[1, T]` ids, restarting positions, cu_seq_lens and max lengths."""
    lengths = torch.tensor([len(s) for s in sequences])
    cu = torch.nn.functional.pad(torch.cumsum(lengths, 0), (1, 0)).to(torch.int32)
    return {
        "input_ids": torch.cat(sequences)[None],
        "position_ids": torch.cat([torch.arange(len(s)) for s in sequences])[None],
        "cu_seq_lens_q": cu,
        "cu_seq_lens_k": cu,
        "max_length_q": int(lengths.max()),
        "max_length_k": int(lengths.max()),
    }


def pad(sequences: list[torch.Tensor], pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded `(B, S)` ids and a 0/1 attention mask."""
    longest = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), longest), pad_id, dtype=torch.long)
    mask = torch.zeros(len(sequences), longest, dtype=torch.long)
    for i, s in enumerate(sequences):
        ids[i, : len(s)] = s
        mask[i, : len(s)] = 1
    return ids, mask


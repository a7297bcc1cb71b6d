"""Shared fixtures: tiny NeoBERT configs and packed/padded batches built in memory. Everything runs offline."""

import os


os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "offline")
# Tiny models on a 2-core machine: one intra-op thread is several times faster than two that contend with the
# test's own subprocesses (and is inherited by them).
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from neobert_hf import NeoBERTConfig  # noqa: E402


torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


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


@pytest.fixture
def config() -> NeoBERTConfig:
    return tiny_config()


@pytest.fixture
def fresh_flex_compile():
    """torch 2.13's CPU inductor emits C++ that does not compile (`cur_qSplitSize8 was not declared`) when
    transformers' compiled flex_attention is recompiled for a second shape with dynamic shapes. Start each flex test
    from an empty compile cache so the kernel is compiled once, statically, for its shape."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


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

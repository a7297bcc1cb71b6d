# Copyright 2026 the neobert-hf authors. Licensed under the Apache License, Version 2.0.
"""NeoBERT (arXiv 2502.19587) as a native transformers model.

This file is self-contained: it imports only torch, transformers and its sibling `configuration_neobert.py`, because it
is the remote code shipped with every exported checkpoint (`trust_remote_code=True`).

Read top to bottom: masks and packed metadata, rotary embedding, attention kernels, encoder block, PreTrainedModel,
base model, heads. Module names match the released checkpoint (`encoder`, `transformer_encoder.{i}.qkv`, `wo`,
`attention_norm`, `ffn_norm`, `ffn.w12`, `ffn.w3`, `layer_norm`, `decoder`) so its weights load without remapping.

Two input formats reach the encoder:

- padded: `input_ids` `(B, S)` with an optional 2-D `attention_mask` (0/1 ints, bools, or an additive float mask);
- packed (padding-free, training): `input_ids` `(1, T)` holding several sequences back to back, in transformers'
  `DataCollatorWithFlattening` format: `position_ids` `(1, T)` restarting at 0 for every sequence, optionally
  `cu_seq_lens_q/k` (int32 `(n + 1,)`) and `max_length_q/k`. Each sequence attends only to itself on every attention
  implementation; no `T x T` mask is ever built.
"""

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from transformers import initialization as init
from transformers.conversion_mapping import register_checkpoint_conversion_mapping
from transformers.core_model_loading import Concatenate, WeightConverter
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import (
    BaseModelOutput,
    MaskedLMOutput,
    QuestionAnsweringModelOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, PreTrainedModel
from transformers.utils import logging
from transformers.utils.generic import can_return_tuple

from .configuration_neobert import NeoBERTConfig


logger = logging.get_logger(__name__)

# The fork's later export stores the SwiGLU gate and up projections separately (`ffn.w1`, `ffn.w2`); fuse them into
# `ffn.w12` (gate rows first) while loading. Saving always writes the released, fused layout (see `save_pretrained`).
register_checkpoint_conversion_mapping(
    "neobert",
    [
        WeightConverter(
            source_patterns=["ffn.w1.weight", "ffn.w2.weight"],
            target_patterns="ffn.w12.weight",
            operations=[Concatenate(dim=0)],
        )
    ],
    overwrite=True,
)

# Name of torch's native varlen attention in transformers' attention interface (registered at the end of this file).
TORCH_VARLEN = "torch_varlen"
_FLASH_IMPLEMENTATIONS = ("flash_attention_2", "flash_attention_3")


# ---------------------------------------------------------------------------------------------------------------------
# Masks and packed-batch metadata
# ---------------------------------------------------------------------------------------------------------------------


def padding_mask_to_bool(attention_mask: torch.Tensor) -> torch.Tensor:
    """Turns any 2-D padding mask into a boolean "keep" mask `(B, S)`.

    Accepted: bool, 0/1 integers, 0/1 floats, and additive float masks (0 = keep, a large negative number or -inf =
    masked). A float mask is read as additive when it has a negative entry or is all zeros (an all-zero 0/1 mask would
    mask every token, which has no meaning). Written without Python branching on values so it compiles without graph
    breaks.
    """
    if attention_mask.dtype == torch.bool:
        return attention_mask
    if not attention_mask.is_floating_point():
        return attention_mask != 0
    additive = (attention_mask < 0).any() | (attention_mask == 0).all()
    return torch.where(additive, attention_mask >= 0, attention_mask > 0.5)


def cu_seq_lens_from_position_ids(position_ids: torch.Tensor) -> torch.Tensor:
    """Sequence boundaries `(n + 1,)` int32 of a packed row whose positions restart at 0 for every sequence."""
    flat = position_ids.reshape(-1)
    starts = torch.nonzero(flat == 0, as_tuple=False).reshape(-1)  # (n,)
    total = torch.tensor([flat.numel()], device=flat.device, dtype=starts.dtype)
    return torch.cat([starts, total]).to(torch.int32)


def position_ids_from_cu_seq_lens(cu_seq_lens: torch.Tensor, total: int) -> torch.Tensor:
    """Positions `(1, T)` restarting at 0 at every boundary of `cu_seq_lens`."""
    cu = cu_seq_lens.to(torch.long)
    lengths = cu[1:] - cu[:-1]  # (n,)
    starts = torch.repeat_interleave(cu[:-1], lengths, output_size=total)  # (T,)
    return (torch.arange(total, device=cu.device) - starts).unsqueeze(0)


class PackedMetadata:
    """Boundaries of the sequences of a packed row, computed once per forward and shared by all layers.

    Attributes:
        cu_seq_lens (`torch.IntTensor` of shape `(n + 1,)`): cumulative sequence lengths, `cu[0] = 0`, `cu[-1] = T`.
        max_length (`int`): longest sequence.
        segment_ids (`torch.LongTensor` of shape `(T,)`): index of the sequence each token belongs to.
        offsets (`torch.LongTensor` of shape `(T,)`): position of each token inside its sequence.
    """

    def __init__(self, cu_seq_lens: torch.Tensor, max_length: int, total: int):
        self.cu_seq_lens = cu_seq_lens.to(torch.int32)
        self.max_length = int(max_length)
        cu = self.cu_seq_lens.to(torch.long)
        token = torch.arange(total, device=cu.device)
        # Zero-length sequences (repeated boundaries, used to pad cu_seq_lens to a fixed size) own no token.
        self.segment_ids = torch.searchsorted(cu[1:], token, right=True)  # (T,)
        self.offsets = token - cu[self.segment_ids]  # (T,)
        self.num_sequences = cu.numel() - 1
        self._lengths: list[int] | None = None

    @property
    def lengths(self) -> list[int]:
        """Sequence lengths as Python ints (zero for padding entries of `cu_seq_lens`), read from the device once
        per forward and shared by all layers."""
        if self._lengths is None:
            self._lengths = (self.cu_seq_lens[1:] - self.cu_seq_lens[:-1]).tolist()
        return self._lengths

    def attention_kwargs(self) -> dict:
        """Keyword arguments understood by transformers' flash attention path (varlen kernel)."""
        return {
            "cu_seq_lens_q": self.cu_seq_lens,
            "cu_seq_lens_k": self.cu_seq_lens,
            "max_length_q": self.max_length,
            "max_length_k": self.max_length,
        }


# ---------------------------------------------------------------------------------------------------------------------
# Rotary position embedding (adjacent-pair convention, computed in fp32)
# ---------------------------------------------------------------------------------------------------------------------


def rope_inverse_frequencies(config: NeoBERTConfig) -> torch.Tensor:
    dim = config.head_dim
    return 1.0 / (config.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.float32)[: dim // 2] / dim))


class NeoBERTRotaryEmbedding(nn.Module):
    """Returns `cos, sin` of shape `(B, S, Dh / 2)` in fp32 for the given positions."""

    def __init__(self, config: NeoBERTConfig):
        super().__init__()
        self.config = config
        self.register_buffer("inv_freq", rope_inverse_frequencies(config), persistent=False)

    @torch.no_grad()
    def forward(self, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        device_type = position_ids.device.type if position_ids.device.type != "mps" else "cpu"
        with torch.autocast(device_type=device_type, enabled=False):
            freqs = position_ids[..., None].float() * self.inv_freq.float()  # (B, S, Dh/2)
            return freqs.cos(), freqs.sin()


def apply_rotary_pos_emb(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotates pairs `(x[2i], x[2i+1])` of `x` `(B, S, nH, Dh)` (the complex-multiplication form), in fp32."""
    cos, sin = cos.unsqueeze(2), sin.unsqueeze(2)  # (B, S, 1, Dh/2)
    if x.device.type in ("cpu", "cuda") and not torch.compiler.is_compiling():
        # One complex multiplication: the same products and sums as below, in one kernel instead of six strided ones
        # plus a stack (measured 2x faster forward+backward on CPU). Inductor has no complex codegen, so compiled
        # graphs take the real form, which it fuses.
        pairs = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))  # (B, S, nH, Dh/2)
        return torch.view_as_real(pairs * torch.complex(cos, sin)).flatten(-2).type_as(x)
    pairs = x.float().reshape(*x.shape[:-1], -1, 2)  # (B, S, nH, Dh/2, 2)
    x0, x1 = pairs.unbind(-1)
    rotated = torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1)  # (B, S, nH, Dh/2, 2)
    return rotated.flatten(-2).type_as(x)


# ---------------------------------------------------------------------------------------------------------------------
# Attention kernels
# ---------------------------------------------------------------------------------------------------------------------


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference attention. `query/key/value` `(B, nH, S, Dh)`; mask bool (True = keep) or additive float,
    broadcastable to `(B, nH, S, S)`. Returns `(B, S, nH, Dh)` and the probabilities `(B, nH, S, S)`."""
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling  # (B, nH, S, S)
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + attention_mask
    probs = F.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    probs = F.dropout(probs, p=dropout, training=module.training)
    out = torch.matmul(probs, value).transpose(1, 2).contiguous()  # (B, S, nH, Dh)
    return out, probs


def packed_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    packed: PackedMetadata,
    scaling: float,
    dropout: float = 0.0,
    use_sdpa: bool = True,
) -> torch.Tensor:
    """Exact packed attention for `sdpa`/`eager`: one kernel call per sequence in eager CPU execution, a single
    padded view otherwise (GPU: one launch instead of one per sequence; `torch.compile`: no Python list of lengths
    to specialise on). `query/key/value` `(1, nH, T, Dh)`; returns `(1, T, nH, Dh)`."""
    if query.device.type == "cpu" and not torch.compiler.is_compiling():
        return per_sequence_attention_forward(module, query, key, value, packed, scaling, dropout, use_sdpa)
    return padded_view_attention_forward(module, query, key, value, packed, scaling, dropout, use_sdpa)


def per_sequence_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    packed: PackedMetadata,
    scaling: float,
    dropout: float = 0.0,
    use_sdpa: bool = True,
) -> torch.Tensor:
    """Exact packed attention as one unmasked attention call per sequence on zero-copy slices of the packed row:
    `sum(l_i^2)` work (a padded view does `n * max(l_i)^2`), no mask, no gather or scatter.

    `query/key/value` `(1, nH, T, Dh)`; returns `(1, T, nH, Dh)`.
    """
    p = dropout if module.training else 0.0
    outputs = []
    for q, k, v in zip(*(x.split(packed.lengths, dim=2) for x in (query, key, value))):
        if q.shape[2] == 0:  # zero-length entry of a padded cu_seq_lens
            continue
        if use_sdpa:
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=p, scale=scaling).transpose(1, 2)
        else:
            out, _ = eager_attention_forward(module, q, k, v, None, scaling=scaling, dropout=dropout)
        outputs.append(out)  # (1, l, nH, Dh)
    if len(outputs) == 1:
        return outputs[0]
    return torch.cat(outputs, dim=1)  # (1, T, nH, Dh)


def padded_view_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    packed: PackedMetadata,
    scaling: float,
    dropout: float = 0.0,
    use_sdpa: bool = True,
) -> torch.Tensor:
    """Exact packed attention without a `T x T` mask: gathers the packed tokens into a padded view
    `(n, nH, L, Dh)` (`L` = longest sequence), runs SDPA (or the eager reference) with a key-padding mask, and gathers
    the result back. Memory grows as `T * L`, linearly in `T` for a fixed longest sequence.

    `query/key/value` `(1, nH, T, Dh)`; returns `(1, T, nH, Dh)`.
    """
    total = query.shape[2]
    length = packed.max_length
    cu = packed.cu_seq_lens.to(torch.long)
    slot = torch.arange(length, device=query.device)  # (L,)
    valid = slot[None, :] < (cu[1:] - cu[:-1])[:, None]  # (n, L)
    index = torch.where(valid, cu[:-1, None] + slot[None, :], 0).clamp(max=total - 1)  # (n, L)

    def to_view(x: torch.Tensor) -> torch.Tensor:
        return x[0][:, index].transpose(0, 1)  # (nH, T, Dh) -> (nH, n, L, Dh) -> (n, nH, L, Dh)

    q, k, v = to_view(query), to_view(key), to_view(value)
    # Slot 0 is kept for every row: it is a real token of every non-empty sequence, and it gives the rows of
    # zero-length entries (a padded cu_seq_lens) a finite softmax, whose outputs are never read back.
    mask = (valid | (slot == 0))[:, None, None, :]  # (n, 1, 1, L), True = keep
    if use_sdpa:
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=dropout if module.training else 0.0, scale=scaling
        ).transpose(1, 2)  # (n, L, nH, Dh)
    else:
        out, _ = eager_attention_forward(module, q, k, v, mask, scaling=scaling, dropout=dropout)  # (n, L, nH, Dh)
    return out[packed.segment_ids, packed.offsets].unsqueeze(0)  # (1, T, nH, Dh)


def torch_varlen_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    cu_seq_lens_q: torch.Tensor | None = None,
    cu_seq_lens_k: torch.Tensor | None = None,
    max_length_q: int | None = None,
    max_length_k: int | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """torch's native varlen attention (`torch.nn.attention.varlen.varlen_attn`, CUDA only): packed training on GPU
    without installing flash-attn. `query/key/value` `(1, nH, T, Dh)`; returns `(1, T, nH, Dh)`."""
    if cu_seq_lens_q is None:
        raise ValueError(f"attn_implementation='{TORCH_VARLEN}' needs packed metadata (cu_seq_lens_q).")
    if not query.is_cuda:
        raise RuntimeError(
            f"attn_implementation='{TORCH_VARLEN}' runs only on CUDA GPUs (torch.nn.attention.varlen); this tensor is "
            f"on {query.device}. Use attn_implementation='sdpa' on CPU: its packed path is exact."
        )
    if dropout > 0.0 and module.training:
        raise ValueError(f"attn_implementation='{TORCH_VARLEN}' has no attention dropout; set config.dropout=0.0.")
    from torch.nn.attention.varlen import varlen_attn

    dtype = query.dtype
    if dtype not in (torch.float16, torch.bfloat16):
        # The kernel is half-precision only: compute in the autocast dtype (or bf16) and cast back.
        compute = torch.get_autocast_dtype("cuda") if torch.is_autocast_enabled("cuda") else torch.bfloat16
        query, key, value = query.to(compute), key.to(compute), value.to(compute)
    q, k, v = (x[0].transpose(0, 1) for x in (query, key, value))  # (T, nH, Dh)
    out = varlen_attn(
        q,
        k,
        v,
        cu_seq_lens_q.to(torch.int32),
        cu_seq_lens_k.to(torch.int32),
        int(max_length_q),
        int(max_length_k),
        scale=scaling,
    )  # (T, nH, Dh)
    return out.to(dtype).unsqueeze(0), None


# ---------------------------------------------------------------------------------------------------------------------
# Encoder block
# ---------------------------------------------------------------------------------------------------------------------


class NeoBERTRMSNorm(nn.Module):
    """RMSNorm with weight only, normalised in fp32 (as the released model)."""

    def __init__(self, hidden_size: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normed = x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + self.eps)
        return normed.type_as(x) * self.weight

    def extra_repr(self) -> str:
        return f"{tuple(self.weight.shape)}, eps={self.eps}"


def make_norm(config: NeoBERTConfig) -> nn.Module:
    if config.rms_norm:
        return NeoBERTRMSNorm(config.hidden_size, eps=config.norm_eps)
    return nn.LayerNorm(config.hidden_size, eps=config.norm_eps)


class NeoBERTSwiGLU(nn.Module):
    """`w3(silu(gate) * up)` with `[gate; up] = w12(x)` (gate rows first)."""

    def __init__(self, config: NeoBERTConfig):
        super().__init__()
        self.w12 = nn.Linear(config.hidden_size, 2 * config.ffn_size, bias=False)
        self.w3 = nn.Linear(config.ffn_size, config.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.w12(x).chunk(2, dim=-1)  # (..., F) each
        return self.w3(F.silu(gate) * up)


def make_ffn(config: NeoBERTConfig) -> nn.Module:
    if config.hidden_act == "swiglu":
        return NeoBERTSwiGLU(config)
    # keys ffn.0 / ffn.2, as the earlier system
    return nn.Sequential(
        nn.Linear(config.hidden_size, config.intermediate_size, bias=False),
        nn.GELU(),
        nn.Linear(config.intermediate_size, config.hidden_size, bias=False),
    )


class NeoBERTEncoderBlock(GradientCheckpointingLayer):
    """Pre-norm block: `x + drop(wo(attn(attention_norm(x))))`, then `x + drop(ffn(ffn_norm(x)))`."""

    def __init__(self, config: NeoBERTConfig, layer_idx: int):
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.num_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.scaling = self.head_dim**-0.5
        self.is_causal = False
        self.attention_norm = make_norm(config)
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size, bias=False)
        self.wo = nn.Linear(config.hidden_size, config.hidden_size, bias=False)
        self.ffn_norm = make_norm(config)
        self.ffn = make_ffn(config)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.ffn_dropout = nn.Dropout(config.dropout)

    def attention(
        self,
        x: torch.Tensor,
        attention_mask,
        rope: tuple[torch.Tensor, torch.Tensor] | None,
        packed: PackedMetadata | None,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch, seq_len, _ = x.shape
        # qkv rows are interleaved per head: (B, S, nH, 3*Dh) -> q, k, v each (B, S, nH, Dh)
        q, k, v = self.qkv(x).view(batch, seq_len, self.num_heads, 3 * self.head_dim).chunk(3, dim=-1)
        if rope is not None:
            q, k = apply_rotary_pos_emb(q, *rope), apply_rotary_pos_emb(k, *rope)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, nH, S, Dh)
        dropout = self.config.dropout if self.training else 0.0
        implementation = self.config._attn_implementation or "sdpa"

        weights = None
        if packed is not None and implementation in ("sdpa", "eager"):
            out = packed_attention_forward(
                self, q, k, v, packed, self.scaling, dropout, use_sdpa=implementation == "sdpa"
            )
        else:
            interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(implementation, eager_attention_forward)
            extra = packed.attention_kwargs() if packed is not None and implementation != "flex_attention" else {}
            out, weights = interface(
                self, q, k, v, attention_mask, scaling=self.scaling, dropout=dropout, is_causal=False, **extra
            )
        out = out.reshape(batch, seq_len, -1)  # (B, S, H)
        return self.resid_dropout(self.wo(out)), weights if output_attentions else None

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask=None,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
        packed: PackedMetadata | None = None,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        attn_out, weights = self.attention(
            self.attention_norm(hidden_states), attention_mask, rope, packed, output_attentions
        )
        hidden_states = hidden_states + attn_out
        hidden_states = hidden_states + self.ffn_dropout(self.ffn(self.ffn_norm(hidden_states)))
        return hidden_states, weights


# ---------------------------------------------------------------------------------------------------------------------
# PreTrainedModel
# ---------------------------------------------------------------------------------------------------------------------


class _ClassifierLinear(nn.Linear):
    """A task-head Linear: initialised normal(0, classifier_init_range) instead of uniform."""


class NeoBERTPreTrainedModel(PreTrainedModel):
    config_class = NeoBERTConfig
    config: NeoBERTConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["NeoBERTEncoderBlock"]
    _supports_flash_attn = True
    _supports_sdpa = True
    _supports_flex_attn = True
    _supports_attention_backend = True

    @torch.no_grad()
    def _init_weights(self, module: nn.Module):
        config = self.config
        if isinstance(module, _ClassifierLinear):
            init.normal_(module.weight, mean=0.0, std=config.classifier_init_range)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            init.uniform_(module.weight, -config.decoder_init_range, config.decoder_init_range)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.uniform_(module.weight, -config.embedding_init_range, config.embedding_init_range)
        elif isinstance(module, (NeoBERTRMSNorm, nn.LayerNorm)):
            init.ones_(module.weight)
            if getattr(module, "bias", None) is not None:
                init.zeros_(module.bias)
        elif isinstance(module, NeoBERTRotaryEmbedding):
            # Non-persistent: absent from checkpoints, so rebuilt after meta-device loading.
            init.copy_(module.inv_freq, rope_inverse_frequencies(config))

    def save_pretrained(self, save_directory, *args, save_original_format: bool = False, **kwargs):
        """Saves a self-contained folder: weights in the released (fused `ffn.w12`) layout, `config.json` with the full
        `auto_map`, and this modeling code, so `from_pretrained(dir, trust_remote_code=True)` works without
        `neobert_hf` installed.

        Args:
            save_directory (`str` or `os.PathLike`): target folder.
            save_original_format (`bool`, defaults to `False`): `True` re-splits `ffn.w12` into the layout the
                weights were loaded from (transformers' reverse conversion); the default keeps the canonical layout.
            kwargs: passed to [`~transformers.PreTrainedModel.save_pretrained`].
        """
        self.config.auto_map = dict(AUTO_MAP)
        result = super().save_pretrained(save_directory, *args, save_original_format=save_original_format, **kwargs)
        if os.path.isdir(save_directory):
            here = os.path.dirname(os.path.abspath(__file__))
            for name in ("modeling_neobert.py", "configuration_neobert.py"):
                target = os.path.join(save_directory, name)
                if os.path.abspath(os.path.join(here, name)) != os.path.abspath(target):
                    shutil.copyfile(os.path.join(here, name), target)
        return result


# ---------------------------------------------------------------------------------------------------------------------
# Base model
# ---------------------------------------------------------------------------------------------------------------------


class NeoBERTModel(NeoBERTPreTrainedModel):
    """The bare NeoBERT encoder returning the final (normalised) hidden states."""

    def __init__(self, config: NeoBERTConfig):
        super().__init__(config)
        self.encoder = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        if config.rope:
            self.rotary_emb = NeoBERTRotaryEmbedding(config)
        else:
            self.positional_embedding = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.transformer_encoder = nn.ModuleList(
            [NeoBERTEncoderBlock(config, i) for i in range(config.num_hidden_layers)]
        )
        self.layer_norm = make_norm(config)
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.encoder

    def set_input_embeddings(self, value: nn.Embedding):
        self.encoder = value

    def _packed_metadata(
        self,
        total: int,
        batch_size: int,
        attention_mask: torch.Tensor | None,
        position_ids: torch.Tensor | None,
        cu_seq_lens_q: torch.Tensor | None,
        cu_seq_lens_k: torch.Tensor | None,
        max_length_q: int | None,
    ) -> PackedMetadata | None:
        """Packed metadata from `cu_seq_lens_q` or from `position_ids` that restart at 0; `None` for padded input."""
        if cu_seq_lens_q is None:
            if position_ids is None or batch_size != 1 or attention_mask is not None:
                return None
            # Positions that restart at 0 mark a packed row. This check reads the data (a graph break under
            # torch.compile, an error with fullgraph=True): compiled packed training passes cu_seq_lens, and skipping
            # the check would silently let the documents of a packed row attend to each other.
            if not bool((position_ids[0, 1:] == 0).any()):
                return None
            cu_seq_lens_q = cu_seq_lens_from_position_ids(position_ids)
        if batch_size != 1:
            raise ValueError(
                f"Packed inputs (cu_seq_lens_q) must have batch size 1 (input_ids of shape [1, T]), got {batch_size}."
            )
        if attention_mask is not None:
            raise ValueError(
                "Packed inputs (cu_seq_lens_q / restarting position_ids) take no attention_mask: every sequence "
                "attends to itself only. Drop the attention_mask, or pass a padded batch without cu_seq_lens."
            )
        if cu_seq_lens_k is not None and cu_seq_lens_k is not cu_seq_lens_q:
            if cu_seq_lens_k.shape != cu_seq_lens_q.shape or (
                not torch.compiler.is_compiling() and not torch.equal(cu_seq_lens_k, cu_seq_lens_q)
            ):
                raise ValueError("An encoder needs cu_seq_lens_k == cu_seq_lens_q (self-attention).")
        if max_length_q is None:
            max_length_q = int((cu_seq_lens_q[1:] - cu_seq_lens_q[:-1]).max())
        return PackedMetadata(cu_seq_lens_q, int(max_length_q), total)

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        cu_seq_lens_q: torch.Tensor | None = None,
        cu_seq_lens_k: torch.Tensor | None = None,
        max_length_q: int | None = None,
        max_length_k: int | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        **kwargs,
    ) -> BaseModelOutput:
        r"""
        Args:
            input_ids (`torch.LongTensor` of shape `(B, S)`, or `(1, T)` packed): token ids.
            attention_mask (`torch.Tensor` of shape `(B, S)`, *optional*): 1/True = keep, 0/False = padding; an
                additive float mask (0 / -inf) is accepted too. Not allowed with packed inputs.
            position_ids (`torch.LongTensor`, *optional*): positions; in a packed row they restart at 0 for every
                sequence, which alone marks the row as packed (batch size 1, no attention mask).
            inputs_embeds (`torch.Tensor` of shape `(B, S, H)`, *optional*): instead of `input_ids`.
            cu_seq_lens_q, cu_seq_lens_k (`torch.IntTensor` of shape `(n + 1,)`, *optional*): packed boundaries.
            max_length_q, max_length_k (`int`, *optional*): longest packed sequence.
            token_type_ids: accepted so that `model(**tokenizer(text_a, text_b))` works; NeoBERT has no segment
                embeddings (the pair is delimited by `[SEP]` alone, as in pretraining), so they do not enter the
                computation, exactly as in the released model.
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of input_ids or inputs_embeds.")
        kwargs.pop("token_type_ids", None)
        output_attentions = self.config.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = (
            self.config.output_hidden_states if output_hidden_states is None else output_hidden_states
        )
        hidden_states = self.encoder(input_ids) if inputs_embeds is None else inputs_embeds  # (B, S, H)
        batch_size, seq_len = hidden_states.shape[:2]
        implementation = self.config._attn_implementation or "sdpa"

        packed = self._packed_metadata(
            seq_len, batch_size, attention_mask, position_ids, cu_seq_lens_q, cu_seq_lens_k, max_length_q
        )
        unpad_index = None
        if packed is None and implementation == TORCH_VARLEN:
            # The varlen kernel takes packed input: drop the padding, run packed, scatter back at the end.
            keep = (
                torch.ones(batch_size, seq_len, dtype=torch.bool, device=hidden_states.device)
                if attention_mask is None
                else padding_mask_to_bool(attention_mask)
            )
            if position_ids is None:
                position_ids = torch.arange(seq_len, device=hidden_states.device).expand(batch_size, -1)
            unpad_index = torch.nonzero(keep.reshape(-1), as_tuple=False).reshape(-1)  # (T,)
            lengths = keep.sum(-1, dtype=torch.int32)  # (B,)
            cu = F.pad(torch.cumsum(lengths, 0, dtype=torch.int32), (1, 0))
            hidden_states = hidden_states.reshape(batch_size * seq_len, -1)[unpad_index].unsqueeze(0)  # (1, T, H)
            position_ids = position_ids.reshape(-1)[unpad_index].unsqueeze(0)  # (1, T)
            packed = PackedMetadata(cu, int(lengths.max()), unpad_index.numel())
            attention_mask = None

        if packed is not None:
            if packed.max_length > self.config.max_position_embeddings:
                raise ValueError(
                    f"A packed sequence has {packed.max_length} tokens but the model supports at most "
                    f"max_position_embeddings={self.config.max_position_embeddings}. Split longer documents."
                )
            if position_ids is None:
                position_ids = position_ids_from_cu_seq_lens(packed.cu_seq_lens, hidden_states.shape[1])
            mask = _document_block_mask(packed, hidden_states.shape[1]) if implementation == "flex_attention" else None
        else:
            if seq_len > self.config.max_position_embeddings:
                raise ValueError(
                    f"Input has {seq_len} tokens but the model supports at most "
                    f"max_position_embeddings={self.config.max_position_embeddings}. Truncate it (tokenizer "
                    f"truncation=True, max_length={self.config.max_position_embeddings}) or split it."
                )
            if position_ids is None:
                position_ids = torch.arange(seq_len, device=hidden_states.device).unsqueeze(0)
            if attention_mask is not None:
                if attention_mask.dim() != 2:
                    raise ValueError(
                        f"attention_mask must be 2-D (batch, seq_len), got shape {tuple(attention_mask.shape)}."
                    )
                attention_mask = padding_mask_to_bool(attention_mask)
            mask = create_bidirectional_mask(
                config=self.config, inputs_embeds=hidden_states, attention_mask=attention_mask
            )

        if not torch.compiler.is_compiling() and position_ids.numel() > 0:
            if int(position_ids.max()) >= self.config.max_position_embeddings:
                raise ValueError(
                    f"position_ids reach {int(position_ids.max())} but max_position_embeddings is "
                    f"{self.config.max_position_embeddings}."
                )

        if self.config.rope:
            rope = self.rotary_emb(position_ids)
        else:
            rope = None
            hidden_states = hidden_states + self.positional_embedding(position_ids)

        all_hidden_states = () if output_hidden_states else None
        all_attentions = () if output_attentions else None
        for block in self.transformer_encoder:
            if output_hidden_states:
                all_hidden_states += (hidden_states,)
            hidden_states, weights = block(hidden_states, mask, rope, packed, output_attentions)
            if output_attentions:
                all_attentions += (weights,)
        hidden_states = self.layer_norm(hidden_states)

        if unpad_index is not None:
            hidden_states = _pad_back(hidden_states, unpad_index, batch_size, seq_len)
            if output_hidden_states:
                all_hidden_states = tuple(_pad_back(h, unpad_index, batch_size, seq_len) for h in all_hidden_states)
        if output_hidden_states:
            all_hidden_states += (hidden_states,)
        return BaseModelOutput(
            last_hidden_state=hidden_states, hidden_states=all_hidden_states, attentions=all_attentions
        )


def _pad_back(packed_states: torch.Tensor, index: torch.Tensor, batch_size: int, seq_len: int) -> torch.Tensor:
    """`(1, T, H)` -> `(B, S, H)` with zeros at padding positions."""
    hidden = packed_states.shape[-1]
    out = packed_states.new_zeros(batch_size * seq_len, hidden)
    return out.index_copy(0, index, packed_states[0]).view(batch_size, seq_len, hidden)


def _document_block_mask(packed: PackedMetadata, total: int):
    """flex_attention BlockMask letting each packed token attend only to its own sequence (block-sparse)."""
    from torch.nn.attention.flex_attention import create_block_mask

    segment_ids = packed.segment_ids

    def same_document(batch, head, q_idx, kv_idx):
        return segment_ids[q_idx] == segment_ids[kv_idx]

    return create_block_mask(same_document, B=None, H=None, Q_LEN=total, KV_LEN=total, device=segment_ids.device)


# ---------------------------------------------------------------------------------------------------------------------
# Heads
# ---------------------------------------------------------------------------------------------------------------------


@dataclass
class NeoBERTMaskedLMOutput(MaskedLMOutput):
    """[`MaskedLMOutput`] plus `masked_correct`: with `loss_chunk_size`, the loss comes without `logits` and
    `masked_correct` counts the masked tokens whose argmax prediction is the label (for the MLM accuracy)."""

    masked_correct: torch.Tensor | None = None


class _ChunkedLinearCrossEntropy(torch.autograd.Function):
    """Summed cross-entropy of `F.linear(hidden, weight, bias)` against `labels` (-100 ignored), `chunk_size` rows
    at a time, without ever holding the `(N, V)` logits: each chunk's logits are built, reduced to the loss and, when
    a gradient is needed, turned in place into `softmax - one_hot`, which is multiplied into the gradients of
    `hidden`, `weight` and `bias` right away. `backward` only scales those by the incoming gradient (the loss is a
    scalar), so no chunk is computed twice. Peak memory: the weight gradient plus one chunk of logits.

    Returns the loss sum (fp32, or the input dtype if wider) and the number of rows whose argmax is the label (not differentiable)."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, labels, chunk_size):
        need_hidden, need_weight, need_bias = ctx.needs_input_grad[:3]
        need_any = need_hidden or need_weight or need_bias
        grad_hidden = torch.zeros_like(hidden) if need_hidden else None
        acc = torch.promote_types(hidden.dtype, torch.float32)
        grad_weight = torch.zeros_like(weight, dtype=acc) if need_weight else None
        grad_bias = torch.zeros_like(bias, dtype=acc) if need_bias else None
        loss = torch.zeros((), dtype=acc, device=hidden.device)
        correct = torch.zeros((), dtype=torch.int64, device=hidden.device)
        all_valid = bool((labels != -100).all())  # the masked-rows path selects only targets
        weight_rows = weight.to(hidden.dtype) if need_hidden else None  # one cast, not one per chunk
        for start in range(0, hidden.shape[0], chunk_size):
            rows = hidden[start : start + chunk_size]  # (c, H)
            target = labels[start : start + chunk_size]  # (c,)
            valid = target != -100
            safe = target.clamp(min=0)
            logits = _at_least_fp32(F.linear(rows, weight, bias))  # (c, V)
            picked = logits.gather(1, safe[:, None]).squeeze(1)  # (c,)
            top, predicted = logits.max(dim=-1)
            correct += ((predicted == target) & valid).sum()
            exp = logits.sub_(top[:, None]).exp_()  # in place: no second (c, V) buffer
            total = exp.sum(dim=-1)
            token_loss = top + total.log() - picked
            loss += token_loss.sum() if all_valid else torch.where(valid, token_loss, 0.0).sum()
            if not need_any:
                continue
            grad = exp.div_(total[:, None])  # softmax, in place
            grad[torch.arange(grad.shape[0], device=grad.device), safe] -= 1.0
            if not all_valid:
                grad *= valid[:, None]
            grad_rows = grad.to(rows.dtype)
            if need_hidden:
                grad_hidden[start : start + chunk_size] = grad_rows @ weight_rows
            if need_weight:
                grad_weight.addmm_(grad_rows.t().to(acc), rows.to(acc))
            if need_bias:
                grad_bias += grad.sum(0)
            del logits, exp, grad, grad_rows
        ctx.save_for_backward(*(g for g in (grad_hidden, grad_weight, grad_bias) if g is not None))
        ctx.which = (need_hidden, need_weight, need_bias)
        ctx.used = False
        ctx.dtypes = (weight.dtype, None if bias is None else bias.dtype)
        ctx.mark_non_differentiable(correct)
        return loss, correct

    @staticmethod
    def backward(ctx, grad_loss, grad_correct):
        if ctx.used:
            raise RuntimeError(
                "The chunked MLM loss (loss_chunk_size) scales its precomputed gradients in place and supports one "
                "backward pass; drop loss_chunk_size to backpropagate through the same graph twice."
            )
        ctx.used = True
        saved = iter(ctx.saved_tensors)
        grads = [next(saved) if needed else None for needed in ctx.which]
        # In place: a scaled copy of the weight gradient would double the head's peak memory.
        grad_hidden, grad_weight, grad_bias = (None if g is None else g.mul_(grad_loss) for g in grads)
        if grad_weight is not None:
            grad_weight = grad_weight.to(ctx.dtypes[0])
        if grad_bias is not None:
            grad_bias = grad_bias.to(ctx.dtypes[1])
        return grad_hidden, grad_weight, grad_bias, None, None


def _check_plain_decoder(decoder: nn.Module) -> None:
    """`loss_chunk_size` multiplies `decoder.weight` itself instead of calling the decoder: refuse decoders whose
    forward does something else (low-precision conversions) or whose weight is still sharded at this point."""
    if not isinstance(decoder, nn.Linear) or type(decoder).forward is not nn.Linear.forward:
        raise ValueError(
            f"loss_chunk_size multiplies decoder.weight directly, but the decoder is a {type(decoder).__name__} "
            "(a low-precision conversion?), whose forward it would bypass. Keep the decoder a plain nn.Linear "
            "(filter_fqns: [decoder]) or set loss_chunk_size to none."
        )
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # torch without distributed support
        return
    if isinstance(decoder.weight, DTensor):
        # FSDP2 gathers a unit's weights in the pre-forward hook of its first module. accelerate groups the final
        # norm with the decoder (reshard_after_forward=False), so the decoder weight is whole here; a layout where
        # the decoder is a unit of its own leaves it sharded, since its forward is never called.
        raise ValueError(
            "loss_chunk_size multiplies decoder.weight outside the decoder's forward, but that weight is still a "
            "sharded DTensor here (the decoder is an FSDP2 unit of its own, gathered only inside its forward). Set "
            "loss_chunk_size to none (--loss_chunk_size none), or shard the decoder together with the final norm "
            "(accelerate's FSDP2 default)."
        )


@torch.compiler.disable
def chunked_linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    labels: torch.Tensor,
    chunk_size: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`(loss_sum, n_correct)` of the rows `hidden` `(N, H)` through the decoder `weight` `(V, H)` / `bias`, without
    materialising the `(N, V)` logits (see [`_ChunkedLinearCrossEntropy`]). Runs eagerly under `torch.compile`: the
    number of rows changes with every batch, and a traced loop over it would recompile for each."""
    if not isinstance(chunk_size, int) or chunk_size <= 0:
        raise ValueError(f"loss_chunk_size must be a positive number of rows, got {chunk_size!r}.")
    return _ChunkedLinearCrossEntropy.apply(hidden, weight, bias, labels.reshape(-1), chunk_size)


class NeoBERTForMaskedLM(NeoBERTPreTrainedModel):
    """NeoBERT with its MLM `decoder` (`Linear(H, V)`, no transform layer between the final norm and the decoder)."""

    _tied_weights_keys = {"decoder.weight": "model.encoder.weight"}

    def __init__(self, config: NeoBERTConfig):
        super().__init__(config)
        self.model = NeoBERTModel(config)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size, bias=config.decoder_bias)
        self.post_init()

    def get_output_embeddings(self) -> nn.Linear:
        return self.decoder

    def set_output_embeddings(self, new_embeddings: nn.Linear):
        self.decoder = new_embeddings

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        sparse_prediction: bool | None = None,
        num_items_in_batch: torch.Tensor | int | None = None,
        loss_chunk_size: int | None = None,
        **kwargs,
    ) -> MaskedLMOutput:
        r"""
        Args:
            labels (`torch.LongTensor` of the shape of `input_ids`, *optional*): target ids, -100 where no loss.
            sparse_prediction (`bool`, *optional*): project only the rows with `labels != -100` to the vocabulary
                (defaults to `config.sparse_prediction`); the `(B, S, V)` logits are then never built and `logits`
                has shape `(n_masked, V)`.
            num_items_in_batch (`int` or `torch.Tensor`, *optional*): divide the summed loss by this count (set by
                `Trainer` to the number of masked tokens in the whole optimizer step). Without it the loss is the
                mean over this batch's masked tokens, and 0 (graph connected) when there is none.
            loss_chunk_size (`int`, *optional*): with `labels` and `sparse_prediction`, compute the loss `loss_chunk_size`
                masked rows at a time without building their logits (same loss and gradients; peak memory of the head
                drops to the decoder's weight gradient plus one chunk). `logits` is then `None` and `masked_correct`
                counts the correct argmax predictions. Needs a plain `nn.Linear` decoder.
            kwargs: passed to [`NeoBERTModel.forward`] (packed metadata, `token_type_ids`, ...).
        """
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            **kwargs,
        )
        hidden_states = outputs.last_hidden_state  # (B, S, H)
        sparse = self.config.sparse_prediction if sparse_prediction is None else sparse_prediction
        if labels is not None and sparse:
            labels = labels.reshape(-1)
            # One data-dependent op (a single graph break under torch.compile) for both selections.
            selected = torch.nonzero(labels != -100, as_tuple=False).reshape(-1)  # (n_masked,)
            hidden_states = hidden_states.reshape(-1, hidden_states.shape[-1]).index_select(0, selected)  # (n_masked, H)
            labels = labels.index_select(0, selected)
        if loss_chunk_size is not None:
            if labels is None or not sparse:
                raise ValueError(
                    "loss_chunk_size computes the masked-token loss without logits: it needs labels and "
                    "sparse_prediction=True (the full-logits path builds every logit anyway)."
                )
            _check_plain_decoder(self.decoder)
            loss_sum, correct = chunked_linear_cross_entropy(
                hidden_states, self.decoder.weight, self.decoder.bias, labels, loss_chunk_size
            )
            return NeoBERTMaskedLMOutput(
                loss=_divide_loss(loss_sum, labels, num_items_in_batch),
                logits=None,
                hidden_states=outputs.hidden_states,
                attentions=outputs.attentions,
                masked_correct=correct,
            )
        logits = self.decoder(hidden_states)

        loss = None
        if labels is not None:
            loss = masked_lm_loss(logits, labels, num_items_in_batch)
        return MaskedLMOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


def masked_lm_loss(
    logits: torch.Tensor, labels: torch.Tensor, num_items_in_batch: torch.Tensor | int | None = None
) -> torch.Tensor:
    """Cross-entropy summed in fp32 over the labels that are not -100, divided by `num_items_in_batch` (or by this
    batch's count, at least 1). A batch without any target gives 0 with the graph connected."""
    labels = labels.reshape(-1).to(logits.device)
    loss_sum = F.cross_entropy(
        _at_least_fp32(logits.reshape(-1, logits.shape[-1])), labels, ignore_index=-100, reduction="sum"
    )
    return _divide_loss(loss_sum, labels, num_items_in_batch)


def _at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.promote_types(x.dtype, torch.float32))


def _divide_loss(
    loss_sum: torch.Tensor, labels: torch.Tensor, num_items_in_batch: torch.Tensor | int | None
) -> torch.Tensor:
    """`loss_sum / num_items_in_batch`, or over this batch's count of targets (at least 1)."""
    if num_items_in_batch is None:
        denominator = (labels != -100).sum().clamp(min=1)
    elif torch.is_tensor(num_items_in_batch):
        denominator = num_items_in_batch.to(loss_sum.device).clamp(min=1)
    else:
        denominator = max(int(num_items_in_batch), 1)
    return loss_sum / denominator


class NeoBERTClassificationHead(nn.Module):
    """`out_proj(drop(tanh(dense(drop(pooled)))))`. All task-specific weights live under one module named
    `classifier`, so peft's sequence-classification default (`modules_to_save=["classifier"]`) trains and saves the
    whole head, not only its last layer."""

    def __init__(self, config: NeoBERTConfig):
        super().__init__()
        dropout = config.classifier_dropout if config.classifier_dropout is not None else config.dropout
        self.dropout = nn.Dropout(dropout)
        self.dense = _ClassifierLinear(config.hidden_size, config.hidden_size)
        self.out_proj = _ClassifierLinear(config.hidden_size, config.num_labels)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.out_proj(self.dropout(torch.tanh(self.dense(self.dropout(pooled)))))  # (B, num_labels)


class NeoBERTForSequenceClassification(NeoBERTPreTrainedModel):
    """NeoBERT with a pooled classification/regression head `classifier` (see [`NeoBERTClassificationHead`]).

    Pooling is `config.classifier_pooling` (`"cls"`: the first token; `"mean"`: mean over non-padding tokens). The
    loss follows `config.problem_type` (`regression`, `single_label_classification`, `multi_label_classification`),
    inferred from `num_labels` and the label dtype when unset.
    """

    def __init__(self, config: NeoBERTConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.model = NeoBERTModel(config)
        self.classifier = NeoBERTClassificationHead(config)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs,
    ) -> SequenceClassifierOutput:
        kwargs.pop("num_items_in_batch", None)  # the Trainer's token count has no meaning for a per-sequence loss
        # Pooling takes one vector per row: a packed row would silently give one prediction for all its sequences.
        tokens = input_ids if input_ids is not None else inputs_embeds
        if tokens is not None and tokens.shape[0] == 1:
            packed = self.model._packed_metadata(
                tokens.shape[1],
                1,
                attention_mask,
                position_ids,
                kwargs.get("cu_seq_lens_q"),
                kwargs.get("cu_seq_lens_k"),
                kwargs.get("max_length_q"),
            )
            if packed is not None:
                raise ValueError(
                    "NeoBERTForSequenceClassification pools one vector per row and takes padded batches (B, S); got a "
                    "packed row (cu_seq_lens / position_ids restarting at 0). Pad the sequences instead."
                )
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            **kwargs,
        )
        hidden_states = outputs.last_hidden_state  # (B, S, H)
        if self.config.classifier_pooling == "mean":
            if attention_mask is None:
                pooled = hidden_states.mean(dim=1)
            else:
                keep = padding_mask_to_bool(attention_mask).unsqueeze(-1).to(hidden_states.dtype)  # (B, S, 1)
                pooled = (hidden_states * keep).sum(1) / keep.sum(1).clamp(min=1)
        else:
            pooled = hidden_states[:, 0]  # (B, H)
        logits = self.classifier(pooled)  # (B, num_labels)

        loss = None
        if labels is not None:
            labels = labels.to(logits.device)
            if self.config.problem_type is None:
                if self.num_labels == 1:
                    self.config.problem_type = "regression"
                elif labels.dtype in (torch.long, torch.int):
                    self.config.problem_type = "single_label_classification"
                else:
                    self.config.problem_type = "multi_label_classification"
            if self.config.problem_type == "regression":
                if self.num_labels == 1:
                    loss = F.mse_loss(logits.squeeze(-1), labels.squeeze(-1).to(logits.dtype))
                else:
                    loss = F.mse_loss(logits, labels.to(logits.dtype))
            elif self.config.problem_type == "single_label_classification":
                loss = F.cross_entropy(logits.view(-1, self.num_labels), labels.view(-1))
            else:
                loss = F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
        return SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


class NeoBERTForTokenClassification(NeoBERTPreTrainedModel):
    """NeoBERT with a per-token `classifier` (NER, tagging)."""

    def __init__(self, config: NeoBERTConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.model = NeoBERTModel(config)
        dropout = config.classifier_dropout if config.classifier_dropout is not None else config.dropout
        self.dropout = nn.Dropout(dropout)
        self.classifier = _ClassifierLinear(config.hidden_size, config.num_labels)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        **kwargs,
    ) -> TokenClassifierOutput:
        kwargs.pop("num_items_in_batch", None)
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            **kwargs,
        )
        logits = self.classifier(self.dropout(outputs.last_hidden_state))  # (B, S, num_labels)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.view(-1, self.num_labels), labels.view(-1).to(logits.device))
        return TokenClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


class NeoBERTForQuestionAnswering(NeoBERTPreTrainedModel):
    """NeoBERT with a span head: `classifier` maps each token to start/end logits (extractive QA)."""

    def __init__(self, config: NeoBERTConfig):
        super().__init__(config)
        self.model = NeoBERTModel(config)
        self.classifier = _ClassifierLinear(config.hidden_size, 2)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        start_positions: torch.LongTensor | None = None,
        end_positions: torch.LongTensor | None = None,
        **kwargs,
    ) -> QuestionAnsweringModelOutput:
        kwargs.pop("num_items_in_batch", None)
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            **kwargs,
        )
        logits = self.classifier(outputs.last_hidden_state)  # (B, S, 2)
        start_logits, end_logits = (x.squeeze(-1).contiguous() for x in logits.split(1, dim=-1))  # (B, S) each
        loss = None
        if start_positions is not None and end_positions is not None:
            # positions outside the sequence are ignored, as in transformers' QA models
            ignored = start_logits.size(1)
            start = start_positions.view(-1).clamp(0, ignored).to(start_logits.device)
            end = end_positions.view(-1).clamp(0, ignored).to(end_logits.device)
            loss = (
                F.cross_entropy(start_logits, start, ignore_index=ignored)
                + F.cross_entropy(end_logits, end, ignore_index=ignored)
            ) / 2
        return QuestionAnsweringModelOutput(
            loss=loss,
            start_logits=start_logits,
            end_logits=end_logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )


AUTO_MAP = {
    "AutoConfig": "configuration_neobert.NeoBERTConfig",
    "AutoModel": "modeling_neobert.NeoBERTModel",
    "AutoModelForMaskedLM": "modeling_neobert.NeoBERTForMaskedLM",
    "AutoModelForSequenceClassification": "modeling_neobert.NeoBERTForSequenceClassification",
    "AutoModelForTokenClassification": "modeling_neobert.NeoBERTForTokenClassification",
    "AutoModelForQuestionAnswering": "modeling_neobert.NeoBERTForQuestionAnswering",
}

ALL_ATTENTION_FUNCTIONS.register(TORCH_VARLEN, torch_varlen_attention_forward)

__all__ = [
    "NeoBERTPreTrainedModel",
    "NeoBERTModel",
    "NeoBERTForMaskedLM",
    "NeoBERTForSequenceClassification",
    "NeoBERTForTokenClassification",
    "NeoBERTForQuestionAnswering",
    "NeoBERTMaskedLMOutput",
    "chunked_linear_cross_entropy",
    "masked_lm_loss",
]

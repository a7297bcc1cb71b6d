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
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, PreTrainedModel
from transformers.processing_utils import Unpack
from transformers.utils import TransformersKwargs, logging
from transformers.utils.generic import can_return_tuple
from transformers.utils.output_capturing import OutputRecorder, capture_outputs

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


# RoPE types whose frequencies change with the input length at run time; the frequencies here are fixed at init.
_DYNAMIC_ROPE_TYPES = ("dynamic", "longrope")


def rope_inverse_frequencies(config: NeoBERTConfig) -> tuple[torch.Tensor, float]:
    """Inverse frequencies `(Dh / 2,)` fp32 and the cos/sin scaling factor, from `config.rope_parameters`.

    `default` is computed here (the released model's RoPE, theta 10000); scaled types (`linear`, `yarn`, `llama3`,
    ...) come from transformers' `ROPE_INIT_FUNCTIONS`. Frequency `i` rotates the pair `(x[2i], x[2i+1])`.
    """
    parameters = config.rope_parameters or {"rope_type": "default", "rope_theta": config.default_theta}
    rope_type = parameters.get("rope_type", "default")
    if rope_type == "default":
        dim = config.head_dim
        theta = parameters.get("rope_theta", config.default_theta)
        return 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float32)[: dim // 2] / dim)), 1.0
    if rope_type in _DYNAMIC_ROPE_TYPES or rope_type not in ROPE_INIT_FUNCTIONS:
        raise ValueError(
            f"rope_parameters has rope_type={rope_type!r}; NeoBERT supports 'default' and the static scaled types "
            f"{sorted(t for t in ROPE_INIT_FUNCTIONS if t not in _DYNAMIC_ROPE_TYPES)}."
        )
    inv_freq, attention_scaling = ROPE_INIT_FUNCTIONS[rope_type](config, None)
    return inv_freq.float(), float(attention_scaling)


class NeoBERTRotaryEmbedding(nn.Module):
    """Returns `cos, sin` of shape `(B, S, Dh / 2)` in fp32 for the given positions (`x` gives only the device)."""

    def __init__(self, config: NeoBERTConfig):
        super().__init__()
        self.config = config
        inv_freq, self.attention_scaling = rope_inverse_frequencies(config)
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    @torch.no_grad()
    def forward(self, x: torch.Tensor, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        device_type = x.device.type if x.device.type != "mps" else "cpu"
        with torch.autocast(device_type=device_type, enabled=False):
            freqs = position_ids[..., None].float() * self.inv_freq.to(x.device).float()  # (B, S, Dh/2)
            if self.attention_scaling == 1.0:
                return freqs.cos(), freqs.sin()
            return freqs.cos() * self.attention_scaling, freqs.sin() * self.attention_scaling


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
    # keys ffn.0 / ffn.2, as in checkpoints of the original NeoBERT code
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
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Returns the attention branch `(B, S, H)` and, from the eager kernel on padded input, the probabilities
        `(B, nH, S, S)` (`None` from the other kernels and the packed path)."""
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
        if implementation != "eager":
            weights = None  # flex returns its log-sum-exp here on GPU, not attention probabilities
        return self.resid_dropout(self.wo(out)), weights

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask=None,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
        packed: PackedMetadata | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Returns the new hidden states and the attention probabilities (or `None`); transformers' output capturing
        records both (`_can_record_outputs`)."""
        attn_out, weights = self.attention(self.attention_norm(hidden_states), attention_mask, rope, packed)
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
    # Read by transformers' `capture_outputs` on `NeoBERTModel`: `hidden_states` are the input of the first block and
    # the output of every block (the last replaced by the final, normalised states), `attentions` the eager kernel's
    # probabilities, the second output of every block.
    _can_record_outputs = {
        "hidden_states": OutputRecorder(NeoBERTEncoderBlock, index=0),
        "attentions": OutputRecorder(NeoBERTEncoderBlock, index=1),
    }

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
            init.copy_(module.inv_freq, rope_inverse_frequencies(config)[0])

    def save_pretrained(self, save_directory, *args, save_original_format: bool = False, **kwargs):
        """Saves a self-contained folder: weights in the released (fused `ffn.w12`) layout, `config.json` with the full
        `auto_map`, and this modeling code, so `from_pretrained(dir, trust_remote_code=True)` works without
        `neobert_hf` installed.

        transformers v5 defaults to `save_original_format=True`, which runs the load-time conversions backwards on
        save. With the `ffn.w1`/`ffn.w2` -> `ffn.w12` fusion registered at the top of this file, that would write every
        NeoBERT in the fork's split layout, whatever it was loaded from. The released checkpoint, every earlier export
        and the tools that read these folders use the fused `ffn.w12` layout, which loads without any conversion, so it
        stays the default here; the split layout is opt-in.

        Args:
            save_directory (`str` or `os.PathLike`): target folder.
            save_original_format (`bool`, defaults to `False`): `True` writes transformers' reverse conversion, the
                split `ffn.w1`/`ffn.w2` layout; the default keeps the released fused layout.
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
        **kwargs: Unpack[TransformersKwargs],
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
            output_hidden_states, output_attentions (`bool`, *optional*): recorded by transformers' output capturing
                (see `_can_record_outputs`). Attention probabilities exist only with `attn_implementation="eager"`
                on padded input; other kernels and packed input warn and return none.
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of input_ids or inputs_embeds.")
        kwargs.pop("token_type_ids", None)
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
            if attention_mask is None and input_ids is not None:
                self.warn_if_padding_and_no_attention_mask(input_ids, attention_mask)
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
            rope = self.rotary_emb(hidden_states, position_ids)
        else:
            rope = None
            hidden_states = hidden_states + self.positional_embedding(position_ids)

        output_attentions = kwargs.get("output_attentions", self.config.output_attentions)
        if output_attentions and (implementation != "eager" or packed is not None):
            logger.warning_once(
                f"output_attentions=True: attn_implementation={implementation!r}"
                f"{' on packed input' if packed is not None else ''} does not return attention probabilities, so "
                "`attentions` is empty. Load the model with attn_implementation='eager' (or call "
                "model.set_attn_implementation('eager')) and pass padded batches to get them."
            )
        record = {k: kwargs[k] for k in ("output_attentions", "output_hidden_states") if k in kwargs}
        outputs = self._encode(hidden_states, mask, rope, packed, return_dict=True, **record)

        if unpad_index is not None:
            outputs = BaseModelOutput(
                last_hidden_state=_pad_back(outputs.last_hidden_state, unpad_index, batch_size, seq_len),
                hidden_states=None
                if outputs.hidden_states is None
                else tuple(
                    None if h is None else _pad_back(h, unpad_index, batch_size, seq_len)
                    for h in outputs.hidden_states
                ),
                attentions=outputs.attentions,
            )
        return outputs

    @capture_outputs
    def _encode(
        self,
        hidden_states: torch.Tensor,
        mask,
        rope: tuple[torch.Tensor, torch.Tensor] | None,
        packed: PackedMetadata | None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutput:
        """The encoder blocks and the final norm on prepared input (`(B, S, H)`, or `(1, T, H)` packed). A method of
        its own so that `forward` can scatter the recorded hidden states of the varlen path back to `(B, S, H)`."""
        for block in self.transformer_encoder:
            hidden_states, _ = block(hidden_states, mask, rope, packed)
        return BaseModelOutput(last_hidden_state=self.layer_norm(hidden_states))


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
        **kwargs: Unpack[TransformersKwargs],
    ) -> MaskedLMOutput:
        r"""
        Args:
            labels (`torch.LongTensor` of the shape of `input_ids`, *optional*): target ids, -100 where no loss.
            sparse_prediction (`bool`, *optional*): project only the rows with `labels != -100` to the vocabulary
                (defaults to `config.sparse_prediction`); the `(B, S, V)` logits are then never built and `logits`
                has shape `(n_masked, V)`.
            kwargs: passed to [`NeoBERTModel.forward`] (packed metadata, `token_type_ids`, `output_*`), except
                `num_items_in_batch`, which goes to the loss (transformers' `ForMaskedLMLoss`: cross-entropy in fp32,
                summed and divided by it when given, as the `Trainer` does under gradient accumulation; the mean over
                this batch's targets otherwise).
        """
        num_items_in_batch = kwargs.pop("num_items_in_batch", None)
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            return_dict=True,
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
        logits = self.decoder(hidden_states)  # (B, S, V), or (n_masked, V)

        loss = None
        if labels is not None:
            loss = self.loss_function(
                logits, labels, vocab_size=self.config.vocab_size, num_items_in_batch=num_items_in_batch
            )
        return MaskedLMOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


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
    loss is transformers' `ForSequenceClassificationLoss`, following `config.problem_type` (`regression`,
    `single_label_classification`, `multi_label_classification`), inferred from `num_labels` and the label dtype when
    unset.
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
        **kwargs: Unpack[TransformersKwargs],
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
            return_dict=True,
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
            problem_type = self.config.problem_type
            single_label = problem_type == "single_label_classification" or (
                problem_type is None and self.num_labels > 1 and labels.dtype in (torch.long, torch.int)
            )
            if not single_label:
                labels = labels.to(logits.dtype)  # regression / multi-label targets: compared in the logits' dtype
            loss = self.loss_function(labels=labels, pooled_logits=logits, config=self.config)
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
        **kwargs: Unpack[TransformersKwargs],
    ) -> TokenClassifierOutput:
        kwargs.pop("num_items_in_batch", None)  # the loss is the mean over this batch's labelled tokens
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            return_dict=True,
            **kwargs,
        )
        logits = self.classifier(self.dropout(outputs.last_hidden_state))  # (B, S, num_labels)
        loss = None
        if labels is not None:
            loss = self.loss_function(logits, labels, self.config)
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
        **kwargs: Unpack[TransformersKwargs],
    ) -> QuestionAnsweringModelOutput:
        kwargs.pop("num_items_in_batch", None)
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            return_dict=True,
            **kwargs,
        )
        logits = self.classifier(outputs.last_hidden_state)  # (B, S, 2)
        start_logits, end_logits = (x.squeeze(-1).contiguous() for x in logits.split(1, dim=-1))  # (B, S) each
        loss = None
        if start_positions is not None and end_positions is not None:
            # positions outside the sequence are ignored, as in transformers' QA models
            loss = self.loss_function(start_logits, end_logits, start_positions, end_positions)
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
]

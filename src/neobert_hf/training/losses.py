# Copyright 2026 the neobert-hf authors. Licensed under the Apache License, Version 2.0.
"""The MLM training loss: one path for every training step of [`~neobert_hf.training.NeoBERTTrainer`].

The model file holds no training-loss code: `NeoBERTForMaskedLM` computes its loss, when asked, with transformers'
`ForMaskedLMLoss` (`self.loss_function`) on the logits it returns, which is what users, evaluation and the
pseudo-perplexity see. Training goes through this module instead, because its losses need what a loss function of
the logits cannot have: the masked rows' hidden states and the decoder itself, to skip or fuse the projection.

[`masked_lm_loss`] is that one loss: cross-entropy of the rows whose label is not -100, summed in fp32 (or wider)
and divided by `num_items_in_batch` (the Trainer's count of masked tokens in the whole optimizer step; this batch's
count when absent, at least 1), so a step without any masked token gives 0 with the graph connected. Three ways to
compute the sum, one reduction:

- `torch`: `decoder(rows)` then cross-entropy; the `(n_masked, V)` logits are built (and returned).
- `torch` with `chunk_size`: the rows `chunk_size` at a time through `decoder.weight` without ever holding the
  logits ([`chunked_linear_cross_entropy`]); counts the correct predictions on the way.
- `liger`: Liger's fused linear cross-entropy on CUDA (`kernel_backend=liger`, see [`neobert_hf.kernels`]).

The loss runs inside the model's forward call, so that DDP, FSDP2 and `torch.compile` see one forward that returns
the loss (a parameter used outside its module's forward is invisible to DDP's unused-parameter search and may still be
sharded under FSDP2). [`install_masked_lm_loss`] wraps `model.forward` once: a call that passes
`training_loss=MaskedLMLoss(...)` runs the encoder, keeps the masked rows and returns [`masked_lm_loss`]; every other
call is the model's own forward, unchanged. This is how Liger patches transformers models as well.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_outputs import MaskedLMOutput


__all__ = [
    "MaskedLMLoss",
    "MaskedLMTrainingOutput",
    "chunked_linear_cross_entropy",
    "divide_loss",
    "install_masked_lm_loss",
    "masked_lm_loss",
]

LossBackend = Literal["torch", "liger"]


@dataclass
class MaskedLMTrainingOutput(MaskedLMOutput):
    """[`~transformers.modeling_outputs.MaskedLMOutput`] of a training step, plus `masked_correct`: the number of
    masked tokens whose argmax prediction is the label, when the loss counted them without logits (`chunk_size`).
    `logits` is `None` when they were never built (`chunk_size`, `liger`)."""

    masked_correct: torch.Tensor | None = None


@dataclass(frozen=True)
class MaskedLMLoss:
    """How [`masked_lm_loss`] computes the training loss (passed to the model's forward as `training_loss`).

    Args:
        backend (`Literal["torch", "liger"]`, defaults to `"torch"`): `torch` is exact PyTorch; `liger` is Liger's
            fused linear cross-entropy (CUDA, `pip install "neobert-hf[liger]"`).
        chunk_size (`int`, *optional*): with `torch`, project and reduce this many rows at a time without building
            their logits (same loss and gradients). Liger chunks internally and takes none.
    """

    backend: LossBackend = "torch"
    chunk_size: int | None = None

    def __post_init__(self):
        if self.backend not in ("torch", "liger"):
            raise ValueError(f"backend must be 'torch' or 'liger', got {self.backend!r}.")
        if self.chunk_size is not None:
            if not isinstance(self.chunk_size, int) or isinstance(self.chunk_size, bool) or self.chunk_size <= 0:
                raise ValueError(f"loss_chunk_size must be a positive number of rows, got {self.chunk_size!r}.")
            if self.backend == "liger":
                raise ValueError("loss_chunk_size chunks the torch loss; the liger backend chunks internally.")


def at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.promote_types(x.dtype, torch.float32))


def divide_loss(
    loss_sum: torch.Tensor, labels: torch.Tensor, num_items_in_batch: torch.Tensor | int | None
) -> torch.Tensor:
    """`loss_sum / num_items_in_batch`, or over this batch's count of targets; the divisor is at least 1, so a step
    without any target gives 0, not NaN."""
    if num_items_in_batch is None:
        denominator = (labels != -100).sum().clamp(min=1)
    elif torch.is_tensor(num_items_in_batch):
        denominator = num_items_in_batch.to(loss_sum.device).clamp(min=1)
    else:
        denominator = max(int(num_items_in_batch), 1)
    return loss_sum / denominator


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
            logits = at_least_fp32(F.linear(rows, weight, bias))  # (c, V)
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


def check_plain_decoder(decoder: nn.Module) -> None:
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
    hidden = hidden.reshape(-1, hidden.shape[-1])
    return _ChunkedLinearCrossEntropy.apply(hidden, weight, bias, labels.reshape(-1).to(hidden.device), chunk_size)


def masked_lm_loss(
    hidden: torch.Tensor,
    labels: torch.Tensor,
    decoder: nn.Module,
    num_items_in_batch: torch.Tensor | int | None = None,
    loss: MaskedLMLoss = MaskedLMLoss(),
) -> MaskedLMTrainingOutput:
    """The MLM training loss of the rows `hidden` `(N, H)` against `labels` `(N,)` (-100 rows ignored).

    Args:
        hidden (`torch.Tensor` of shape `(N, H)`): final hidden states (the masked rows, or every row for the
            full-logits ablation).
        labels (`torch.LongTensor` of shape `(N,)`): target ids, -100 where no loss.
        decoder (`nn.Module`): the MLM decoder (`Linear(H, V)`).
        num_items_in_batch (`int` or `torch.Tensor`, *optional*): divide the summed loss by this count (at least 1);
            this batch's count of targets when absent.
        loss ([`MaskedLMLoss`]): backend and chunking.

    Returns:
        [`MaskedLMTrainingOutput`] with `loss`, the `(N, V)` `logits` when they were built, and `masked_correct` when
        the chunked loss counted the correct predictions.
    """
    # No tensor op ahead of the chunked branch: under torch.compile the eager chunked call then splits this function
    # into no more graphs than the model's own forward has (see tests/modeling/test_compile.py).
    logits = correct = None
    if loss.backend == "liger":
        labels = labels.reshape(-1).to(hidden.device)
        hidden = hidden.reshape(-1, hidden.shape[-1])
        from liger_kernel.transformers.functional import liger_fused_linear_cross_entropy

        bias = decoder.bias
        # Liger multiplies in the hidden dtype (bf16 under autocast) and accumulates the loss in fp32.
        loss_sum = liger_fused_linear_cross_entropy(
            hidden,
            decoder.weight.to(hidden.dtype),
            labels,
            bias=None if bias is None else bias.to(hidden.dtype),
            ignore_index=-100,
            reduction="sum",
        )
        if isinstance(loss_sum, tuple):  # versions that also return the z-loss
            loss_sum = loss_sum[0]
        loss_sum = loss_sum.float()
    elif loss.chunk_size is not None:
        check_plain_decoder(decoder)
        loss_sum, correct = chunked_linear_cross_entropy(hidden, decoder.weight, decoder.bias, labels, loss.chunk_size)
    else:
        labels = labels.reshape(-1).to(hidden.device)
        logits = decoder(hidden.reshape(-1, hidden.shape[-1]))  # (N, V)
        loss_sum = F.cross_entropy(at_least_fp32(logits), labels, ignore_index=-100, reduction="sum")
    return MaskedLMTrainingOutput(
        loss=divide_loss(loss_sum, labels, num_items_in_batch), logits=logits, masked_correct=correct
    )


def install_masked_lm_loss(model: nn.Module, backend: LossBackend | None = None) -> LossBackend:
    """Wrap `model.forward` (a `NeoBERTForMaskedLM`) once so that a call with `training_loss=MaskedLMLoss(...)`
    computes [`masked_lm_loss`] inside the forward call; calls without it run the model's own forward unchanged.

    Idempotent: a second call keeps the wrapper and, when `backend` is given, records it (the kernel backend installs
    `liger`; the trainer then asks which backend is installed). The original forward stays in
    `model.forward.__wrapped__`, so signature inspection sees the model's arguments.

    Returns:
        `str`: the backend installed (`torch` unless one was given).

    Raises:
        `TypeError`: a model without the `model` (encoder) and `decoder` of `NeoBERTForMaskedLM`.
    """
    installed = getattr(model.forward, "_neobert_masked_lm_loss", None)
    if installed is not None:
        if backend is not None:
            model.forward._neobert_masked_lm_loss = backend
        return model.forward._neobert_masked_lm_loss
    if not supports_masked_lm_loss(model):
        raise TypeError(
            f"The MLM training loss needs a NeoBERTForMaskedLM (an encoder `model` and a `decoder`); got "
            f"{type(model).__name__}."
        )
    original = model.forward

    @functools.wraps(original)
    def forward(*args, training_loss: MaskedLMLoss | None = None, **kwargs):
        if training_loss is None:
            return original(*args, **kwargs)
        if args:
            raise TypeError("The MLM training forward takes keyword arguments only.")
        return _training_forward(model, training_loss, **kwargs)

    forward._neobert_masked_lm_loss = backend or "torch"
    model.forward = forward
    return forward._neobert_masked_lm_loss


def supports_masked_lm_loss(model: nn.Module) -> bool:
    """Whether `model` has the encoder `model` and the `decoder` that [`install_masked_lm_loss`] needs."""
    encoder, decoder = getattr(model, "model", None), getattr(model, "decoder", None)
    return isinstance(encoder, nn.Module) and isinstance(decoder, nn.Module)


def _training_forward(
    model: nn.Module,
    training_loss: MaskedLMLoss,
    input_ids: torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
    position_ids: torch.Tensor | None = None,
    inputs_embeds: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
    sparse_prediction: bool | None = None,
    num_items_in_batch: torch.Tensor | int | None = None,
    return_dict: bool | None = None,
    **kwargs,
):
    """Encoder, masked-row selection (`sparse_prediction`) and [`masked_lm_loss`], in the model's forward call."""
    if labels is None:
        raise ValueError("training_loss computes the MLM loss and needs labels.")
    outputs = model.model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids,
        inputs_embeds=inputs_embeds,
        return_dict=True,
        **kwargs,
    )
    hidden = outputs.last_hidden_state  # (B, S, H)
    hidden = hidden.reshape(-1, hidden.shape[-1])  # (B*S, H)
    targets = labels.reshape(-1)
    sparse = model.config.sparse_prediction if sparse_prediction is None else sparse_prediction
    if sparse:
        # One data-dependent op (a single graph break under torch.compile) for both selections.
        selected = torch.nonzero(targets != -100, as_tuple=False).reshape(-1)  # (n_masked,)
        hidden = hidden.index_select(0, selected)  # (n_masked, H)
        targets = targets.index_select(0, selected)  # (n_masked,)
    elif training_loss.chunk_size is not None or training_loss.backend != "torch":
        raise ValueError(
            "The chunked and fused MLM losses project only the masked rows: they need sparse_prediction=True "
            "(masked_logits_only_loss). The full-logits ablation builds every logit with the torch loss."
        )
    result = masked_lm_loss(hidden, targets, model.decoder, num_items_in_batch, training_loss)
    logits = result.logits
    if logits is not None and not sparse:
        logits = logits.view(*labels.shape, -1)  # (B, S, V)
    output = MaskedLMTrainingOutput(
        loss=result.loss,
        logits=logits,
        hidden_states=outputs.hidden_states,
        attentions=outputs.attentions,
        masked_correct=result.masked_correct,
    )
    return output.to_tuple() if return_dict is False else output

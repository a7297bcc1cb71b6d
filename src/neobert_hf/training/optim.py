"""Optimisers for NeoBERT pretraining.

- AdamW is the Trainer's own (`optim`, decay/no-decay groups from `Trainer.get_decay_parameter_names`: no decay for
  biases and norm weights). Nothing here.
- MuonClip: [`MuonClip`] runs `torch.optim.Muon` on the 2-D matrices of the encoder blocks (`qkv`, `wo`, `ffn.*`) and
  AdamW on every other parameter (embeddings, decoder, norms), as one `torch.optim.Optimizer` so that the Trainer,
  accelerate and transformers' LR schedulers handle it like any other. [`QKClip`] adds the clip of Kimi K2
  (arXiv 2507.20534): it records the per-head maximum attention logit during the forward pass and, after the
  optimizer step, rescales the query and key rows of every head whose maximum exceeds the threshold.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping

import torch
from torch import nn

from ..modeling.modeling_neobert import (
    NeoBERTModel,
    apply_rotary_pos_emb,
    cu_seq_lens_from_position_ids,
    padding_mask_to_bool,
)


ORTHOGONALIZATIONS = ("newton_schulz", "polar_express")

# Polar Express (Amsel et al., arXiv 2505.16932): one odd quintic per iteration, each the minimax-optimal one for the
# interval its predecessor leaves, so five iterations bring every singular value close to 1 (the fixed Newton-Schulz
# quintic leaves them spread over about [0.7, 1.2]). Computed for 5 iterations with a 2% safety factor, the table
# modded-nanogpt uses; more iterations repeat the last polynomial.
POLAR_EXPRESS_COEFFICIENTS = (
    (8.156554524902461, -22.48329292557795, 15.878769915207462),
    (4.042929935166739, -2.808917465908714, 0.5000178451051316),
    (3.8916678022926607, -2.772484153217685, 0.5060648178503393),
    (3.285753657755655, -2.3681294933425376, 0.46449024233003106),
    (2.3465413258596377, -1.7097828382687081, 0.42323551169305323),
)
_POLAR_EXPRESS_SAFETY = 2e-2


def polar_express(grad: torch.Tensor, steps: int = 5, eps: float = 1e-7) -> torch.Tensor:
    """The orthogonal polar factor of a 2-D `grad`, approximately, by the Polar Express iteration in bfloat16 (the
    same precision and layout as `torch.optim.Muon`'s Newton-Schulz: wide matrices iterate on `X X^T`)."""
    if grad.ndim != 2:
        raise ValueError(f"polar_express needs a 2-D matrix, got shape {tuple(grad.shape)}.")
    x = grad.bfloat16()
    wide = grad.size(0) > grad.size(1)
    if wide:
        x = x.T
    x = x / (x.norm() * (1 + _POLAR_EXPRESS_SAFETY) + eps)
    for index in range(steps):
        a, b, c = POLAR_EXPRESS_COEFFICIENTS[min(index, len(POLAR_EXPRESS_COEFFICIENTS) - 1)]
        gram = x @ x.T
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.T if wide else x


class Muon(torch.optim.Muon):
    """`torch.optim.Muon` with a choice of orthogonalization: `"newton_schulz"` is torch's own step, unchanged;
    `"polar_express"` runs the same update (Nesterov momentum, per-matrix learning-rate adjustment, decoupled weight
    decay) with [`polar_express`] in place of the Newton-Schulz iteration."""

    def __init__(self, params, *, orthogonalization: str = "newton_schulz", **kwargs):
        if orthogonalization not in ORTHOGONALIZATIONS:
            raise ValueError(f"orthogonalization must be one of {ORTHOGONALIZATIONS}, got {orthogonalization!r}.")
        super().__init__(params, **kwargs)
        self.orthogonalization = orthogonalization

    @torch.no_grad()
    def step(self, closure=None):
        if self.orthogonalization == "newton_schulz":
            return super().step(closure)
        return self._step_with(lambda update, group: polar_express(update, group["ns_steps"], group["eps"]), closure)

    @staticmethod
    def adjusted_lr(lr: float, adjust_lr_fn: str | None, shape: torch.Size) -> float:
        """The per-matrix learning rate of `torch.optim.Muon` (`adjust_lr_fn`: `None`/`"original"`,
        `"match_rms_adamw"`)."""
        rows, cols = shape[:2]
        if adjust_lr_fn is None or adjust_lr_fn == "original":
            return lr * math.sqrt(max(1, rows / cols))
        if adjust_lr_fn == "match_rms_adamw":
            return lr * 0.2 * math.sqrt(max(rows, cols))
        return lr

    @torch.no_grad()
    def _step_with(self, orthogonalize, closure=None):
        """One step of torch's Muon update with `orthogonalize(update, group)` as the orthogonalization (the Newton-Schulz
        iteration there, [`polar_express`] here); the tests check it against `torch.optim.Muon.step`."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, weight_decay, momentum = group["lr"], group["weight_decay"], group["momentum"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                grad = param.grad
                if grad.ndim != 2:
                    raise ValueError("Muon updates 2-D matrices only.")
                state = self.state[param]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(grad, memory_format=torch.preserve_format)
                buf = state["momentum_buffer"]
                buf.lerp_(grad, 1 - momentum)
                update = grad.lerp(buf, momentum) if group["nesterov"] else buf
                update = orthogonalize(update, group)
                param.mul_(1 - lr * weight_decay)
                param.add_(update, alpha=-self.adjusted_lr(lr, group["adjust_lr_fn"], param.shape))
        return loss


QK_CLIP_LAYERS = {"blocks": "transformer_encoder", "qkv": "qkv"}


def qk_clip_layers(mapping: Mapping[str, str] | str | None = None) -> dict[str, str]:
    """Where MuonClip finds its layers: `blocks`, the list of encoder blocks inside the base model, and `qkv`, the fused
    query/key/value projection inside a block (rows ordered per head as `(nH, 3, Dh)`), from NeoBERT's names
    overridden by `mapping` (a dict or its JSON text).

    Raises:
        `ValueError`: an unknown key, or a value that is not a non-empty module path.
    """
    if isinstance(mapping, str):
        import json

        try:
            mapping = json.loads(mapping) if mapping.strip() else {}
        except json.JSONDecodeError as error:
            raise ValueError(f"qk_clip_layers_mapping is not a JSON object: {mapping!r} ({error.msg}).") from None
    mapping = dict(mapping or {})
    unknown = sorted(set(mapping) - set(QK_CLIP_LAYERS))
    if unknown:
        raise ValueError(
            f"qk_clip_layers_mapping: unknown key(s) {unknown}; the keys are {sorted(QK_CLIP_LAYERS)} (module paths of "
            "the encoder-block list and of the fused qkv projection inside a block). Separate q/k/v projections are "
            "not supported: QK-clip rescales the per-head query and key rows of one fused projection."
        )
    for key, value in mapping.items():
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"qk_clip_layers_mapping[{key!r}] must be a module path such as 'attn.qkv', got {value!r}.")
    return {**QK_CLIP_LAYERS, **mapping}


def muon_parameter_names(model: nn.Module, blocks: str = "transformer_encoder") -> list[str]:
    """Names of the trainable 2-D matrices inside the encoder blocks (`<blocks>.{i}.*`, `transformer_encoder` in
    NeoBERT): the parameters Muon updates. Embeddings, the MLM decoder, task heads and norm weights stay with AdamW."""
    return [name for name, p in model.named_parameters() if p.requires_grad and p.ndim == 2 and f"{blocks}." in name]


class _MergedState(Mapping):
    """Read-only view of the per-parameter states of the inner optimisers (their `defaultdict`s are probed with `in`,
    so a lookup never creates an empty entry)."""

    def __init__(self, *states):
        self._states = states

    def __getitem__(self, param):
        for state in self._states:
            if param in state:
                return state[param]
        raise KeyError(param)

    def __iter__(self) -> Iterator:
        for state in self._states:
            yield from state

    def __len__(self) -> int:
        return sum(len(state) for state in self._states)


class MuonClip(torch.optim.Optimizer):
    """Muon on the hidden matrices plus AdamW on the rest, behind one `Optimizer` interface.

    The parameter groups are those of the two inner optimisers (the same dicts), AdamW's first, so LR schedulers,
    `zero_grad` and `Trainer._get_learning_rate` (which reads group 0: the AdamW rate) act on both. Muon groups carry
    `"muon": True`. `state_dict()` holds both inner states.

    Args:
        adamw_groups (`list[dict]`): AdamW parameter groups (`params`, `weight_decay`).
        muon_params (`list[torch.nn.Parameter]`): 2-D parameters for Muon.
        lr (`float`): AdamW learning rate.
        betas, eps: AdamW hyper-parameters.
        muon_lr, muon_momentum, muon_weight_decay, muon_ns_steps, muon_adjust_lr: `torch.optim.Muon` arguments
            (`lr`, `momentum`, `weight_decay`, `ns_steps`, `adjust_lr_fn`).
        muon_orthogonalization (`str`): `"newton_schulz"` (torch's Muon) or `"polar_express"` (see [`Muon`]).
        fused (`bool`, *optional*): fused AdamW kernel.
    """

    def __init__(
        self,
        adamw_groups: list[dict],
        muon_params: list[nn.Parameter],
        *,
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        muon_lr: float,
        muon_momentum: float = 0.95,
        muon_weight_decay: float = 0.1,
        muon_ns_steps: int = 5,
        muon_adjust_lr: str | None = "match_rms_adamw",
        muon_orthogonalization: str = "newton_schulz",
        fused: bool | None = None,
    ):
        if not muon_params:
            raise ValueError("MuonClip found no 2-D matrix in transformer_encoder.* to give to Muon.")
        adamw_groups = [g for g in adamw_groups if len(g["params"]) > 0]
        self.adamw = torch.optim.AdamW(adamw_groups, lr=lr, betas=betas, eps=eps, fused=fused)
        self.muon = Muon(
            [{"params": list(muon_params), "muon": True}],
            orthogonalization=muon_orthogonalization,
            lr=muon_lr,
            weight_decay=muon_weight_decay,
            momentum=muon_momentum,
            ns_steps=muon_ns_steps,
            adjust_lr_fn=muon_adjust_lr,
        )
        for group in self.adamw.param_groups:
            group.setdefault("muon", False)
        super().__init__(self.adamw.param_groups + self.muon.param_groups, {"lr": lr})
        self._link()
        self._initialized = True

    def _link(self) -> None:
        # Share the inner optimisers' group dicts (again after `load_state_dict`, which replaces them).
        self.param_groups = self.adamw.param_groups + self.muon.param_groups
        self.state = _MergedState(self.adamw.state, self.muon.state)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.adamw.step()
        self.muon.step()
        return loss

    def state_dict(self) -> dict:
        return {"adamw": self.adamw.state_dict(), "muon": self.muon.state_dict()}

    def load_state_dict(self, state_dict: dict) -> None:
        if set(state_dict) != {"adamw", "muon"}:
            raise ValueError(
                f"Not a MuonClip optimizer state (keys {sorted(state_dict)}); was the checkpoint saved with "
                "optimizer=adamw?"
            )
        self.adamw.load_state_dict(state_dict["adamw"])
        self.muon.load_state_dict(state_dict["muon"])
        self._link()

    def add_param_group(self, param_group: dict) -> None:
        if getattr(self, "_initialized", False):
            raise NotImplementedError("MuonClip does not take new parameter groups after construction.")
        super().add_param_group(param_group)


def build_muonclip(model: nn.Module, args, decay_parameter_names: Iterable[str]) -> MuonClip:
    """Builds [`MuonClip`] from [`NeoBERTTrainingArguments`]: Muon on [`muon_parameter_names`], AdamW with
    decay/no-decay groups on the rest."""
    blocks = qk_clip_layers(args.qk_clip_layers_mapping)["blocks"]
    muon_names = set(muon_parameter_names(model, blocks))
    decay = set(decay_parameter_names)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    adamw_groups = [
        {"params": [p for n, p in named if n not in muon_names and n in decay], "weight_decay": args.weight_decay},
        {"params": [p for n, p in named if n not in muon_names and n not in decay], "weight_decay": 0.0},
    ]
    optim_name = getattr(args.optim, "value", args.optim)
    return MuonClip(
        adamw_groups,
        [p for n, p in named if n in muon_names],
        lr=args.learning_rate,
        betas=(args.adam_beta1, args.adam_beta2),
        eps=args.adam_epsilon,
        muon_lr=args.effective_muon_lr,
        muon_momentum=args.muon_momentum,
        muon_weight_decay=args.effective_muon_weight_decay,
        muon_ns_steps=args.muon_ns_steps,
        muon_adjust_lr=args.muon_adjust_lr,
        muon_orthogonalization=args.muon_orthogonalization,
        fused=True if optim_name == "adamw_torch_fused" else None,
    )


# ---------------------------------------------------------------------------------------------------------------------
# QK-clip
# ---------------------------------------------------------------------------------------------------------------------


def max_attention_logits(
    q: torch.Tensor, k: torch.Tensor, valid: torch.Tensor, scale: float, chunk_size: int = 1024
) -> torch.Tensor:
    """Per-head maximum of `scale * q_i . k_j` over the pairs of valid tokens of the same sequence.

    Args:
        q, k (`torch.Tensor` of shape `(n, L, nH, Dh)`): queries and keys of `n` sequences padded to `L`.
        valid (`torch.BoolTensor` of shape `(n, L)`): real tokens.
        scale (`float`): the attention scale (`1 / sqrt(Dh)`).
        chunk_size (`int`): bounds the score block to about `chunk_size * L * nH` elements.

    Returns:
        `torch.Tensor` of shape `(nH,)` in fp32 (`-inf` for a head without any valid pair).
    """
    n, length, heads, _ = q.shape
    q, k = q.float(), k.float()
    result = torch.full((heads,), float("-inf"), device=q.device)
    seq_block = max(1, chunk_size // max(length, 1))
    query_block = max(1, min(length, chunk_size))
    for s0 in range(0, n, seq_block):
        ks, vs = k[s0 : s0 + seq_block], valid[s0 : s0 + seq_block]
        key_mask = vs[:, None, None, :]  # (n', 1, 1, L)
        for q0 in range(0, length, query_block):
            qs = q[s0 : s0 + seq_block, q0 : q0 + query_block]  # (n', l, nH, Dh)
            scores = torch.einsum("nqhd,nkhd->nhqk", qs, ks) * scale  # (n', nH, l, L)
            query_mask = vs[:, q0 : q0 + query_block][:, None, :, None]  # (n', 1, l, 1)
            scores = scores.masked_fill(~(key_mask & query_mask), float("-inf"))
            result = torch.maximum(result, scores.amax(dim=(0, 2, 3)))
    return result


def _to_sequences(x: torch.Tensor, cu: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`(1, T, ...)` packed -> `(n, L, ...)` padded view and its `(n, L)` validity mask."""
    cu = cu.to(device=x.device, dtype=torch.long)
    lengths = cu[1:] - cu[:-1]  # (n,)
    length = int(lengths.max()) if lengths.numel() else 0
    slot = torch.arange(length, device=x.device)
    valid = slot[None, :] < lengths[:, None]  # (n, L)
    index = torch.where(valid, cu[:-1, None] + slot[None, :], 0).clamp(max=max(x.shape[1] - 1, 0))
    return x[0][index], valid


class QKClip:
    """Per-head QK-clip for NeoBERT, respecting the per-head interleaved `qkv` layout.

    The rows of `qkv.weight` (`3H x H`) are ordered `(nH, 3, Dh)`: head `h` owns rows `[h*3*Dh, (h+1)*3*Dh)`, of which
    the first `Dh` are its query rows and the next `Dh` its key rows (the encoder block views the projection as
    `(B, S, nH, 3*Dh)` and chunks the last dimension into q, k, v). Scaling the query rows of a head by `eta^alpha`
    and its key rows by `eta^(1-alpha)` scales all its attention logits by `eta` (RoPE is a rotation, it commutes with
    the scalar), so the head's maximum logit becomes exactly `threshold`.

    While `capturing` is `True`, forward hooks on every `qkv` read the queries and keys, apply RoPE as the model does,
    and keep the running per-head maximum logit; [`QKClip.apply`] then rescales the heads above the threshold and
    resets the record. Under DDP the maxima are all-reduced first, so every rank applies the same clip.

    Args:
        model: a NeoBERT model (the base model is found among its modules).
        threshold (`float`): tau.
        alpha (`float`): share of the rescaling on the queries.
        interval, warmup_steps (`int`): [`QKClip.is_due`] is true on optimizer steps `k > warmup_steps` with
            `k % interval == 0`.
        chunk_size (`int`): see [`max_attention_logits`].
        layers_mapping (`dict`, *optional*): module paths of the blocks and of their fused projection, see
            [`qk_clip_layers`].
    """

    def __init__(
        self,
        model: nn.Module,
        threshold: float,
        alpha: float = 0.5,
        interval: int = 1,
        warmup_steps: int = 0,
        chunk_size: int = 1024,
        layers_mapping: Mapping[str, str] | str | None = None,
    ):
        bases = [m for m in model.modules() if isinstance(m, NeoBERTModel)]
        if len(bases) != 1:
            raise ValueError(f"QKClip needs exactly one NeoBERTModel inside the model, found {len(bases)}.")
        self.base = bases[0]
        self.threshold, self.alpha = float(threshold), float(alpha)
        self.interval, self.warmup_steps, self.chunk_size = int(interval), int(warmup_steps), int(chunk_size)
        config = self.base.config
        self.num_heads, self.head_dim = config.num_attention_heads, config.head_dim
        self.scale = self.head_dim**-0.5
        layers = qk_clip_layers(layers_mapping)
        try:
            self.blocks = list(self.base.get_submodule(layers["blocks"]))
            self.projections = [block.get_submodule(layers["qkv"]) for block in self.blocks]
        except (AttributeError, TypeError) as error:
            raise ValueError(
                f"QK-clip cannot find its layers ({layers}) in the model: {error}. Fix qk_clip_layers_mapping."
            ) from None
        self.capturing = False
        self.max_logits: torch.Tensor | None = None  # (num_layers, nH)
        self.last_max_logit: float | None = None
        self.last_clipped_heads: int = 0
        self._context: dict = {}
        self._rope = None
        self._handles = [self.base.register_forward_pre_hook(self._on_model_inputs, with_kwargs=True)]
        if config.rope:
            self._handles.append(self.base.rotary_emb.register_forward_hook(self._on_rope))
        for index, projection in enumerate(self.projections):
            self._handles.append(projection.register_forward_hook(self._qkv_hook(index)))

    def is_due(self, step: int) -> bool:
        """Whether the clip runs after optimizer step `step` (1-based)."""
        return step > self.warmup_steps and step % self.interval == 0

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    # -- capture -------------------------------------------------------------------------------------------------------

    def _on_model_inputs(self, module, args, kwargs):
        if self.capturing:
            self._context = {
                "attention_mask": kwargs.get("attention_mask"),
                "position_ids": kwargs.get("position_ids"),
                "cu_seq_lens_q": kwargs.get("cu_seq_lens_q"),
            }
            self._rope = None

    def _on_rope(self, module, args, output):
        if self.capturing:
            self._rope = tuple(t.detach() for t in output)

    def _qkv_hook(self, index: int):
        def hook(module, args, output):
            if self.capturing:
                with torch.no_grad():
                    self._record(index, output.detach())

        return hook

    def _layout(self, batch: int, seq_len: int, device) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """`(cu_seq_lens, valid)`: packed boundaries for a `(1, T)` row, else the `(B, S)` validity mask."""
        ctx = self._context
        mask, position_ids, cu = ctx.get("attention_mask"), ctx.get("position_ids"), ctx.get("cu_seq_lens_q")
        if cu is not None:
            return cu, None
        if mask is not None:
            keep = padding_mask_to_bool(mask).to(device)
            if tuple(keep.shape) == (batch, seq_len):
                return None, keep
            if batch == 1 and int(keep.sum()) == seq_len:
                # The padding was removed inside the model (varlen kernels): rows became packed sequences.
                lengths = keep.sum(-1)
                return torch.nn.functional.pad(torch.cumsum(lengths, 0), (1, 0)), None
            raise RuntimeError(
                f"QKClip cannot map an attention mask of shape {tuple(keep.shape)} onto the qkv output."
            )
        if position_ids is not None and batch == 1 and bool((position_ids[0, 1:] == 0).any()):
            return cu_seq_lens_from_position_ids(position_ids), None
        return None, torch.ones(batch, seq_len, dtype=torch.bool, device=device)

    def _record(self, index: int, qkv: torch.Tensor) -> None:
        batch, seq_len, _ = qkv.shape
        heads = qkv.view(batch, seq_len, self.num_heads, 3 * self.head_dim)  # (B, S, nH, 3*Dh)
        q, k = heads[..., : self.head_dim], heads[..., self.head_dim : 2 * self.head_dim]  # (B, S, nH, Dh)
        if self._rope is not None:
            q, k = apply_rotary_pos_emb(q, *self._rope), apply_rotary_pos_emb(k, *self._rope)
        cu, valid = self._layout(batch, seq_len, qkv.device)
        if cu is not None:
            (q, valid), (k, _) = _to_sequences(q, cu), _to_sequences(k, cu)  # (n, L, nH, Dh)
        head_max = max_attention_logits(q, k, valid, self.scale, self.chunk_size)  # (nH,)
        if self.max_logits is None:
            self.max_logits = torch.full(
                (len(self.blocks), self.num_heads), float("-inf"), device=qkv.device, dtype=torch.float32
            )
        self.max_logits[index] = torch.maximum(self.max_logits[index], head_max)

    # -- clip ----------------------------------------------------------------------------------------------------------

    @torch.no_grad()
    def apply(self) -> int:
        """Rescales the heads whose recorded maximum logit exceeds the threshold; returns how many were clipped."""
        if self.max_logits is None:
            return 0
        max_logits = self.max_logits
        self.max_logits = None
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(max_logits, op=torch.distributed.ReduceOp.MAX)
        over = max_logits > self.threshold  # (layers, nH)
        eta = torch.where(over, self.threshold / max_logits.clamp(min=self.threshold), torch.ones_like(max_logits))
        for index, projection in enumerate(self.projections):
            if not bool(over[index].any()):
                continue
            weight = projection.weight
            rows = weight.view(self.num_heads, 3, self.head_dim, -1)  # (nH, 3, Dh, H): q, k, v rows per head
            scale = eta[index].to(weight.dtype)[:, None, None]  # (nH, 1, 1)
            rows[:, 0].mul_(scale**self.alpha)
            rows[:, 1].mul_(scale ** (1.0 - self.alpha))
        self.last_max_logit = float(max_logits.max())
        self.last_clipped_heads = int(over.sum())
        return self.last_clipped_heads


__all__ = [
    "POLAR_EXPRESS_COEFFICIENTS",
    "Muon",
    "MuonClip",
    "QKClip",
    "build_muonclip",
    "max_attention_logits",
    "muon_parameter_names",
    "polar_express",
    "qk_clip_layers",
]

"""Kernel backend of MLM pretraining: `kernel_backend = auto | liger | torch`.

- `torch`: the model's own PyTorch code, exact; the only backend on CPU.
- `liger`: Liger's Triton kernels on CUDA (`pip install "neobert-hf[liger]"`): RMSNorm (the model's fp32
  normalisation, "llama" casting), SwiGLU (`silu(gate) * up`), and a fused linear cross-entropy for the masked
  rows: the decoder projection and the cross-entropy run chunk by chunk, so the `(n_masked, V)` logits are never
  materialised.
- `auto`: `liger` on CUDA when liger-kernel is installed, `torch` otherwise; the choice and its reason are logged.

An explicit `liger` that cannot run is an error (package missing, no CUDA device); nothing falls back silently, and
the kernels are not wrapped in `try`/`except`, so an out-of-memory error surfaces as is.

The fused cross-entropy is one backend of the MLM training loss, [`~neobert_hf.training.losses.masked_lm_loss`]
(the same reduction as the other backends: fp32 sum over the masked tokens, divided by `num_items_in_batch`).
[`apply_kernel_backend`] records `liger` as the backend of the model's training loss; evaluation and every other call
keep the model's own forward (they need logits).

```python
>>> from neobert_hf.kernels import resolve_kernel_backend
>>> resolve_kernel_backend("auto", "cpu")
'torch'
```
"""

from __future__ import annotations

import logging
from typing import Literal

import torch
from torch import nn

from .import_utils import HardwareError, is_available, package_version, require


__all__ = [
    "LigerRMSNorm",
    "LigerSwiGLU",
    "apply_kernel_backend",
    "resolve_kernel_backend",
]

logger = logging.getLogger("neobert_hf.pretrain.kernels")


def resolve_kernel_backend(
    requested: Literal["auto", "liger", "torch"], device: torch.device | str
) -> Literal["liger", "torch"]:
    """The kernel backend a run on `device` uses.

    Raises:
        `ImportError`: `liger` without liger-kernel (names `pip install "neobert-hf[liger]"`).
        [`~neobert_hf.converters.base.HardwareError`] (a `ValueError`): `liger` on a device other than CUDA.
        `ValueError`: an unknown backend.
    """
    device = torch.device(device)
    if requested == "torch":
        return "torch"
    if requested == "liger":
        require("liger_kernel", "kernel_backend=liger")
        if device.type != "cuda":
            raise HardwareError(
                f"kernel_backend=liger runs Liger's Triton kernels on CUDA GPUs, but this run is on {device.type}. Use "
                "kernel_backend torch (exact, PyTorch) or auto."
            )
        return "liger"
    if requested != "auto":
        raise ValueError(f"kernel_backend must be 'auto', 'liger' or 'torch', got {requested!r}.")
    if device.type == "cuda" and is_available("liger_kernel"):
        logger.info(f"kernel_backend=auto: using liger (liger-kernel {package_version('liger_kernel')} on CUDA).")
        return "liger"
    reason = (
        f"no CUDA device (training on {device.type})"
        if device.type != "cuda"
        else 'liger-kernel is not installed (pip install "neobert-hf[liger]")'
    )
    logger.info(f"kernel_backend=auto: using torch ({reason}).")
    return "torch"


# ---------------------------------------------------------------------------------------------------------------------
# Liger modules (same parameters and state-dict keys as the modules they replace)
# ---------------------------------------------------------------------------------------------------------------------


class LigerRMSNorm(nn.Module):
    """Liger's RMSNorm with the model's numerics ("llama" casting: normalise in fp32, cast back, then scale)."""

    def __init__(self, norm: nn.Module):
        super().__init__()
        self.weight = norm.weight
        self.eps = norm.eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from liger_kernel.transformers.functional import liger_rms_norm

        return liger_rms_norm(x, self.weight, self.eps, offset=0.0, casting_mode="llama", in_place=False)

    def extra_repr(self) -> str:
        return f"{tuple(self.weight.shape)}, eps={self.eps}"


class LigerSwiGLU(nn.Module):
    """`w3(silu(gate) * up)` with `[gate; up] = w12(x)`, the gating in one Liger kernel; keeps `w12`/`w3`."""

    def __init__(self, ffn: nn.Module):
        super().__init__()
        self.w12 = ffn.w12
        self.w3 = ffn.w3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from liger_kernel.transformers.functional import liger_swiglu

        gate, up = self.w12(x).chunk(2, dim=-1)  # (..., F) each, strided views
        # The kernel addresses gate, up and its output with one row stride: give it contiguous rows.
        return self.w3(liger_swiglu(gate.contiguous(), up.contiguous()))


def apply_kernel_backend(
    model: nn.Module, requested: Literal["auto", "liger", "torch"], device: torch.device | str
) -> Literal["liger", "torch"]:
    """Resolve `requested` for `device` and install it in `model` (a `NeoBERTForMaskedLM`), in place.

    `torch` changes nothing. `liger` replaces every `NeoBERTRMSNorm` and `NeoBERTSwiGLU` by its Liger module (same
    parameters, same state-dict keys) and makes the training loss a fused linear cross-entropy over the masked rows.

    Returns:
        `str`: the backend in use.

    Raises:
        `ValueError`: `liger` with a decoder replaced by a low-precision converter (the fused loss reads
            `decoder.weight` directly and would bypass it).
    """
    backend = resolve_kernel_backend(requested, device)
    if backend == "torch":
        return backend
    from .modeling.modeling_neobert import NeoBERTRMSNorm, NeoBERTSwiGLU

    if type(model.decoder) is not nn.Linear:
        raise ValueError(
            f"kernel_backend=liger fuses the decoder into the cross-entropy and reads decoder.weight directly, but the "
            f"decoder was converted to {type(model.decoder).__name__}. Keep it in high precision (filter_fqns: "
            "[decoder]) or use kernel_backend torch."
        )
    swaps = [
        (name, LigerRMSNorm(m) if isinstance(m, NeoBERTRMSNorm) else LigerSwiGLU(m))
        for name, m in model.named_modules()
        if isinstance(m, (NeoBERTRMSNorm, NeoBERTSwiGLU))
    ]
    for name, new in swaps:
        parent, _, leaf = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, leaf, new)
    from .training.losses import install_masked_lm_loss

    install_masked_lm_loss(model, backend)
    logger.info(
        f"kernel_backend=liger: {sum(isinstance(m, LigerRMSNorm) for _, m in swaps)} RMSNorm and "
        f"{sum(isinstance(m, LigerSwiGLU) for _, m in swaps)} SwiGLU modules, fused linear cross-entropy on the masked "
        "rows."
    )
    return backend

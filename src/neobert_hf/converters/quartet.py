"""Quartet-II NVFP4 training: the selected linear layers become `quartet2.linear.Quartet_II_linear` layers.

Quartet-II (IST-DASLab) quantizes the forward matmul to NVFP4 (optionally with 4/6 adaptive scaling) and the two
backward matmuls to NVFP4 after a randomized Hadamard transform with EDEN rounding, on qutlass CUTLASS kernels for
Blackwell (sm120). Neither `quartet2` nor `qutlass` is on PyPI: install both from GitHub (the error message says how).

Upstream's layer keeps a bf16 weight and ignores its bias. The converted layer here ([`QuartetLinear`], built on first
use as a subclass of `Quartet_II_linear`) keeps the original `Parameter` (fp32 master weight, in the optimizer) and
casts it to bf16 for the kernel, casts the activations to bf16, and is applied only to bias-free layers; its Hadamard
and scratch buffers are not saved in checkpoints (they are rebuilt when the model is converted).
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from ..import_utils import install_command, is_available
from .arguments import PrecisionArguments
from .base import ModelConverter, register_converter, replace_module, require_capability


__all__ = ["QuartetConverter"]

_QUARTET_CAPABILITY = (12, 0)


@functools.cache
def quartet_linear_class() -> type:
    """`QuartetLinear`: `Quartet_II_linear` with an fp32 master weight and bf16 compute (one class, so that
    `torch.compile` sees the same forward in every block)."""
    from quartet2.linear import Quartet_II_fn, Quartet_II_linear

    class QuartetLinear(Quartet_II_linear):
        @classmethod
        def from_linear(cls, linear: nn.Linear, four_over_six: bool, disable_backward_quant: bool):
            new = cls(
                linear.in_features,
                linear.out_features,
                bias=False,
                four_over_six=four_over_six,
                dtype=torch.bfloat16,
                device=linear.weight.device,
            )
            new.weight = linear.weight  # keep the original (fp32 master) Parameter
            new.disable_backward_quant = disable_backward_quant
            return new

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, S, H) -> (B, S, N)
            return Quartet_II_fn.apply(
                x.to(torch.bfloat16),
                self.weight.to(torch.bfloat16),
                self.had.to(torch.bfloat16),
                self.four_over_six,
                self.disable_backward_quant,
                self.weight_abs_max,
                None,
                self.scratch_amax,
            )

    return QuartetLinear


@register_converter("quartet2")
class QuartetConverter(ModelConverter):
    """Converts the selected bias-free linear layers to Quartet-II NVFP4 layers.

    Args:
        device (`torch.device`): must be a Blackwell GPU of compute capability 12.0 (sm120a).
        four_over_six (`bool`): 4/6 adaptive block scaling.
        required_dim_multiple (`int`): convert only layers whose in/out features are multiples of it.
        disable_backward_quant (`bool`): bf16 backward matmuls.
        filter_fqns, skip_first_last_linear: see [`ModelConverter`].

    Raises:
        `ImportError`: `quartet2` or `qutlass` missing (names the `pip install ... @ git+https://...` commands), or a
            `qutlass` without the NVFP4 matmul kernel.
        [`HardwareError`]: not a Blackwell sm120 GPU.
    """

    backend = "quartet2"

    def __init__(
        self,
        device: torch.device | str = "cuda",
        four_over_six: bool = True,
        required_dim_multiple: int = 128,
        disable_backward_quant: bool = False,
        filter_fqns=("decoder",),
        skip_first_last_linear: bool = False,
    ):
        super().__init__("quartet_ii", filter_fqns, skip_first_last_linear)
        device = torch.device(device)
        what = "precision_backend=quartet2 (Quartet-II NVFP4 kernels, bf16)"
        missing = [name for name in ("qutlass", "quartet2") if not is_available(name)]
        if missing:
            commands = " && ".join(install_command(name) for name in missing)
            raise ImportError(
                f"{what}, on Blackwell sm120a GPUs, needs {' and '.join(missing)}, which are published on GitHub only "
                f"(qutlass first). Install with: {commands}"
            )
        require_capability(device, _QUARTET_CAPABILITY, what)
        import qutlass

        if not hasattr(qutlass, "matmul_nvf4_bf16_tn"):
            raise ImportError(
                f"The installed qutlass ({getattr(qutlass, '__file__', '?')}) lacks the NVFP4 matmul "
                "matmul_nvf4_bf16_tn that Quartet-II calls: reinstall both from GitHub, qutlass first: "
                'pip install --no-build-isolation "qutlass @ git+https://github.com/IST-DASLab/qutlass.git" && '
                'pip install --no-build-isolation "quartet2 @ git+https://github.com/IST-DASLab/Quartet-II.git'
                '#subdirectory=kernels"'
            )
        self.device = device
        self.four_over_six = four_over_six
        self.dim_multiple = required_dim_multiple
        self.disable_backward_quant = disable_backward_quant

    @classmethod
    def from_args(cls, args: PrecisionArguments, device: torch.device) -> QuartetConverter:
        return cls(device=device, **args.converter_options())

    def _skip_reason(self, name: str, module: nn.Linear) -> str | None:
        if module.bias is not None:
            return "has a bias, which Quartet-II's linear ignores"
        return None

    def _swap(self, model: nn.Module, names: list[str]) -> None:
        cls = quartet_linear_class()
        for name in names:
            linear = model.get_submodule(name)
            replace_module(model, name, cls.from_linear(linear, self.four_over_six, self.disable_backward_quant))

"""torchao low-precision training: float8 (`Float8Linear`), MX (`mx_mm`) and FP4 quantization-aware training.

| recipe | module | runs on |
| --- | --- | --- |
| `tensorwise`, `rowwise`, `rowwise_with_gw_hp` | torchao `Float8Linear` (`convert_to_float8_training`, `Float8LinearConfig.from_recipe_name`) | CUDA sm89+; CPU (`torch._scaled_mm` has a CPU kernel) |
| `mxfp8_emulated`, `mxfp4_emulated` | [`MXTrainingLinear`], emulated MX matmuls | any device |
| `mxfp8_cublas`, `mxfp8_cublas_rceil`, `mxfp4_cutlass` | [`MXTrainingLinear`], cuBLAS / CUTLASS block-scaled matmuls | Blackwell sm100+ |
| `mxfp4_qat` | torchao `MXFakeQuantizedLinear` (MXFP4 forward, emulated; high-precision backward) | any device |
| `nvfp4_qat` | torchao `NVFP4FakeQuantizedLinear` (NVFP4 forward; high-precision backward) | Blackwell sm100+ |

torchao >= 0.15 has no dense MX training module any more (`MXLinearConfig` / `MXLinear` are gone; its MXFP8
training moved to `torchao.prototype.moe_training`, whose parameter wrapper drops the linear's bias). The MX recipes
therefore use [`MXTrainingLinear`], an `nn.Linear` whose three matmuls run through torchao's MX autograd function
`mx_mm` with the element dtype, kernel and scale rounding of the recipe (the old `MXLinearConfig.from_recipe_name`
table), and which adds the bias itself.

Every converted module keeps the original `weight`/`bias` `Parameter` objects, except float8 with
`enable_fsdp_float8_all_gather`, whose weights become new `Parameter`s wrapping a float8-aware tensor.

Float8 calls torchao's `convert_to_float8_training` directly with this package's filter; accelerate's
`convert_model_to_fp8_ao` would add nothing but an exact-name filter (and its `filter_first_and_last_linear_layers`
looks for the first/last linear inside the layer it is asked about, so it never filters anything).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..import_utils import require
from .arguments import FLOAT8_RECIPES, MX_RECIPES, QAT_RECIPES, PrecisionArguments, TorchAOArguments
from .base import ModelConverter, register_converter, replace_module, require_capability


__all__ = ["MXTrainingLinear", "TorchAOConverter"]

logger = logging.getLogger("neobert_hf.pretrain.converters")

# MX block size (elements sharing one E8M0 scale); the MX matmuls need K, N and, for the weight gradient, the token
# count M to be multiples of it.
MX_BLOCK = 32


@dataclass(frozen=True)
class MXSpec:
    """How [`MXTrainingLinear`] runs its matmuls (the fields of torchao's former `MXLinearConfig`)."""

    elem_dtype: Any
    kernel_preference: Any
    scale_calculation_mode: Any
    dim0_cast: Any
    dim1_cast: Any

    @classmethod
    def from_recipe(cls, recipe: str) -> MXSpec:
        from torchao.prototype.mx_formats.config import (
            MXFP8Dim0CastKernelChoice,
            MXFP8Dim1CastKernelChoice,
            ScaleCalculationMode,
        )
        from torchao.quantization.quantize_.common.kernel_preference import KernelPreference

        fp8, fp4 = torch.float8_e4m3fn, torch.float4_e2m1fn_x2
        emulated = (KernelPreference.EMULATED, MXFP8Dim0CastKernelChoice.TORCH, MXFP8Dim1CastKernelChoice.TORCH)
        # torchao's own dense MXFP8 path casts rows with Triton and columns with its CUDA kernel.
        fast_fp8 = (KernelPreference.AUTO, MXFP8Dim0CastKernelChoice.TRITON, MXFP8Dim1CastKernelChoice.CUDA)
        # Triton/CUDA cast kernels are MXFP8-only: FP4 is cast with PyTorch ops, then multiplied by CUTLASS.
        fast_fp4 = (KernelPreference.AUTO, MXFP8Dim0CastKernelChoice.TORCH, MXFP8Dim1CastKernelChoice.TORCH)
        table = {
            "mxfp8_emulated": (fp8, emulated, ScaleCalculationMode.FLOOR),
            "mxfp8_cublas": (fp8, fast_fp8, ScaleCalculationMode.FLOOR),
            "mxfp8_cublas_rceil": (fp8, fast_fp8, ScaleCalculationMode.RCEIL),
            "mxfp4_emulated": (fp4, emulated, ScaleCalculationMode.FLOOR),
            "mxfp4_cutlass": (fp4, fast_fp4, ScaleCalculationMode.FLOOR),
        }
        elem, (preference, dim0, dim1), mode = table[recipe]
        return cls(elem, preference, mode, dim0, dim1)


class MXTrainingLinear(nn.Linear):
    """`nn.Linear` training in an MX format: input, weight and output gradient are cast to MX blocks of 32 for the
    forward and both backward matmuls (torchao's `mx_mm`); the bias is added in high precision.

    The `weight` and `bias` are the `Parameter`s of the linear layer it replaces. Training needs the number of
    tokens of every forward (`batch * seq_len`, or the packed length) to be a multiple of 32: the weight gradient
    is blocked along the tokens.
    """

    spec: MXSpec

    @classmethod
    def from_linear(cls, linear: nn.Linear, spec: MXSpec) -> MXTrainingLinear:
        with torch.device("meta"):
            new = cls(linear.in_features, linear.out_features, bias=False)
        new.weight = linear.weight
        new.bias = linear.bias
        new.spec = spec
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from torchao.prototype.moe_training.mxfp8_linear import mx_mm

        weight = self.weight
        if torch.is_autocast_enabled(x.device.type):
            dtype = torch.get_autocast_dtype(x.device.type)
            x, weight = x.to(dtype), weight.to(dtype)
        tokens = x.numel() // x.shape[-1]
        if tokens % MX_BLOCK and torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
            raise ValueError(
                f"MX training needs the number of tokens per forward to be a multiple of {MX_BLOCK} (the weight "
                f"gradient is scaled in blocks of {MX_BLOCK} tokens); got {tokens} ({tuple(x.shape[:-1])}). Use "
                f"packing with a token budget that is a multiple of {MX_BLOCK}, or pad_to_multiple_of so that "
                f"batch * seq_len is one."
            )
        spec = self.spec
        out = mx_mm.apply(
            x,
            weight,
            spec.elem_dtype,
            spec.elem_dtype,
            spec.elem_dtype,
            MX_BLOCK,
            spec.kernel_preference,
            spec.dim0_cast,
            spec.dim1_cast,
            spec.scale_calculation_mode,
            False,  # wgrad_with_hp: the weight gradient is an MX matmul too
        )
        if self.bias is not None:
            out = out + self.bias.to(out.dtype)
        return out

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, elem_dtype={self.spec.elem_dtype}, kernels={self.spec.kernel_preference.name}"


@register_converter("torchao")
class TorchAOConverter(ModelConverter):
    """Converts the selected linear layers with a torchao recipe (see the module docstring).

    Args:
        recipe (`str`): one of `TORCHAO_RECIPES`.
        device (`torch.device`): where the run trains (checked against the recipe's hardware needs).
        filter_fqns, skip_first_last_linear: see [`ModelConverter`].
        auto_filter_small_kn (`bool`): float8 only, torchao's size thresholds.
        enable_fsdp_float8_all_gather (`bool`): tensorwise only, float8 all-gather under FSDP2.
        precompute_float8_dynamic_scale_for_fsdp (`bool`): run torchao's scale precompute after each optimizer step.

    Raises:
        `ImportError`: torchao is not installed (names `pip install "neobert-hf[torchao]"`).
        [`HardwareError`]: the device cannot run the recipe (names the GPU generation it needs).
    """

    backend = "torchao"

    def __init__(
        self,
        recipe: str,
        device: torch.device | str = "cpu",
        filter_fqns=("decoder",),
        skip_first_last_linear: bool = False,
        auto_filter_small_kn: bool = False,
        enable_fsdp_float8_all_gather: bool = False,
        precompute_float8_dynamic_scale_for_fsdp: bool = False,
    ):
        super().__init__(recipe, filter_fqns, skip_first_last_linear)
        # The same combinations PrecisionArguments rejects, for converters built directly.
        TorchAOArguments(
            torchao_recipe=recipe,
            auto_filter_small_kn=auto_filter_small_kn,
            enable_fsdp_float8_all_gather=enable_fsdp_float8_all_gather,
            precompute_float8_dynamic_scale_for_fsdp=precompute_float8_dynamic_scale_for_fsdp,
        )
        device = torch.device(device)
        require("torchao", f"torchao_recipe={recipe}")
        if recipe in FLOAT8_RECIPES:
            require_capability(device, (8, 9), f"torchao float8 ({recipe})", cpu_ok=True)
        elif recipe in ("mxfp8_cublas", "mxfp8_cublas_rceil", "mxfp4_cutlass", "nvfp4_qat"):
            require_capability(device, (10, 0), f"torchao_recipe={recipe}")
        self.device = device
        self.auto_filter_small_kn = auto_filter_small_kn
        self.enable_fsdp_float8_all_gather = enable_fsdp_float8_all_gather
        self.precompute_float8_dynamic_scale_for_fsdp = precompute_float8_dynamic_scale_for_fsdp
        self.replaces_parameters = enable_fsdp_float8_all_gather
        self.dim_multiple = MX_BLOCK if recipe in MX_RECIPES or recipe == "mxfp4_qat" else 16
        self._mx_spec = None
        if recipe in MX_RECIPES:
            try:
                from torchao.prototype.moe_training.mxfp8_linear import mx_mm  # noqa: F401
            except ImportError as error:
                from ..import_utils import package_version

                raise ImportError(
                    f"torchao_recipe={recipe} runs torchao's MX autograd function "
                    "torchao.prototype.moe_training.mxfp8_linear.mx_mm, which this torchao "
                    f"({package_version('torchao')}) does not provide (tested with torchao 0.18): "
                    'pip install -U "neobert-hf[torchao]"'
                ) from error
            self._mx_spec = MXSpec.from_recipe(recipe)
        self._small_kn_filter = None
        if auto_filter_small_kn:
            from torchao.float8 import _auto_filter_for_recipe

            # torchao has no thresholds for rowwise_with_gw_hp; its gemms have the rowwise shapes.
            self._small_kn_filter = _auto_filter_for_recipe(
                "tensorwise" if recipe == "tensorwise" else "rowwise", filter_fqns=[]
            )

    @classmethod
    def from_args(cls, args: PrecisionArguments, device: torch.device) -> TorchAOConverter:
        return cls(device=device, **args.converter_options())

    def _skip_reason(self, name: str, module: nn.Linear) -> str | None:
        if self._small_kn_filter is not None and not self._small_kn_filter(module, name):
            n, k = module.weight.shape
            return f"auto_filter_small_kn (N={n}, K={k} below torchao's float8 thresholds for {self.recipe})"
        if self.recipe in QAT_RECIPES and module.bias is not None:
            # torchao's fake-quantized linears return no bias gradient: the bias would silently stop training.
            return f"has a bias, which torchao's {self.recipe} linear does not train (no bias gradient)"
        return None

    def _swap(self, model: nn.Module, names: list[str]) -> None:
        if self.recipe in FLOAT8_RECIPES:
            from torchao.float8 import Float8LinearConfig, convert_to_float8_training

            config = Float8LinearConfig.from_recipe_name(self.recipe)
            if self.enable_fsdp_float8_all_gather:
                config = dataclasses.replace(config, enable_fsdp_float8_all_gather=True)
            wanted = set(names)
            convert_to_float8_training(model, module_filter_fn=lambda module, fqn: fqn in wanted, config=config)
        elif self.recipe in MX_RECIPES:
            for name in names:
                replace_module(model, name, MXTrainingLinear.from_linear(model.get_submodule(name), self._mx_spec))
        elif self.recipe == "mxfp4_qat":
            from torchao.prototype.qat import MXFakeQuantizeConfig, MXFakeQuantizedLinear

            def config():  # emulated kernels: runs on any device
                return MXFakeQuantizeConfig(dtype=torch.float4_e2m1fn_x2)

            for name in names:
                new = MXFakeQuantizedLinear.from_linear(model.get_submodule(name), config(), config())
                replace_module(model, name, new)
        else:  # nvfp4_qat
            from torchao.prototype.qat import NVFP4FakeQuantizeConfig, NVFP4FakeQuantizedLinear

            for name in names:
                new = NVFP4FakeQuantizedLinear.from_linear(
                    model.get_submodule(name), NVFP4FakeQuantizeConfig(), NVFP4FakeQuantizeConfig()
                )
                replace_module(model, name, new)

    def post_optimizer_step(self, model: nn.Module) -> None:
        if self.precompute_float8_dynamic_scale_for_fsdp:
            from torchao.float8 import precompute_float8_dynamic_scale_for_fsdp

            precompute_float8_dynamic_scale_for_fsdp(model)

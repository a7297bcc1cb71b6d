"""Transformer Engine low-precision training: `te.Linear` layers under TE autocast with an FP8 / MXFP8 / NVFP4 recipe.

| `te_recipe` | Transformer Engine recipe | GPU |
| --- | --- | --- |
| `fp8_delayed` | `DelayedScaling(fp8_format=...)` | sm89+ (Ada, Hopper) |
| `fp8_current` | `Float8CurrentScaling(fp8_format=...)` | sm89+ (Ada, Hopper) |
| `mxfp8` | `MXFP8BlockScaling(fp8_format=...)` | sm100+ (Blackwell) |
| `nvfp4` | `NVFP4BlockScaling(disable_rht=..., disable_stochastic_rounding=..., disable_2d_quantization=...)` | sm100+ (Blackwell) |

The converter copies each selected `nn.Linear` into a `te.Linear` of the same shape, dtype and device (new
`Parameter` objects, so it runs before the optimizer is created), and wraps the model's forward in TE's autocast
with the recipe while the model trains (evaluation runs the TE layers in high precision, as accelerate does).
Checkpoints hold only `weight`/`bias`: TE's `_extra_state` (FP8 scaling metadata) is not saved, so resuming an
`fp8_delayed` run restarts its amax history.

accelerate's `convert_model` is not used: at the first linear layer whose shape is not a multiple of 16 it `return`s
from the loop over that layer's siblings, silently leaving the ones after it unconverted, and it has no filters.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import nn

from ..import_utils import require
from .arguments import PrecisionArguments, TransformerEngineArguments
from .base import HardwareError, ModelConverter, register_converter, replace_module, require_capability


__all__ = ["TransformerEngineConverter", "build_te_recipe"]

# recipe -> (minimum compute capability, TE availability probe)
_HARDWARE = {
    "fp8_delayed": ((8, 9), "is_fp8_available"),
    "fp8_current": ((8, 9), "is_fp8_available"),
    "mxfp8": ((10, 0), "is_mxfp8_available"),
    "nvfp4": ((10, 0), "is_nvfp4_available"),
}


def build_te_recipe(
    recipe_module: Any,
    recipe: str,
    fp8_format: str | None = None,
    disable_2d_quantization: bool = False,
    disable_rht: bool = False,
    disable_stochastic_rounding: bool = False,
):
    """The Transformer Engine recipe object for `recipe`.

    Args:
        recipe_module: `transformer_engine.common.recipe`.
        recipe (`str`): `fp8_delayed`, `fp8_current`, `mxfp8` or `nvfp4`.
        fp8_format (`str`, *optional*): `"E4M3"` or `"HYBRID"` for the FP8 recipes; `None` keeps TE's default.
        disable_2d_quantization, disable_rht, disable_stochastic_rounding (`bool`): NVFP4 options.

    Returns:
        The recipe instance (e.g. `recipe_module.DelayedScaling(fp8_format=Format.HYBRID)`).
    """
    TransformerEngineArguments(  # the option/recipe combinations, checked once
        te_recipe=recipe,
        fp8_format=fp8_format,
        disable_2d_quantization=disable_2d_quantization,
        disable_rht=disable_rht,
        disable_stochastic_rounding=disable_stochastic_rounding,
    )
    kwargs = {} if fp8_format is None else {"fp8_format": getattr(recipe_module.Format, fp8_format)}
    if recipe == "fp8_delayed":
        return recipe_module.DelayedScaling(**kwargs)
    if recipe == "fp8_current":
        return recipe_module.Float8CurrentScaling(**kwargs)
    if recipe == "mxfp8":
        return recipe_module.MXFP8BlockScaling(**kwargs)
    return recipe_module.NVFP4BlockScaling(
        disable_rht=disable_rht,
        disable_stochastic_rounding=disable_stochastic_rounding,
        disable_2d_quantization=disable_2d_quantization,
    )


def _check_te_support(te: Any, recipe: str) -> None:
    """TE's own verdict on this GPU/driver/CUDA for the recipe (`is_*_available`, or `fp8.check_*_support` in TE
    1.x)."""
    probe = _HARDWARE[recipe][1]
    if hasattr(te, probe):
        supported, reason = getattr(te, probe)(return_reason=True)
    else:
        legacy = {"is_fp8_available": "check_fp8_support", "is_mxfp8_available": "check_mxfp8_support"}.get(probe)
        if legacy is None or not hasattr(getattr(te, "fp8", None), legacy):
            raise ImportError(
                f"te_recipe={recipe} needs a Transformer Engine version that provides {probe}; upgrade it: "
                'pip install -U "neobert-hf[transformer-engine]"'
            )
        supported, reason = getattr(te.fp8, legacy)()
    if not supported:
        raise HardwareError(f"Transformer Engine cannot run te_recipe={recipe} on this machine: {reason}")


@register_converter("transformer_engine")
class TransformerEngineConverter(ModelConverter):
    """Converts the selected linear layers to `te.Linear` and runs the forward under TE autocast with the recipe.

    Args:
        recipe (`str`): one of `TE_RECIPES`.
        device (`torch.device`): must be a CUDA GPU that can run the recipe.
        fp8_format, disable_2d_quantization, disable_rht, disable_stochastic_rounding: see [`build_te_recipe`].
        filter_fqns, skip_first_last_linear: see [`ModelConverter`].

    Raises:
        `ImportError`: Transformer Engine is not installed (names `pip install "neobert-hf[transformer-engine]"` and
            the GPU it needs).
        [`HardwareError`]: no suitable GPU (names the generation), or TE reports the recipe unsupported here.
    """

    backend = "transformer_engine"
    replaces_parameters = True

    def __init__(
        self,
        recipe: str,
        device: torch.device | str = "cuda",
        fp8_format: str | None = None,
        disable_2d_quantization: bool = False,
        disable_rht: bool = False,
        disable_stochastic_rounding: bool = False,
        filter_fqns=("decoder",),
        skip_first_last_linear: bool = False,
    ):
        super().__init__(recipe, filter_fqns, skip_first_last_linear)
        options = dict(
            fp8_format=fp8_format,
            disable_2d_quantization=disable_2d_quantization,
            disable_rht=disable_rht,
            disable_stochastic_rounding=disable_stochastic_rounding,
        )
        TransformerEngineArguments(te_recipe=recipe, **options)
        minimum, _ = _HARDWARE[recipe]
        what = f"precision_backend=transformer_engine (te_recipe={recipe})"
        generation = "Ada/Hopper sm89+" if minimum == (8, 9) else "Blackwell sm100+"
        require("transformer_engine", f"{what}, which runs on NVIDIA GPUs ({generation}),")
        device = torch.device(device)
        require_capability(device, minimum, what)
        import transformer_engine.pytorch as te
        from transformer_engine.common import recipe as te_recipe

        _check_te_support(te, recipe)
        self.te = te
        self.te_recipe = build_te_recipe(te_recipe, recipe, **options)
        self.device = device
        # FP8 GEMMs need dimensions in multiples of 16; the MXFP8/NVFP4 block layouts in multiples of 32.
        self.dim_multiple = 16 if recipe.startswith("fp8") else 32

    @classmethod
    def from_args(cls, args: PrecisionArguments, device: torch.device) -> TransformerEngineConverter:
        return cls(device=device, **args.converter_options())

    def _swap(self, model: nn.Module, names: list[str]) -> None:
        for name in names:
            linear = model.get_submodule(name)
            new = self.te.Linear(
                linear.in_features,
                linear.out_features,
                bias=linear.bias is not None,
                params_dtype=linear.weight.dtype,
                device=linear.weight.device,
            )
            with torch.no_grad():
                new.weight.copy_(linear.weight)
                if linear.bias is not None:
                    new.bias.copy_(linear.bias)
            new.weight.requires_grad_(linear.weight.requires_grad)
            replace_module(model, name, new)

    def autocast(self, enabled: bool = True):
        """TE's autocast context with this converter's recipe (`te.autocast` in TE >= 2.8, `te.fp8_autocast` before)."""
        if hasattr(self.te, "autocast"):
            return self.te.autocast(enabled=enabled, recipe=self.te_recipe)
        return self.te.fp8_autocast(enabled=enabled, fp8_recipe=self.te_recipe)

    def wrap_forward(self, model: nn.Module) -> None:
        """Run `model.forward` under TE autocast while the model trains. The wrapper keeps the original in
        `__wrapped__` (accelerate's convention, so `unwrap_model(keep_fp32_wrapper=False)` removes it)."""
        original = model.forward

        @functools.wraps(original)
        def forward(*args, **kwargs):
            with self.autocast(enabled=model.training):
                return original(*args, **kwargs)

        model.forward = forward


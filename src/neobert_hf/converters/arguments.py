"""`PrecisionArguments`: which low-precision backend converts the model's linear layers, and which kernels run.

One selector, `precision_backend`, names the backend, so two backends can never be enabled at once; every option
belongs to one backend (or to all of them) and setting an option of a backend that is not selected is an error, as
is an option that does not apply to the chosen recipe. Checks that need the training arguments (DeepSpeed,
`torch_compile`, FSDP, bf16) live in [`check_precision_training_args`]; checks that need the library or the
hardware run when the converter is built (see [`~neobert_hf.converters.build_converter`]).

The options are grouped per converter: [`ConversionArguments`] (shared by every backend), [`TorchAOArguments`],
[`TransformerEngineArguments`], [`QuartetArguments`] and [`KernelArguments`] each own their fields, the checks of
their option combinations and the keyword arguments of their converter. [`PrecisionArguments`] inherits all of them
(plus the `precision_backend` selector), because `HfArgumentParser` turns one flat dataclass into flags: every field
stays a flat recipe key of `neobert-hf pretrain`:

```yaml
torch_compile: true
precision_backend: torchao
torchao_recipe: rowwise
filter_fqns: [decoder]
skip_first_last_linear: true
```
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal


__all__ = [
    "FLOAT8_RECIPES",
    "MX_RECIPES",
    "PRECISION_BACKENDS",
    "ConversionArguments",
    "KernelArguments",
    "PrecisionArguments",
    "QAT_RECIPES",
    "QuartetArguments",
    "TE_RECIPES",
    "TORCHAO_RECIPES",
    "TorchAOArguments",
    "TransformerEngineArguments",
    "check_precision_data_args",
    "check_precision_training_args",
    "fsdp_version",
]

PrecisionBackend = Literal["none", "torchao", "transformer_engine", "quartet2"]
PRECISION_BACKENDS = ("none", "torchao", "transformer_engine", "quartet2")

TorchAORecipe = Literal[
    "tensorwise",
    "rowwise",
    "rowwise_with_gw_hp",
    "mxfp8_emulated",
    "mxfp8_cublas",
    "mxfp8_cublas_rceil",
    "mxfp4_cutlass",
    "mxfp4_emulated",
    "nvfp4_qat",
    "mxfp4_qat",
]
FLOAT8_RECIPES = ("tensorwise", "rowwise", "rowwise_with_gw_hp")
MX_RECIPES = ("mxfp8_emulated", "mxfp8_cublas", "mxfp8_cublas_rceil", "mxfp4_cutlass", "mxfp4_emulated")
QAT_RECIPES = ("nvfp4_qat", "mxfp4_qat")
TORCHAO_RECIPES = (*FLOAT8_RECIPES, *MX_RECIPES, *QAT_RECIPES)

TERecipe = Literal["fp8_delayed", "fp8_current", "mxfp8", "nvfp4"]
TE_RECIPES = ("fp8_delayed", "fp8_current", "mxfp8", "nvfp4")

KernelBackend = Literal["auto", "liger", "torch"]

def _changed(args: Any, name: str) -> bool:
    spec = next(f for f in dataclasses.fields(args) if f.name == name)
    default: Any = spec.default_factory() if spec.default_factory is not dataclasses.MISSING else spec.default
    return getattr(args, name) != default


@dataclass
class ConversionArguments:
    """Options shared by every conversion backend: which linear layers stay in high precision, and whether a
    converted model must be compiled."""

    filter_fqns: list[str] = field(
        default_factory=lambda: ["decoder"],
        metadata={
            "help": "Linear layers whose fully qualified name contains any of these strings stay in high precision. "
            "The default keeps the MLM decoder (vocabulary projection) unconverted."
        },
    )
    skip_first_last_linear: bool = field(
        default=False,
        metadata={
            "help": "Also keep the first and the last nn.Linear of the model, in module order, in high precision (for "
            "NeoBERTForMaskedLM: the first block's qkv and the decoder), for stability."
        },
    )
    require_compile: bool = field(
        default=True,
        metadata={
            "help": "Refuse to train a converted model without torch_compile: the low-precision casts are only fast "
            "(and, for some kernels, only stable) when compiled. Set false to debug eagerly."
        },
    )

    def conversion_options(self) -> dict[str, Any]:
        """Keyword arguments that every converter takes."""
        return {"filter_fqns": list(self.filter_fqns), "skip_first_last_linear": self.skip_first_last_linear}


@dataclass
class TorchAOArguments:
    """torchao: float8 (`tensorwise`, `rowwise`, `rowwise_with_gw_hp`), MX (`mxfp8_*`, `mxfp4_*`) and FP4 QAT recipes,
    with the float8-only options. Built alone (as a converter does), it checks its option combinations."""

    backend: ClassVar[str] = "torchao"

    torchao_recipe: TorchAORecipe | None = field(
        default=None,
        metadata={
            "help": "torchao recipe. float8: 'tensorwise', 'rowwise', 'rowwise_with_gw_hp' (CUDA sm89+, or CPU). MX: "
            "'mxfp8_emulated', 'mxfp4_emulated' (any device), 'mxfp8_cublas', 'mxfp8_cublas_rceil', 'mxfp4_cutlass' "
            "(Blackwell sm100+). FP4 quantization-aware training: 'mxfp4_qat' (emulated, any device), 'nvfp4_qat' "
            "(Blackwell sm100+). Required with precision_backend=torchao."
        },
    )
    auto_filter_small_kn: bool = field(
        default=False,
        metadata={
            "help": "Float8 recipes only: also keep in high precision the linears whose K/N are too small for float8 "
            "to pay off, with torchao's H100 thresholds (rowwise: N > 2048 and K > 1024 required). At hidden size "
            "768 this can filter out every layer."
        },
    )
    enable_fsdp_float8_all_gather: bool = field(
        default=False,
        metadata={
            "help": "torchao_recipe=tensorwise only: wrap the float8 weights so FSDP2 all-gathers them in float8 "
            "(half the communication of bf16). This replaces the weight Parameters, which conversion before the "
            "optimizer takes into account."
        },
    )
    precompute_float8_dynamic_scale_for_fsdp: bool = field(
        default=False,
        metadata={
            "help": "With FSDP2 and enable_fsdp_float8_all_gather: after every optimizer step compute the float8 "
            "scales of all weights in one fused all-reduce instead of one per layer (torchao's "
            "precompute_float8_dynamic_scale_for_fsdp)."
        },
    )

    def __post_init__(self):
        self._check_torchao_options()

    def _check_torchao_options(self) -> None:
        recipe = self.torchao_recipe
        # float8 options
        if self.auto_filter_small_kn and recipe not in FLOAT8_RECIPES:
            raise ValueError(
                f"auto_filter_small_kn uses torchao's float8 size thresholds and applies to torchao_recipe "
                f"{FLOAT8_RECIPES}, not {recipe!r}."
            )
        if self.enable_fsdp_float8_all_gather and recipe != "tensorwise":
            raise ValueError(
                f"enable_fsdp_float8_all_gather needs torchao_recipe=tensorwise (float8 all-gather uses one scale per "
                f"tensor), got {recipe!r}."
            )
        if self.precompute_float8_dynamic_scale_for_fsdp and not self.enable_fsdp_float8_all_gather:
            raise ValueError(
                "precompute_float8_dynamic_scale_for_fsdp precomputes the scales of float8 all-gathered weights: it "
                "needs enable_fsdp_float8_all_gather=true (and torchao_recipe=tensorwise, FSDP2)."
            )

    def torchao_options(self) -> dict[str, Any]:
        """Keyword arguments of [`~neobert_hf.converters.torchao.TorchAOConverter`] besides the shared ones."""
        return {
            "recipe": self.torchao_recipe,
            "auto_filter_small_kn": self.auto_filter_small_kn,
            "enable_fsdp_float8_all_gather": self.enable_fsdp_float8_all_gather,
            "precompute_float8_dynamic_scale_for_fsdp": self.precompute_float8_dynamic_scale_for_fsdp,
        }


@dataclass
class TransformerEngineArguments:
    """Transformer Engine: FP8 (delayed or current scaling), MXFP8 and NVFP4 recipes, with the FP8 format and the NVFP4
    options. Built alone (as a converter does), it checks its option combinations."""

    backend: ClassVar[str] = "transformer_engine"

    te_recipe: TERecipe | None = field(
        default=None,
        metadata={
            "help": "Transformer Engine recipe: 'fp8_delayed' (DelayedScaling), 'fp8_current' (Float8CurrentScaling), "
            "both on sm89+ (Ada, Hopper); 'mxfp8' (MXFP8BlockScaling) or 'nvfp4' (NVFP4BlockScaling) on Blackwell "
            "sm100+. Required with precision_backend=transformer_engine."
        },
    )
    fp8_format: Literal["E4M3", "HYBRID"] | None = field(
        default=None,
        metadata={
            "help": "FP8 format of te_recipe fp8_delayed / fp8_current / mxfp8: 'HYBRID' (E4M3 forward, E5M2 "
            "gradients) or 'E4M3' everywhere. None keeps Transformer Engine's default for the recipe (HYBRID for the "
            "fp8 recipes, E4M3 for mxfp8)."
        },
    )
    disable_2d_quantization: bool = field(
        default=False,
        metadata={"help": "te_recipe=nvfp4 only: quantize weights with 1x16 blocks instead of 16x16 tiles."},
    )
    disable_rht: bool = field(
        default=False,
        metadata={"help": "te_recipe=nvfp4 only: no random Hadamard transform before quantizing inputs/gradients."},
    )
    disable_stochastic_rounding: bool = field(
        default=False,
        metadata={"help": "te_recipe=nvfp4 only: round gradients to nearest instead of stochastically."},
    )

    def __post_init__(self):
        self._check_transformer_engine_options()

    def _check_transformer_engine_options(self) -> None:
        te = self.te_recipe
        nvfp4_only = [
            n for n in ("disable_2d_quantization", "disable_rht", "disable_stochastic_rounding") if _changed(self, n)
        ]
        if nvfp4_only and te != "nvfp4":
            raise ValueError(f"{', '.join(nvfp4_only)} apply to te_recipe=nvfp4 only, got te_recipe={te!r}.")
        if self.fp8_format is not None and te == "nvfp4":
            raise ValueError("fp8_format does not apply to te_recipe=nvfp4 (its format is fixed: E2M1 with E4M3 scales).")

    def transformer_engine_options(self) -> dict[str, Any]:
        """Keyword arguments of [`~neobert_hf.converters.transformer_engine.TransformerEngineConverter`] besides the
        shared ones."""
        return {
            "recipe": self.te_recipe,
            "fp8_format": self.fp8_format,
            "disable_2d_quantization": self.disable_2d_quantization,
            "disable_rht": self.disable_rht,
            "disable_stochastic_rounding": self.disable_stochastic_rounding,
        }


@dataclass
class QuartetArguments:
    """Quartet-II NVFP4 linears (Blackwell sm120, bf16)."""

    backend: ClassVar[str] = "quartet2"

    quartet_four_over_six: bool = field(
        default=True,
        metadata={"help": "Quartet-II: use the 4/6 adaptive NVFP4 block scaling (FOUR_SIX mode) instead of RNE."},
    )
    quartet_required_dim_multiple: int = field(
        default=128,
        metadata={
            "help": "Quartet-II: convert only linears whose in/out features are multiples of this (its kernels work "
            "on 128-wide tiles)."
        },
    )
    quartet_disable_backward_quant: bool = field(
        default=False,
        metadata={"help": "Quartet-II: run the backward matmuls in bf16 from the dequantized FP4 operands."},
    )

    def __post_init__(self):
        self._check_quartet_options()

    def _check_quartet_options(self) -> None:
        if self.quartet_required_dim_multiple < 1:
            raise ValueError(f"quartet_required_dim_multiple must be >= 1, got {self.quartet_required_dim_multiple}.")

    def quartet_options(self) -> dict[str, Any]:
        """Keyword arguments of [`~neobert_hf.converters.quartet.QuartetConverter`] besides the shared ones."""
        return {
            "four_over_six": self.quartet_four_over_six,
            "required_dim_multiple": self.quartet_required_dim_multiple,
            "disable_backward_quant": self.quartet_disable_backward_quant,
        }


@dataclass
class KernelArguments:
    """The fused-kernel backend (independent of the low-precision backend)."""

    kernel_backend: KernelBackend = field(
        default="auto",
        metadata={
            "help": "Fused kernels for RMSNorm, SwiGLU and the masked-token cross-entropy. 'torch': the model's own "
            "PyTorch code (exact; the only choice on CPU). 'liger': Liger kernels (CUDA; pip install "
            "\"neobert-hf[liger]\"), including a fused linear cross-entropy over the masked rows that never builds "
            "their logits. 'auto': liger on CUDA when installed, torch otherwise; the choice is logged."
        },
    )

    def _check_kernel_options(self) -> None:
        if self.kernel_backend not in ("auto", "liger", "torch"):
            raise ValueError(f"kernel_backend must be 'auto', 'liger' or 'torch', got {self.kernel_backend!r}.")


_BACKEND_GROUPS: tuple[type, ...] = (TorchAOArguments, TransformerEngineArguments, QuartetArguments)
# Options that belong to one backend: setting one while another backend is selected is an error.
_BACKEND_OF = {f.name: group.backend for group in _BACKEND_GROUPS for f in dataclasses.fields(group)}


@dataclass
class _BackendSelection:
    precision_backend: PrecisionBackend = field(
        default="none",
        metadata={
            "help": "Which library converts the linear layers for low-precision training: 'none' (keep nn.Linear), "
            "'torchao' (float8 / MX / FP4 QAT, recipe in torchao_recipe), 'transformer_engine' (te.Linear under TE "
            "autocast, recipe in te_recipe; NVIDIA GPUs only) or 'quartet2' (Quartet-II NVFP4 linears; Blackwell "
            "sm120 and bf16 only). Exactly one backend can be selected."
        },
    )


@dataclass
class PrecisionArguments(
    KernelArguments,
    QuartetArguments,
    TransformerEngineArguments,
    TorchAOArguments,
    ConversionArguments,
    _BackendSelection,  # last base, so precision_backend comes first in --help
):
    r"""Low-precision training (torchao, Transformer Engine, Quartet-II) and the kernel backend of `neobert-hf pretrain`.

    The converter named by `precision_backend` replaces the selected `nn.Linear` layers of the model at the end of
    `Trainer.__init__` (see [`~neobert_hf.converters.PrecisionCallback`]), before activation checkpointing,
    `torch.compile`, distributed wrapping and the optimizer. Checkpoints and exports always hold plain weights
    that load into an unconverted model.

    The fields come from the per-converter groups it inherits ([`ConversionArguments`], [`TorchAOArguments`],
    [`TransformerEngineArguments`], [`QuartetArguments`], [`KernelArguments`]): inheritance rather than nested
    dataclasses because `HfArgumentParser` makes flags of one flat dataclass, so every option stays a flat flag and
    recipe key. Each group checks its own options; this class adds the checks across groups (one backend selected,
    its recipe given, no option of another backend set).

    Example:

    ```python
    >>> from neobert_hf.converters import PrecisionArguments
    >>> PrecisionArguments(precision_backend="torchao", torchao_recipe="rowwise").filter_fqns
    ['decoder']
    ```
    """

    def __post_init__(self):
        if isinstance(self.filter_fqns, str):
            self.filter_fqns = [self.filter_fqns]
        self.filter_fqns = [str(name) for name in (self.filter_fqns or [])]
        if self.precision_backend not in PRECISION_BACKENDS:
            raise ValueError(f"precision_backend must be one of {PRECISION_BACKENDS}, got {self.precision_backend!r}.")
        self._check_kernel_options()
        self._check_backend_options()
        self._check_torchao_options()
        self._check_transformer_engine_options()
        self._check_quartet_options()

    # -- helpers ------------------------------------------------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        """Whether a low-precision backend is selected."""
        return self.precision_backend != "none"

    @property
    def recipe(self) -> str | None:
        """The recipe of the selected backend (`"quartet_ii"` for quartet2, `None` without a backend)."""
        return {
            "torchao": self.torchao_recipe,
            "transformer_engine": self.te_recipe,
            "quartet2": "quartet_ii",
        }.get(self.precision_backend)

    def converter_options(self) -> dict[str, Any]:
        """Keyword arguments of the selected backend's converter (shared options included); `{}` without one."""
        options = {
            "torchao": self.torchao_options,
            "transformer_engine": self.transformer_engine_options,
            "quartet2": self.quartet_options,
        }.get(self.precision_backend)
        return {**options(), **self.conversion_options()} if options is not None else {}

    def _changed(self, name: str) -> bool:
        return _changed(self, name)

    def _check_backend_options(self) -> None:
        backend = self.precision_backend
        foreign = [name for name, owner in _BACKEND_OF.items() if owner != backend and self._changed(name)]
        if foreign:
            detail = ", ".join(f"{name} (precision_backend={_BACKEND_OF[name]})" for name in foreign)
            raise ValueError(
                f"precision_backend={backend} but options of another backend are set: {detail}. Only one "
                "low-precision backend can be enabled per run: select it with precision_backend and remove the options "
                "of the others."
            )
        if backend == "none":
            shared = [f.name for f in dataclasses.fields(ConversionArguments) if self._changed(f.name)]
            if shared:
                raise ValueError(
                    f"{', '.join(shared)} only apply to a low-precision conversion, but precision_backend=none. Set "
                    "precision_backend (torchao, transformer_engine or quartet2) or remove them."
                )
        if backend == "torchao" and self.torchao_recipe is None:
            raise ValueError(f"precision_backend=torchao needs torchao_recipe, one of {TORCHAO_RECIPES}.")
        if backend == "transformer_engine" and self.te_recipe is None:
            raise ValueError(f"precision_backend=transformer_engine needs te_recipe, one of {TE_RECIPES}.")


def fsdp_version(training_args: Any) -> int | None:
    """The FSDP version a `TrainingArguments` asks for (`None` without FSDP); transformers defaults to 2."""
    if not getattr(training_args, "fsdp", None):
        return None
    config = getattr(training_args, "fsdp_config", None) or {}
    return int(config.get("version", 2))


def check_precision_training_args(precision: PrecisionArguments, training_args: Any) -> None:
    """Check the combinations of [`PrecisionArguments`] and the training arguments; writes and imports nothing.

    Raises:
        `ValueError`: conversion with DeepSpeed; `require_compile` without `torch_compile`; the FSDP scale
            precompute without FSDP2; an MX recipe compiled on the CPU (inductor cannot generate code for E8M0
            scales); Quartet-II without bf16; `kernel_backend=liger` with an option that needs the logits it never
            builds.
    """
    if precision.enabled:
        backend, recipe = precision.precision_backend, precision.recipe
        if getattr(training_args, "deepspeed", None):
            raise ValueError(
                f"precision_backend={backend} cannot run with DeepSpeed: DeepSpeed builds its own optimizer and "
                "parameter partitions around nn.Linear weights, which the converted modules replace. Use DDP or FSDP2 "
                "(accelerate), or precision_backend=none."
            )
        if precision.require_compile and not getattr(training_args, "torch_compile", False):
            raise ValueError(
                f"precision_backend={backend} (recipe {recipe}) has require_compile=true but torch_compile is false: "
                "the low-precision casts are only fast compiled. Set torch_compile true, or require_compile false to "
                "run eagerly (e.g. to debug)."
            )
        if precision.precompute_float8_dynamic_scale_for_fsdp and fsdp_version(training_args) != 2:
            raise ValueError(
                "precompute_float8_dynamic_scale_for_fsdp only has an effect with FSDP2 (fsdp set, fsdp_config "
                f"version 2); this run uses {'no FSDP' if fsdp_version(training_args) is None else 'FSDP1'}."
            )
        # The emulated MX recipes (the others need a Blackwell GPU and fail on the CPU with that reason).
        mx_scaled = precision.torchao_recipe in ("mxfp8_emulated", "mxfp4_emulated", "mxfp4_qat")
        if mx_scaled and getattr(training_args, "torch_compile", False) and _trains_on_cpu(training_args):
            if not _inductor_cpu_has_e8m0():
                raise ValueError(
                    f"torchao_recipe={recipe} with torch_compile on the CPU: inductor's C++ backend cannot generate code "
                    "for the MX scales (torch.float8_e8m0fnu is missing from torch._inductor.codegen.cpp.DTYPE_TO_CPP "
                    "in this torch). Train eagerly on the CPU (torch_compile false, require_compile false); compile "
                    "on a GPU."
                )
        if backend == "quartet2" and not getattr(training_args, "bf16", False):
            raise ValueError("precision_backend=quartet2 needs bf16 mixed precision (its kernels take bf16): set bf16 true.")
    if precision.kernel_backend == "liger":
        if getattr(training_args, "log_train_accuracy", False):
            raise ValueError(
                "kernel_backend=liger computes the training loss with a fused linear cross-entropy that never builds "
                "the logits, so log_train_accuracy (argmax of the logits) cannot be computed. Disable one of them."
            )
        if not getattr(training_args, "masked_logits_only_loss", True):
            raise ValueError(
                "kernel_backend=liger fuses the decoder into the masked-token cross-entropy of the masked-logits-only "
                "loss; masked_logits_only_loss=false (the full-logits ablation) would bypass it. Use kernel_backend "
                "torch for the ablation."
            )


def _trains_on_cpu(training_args: Any) -> bool:
    import torch

    return getattr(training_args, "use_cpu", False) or not torch.cuda.is_available()


def _inductor_cpu_has_e8m0() -> bool:
    """Whether inductor's CPU code generator knows the E8M0 dtype of MX scales (not in torch 2.13)."""
    import torch
    from torch._inductor.codegen.cpp import DTYPE_TO_CPP

    return torch.float8_e8m0fnu in DTYPE_TO_CPP


def check_precision_data_args(precision: PrecisionArguments, data_args: Any) -> None:
    """Check that every training forward of a `neobert-hf pretrain` run suits the MX recipes, whose weight gradient
    is scaled in blocks of 32 tokens: packed microbatches need a token budget that is a multiple of 32, padded rows
    a `pad_to_multiple_of` that is one.

    Raises:
        `ValueError`: naming the data argument to change.
    """
    if precision.torchao_recipe not in MX_RECIPES:
        return
    block = 32
    if getattr(data_args, "packing", False):
        tokens = data_args.microbatch_tokens
        if tokens % block:
            raise ValueError(
                f"torchao_recipe={precision.torchao_recipe} scales the weight gradient in blocks of {block} tokens, "
                f"so every packed microbatch must hold a multiple of {block} tokens; tokens_per_batch gives {tokens}. "
                f"Set tokens_per_batch to a multiple of {block}."
            )
    else:
        multiple = getattr(data_args, "pad_to_multiple_of", None)
        if not multiple or multiple % block:
            raise ValueError(
                f"torchao_recipe={precision.torchao_recipe} scales the weight gradient in blocks of {block} tokens, "
                f"so padded batches must have a length that is a multiple of {block}: set pad_to_multiple_of to "
                f"{block} (got {multiple})."
            )

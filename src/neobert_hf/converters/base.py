"""The converter protocol, the registry that builds one from [`PrecisionArguments`], the linear-layer filters, the order
in which a converted model is prepared, and the hooks that keep its checkpoints plain.

A converter is a small object built from config (its constructor checks the library and the hardware and fails
with a clear error) with one `convert(model)` method that swaps the selected `nn.Linear` layers in place and returns
a [`ConversionReport`]. The order is fixed, as in torchtitan:

1. **convert**: [`~neobert_hf.converters.PrecisionCallback.on_init_end`], at the end of `Trainer.__init__`;
2. **activation checkpointing**: `Trainer.train()` (`gradient_checkpointing`);
3. **torch.compile** and 4. **distributed wrapping** (DDP, FSDP2): `accelerator.prepare` in
   `Trainer._prepare_for_training`, which also creates the optimizer. For FSDP2 accelerate compiles before
   `fully_shard`; for DDP it compiles the wrapped module. Either way both come after the conversion.

[`check_unprepared`] enforces step 1's place: it refuses a model that is already compiled, wrapped, sharded or
checkpointed, or an optimizer that already exists, since a converter may replace `Parameter` objects (torchao's
float8 all-gather weights, `te.Linear`) and the optimizer must be built from the converted model.

Checkpoints: [`keep_state_dict_plain`] makes every converted module save exactly `weight` (and `bias`) as plain
tensors of the original dtype, without converter state (Transformer Engine's `_extra_state`, Quartet-II's Hadamard
buffers, float8 wrapper tensors), so `model.safetensors` loads into an unconverted model; resuming a converted run
from such a checkpoint does not count the dropped state as missing.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from ..import_utils import HardwareError
from .arguments import PrecisionArguments


__all__ = [
    "ConversionReport",
    "HardwareError",
    "ModelConverter",
    "PREPARATION_ORDER",
    "build_converter",
    "check_unprepared",
    "cuda_capability",
    "keep_state_dict_plain",
    "register_converter",
    "require_capability",
    "resolve_device",
]

logger = logging.getLogger("neobert_hf.pretrain.converters")

PREPARATION_ORDER = ("convert", "activation_checkpointing", "compile", "distributed_wrapping")
"""The order in which a model is prepared for low-precision training (see the module docstring)."""

# Named GPU generations, for hardware errors that say what to run on.
_GENERATIONS = {
    (8, 9): "Ada Lovelace or Hopper (sm89+: L4, L40S, RTX 4090, H100, H200) or newer",
    (9, 0): "Hopper (sm90: H100, H200) or newer",
    (10, 0): "Blackwell (sm100+: B200, GB200) or newer",
    (12, 0): "Blackwell workstation/consumer (sm120: RTX PRO 6000, RTX 5090)",
}


# ---------------------------------------------------------------------------------------------------------------------
# Report and protocol
# ---------------------------------------------------------------------------------------------------------------------


@dataclass
class ConversionReport:
    """What a converter did.

    Attributes:
        backend (`str`), recipe (`str`): the converter.
        converted (`list[str]`): fully qualified names of the converted linear layers, in module order.
        skipped (`dict[str, str]`): the linear layers kept in high precision, with the reason.
    """

    backend: str
    recipe: str
    converted: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        lines = [f"{self.backend} {self.recipe}: converted {len(self.converted)} linear layers"]
        if self.converted:
            lines.append("  converted: " + ", ".join(self.converted))
        for name, reason in self.skipped.items():
            lines.append(f"  kept {name}: {reason}")
        return "\n".join(lines)


class ModelConverter:
    """Base of every converter: selects the linear layers, swaps them, keeps the checkpoints plain.

    Subclasses set `backend`, `recipe` and `dim_multiple`, and implement `_swap`; they may add reasons to keep a
    layer (`_skip_reason`) and hooks around training (`wrap_forward`, `post_optimizer_step`).

    Args:
        recipe (`str`): the recipe name, as in [`PrecisionArguments`].
        filter_fqns (`list[str]`): layers whose name contains one of these strings are kept.
        skip_first_last_linear (`bool`): keep the first and last `nn.Linear` of the model (module order).
    """

    backend: str = ""
    dim_multiple: int = 16
    """in/out features must be multiples of this for the low-precision kernels; other layers are kept."""
    replaces_parameters: bool = False
    """Whether `convert` puts new `Parameter` objects in the model (then it must run before the optimizer exists)."""

    def __init__(self, recipe: str, filter_fqns: Iterable[str] = ("decoder",), skip_first_last_linear: bool = False):
        self.recipe = recipe
        self.filter_fqns = list(filter_fqns)
        self.skip_first_last_linear = skip_first_last_linear

    # -- selection ----------------------------------------------------------------------------------------------------

    def _skip_reason(self, name: str, module: nn.Linear) -> str | None:
        """A reason to keep this layer in high precision, or `None` to convert it. Subclasses extend it."""
        return None

    def select(self, model: nn.Module) -> tuple[list[str], dict[str, str]]:
        """Split the model's `nn.Linear` layers into those to convert and those to keep (with the reason)."""
        linears = [
            (name, module)
            for name, module in model.named_modules()
            if isinstance(module, nn.Linear) and not _is_converted(module)
        ]
        first_last = {linears[0][0], linears[-1][0]} if linears and self.skip_first_last_linear else set()
        selected, skipped = [], {}
        for name, module in linears:
            matched = [pattern for pattern in self.filter_fqns if pattern and pattern in name]
            if matched:
                skipped[name] = f"filter_fqns ({matched[0]!r})"
            elif name in first_last:
                skipped[name] = "skip_first_last_linear"
            elif module.in_features % self.dim_multiple or module.out_features % self.dim_multiple:
                skipped[name] = (
                    f"in/out features {module.in_features}/{module.out_features} are not multiples of "
                    f"{self.dim_multiple}, which the {self.recipe} kernels need"
                )
            elif (reason := self._skip_reason(name, module)) is not None:
                skipped[name] = reason
            else:
                selected.append(name)
        return selected, skipped

    # -- conversion ---------------------------------------------------------------------------------------------------

    def _swap(self, model: nn.Module, names: list[str]) -> None:
        """Replace the named `nn.Linear` layers of `model` in place."""
        raise NotImplementedError

    def convert(self, model: nn.Module) -> ConversionReport:
        """Convert `model` in place and return what was converted.

        Raises:
            `ValueError`: when every linear layer is filtered out (the run would silently train in high precision).
        """
        selected, skipped = self.select(model)
        report = ConversionReport(self.backend, self.recipe, selected, skipped)
        if not selected:
            raise ValueError(
                f"precision_backend={self.backend} with recipe {self.recipe} would convert no linear layer:\n"
                + report.summary()
                + "\nLoosen filter_fqns / skip_first_last_linear / auto_filter_small_kn, or use precision_backend none."
            )
        self._swap(model, selected)
        for name in selected:
            module = model.get_submodule(name)
            if type(module) is nn.Linear:
                raise RuntimeError(f"{type(self).__name__} did not convert {name}; this is a bug in the converter.")
            module._neobert_converted = (self.backend, self.recipe)
        keep_state_dict_plain(model, selected)
        logger.info(report.summary())
        return report

    # -- hooks around training ----------------------------------------------------------------------------------------

    def wrap_forward(self, model: nn.Module) -> None:
        """Install what the forward pass needs around the converted layers (Transformer Engine's autocast)."""

    def post_optimizer_step(self, model: nn.Module) -> None:
        """Run after every optimizer step (torchao's FSDP float8 scale precompute)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(recipe={self.recipe!r}, filter_fqns={self.filter_fqns}, " \
            f"skip_first_last_linear={self.skip_first_last_linear})"


def _is_converted(module: nn.Module) -> bool:
    return hasattr(module, "_neobert_converted")


def replace_module(model: nn.Module, name: str, new: nn.Module) -> None:
    """Set the submodule `name` (dotted path) of `model` to `new`."""
    parent_name, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, leaf, new)


# ---------------------------------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------------------------------

_BUILDERS: dict[str, Callable[[PrecisionArguments, torch.device], ModelConverter]] = {}
# backend -> module (relative to this package) that registers its builder when imported
_MODULES = {"torchao": ".torchao", "transformer_engine": ".transformer_engine", "quartet2": ".quartet"}


def register_converter(backend: str):
    """Class decorator: `cls.from_args(precision_args, device)` builds the converter of `backend`."""

    def decorator(cls):
        _BUILDERS[backend] = cls.from_args
        return cls

    return decorator


def build_converter(precision: PrecisionArguments, device: torch.device | str = "cpu") -> ModelConverter | None:
    """The converter selected by `precision` for a run on `device`, or `None` for `precision_backend=none`.

    Building it imports the backend and checks the hardware, so an impossible run fails here, before training.

    Raises:
        `ImportError`: the backend's package is missing (the message names the install command).
        [`HardwareError`] (a `ValueError`): the device cannot run the recipe (the message names the GPU generation it
            needs).
    """
    if not precision.enabled:
        return None
    backend = precision.precision_backend
    if backend not in _BUILDERS:
        importlib.import_module(_MODULES[backend], __package__)
    return _BUILDERS[backend](precision, torch.device(device))


# ---------------------------------------------------------------------------------------------------------------------
# Hardware
# ---------------------------------------------------------------------------------------------------------------------


def resolve_device(training_args) -> torch.device:
    """The device a `TrainingArguments` trains on, without initialising the distributed state: CUDA (the local rank's
    GPU) when available and not `use_cpu`, CPU otherwise."""
    if torch.cuda.is_available() and not getattr(training_args, "use_cpu", False):
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def cuda_capability(device: torch.device) -> tuple[int, int] | None:
    """Compute capability of a CUDA device (`None` for any other device)."""
    if device.type != "cuda":
        return None
    return tuple(torch.cuda.get_device_capability(device))


def require_capability(device: torch.device, minimum: tuple[int, int], what: str, cpu_ok: bool = False) -> None:
    """Raise unless `device` can run `what`: an NVIDIA GPU of compute capability >= `minimum` (or the CPU if
    `cpu_ok`).

    Raises:
        [`HardwareError`]: naming the GPU generation `what` needs and the device of this run.
    """
    generation = _GENERATIONS.get(minimum, f"sm{minimum[0]}{minimum[1]}+")
    if device.type == "cpu" and cpu_ok:
        return
    if device.type != "cuda":
        where = "or the CPU " if cpu_ok else ""
        raise HardwareError(
            f"{what} needs an NVIDIA GPU of compute capability {minimum[0]}.{minimum[1]}+ ({generation}) {where}but "
            f"this run is on {device.type}."
        )
    if torch.version.hip:
        return  # ROCm: torchao and TE pick their fnuz formats themselves
    capability = cuda_capability(device)
    if capability < minimum:
        name = torch.cuda.get_device_name(device)
        raise HardwareError(
            f"{what} needs compute capability {minimum[0]}.{minimum[1]}+ ({generation}); this GPU ({name}) is "
            f"sm{capability[0]}{capability[1]}."
        )


# ---------------------------------------------------------------------------------------------------------------------
# Order
# ---------------------------------------------------------------------------------------------------------------------


def check_unprepared(model: nn.Module, optimizer=None) -> None:
    """Raise unless `model` is still a plain module: conversion must come before activation checkpointing,
    `torch.compile`, distributed wrapping and the optimizer (see [`PREPARATION_ORDER`])."""
    if optimizer is not None:
        raise RuntimeError(
            "Low-precision conversion must run before the optimizer is created (a converter may replace Parameter "
            "objects, which an existing optimizer would keep updating). Do not pass optimizers=... to the Trainer "
            "together with a precision backend."
        )
    if hasattr(model, "_orig_mod"):
        raise RuntimeError("The model is already compiled: convert it before torch.compile (order: " + _ORDER + ").")
    wrappers = (nn.parallel.DistributedDataParallel, nn.DataParallel)
    if isinstance(model, wrappers) or type(model).__name__.startswith(("FSDP", "FullyShardedDataParallel")):
        raise RuntimeError(
            f"The model is already wrapped in {type(model).__name__}: convert it before distributed wrapping (order: "
            + _ORDER + ")."
        )
    from torch.distributed.tensor import DTensor

    if any(isinstance(p, DTensor) for p in model.parameters()):
        raise RuntimeError("The model's parameters are already sharded (DTensor): convert before FSDP2 (" + _ORDER + ").")
    checkpointing = (
        model.is_activation_checkpointing
        if hasattr(type(model), "is_activation_checkpointing")
        else getattr(model, "is_gradient_checkpointing", False)
    )
    if checkpointing:
        raise RuntimeError(
            "Activation checkpointing is already enabled on the model: convert it first and let the Trainer enable "
            "gradient_checkpointing (order: " + _ORDER + ")."
        )


_ORDER = " -> ".join(PREPARATION_ORDER)


# ---------------------------------------------------------------------------------------------------------------------
# Plain checkpoints
# ---------------------------------------------------------------------------------------------------------------------


def plain_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """The high-precision tensor behind a converter's weight wrapper (torchao's float8 all-gather weight keeps it in
    `_tensor`, its training wrappers in `_data`); plain tensors and DTensors are returned as they are."""
    from torch.distributed.tensor import DTensor

    unwrapped = False
    while type(tensor) not in (torch.Tensor, nn.Parameter) and not isinstance(tensor, DTensor):
        inner = getattr(tensor, "_tensor", None)
        if inner is None:
            inner = getattr(tensor, "_data", None)
        if not isinstance(inner, torch.Tensor):
            raise TypeError(f"Cannot save a {type(tensor).__name__} weight as a plain tensor.")
        tensor, unwrapped = inner, True
    # The wrapped tensor may be the original Parameter: save a detached tensor, as state_dict() does.
    return tensor.detach() if unwrapped else tensor


def keep_state_dict_plain(model: nn.Module, names: list[str]) -> None:
    """Make the converted submodules `names` of `model` save only `weight`/`bias`, as plain tensors in their original
    dtype, and make loading such a state dict into the converted model report no missing key."""
    dropped: list[str] = []
    for name in names:
        module = model.get_submodule(name)
        extras = [key for key in module.state_dict(keep_vars=True) if key not in ("weight", "bias")]
        dropped.extend(f"{name}.{key}" for key in extras)
        module.register_state_dict_post_hook(_plain_state_dict_hook)
    if dropped:
        model.register_load_state_dict_post_hook(_ForgiveDroppedKeys(tuple(dropped)))


def _plain_state_dict_hook(module: nn.Module, state_dict: dict, prefix: str, local_metadata) -> None:
    for key in [k for k in state_dict if k.startswith(prefix)]:
        local = key[len(prefix):]
        if local in ("weight", "bias"):
            if state_dict[key] is not None:
                state_dict[key] = plain_tensor(state_dict[key])
        else:  # converter state (TE's _extra_state, Quartet-II's buffers, ...), rebuilt when the model is converted
            del state_dict[key]


class _ForgiveDroppedKeys:
    """Load post-hook: the converter state that plain checkpoints do not hold is rebuilt, not missing."""

    def __init__(self, keys: tuple[str, ...]):
        self.keys = keys

    def __call__(self, module: nn.Module, incompatible_keys) -> None:
        missing = incompatible_keys.missing_keys
        for key in list(missing):
            if any(key == k or key.endswith("." + k) for k in self.keys):
                missing.remove(key)

"""`PrecisionCallback`: applies the low-precision converter and the kernel backend at the right moment of training.

`Trainer` calls `on_init_end` at the very end of `Trainer.__init__`, after the model is on its device and before
anything else touches it: activation checkpointing is enabled in `Trainer.train()`, the optimizer is created and the
model compiled and wrapped (DDP / FSDP2) in `accelerator.prepare`. Converting there gives the documented order
convert -> activation checkpointing -> compile -> distributed wrapping, with the optimizer built from the converted
model (see [`~neobert_hf.converters.base`]).

```python
from neobert_hf.converters import PrecisionArguments, PrecisionCallback

precision = PrecisionArguments(precision_backend="torchao", torchao_recipe="rowwise", require_compile=False)
trainer = NeoBERTTrainer(model=model, args=args, ..., callbacks=[PrecisionCallback(precision, args)])
trainer.train()  # qkv / wo / ffn layers train in float8; checkpoints hold plain weights
```
"""

from __future__ import annotations

import logging
import os

import torch
from torch import nn
from transformers import TrainerCallback

from .arguments import PrecisionArguments, check_precision_training_args
from .base import ConversionReport, ModelConverter, build_converter, check_unprepared, resolve_device


__all__ = ["PrecisionCallback"]

logger = logging.getLogger("neobert_hf.pretrain.converters")


class PrecisionCallback(TrainerCallback):
    """Converts the model's linear layers with the selected backend and installs the kernel backend.

    Args:
        precision ([`PrecisionArguments`]): the backend, recipe, filters and kernel backend.
        training_args (`TrainingArguments`, *optional*): when given, the combinations are checked and the converter
            is built (library and hardware checks) right away, before the Trainer exists; otherwise at
            `on_init_end`.
        task (`str`, defaults to `"pretraining"`): conversion is supported for MLM pretraining only.

    Attributes:
        converter ([`ModelConverter`] or `None`), report ([`ConversionReport`] or `None`): after `on_init_end`.
        kernel_backend (`str` or `None`): the kernel backend in use, after `on_init_end`.

    Raises:
        `ValueError`: conversion outside pretraining, or a bad combination of arguments (DeepSpeed, `require_compile`
            without `torch_compile`, ...).
    """

    def __init__(self, precision: PrecisionArguments, training_args=None, task: str = "pretraining"):
        if task != "pretraining":
            raise ValueError(
                f"Low-precision conversion and fused kernels are supported for MLM pretraining only, not {task!r}: "
                "fine-tune in bf16 (the converted checkpoints already hold plain weights)."
            )
        self.precision = precision
        self.converter: ModelConverter | None = None
        self.report: ConversionReport | None = None
        self.kernel_backend: str | None = None
        self._built = False
        self._applied = False
        if training_args is not None:
            check_precision_training_args(precision, training_args)
            self._build(resolve_device(training_args))

    def _build(self, device: torch.device) -> None:
        self.device = device
        self.converter = build_converter(self.precision, device)
        self._built = True

    def on_init_end(self, args, state, control, model=None, optimizer=None, **kwargs):
        if self._applied:
            raise RuntimeError("This PrecisionCallback already converted a model; build one per Trainer.")
        check_precision_training_args(self.precision, args)
        if not self._built:
            self._build(resolve_device(args))
        requested = self.precision.kernel_backend
        if self.converter is None and requested == "torch":
            self.kernel_backend = "torch"
            return
        from ..kernels import apply_kernel_backend, resolve_kernel_backend

        kernels = resolve_kernel_backend(requested, self.device)
        if self.converter is None and kernels == "torch":
            self.kernel_backend = kernels
            return
        self._check_model(model)
        if os.environ.get("ACCELERATE_MIXED_PRECISION", "").lower() == "fp8":
            raise ValueError(
                "accelerate is configured for fp8 mixed precision (ACCELERATE_MIXED_PRECISION=fp8), which converts the "
                "model a second time. Use precision_backend alone and set accelerate's mixed precision to bf16 or no."
            )
        check_unprepared(model, optimizer)
        if self.converter is not None:
            self.report = self.converter.convert(model)
            self.converter.wrap_forward(model)
        if kernels == "liger" and requested == "auto" and (reason := self._needs_torch_kernels(args, model)):
            logger.info(f"kernel_backend=auto: using torch instead of liger ({reason}).")
            kernels = "torch"
        self.kernel_backend = apply_kernel_backend(model, kernels, self.device)
        self._applied = True

    @staticmethod
    def _needs_torch_kernels(args, model: nn.Module) -> str | None:
        """Why this run cannot use Liger's fused loss (an explicit kernel_backend=liger makes these errors)."""
        if getattr(args, "log_train_accuracy", False):
            return "log_train_accuracy needs the logits the fused cross-entropy never builds"
        if not getattr(args, "masked_logits_only_loss", True):
            return "masked_logits_only_loss=false"
        if type(model.decoder) is not nn.Linear:
            return f"the decoder is a converted {type(model.decoder).__name__}"
        return None

    @staticmethod
    def _check_model(model: nn.Module) -> None:
        from ..modeling import NeoBERTForMaskedLM

        if not isinstance(model, NeoBERTForMaskedLM):
            raise ValueError(
                "Low-precision conversion and fused kernels apply to MLM pretraining only (a NeoBERTForMaskedLM "
                f"trained by NeoBERTTrainer); got {type(model).__name__}. Fine-tune in bf16 with precision_backend none "
                "and kernel_backend torch."
            )

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        if self.converter is None or optimizer is None or model is None:
            return
        # The optimizer must hold the converted model's parameters: a converter that replaced Parameter objects
        # after the optimizer was built would leave those weights untrained.
        held = {id(p) for group in optimizer.param_groups for p in group["params"]}
        orphans = [name for name, p in model.named_parameters() if p.requires_grad and id(p) not in held]
        if orphans:
            raise RuntimeError(
                f"{len(orphans)} trainable parameters of the converted model are not in the optimizer (e.g. "
                f"{orphans[:3]}): the model was converted after the optimizer was created. Conversion must run first "
                "(PrecisionCallback.on_init_end)."
            )

    def on_optimizer_step(self, args, state, control, model=None, **kwargs):
        if self.converter is not None and model is not None:
            self.converter.post_optimizer_step(model)

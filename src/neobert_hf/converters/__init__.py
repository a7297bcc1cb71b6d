"""Low-precision training converters (torchao, Transformer Engine, Quartet-II) for NeoBERT MLM pretraining.

- [`PrecisionArguments`]: `precision_backend` (exactly one of `none`, `torchao`, `transformer_engine`, `quartet2`),
  its recipe and options, and `kernel_backend`; flat keys of a `neobert-hf pretrain` recipe, grouped per converter
  ([`~neobert_hf.converters.arguments.TorchAOArguments`], `TransformerEngineArguments`, `QuartetArguments`, ...).
- [`build_converter`]: the converter of the selected backend, built from config; it fails right away with a clear
  error when the library or the hardware is missing.
- [`ModelConverter`]: one `convert(model)` step that swaps the selected `nn.Linear` layers and keeps checkpoints
  plain (they load into an unconverted model).
- [`PrecisionCallback`]: applies the converter and the kernel backend at the end of `Trainer.__init__`, in the fixed
  order convert -> activation checkpointing -> compile -> distributed wrapping, before the optimizer exists.

Importing this package imports neither torchao nor Transformer Engine; building a converter does.
"""

from .arguments import PrecisionArguments, check_precision_training_args
from .base import PREPARATION_ORDER, ConversionReport, ModelConverter, build_converter, check_unprepared
from .callback import PrecisionCallback


__all__ = [
    "PREPARATION_ORDER",
    "ConversionReport",
    "ModelConverter",
    "PrecisionArguments",
    "PrecisionCallback",
    "build_converter",
    "check_precision_training_args",
    "check_unprepared",
]

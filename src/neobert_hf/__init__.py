"""neobert-hf: NeoBERT as a first-class HuggingFace transformers model, with fast encoder pretraining.

Importing the package registers `model_type="neobert"` with `AutoConfig`, `AutoModel` and the `AutoModelFor*` classes.
That imports torch and transformers' modeling code (which itself imports torchao when it is installed); optional
backends (flash-attn, torchao, transformer-engine, liger-kernel, peft, sentence-transformers, mteb, wandb, ...) are
imported where they are used.

The `neobert-hf` command is the one exception: its process imports this package without registering, so that
`neobert-hf --help` answers without loading torch. The command registers (with [`register_auto_classes`]) before it
runs a subcommand that loads models. Public names are resolved on first access either way.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import TYPE_CHECKING, Any


__version__ = "0.1.0"

# public name -> submodule that defines it; imported on first access (PEP 562), so adding a name costs nothing
# until it is used.
_LAZY_ATTRIBUTES: dict[str, str] = {
    "NeoBERTConfig": ".modeling",
    "NeoBERTPreTrainedModel": ".modeling",
    "NeoBERTModel": ".modeling",
    "NeoBERTForMaskedLM": ".modeling",
    "NeoBERTForSequenceClassification": ".modeling",
    "NeoBERTForTokenClassification": ".modeling",
    "NeoBERTForQuestionAnswering": ".modeling",
    "CheckpointTreeCallback": ".checkpoints",
}

__all__ = [*_LAZY_ATTRIBUTES, "register_auto_classes", "__version__"]

if TYPE_CHECKING:
    from .modeling import (
        NeoBERTConfig,
        NeoBERTForMaskedLM,
        NeoBERTForQuestionAnswering,
        NeoBERTForSequenceClassification,
        NeoBERTForTokenClassification,
        NeoBERTModel,
        NeoBERTPreTrainedModel,
    )
    from .checkpoints import CheckpointTreeCallback

_registered = False


def register_auto_classes() -> None:
    """Register `model_type="neobert"` with `AutoConfig`, `AutoModel` and the `AutoModelFor*` classes.

    `import neobert_hf` calls it; calling it again does nothing. Code running inside the `neobert-hf` command that
    loads a NeoBERT checkpoint through the Auto classes gets it from the command itself.
    """
    global _registered
    if _registered:
        return
    from transformers import (
        AutoConfig,
        AutoModel,
        AutoModelForMaskedLM,
        AutoModelForQuestionAnswering,
        AutoModelForSequenceClassification,
        AutoModelForTokenClassification,
    )

    from . import modeling

    AutoConfig.register("neobert", modeling.NeoBERTConfig, exist_ok=True)
    AutoModel.register(modeling.NeoBERTConfig, modeling.NeoBERTModel, exist_ok=True)
    AutoModelForMaskedLM.register(modeling.NeoBERTConfig, modeling.NeoBERTForMaskedLM, exist_ok=True)
    AutoModelForSequenceClassification.register(
        modeling.NeoBERTConfig, modeling.NeoBERTForSequenceClassification, exist_ok=True
    )
    AutoModelForTokenClassification.register(
        modeling.NeoBERTConfig, modeling.NeoBERTForTokenClassification, exist_ok=True
    )
    AutoModelForQuestionAnswering.register(
        modeling.NeoBERTConfig, modeling.NeoBERTForQuestionAnswering, exist_ok=True
    )
    _registered = True


def __getattr__(name: str) -> Any:
    module = _LAZY_ATTRIBUTES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if module == ".modeling":
        register_auto_classes()
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY_ATTRIBUTES})


def _started_as_command() -> bool:
    """Whether this process is the `neobert-hf` command (its console script, or `python -m neobert_hf`).

    Read while the package is first imported: the console script imports `neobert_hf.cli.main` from a file named
    `neobert-hf` (`neobert-hf.exe` or `neobert-hf-script.py` on Windows), and `python -m` sets `sys.argv[0]` to
    "-m" while it imports the packages of the module it runs.
    """
    if not sys.argv:
        return False
    program = os.path.basename(sys.argv[0]).lower()
    if program == "-m":
        original = getattr(sys, "orig_argv", [])
        module = original[original.index("-m") + 1] if "-m" in original[:-1] else ""
        return module == "neobert_hf" or module.startswith("neobert_hf.")
    return program.startswith("neobert-hf")


# Worker processes that only tokenize (`neobert_hf.data.ParallelTokenizedStream`) are started with this variable set:
# they never load a model, so they skip importing the modeling stack.
_TOKENIZER_WORKER_ENV = "NEOBERT_HF_TOKENIZER_WORKER"

if not _started_as_command() and os.environ.get(_TOKENIZER_WORKER_ENV) != "1":
    register_auto_classes()

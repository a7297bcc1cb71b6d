"""neobert-hf: NeoBERT as a first-class HuggingFace transformers model, with fast encoder pretraining.

Importing the package registers `model_type="neobert"` with `AutoConfig`, `AutoModel` and the `AutoModelFor*` classes.
It imports torch and transformers only; optional backends (flash-attn, torchao, transformer-engine, liger-kernel,
peft, sentence-transformers, mteb, wandb, ...) are imported where they are used.
"""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
)

from .modeling import (
    NeoBERTConfig,
    NeoBERTForMaskedLM,
    NeoBERTForQuestionAnswering,
    NeoBERTForSequenceClassification,
    NeoBERTForTokenClassification,
    NeoBERTModel,
    NeoBERTPreTrainedModel,
)


__version__ = "0.1.0"

AutoConfig.register("neobert", NeoBERTConfig, exist_ok=True)
AutoModel.register(NeoBERTConfig, NeoBERTModel, exist_ok=True)
AutoModelForMaskedLM.register(NeoBERTConfig, NeoBERTForMaskedLM, exist_ok=True)
AutoModelForSequenceClassification.register(NeoBERTConfig, NeoBERTForSequenceClassification, exist_ok=True)
AutoModelForTokenClassification.register(NeoBERTConfig, NeoBERTForTokenClassification, exist_ok=True)
AutoModelForQuestionAnswering.register(NeoBERTConfig, NeoBERTForQuestionAnswering, exist_ok=True)

__all__ = [
    "NeoBERTConfig",
    "NeoBERTPreTrainedModel",
    "NeoBERTModel",
    "NeoBERTForMaskedLM",
    "NeoBERTForSequenceClassification",
    "NeoBERTForTokenClassification",
    "NeoBERTForQuestionAnswering",
    "__version__",
]

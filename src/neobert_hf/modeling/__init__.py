"""The NeoBERT model family. `modeling_neobert.py` and `configuration_neobert.py` are self-contained: they are the
remote code copied into every exported checkpoint."""

from .configuration_neobert import NeoBERTConfig
from .modeling_neobert import (
    NeoBERTForMaskedLM,
    NeoBERTForQuestionAnswering,
    NeoBERTForSequenceClassification,
    NeoBERTForTokenClassification,
    NeoBERTModel,
    NeoBERTPreTrainedModel,
)


__all__ = [
    "NeoBERTConfig",
    "NeoBERTPreTrainedModel",
    "NeoBERTModel",
    "NeoBERTForMaskedLM",
    "NeoBERTForSequenceClassification",
    "NeoBERTForTokenClassification",
    "NeoBERTForQuestionAnswering",
]

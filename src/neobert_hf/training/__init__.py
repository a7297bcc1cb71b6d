"""NeoBERT MLM pretraining on transformers' `Trainer`.

- [`NeoBERTTrainingArguments`]: `TrainingArguments` plus the MLM loss path, MuonClip, `final_lr_ratio`, the
  checkpoint tree and throughput/timing logging.
- [`NeoBERTTrainer`]: masked-logits-only loss with exact token weighting across gradient accumulation and ranks,
  loss/perplexity/accuracy evaluation without stored logits, stop on a non-finite loss, MuonClip, and the
  `<output_dir>/checkpoints/<step>/` tree with exact resume.
"""

from .arguments import NeoBERTTrainingArguments
from .callbacks import (
    CompactPrinterCallback,
    CompactProgressCallback,
    QKClipCallback,
    ThroughputMonitor,
)
from .checkpointing import CheckpointError, latest_checkpoint, list_checkpoints, resolve_checkpoint
from .data_state import StreamPositionTracker
from .optim import MuonClip, QKClip, build_muonclip, muon_parameter_names
from .trainer import NeoBERTTrainer, NonFiniteLossError


__all__ = [
    "CheckpointError",
    "CompactPrinterCallback",
    "CompactProgressCallback",
    "MuonClip",
    "NeoBERTTrainer",
    "NeoBERTTrainingArguments",
    "NonFiniteLossError",
    "QKClip",
    "QKClipCallback",
    "StreamPositionTracker",
    "ThroughputMonitor",
    "build_muonclip",
    "latest_checkpoint",
    "list_checkpoints",
    "muon_parameter_names",
    "resolve_checkpoint",
]

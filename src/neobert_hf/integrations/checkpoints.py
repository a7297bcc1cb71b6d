"""The names of [`neobert_hf.checkpoints.loading`] under their earlier import path: the code lives there."""

from ..checkpoints.loading import (
    HEAD_PREFIX,
    MLM_HEAD_PREFIX,
    RUN_RESULTS_NAME,
    CheckpointLoadError,
    load_pretrained_strict,
    load_strict,
    resolve_pretrained_path,
)


__all__ = [
    "HEAD_PREFIX",
    "MLM_HEAD_PREFIX",
    "RUN_RESULTS_NAME",
    "CheckpointLoadError",
    "load_pretrained_strict",
    "load_strict",
    "resolve_pretrained_path",
]

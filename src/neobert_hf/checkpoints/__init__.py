"""Checkpoints: the one place that resolves, writes, verifies, rotates and loads them.

- [`tree`](tree.py): the `<output_dir>/checkpoints/<step>/` layout, its manifest, verification, resolution of
  `latest`/a step/a folder, atomic publishing, rotation, cleanup of interrupted runs, the data position and the card;
- [`lock`](lock.py): one run at a time per output folder ([`OutputDirLock`]);
- [`callback`](callback.py): [`CheckpointTreeCallback`], the tree from any `Trainer`, and [`CheckpointTreeTrainerMixin`]
  for what a callback cannot do (resuming from `latest` with verification, the lock across `train`, no token on disk);
- [`loading`](loading.py): the resolver of every model source and strict loading.

Every Trainer of the package, the exporter and the CLIs use these; nothing here imports them.
"""

from .callback import CheckpointTreeCallback, CheckpointTreeTrainerMixin
from .loading import CheckpointLoadError, RUN_RESULTS_NAME, load_pretrained_strict, load_strict, resolve_pretrained_path
from .lock import OutputDirLock
from .tree import (
    ADAPTER_DIR,
    CHECKPOINTS_DIR,
    LOCK_NAME,
    MANIFEST_NAME,
    TMP_PREFIX,
    CheckpointError,
    DamagedCheckpointError,
    OutputDirLockedError,
    check_resumable,
    check_run_not_finished,
    check_weights_match,
    checkpoint_dir,
    checkpoints_root,
    clean_leftovers,
    damaged_checkpoints,
    incomplete_reason,
    latest_checkpoint,
    list_checkpoints,
    load_data_state,
    model_file_problems,
    publish,
    read_manifest,
    reading_checkpoint_file,
    redacted_training_args,
    resolve_checkpoint,
    rotate,
    save_data_state,
    step_folder,
    verify_checkpoint,
    write_checkpoint_card,
    write_manifest,
)


__all__ = [
    "ADAPTER_DIR",
    "CHECKPOINTS_DIR",
    "LOCK_NAME",
    "MANIFEST_NAME",
    "RUN_RESULTS_NAME",
    "TMP_PREFIX",
    "CheckpointError",
    "CheckpointLoadError",
    "CheckpointTreeCallback",
    "CheckpointTreeTrainerMixin",
    "DamagedCheckpointError",
    "OutputDirLock",
    "OutputDirLockedError",
    "check_resumable",
    "check_run_not_finished",
    "check_weights_match",
    "checkpoint_dir",
    "checkpoints_root",
    "clean_leftovers",
    "damaged_checkpoints",
    "incomplete_reason",
    "latest_checkpoint",
    "list_checkpoints",
    "load_data_state",
    "load_pretrained_strict",
    "load_strict",
    "model_file_problems",
    "publish",
    "read_manifest",
    "reading_checkpoint_file",
    "redacted_training_args",
    "resolve_checkpoint",
    "resolve_pretrained_path",
    "rotate",
    "save_data_state",
    "step_folder",
    "verify_checkpoint",
    "write_checkpoint_card",
    "write_manifest",
]

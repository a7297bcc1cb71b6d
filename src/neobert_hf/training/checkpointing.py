"""The names of [`neobert_hf.checkpoints`] under their earlier import path: the checkpoint code lives there."""

from ..checkpoints.callback import CheckpointTreeCallback, CheckpointTreeTrainerMixin
from ..checkpoints.lock import OutputDirLock, _process_start  # noqa: F401
from ..checkpoints.tree import *  # noqa: F403
from ..checkpoints.tree import __all__ as _TREE_NAMES


__all__ = [*_TREE_NAMES, "CheckpointTreeCallback", "CheckpointTreeTrainerMixin", "OutputDirLock"]

"""The output folder of a run: checked before anything is written, and left as it was by a start that fails.

[`check_output_dir`] refuses an `output_dir` that is a file or that cannot be created or written; the setup
functions of pretraining, GLUE and contrastive training call it before they write anything. [`failed_start_cleanup`]
removes the empty folders that a start created when it fails before training begins (the Trainer creates
`output_dir` in its constructor).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from transformers import TrainerCallback


__all__ = ["TrainingBegan", "check_output_dir", "failed_start_cleanup", "first_missing_folder", "remove_empty_folders"]


def first_missing_folder(path: str) -> str | None:
    """The outermost folder of `path` (itself included) that does not exist yet, or `None`."""
    path = os.path.abspath(path)
    if os.path.exists(path):
        return None
    while not os.path.exists(os.path.dirname(path)):
        path = os.path.dirname(path)
    return path


def check_output_dir(path: str | None, option: str = "output_dir") -> None:
    """Refuse an output folder that is a file, lies under a file, or cannot be written.

    Raises:
        `ValueError`: naming the path and what to do.
    """
    if path is None:
        raise ValueError(f"Set {option}: the run writes its checkpoints there.")
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"{option} {path} exists and is not a folder; pass a folder path.")
    missing = first_missing_folder(path)
    existing = os.path.dirname(missing) if missing is not None else os.path.abspath(path)
    if not os.path.isdir(existing):
        raise ValueError(f"{option} {path} cannot be created: {existing} is not a folder. Pass a folder path.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(
            f"{option} {path} cannot be written: no write permission on {existing}. Choose a folder you can write to."
        )


def remove_empty_folders(path: str) -> None:
    """Remove `path` and the folders under it, bottom-up, as far as they hold no file (nothing with content is
    touched)."""
    if not os.path.isdir(path):
        return
    for root, _dirs, _files in os.walk(path, topdown=False):
        if not os.listdir(root):
            try:
                os.rmdir(root)
            except OSError:
                pass


@contextmanager
def failed_start_cleanup(output_dir: str, started: Callable[[], bool]) -> Iterator[None]:
    """On an exception inside, remove the folders under the first folder of `output_dir` that did not exist on
    entry, as far as they are empty, unless `started()` says that training had begun (then what the run wrote
    stays)."""
    created = first_missing_folder(output_dir)
    try:
        yield
    except BaseException:
        if created is not None and not started():
            remove_empty_folders(created)
        raise


class TrainingBegan(TrainerCallback):
    """Records that training began (`on_train_begin`: weights, optimizer and resume state loaded), for
    [`failed_start_cleanup`]."""

    def __init__(self):
        self.began = False

    def on_train_begin(self, args, state, control, **kwargs):
        self.began = True

    @staticmethod
    def seen(trainer) -> bool:
        """Whether a `TrainingBegan` callback of `trainer` saw training begin."""
        return any(isinstance(c, TrainingBegan) and c.began for c in trainer.callback_handler.callbacks)

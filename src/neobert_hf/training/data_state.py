"""Exact stream position for resumable training on a stateful `IterableDataset`.

A dataset is *stateful* when it has `state_dict()` and `load_state_dict(state)` (`datasets.IterableDataset`, the
package's packing dataset). Its own `state_dict()` cannot be saved as is at checkpoint time: the data loader runs
ahead of the training loop (accelerate prefetches one batch to detect the end of the data), so the dataset has
already produced batches the model has not seen. [`StreamPositionTracker`] wraps the dataset, records the position
after every item it yields (keeping only the recent ones), and hands out the state that matches the number of batches
the Trainer actually consumed.
"""

from __future__ import annotations

import copy
from collections import deque

from torch.utils.data import IterableDataset


def is_stateful(dataset) -> bool:
    return callable(getattr(dataset, "state_dict", None)) and callable(getattr(dataset, "load_state_dict", None))


class StreamPositionTracker(IterableDataset):
    """Wraps a stateful `IterableDataset` and remembers its position after each yielded item.

    Args:
        dataset: the stateful dataset.
        items_per_batch (`int`): items the data loader takes per batch (its `batch_size`, 1 when the dataset yields
            whole batches).
        max_lag_batches (`int`, *optional*, defaults to 64): how many batches the loader may run ahead of the
            batch whose state is asked for. Only that many recent positions are kept, so memory stays flat over a
            run; accelerate's look-ahead is one batch and a gradient-accumulation window is consumed before a
            checkpoint is saved, so the lag at save time is one or two batches.

    A dataset with `state_handle()` / `state_dict_from_handle(handle)` (the package's `MicrobatchDataset`) is asked
    for a cheap handle per item and its state dict is built only when a checkpoint needs it; any other stateful
    dataset has its (small) `state_dict()` copied per item.

    The data loader must run in the main process (`dataloader_num_workers=0`): with workers, the dataset's state
    lives in the worker processes.
    """

    def __init__(self, dataset, items_per_batch: int = 1, max_lag_batches: int = 64):
        self.dataset = dataset
        self.items_per_batch = max(int(items_per_batch), 1)
        self._lazy = callable(getattr(dataset, "state_handle", None)) and callable(
            getattr(dataset, "state_dict_from_handle", None)
        )
        self._produced = 0
        self._records: deque[tuple[int, object]] = deque(maxlen=self.items_per_batch * max(int(max_lag_batches), 1) + 1)
        self._records.append((0, self._capture()))

    def _capture(self) -> object:
        if self._lazy:
            return self.dataset.state_handle()
        return copy.deepcopy(self.dataset.state_dict())

    def __iter__(self):
        for item in self.dataset:
            self._produced += 1
            self._records.append((self._produced, self._capture()))
            yield item

    def set_epoch(self, epoch: int):
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)

    def __getattr__(self, name):
        # Everything else (features, column names, n_shards, ...) is the wrapped dataset's.
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def state_after_batches(self, num_batches: int):
        """The dataset state after the first `num_batches` batches (since the wrapper was built)."""
        index = num_batches * self.items_per_batch
        for produced, record in reversed(self._records):
            if produced == index:
                return self.dataset.state_dict_from_handle(record) if self._lazy else record
        kept = [produced for produced, _ in self._records]
        raise RuntimeError(
            f"No recorded data position after {num_batches} batches ({index} items; {self._produced} produced, "
            f"positions kept: {kept[0]}..{kept[-1]}). The data loader must run in the main process "
            "(dataloader_num_workers=0) and at most max_lag_batches ahead of training for an exact stream position."
        )


__all__ = ["StreamPositionTracker", "is_stateful"]

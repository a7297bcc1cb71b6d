"""Exact stream position for resumable training on a stateful `IterableDataset`.

A dataset is *stateful* when it has `state_dict()` and `load_state_dict(state)` (`datasets.IterableDataset`, the
package's packing dataset). Its own `state_dict()` cannot be saved as is at checkpoint time: the data loader runs
ahead of the training loop (accelerate prefetches one batch to detect the end of the data), so the dataset has
already produced batches the model has not seen. [`StreamPositionTracker`] wraps the dataset, records the state
after every item it yields, and hands out the state that matches the number of batches the Trainer actually
consumed.
"""

from __future__ import annotations

import copy
from collections import OrderedDict

from torch.utils.data import IterableDataset


def is_stateful(dataset) -> bool:
    return callable(getattr(dataset, "state_dict", None)) and callable(getattr(dataset, "load_state_dict", None))


class StreamPositionTracker(IterableDataset):
    """Wraps a stateful `IterableDataset` and remembers its `state_dict()` after each yielded item.

    Args:
        dataset: the stateful dataset.
        items_per_batch (`int`): items the data loader takes per batch (its `batch_size`, 1 when the dataset yields
            whole batches).

    The data loader must run in the main process (`dataloader_num_workers=0`): with workers, the dataset's state
    lives in the worker processes.
    """

    def __init__(self, dataset, items_per_batch: int = 1):
        self.dataset = dataset
        self.items_per_batch = max(int(items_per_batch), 1)
        self._produced = 0
        self._states: OrderedDict[int, object] = OrderedDict({0: copy.deepcopy(dataset.state_dict())})

    def __iter__(self):
        for item in self.dataset:
            self._produced += 1
            self._states[self._produced] = copy.deepcopy(self.dataset.state_dict())
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
        """The dataset state after the first `num_batches` batches (since the wrapper was built); older records are
        dropped."""
        index = num_batches * self.items_per_batch
        if index not in self._states:
            raise RuntimeError(
                f"No recorded data position after {num_batches} batches ({index} items; recorded: "
                f"{list(self._states)[:3]}...). The data loader must run in the main process "
                "(dataloader_num_workers=0) for an exact stream position."
            )
        for key in [k for k in self._states if k < index]:
            del self._states[key]
        return self._states[index]


__all__ = ["StreamPositionTracker", "is_stateful"]

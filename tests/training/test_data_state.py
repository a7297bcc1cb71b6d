"""The stream-position tracker: the state it hands out resumes exactly where the Trainer stopped, at any batch (an
epoch boundary and a stream's shuffle buffer included), while it keeps a bounded number of positions and builds no
state dict until one is asked for."""

import copy

import numpy as np
import pytest
import torch
from datasets import Dataset
from torch.utils.data import IterableDataset

from neobert_hf.data import MicrobatchDataset
from neobert_hf.training import StreamPositionTracker

PAD, CLS, SEP = 0, 2, 3


def docs(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(np.log(150), 1.0, n).astype(int), 4, 2000)
    return [np.concatenate([[CLS], rng.integers(5, 1000, k - 2), [SEP]]).astype(np.int64) for k in lengths]


def make(source, **kwargs) -> MicrobatchDataset:
    return MicrobatchDataset(source, tokens_per_batch=512, max_seq_length=64, buffer_size=16, seed=3, **kwargs)


def stream(corpus):
    return Dataset.from_dict({"input_ids": corpus}).to_iterable_dataset(num_shards=2)


SOURCES = {
    "map": lambda corpus: make(corpus, infinite=True),
    "stream with shuffle buffer": lambda corpus: make(stream(corpus), infinite=True, shuffle_buffer_size=64),
}


@pytest.mark.parametrize("kind", SOURCES)
def test_state_after_any_batch_resumes_the_uninterrupted_run(kind):
    corpus = docs(40)
    reference = SOURCES[kind](corpus)
    uninterrupted = [b["input_ids"] for _, b in zip(range(120), reference)]  # > 1 epoch: crosses a boundary
    epochs = reference.epoch
    assert epochs >= 1, "the run must cross an epoch boundary"

    tracker = StreamPositionTracker(SOURCES[kind](corpus), max_lag_batches=4)
    iterator = iter(tracker)
    next(iterator)  # the loader runs one batch ahead of training
    for consumed in range(1, 118):
        next(iterator)
        resumed = SOURCES[kind](corpus)
        resumed.load_state_dict(tracker.state_after_batches(consumed))
        following = next(iter(resumed))["input_ids"]
        assert torch.equal(following, uninterrupted[consumed]), f"resume after batch {consumed} differs"


def test_memory_stays_flat_and_states_are_built_on_demand(monkeypatch):
    dataset = make(docs(30), infinite=True)
    built = []
    original = MicrobatchDataset.state_dict_from_handle
    monkeypatch.setattr(
        MicrobatchDataset, "state_dict_from_handle", lambda self, h: built.append(1) or original(self, h)
    )
    tracker = StreamPositionTracker(dataset, max_lag_batches=8)
    iterator = iter(tracker)
    for _ in range(500):
        next(iterator)
    assert built == [], "no state dict may be built while iterating"
    assert len(tracker._records) <= 8 + 1
    assert tracker.state_after_batches(497)["stats"]["batches"] == 497
    assert len(built) == 1
    with pytest.raises(RuntimeError, match=r"No recorded data position after 400 batches .*max_lag_batches"):
        tracker.state_after_batches(400)


class _Counter(IterableDataset):
    """A stateful dataset without handles: its state dict is copied per item."""

    def __init__(self):
        self.position = 0
        self.state = {"position": 0, "history": [0]}

    def __iter__(self):
        while True:
            self.position += 1
            self.state["position"] = self.position
            self.state["history"].append(self.position)  # mutated in place: the tracker must copy
            yield self.position

    def state_dict(self):
        return self.state

    def load_state_dict(self, state):
        self.state = copy.deepcopy(state)
        self.position = state["position"]


def test_generic_stateful_dataset_is_copied_and_bounded():
    tracker = StreamPositionTracker(_Counter(), items_per_batch=2, max_lag_batches=3)
    iterator = iter(tracker)
    for _ in range(100):
        next(iterator)
    assert len(tracker._records) <= 2 * 3 + 1
    state = tracker.state_after_batches(49)
    assert state["position"] == 98 and state["history"][-1] == 98

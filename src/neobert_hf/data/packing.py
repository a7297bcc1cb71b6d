"""Stateful packing of tokenized documents into fixed-budget microbatches, with exact resume.

[`MicrobatchDataset`] is a `torch.utils.data.IterableDataset` that reads tokenized documents (an `input_ids` column),
splits documents longer than `max_seq_length` into chunks, shuffles the chunks, and yields whole **microbatches**.

Packed mode (`mode="packed"`, the default) follows transformers' `DataCollatorWithFlattening` format, with a full,
fixed token budget `T = tokens_per_batch`:

| key | type | content |
| --- | --- | --- |
| `input_ids` | int64 `[1, T]` | the packed segments, then pad tokens |
| `labels` | int64 `[1, T]` | MLM targets (the original id where a token was selected), -100 elsewhere and on padding |
| `position_ids` | int64 `[1, T]` | restart at 0 at the start of every segment (padding segments included) |
| `cu_seq_lens_q`, `cu_seq_lens_k` | int32 `[n + 1]` | cumulative segment boundaries, `0 ... T` |
| `max_length_q`, `max_length_k` | `int` | the longest segment (always `<= max_seq_length`) |

There is no `attention_mask`: every segment attends only to itself through `cu_seq_lens`.

**Padding convention.** Real segments come first. The `T - real` leftover slots at the end of a batch hold
`pad_token_id` and form their *own* trailing segment(s), with labels -100 and position ids restarting at 0, so that
the shape stays `[1, T]` and the pad tokens attend only to each other. A leftover longer than `max_seq_length`
(possible only in the last batches of an epoch) is split into several pad segments of at most `max_seq_length`
tokens, so position ids never exceed `max_seq_length - 1`. `cu_seq_lens[-1] == T` always.

**Fixed shapes for `torch.compile`.** With `max_sequences_per_batch=N`, `cu_seq_lens_q/k` always have `N + 1`
entries: after the last real boundary the value `T` is repeated (zero-length sequences), and `max_length_q/k` is
the constant `max_seq_length`. Packing then never puts more than `N` segments (pad segments included) in a batch,
so `N` must be at least `ceil(T / max_seq_length) + 1`.

**Which chunks go together.** Chunks enter a packing buffer in the shuffled order (below). When the buffer holds at least
`buffer_size` segments and `2 * T` tokens, one batch is taken out: first the *oldest* segment (so no segment waits
for more than about `buffer_size` batches), then repeatedly the *largest segment that still fits* (best-fit
decreasing; ties go to the oldest). At the end of an epoch the buffer is drained, so every token of every document
appears exactly once per epoch. On long-tailed lengths (lognormal, median ~120, max 512) with `T = 4096` and the
default buffer this gives >= 99% real tokens.

Padded mode (`mode="padded"`, for ablations) yields `input_ids`, `attention_mask` and `labels` of shape
`[B, S]`: `B = batch_size` segments taken first-in first-out, `S` the longest of them rounded up to
`pad_to_multiple_of` (the last batch of an epoch may have fewer rows). The same documents get the same masks as in
packed mode, because masks depend only on `(seed, epoch, document, position in document)` (see `masking.py`).

**Shuffling, and why chunks rather than documents.** A long document (a book, a manual) is hundreds of chunks. Read
whole, its chunks would enter the packing buffer together and fill consecutive batches: on a corpus of books and
manuals half of a batch's tokens came from one document on average, and the model learned a fraction of what the same
steps teach on well-mixed batches. So the unit of shuffling is the chunk:

- Map-style sources (`datasets.Dataset`, any sequence) are read chunk by chunk in one seeded permutation of *all
  chunks of all documents* per epoch (`numpy` `default_rng([seed, epoch])`), as when a concatenated corpus is cut
  into blocks and shuffled (transformers' `run_mlm.py`). Chunks are sliced straight from the Arrow buffers, so reading
  them in any order costs no more than reading documents in order.
- Streams (`datasets.IterableDataset`) are read in their own order (`set_epoch` is forwarded to them, so a stream
  shuffled upstream with `IterableDataset.shuffle()` reshuffles its shards per epoch); their chunks pass through a
  shuffle buffer of `shuffle_buffer_size` chunks that hands them out in random order. A document of `n` chunks then
  makes up about `n / shuffle_buffer_size` of the chunks drawn while it passes through. The buffer's contents and
  random state are part of the resume state (unlike `IterableDataset.shuffle`'s own buffer, which is not restored:
  shuffle shards upstream, not buffers).

`PackingStats.mean_document_share` (the largest single-document share of a batch's real tokens, averaged over
batches) measures the result; the trainer logs it per logging window next to the packing utilisation.

**Exact resume.** `state_dict()` captures the epoch, the upstream position (for map-style sources the index into the
epoch's chunk permutation; for streams the number of documents consumed and a `datasets.IterableDataset`'s own
`state_dict()`, or a replay count for other iterables), the packing and shuffle buffers (contents and random state)
and the statistics. A new `MicrobatchDataset` over the
same data that loads it yields exactly the batches the uninterrupted one would have yielded next. The state is the
one after the last batch *yielded*; since loaders may fetch ahead, a tracker keeps `state_handle()`s (cheap
references, no copy) and turns the one of the step it saves into a state with `state_dict_from_handle`.

**Workers and ranks.** Iterate in the main process (`DataLoader(num_workers=0)`): the resume state lives in the
iterator, and a worker process would keep it out of reach, so a worker raises a clear error. Tokenization is what
costs: give a stream tokenizing worker processes (`tokenize_dataset(stream, num_proc=N)` makes a
`ParallelTokenizedStream`, whose position counts consumed records, so resume stays exact), or tokenize ahead of time
(`preprocess`, with `num_proc`); packing and masking cost a few milliseconds per batch. For several ranks pass
`num_shards=world_size, shard_index=rank`: every rank packs the same stream and keeps every `num_shards`-th batch
(only kept batches are masked), so ranks stay in step and each rank's state resumes its own share.
"""

from __future__ import annotations

import bisect
import copy
import logging
import math
from collections.abc import Iterator, Mapping, Sequence
import dataclasses
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import IterableDataset as TorchIterableDataset
from torch.utils.data import get_worker_info

from .masking import MLMMasker

__all__ = [
    "MicrobatchDataset",
    "PackingStats",
    "Segment",
    "build_packed_batch",
    "build_padded_batch",
]

logger = logging.getLogger(__name__)

_STATE_FORMAT = "neobert_hf.MicrobatchDataset/2"
_POOL_STREAM = 0x5EED  # separates the shuffle buffer's random stream from the permutation's
_MAP_BLOCK = 1024  # rows fetched per read from a map-style source

Segment = tuple[np.ndarray, int, int]
"""A piece of a document: `(token ids int32 [L], sample_index, offset of its first token in the document)`."""


@dataclass
class PackingStats:
    """Running statistics of the batches yielded so far (this shard only), kept across resume.

    Attributes:
        batches (`int`): batches yielded.
        sequences (`int`): real segments (document chunks) in them.
        documents (`int`): documents read from the source (all shards).
        real_tokens (`int`): non-padding tokens yielded.
        budget_tokens (`int`): token slots yielded (`T` per packed batch, `B * S` per padded batch).
        document_share_sum (`float`): sum over batches of the largest share of a batch's real tokens that comes from
            a single document; divided by `batches` it is [`mean_document_share`].
    """

    batches: int = 0
    sequences: int = 0
    documents: int = 0
    real_tokens: int = 0
    budget_tokens: int = 0
    document_share_sum: float = 0.0

    @property
    def mean_document_share(self) -> float:
        """Mean over batches of the largest single-document share of the batch's real tokens (batch diversity: near
        `max_seq_length / tokens_per_batch` when every chunk comes from another document, 1.0 when whole batches come
        from one document)."""
        return self.document_share_sum / self.batches if self.batches else 0.0

    @property
    def utilization(self) -> float:
        """Real tokens / token slots (1.0 before any batch)."""
        return self.real_tokens / self.budget_tokens if self.budget_tokens else 1.0

    @property
    def padding_tokens(self) -> int:
        return self.budget_tokens - self.real_tokens

    def to_dict(self, prefix: str = "") -> dict[str, float]:
        """Flat dict for logging, e.g. `trainer.log(dataset.stats.to_dict("data/"))`."""
        values = {
            **asdict(self),
            "utilization": self.utilization,
            "padding_tokens": self.padding_tokens,
            "mean_document_share": self.mean_document_share,
        }
        return {f"{prefix}{key}": value for key, value in values.items()}


# ----------------------------------------------------------------------------------------------------------------
# Batch builders (also used by the collators)
# ----------------------------------------------------------------------------------------------------------------


def _mask_segments(
    segments: Sequence[Segment], masker: MLMMasker | None, epoch: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lengths = np.fromiter((s[0].size for s in segments), dtype=np.int64, count=len(segments))
    tokens = np.concatenate([s[0] for s in segments]).astype(np.int64) if segments else np.zeros(0, np.int64)
    if masker is None:
        return tokens, tokens.copy(), lengths
    ids, labels = masker.mask(
        tokens,
        lengths=lengths,
        sample_indices=[s[1] for s in segments],
        offsets=[s[2] for s in segments],
        epoch=epoch,
    )
    return ids.numpy(), labels.numpy(), lengths


def build_packed_batch(
    segments: Sequence[Segment],
    *,
    tokens_per_batch: int,
    max_seq_length: int,
    pad_token_id: int,
    masker: MLMMasker | None = None,
    epoch: int = 0,
    max_sequences_per_batch: int | None = None,
    return_segment_info: bool = False,
) -> dict[str, Any]:
    """Pack segments into one `[1, T]` microbatch in the `DataCollatorWithFlattening` format (see module docstring).

    Args:
        segments (`Sequence[Segment]`):
            `(tokens, sample_index, offset)` triples whose lengths sum to at most `tokens_per_batch`, each at most
            `max_seq_length` long.
        tokens_per_batch (`int`):
            `T`.
        max_seq_length (`int`):
            Longest allowed segment; also the longest padding segment.
        pad_token_id (`int`):
            Id used for the padding segment(s).
        masker ([`MLMMasker`], *optional*):
            Applies MLM masking; without it `labels` are the input ids (and -100 on padding).
        epoch (`int`, *optional*, defaults to 0):
            Epoch of the masks.
        max_sequences_per_batch (`int`, *optional*):
            Pad `cu_seq_lens` to this many sequences (fixed shapes; see module docstring).
        return_segment_info (`bool`, *optional*, defaults to `False`):
            Also return `segment_info`, int64 `[n_real, 2]` of `(sample_index, offset)` per real segment (for tests
            and debugging; not a model input).

    Returns:
        `dict[str, Any]`: the batch.
    """
    ids, labels, lengths = _mask_segments(segments, masker, epoch)
    real = int(lengths.sum())
    if real > tokens_per_batch or (lengths.size and int(lengths.max()) > max_seq_length):
        raise ValueError(f"segments ({real} tokens, longest {int(lengths.max())}) do not fit the batch budget")
    leftover = tokens_per_batch - real
    # The leftover becomes its own padding segment(s), none longer than max_seq_length.
    full_pads, last_pad = divmod(leftover, max_seq_length)
    pad_lengths = [max_seq_length] * full_pads + ([last_pad] if last_pad else [])
    all_lengths = np.concatenate([lengths, np.asarray(pad_lengths, dtype=np.int64)])
    num_sequences = all_lengths.size
    if max_sequences_per_batch is not None and num_sequences > max_sequences_per_batch:
        raise ValueError(f"{num_sequences} sequences exceed max_sequences_per_batch={max_sequences_per_batch}")

    input_ids = np.full(tokens_per_batch, pad_token_id, dtype=np.int64)
    input_ids[:real] = ids
    full_labels = np.full(tokens_per_batch, -100, dtype=np.int64)
    full_labels[:real] = labels
    boundaries = np.zeros(num_sequences + 1, dtype=np.int64)
    np.cumsum(all_lengths, out=boundaries[1:])
    position_ids = np.arange(tokens_per_batch, dtype=np.int64) - np.repeat(boundaries[:-1], all_lengths)
    if max_sequences_per_batch is not None:
        boundaries = np.concatenate(
            [boundaries, np.full(max_sequences_per_batch - num_sequences, tokens_per_batch, dtype=np.int64)]
        )
        max_length = max_seq_length
    else:
        max_length = int(all_lengths.max()) if num_sequences else 0
    cu_seq_lens = torch.from_numpy(boundaries.astype(np.int32))
    batch = {
        "input_ids": torch.from_numpy(input_ids)[None],
        "labels": torch.from_numpy(full_labels)[None],
        "position_ids": torch.from_numpy(position_ids)[None],
        "cu_seq_lens_q": cu_seq_lens,
        "cu_seq_lens_k": cu_seq_lens.clone(),
        "max_length_q": max_length,
        "max_length_k": max_length,
    }
    if return_segment_info:
        batch["segment_info"] = torch.tensor([(s[1], s[2]) for s in segments], dtype=torch.long).reshape(-1, 2)
    return batch


def build_padded_batch(
    segments: Sequence[Segment],
    *,
    pad_token_id: int,
    masker: MLMMasker | None = None,
    epoch: int = 0,
    pad_to_multiple_of: int | None = None,
    return_segment_info: bool = False,
) -> dict[str, Any]:
    """Pad segments into `[B, S]` rows with an `attention_mask`, masking exactly as [`build_packed_batch`] does.

    Args:
        segments (`Sequence[Segment]`):
            One row per segment.
        pad_token_id (`int`):
            Padding id.
        masker ([`MLMMasker`], *optional*):
            Applies MLM masking; without it `labels` are the input ids (and -100 on padding).
        epoch (`int`, *optional*, defaults to 0):
            Epoch of the masks.
        pad_to_multiple_of (`int`, *optional*):
            Round `S` up to a multiple of this.
        return_segment_info (`bool`, *optional*, defaults to `False`):
            Also return `segment_info` `[B, 2]` of `(sample_index, offset)`.

    Returns:
        `dict[str, torch.Tensor]` with `input_ids`, `attention_mask`, `labels` (int64 `[B, S]`).
    """
    ids, labels, lengths = _mask_segments(segments, masker, epoch)
    longest = int(lengths.max()) if lengths.size else 0
    if pad_to_multiple_of:
        longest = -(-longest // pad_to_multiple_of) * pad_to_multiple_of
    attention = np.arange(longest)[None, :] < lengths[:, None]
    input_ids = np.full(attention.shape, pad_token_id, dtype=np.int64)
    input_ids[attention] = ids  # row-major order matches the concatenation order
    full_labels = np.full(attention.shape, -100, dtype=np.int64)
    full_labels[attention] = labels
    batch = {
        "input_ids": torch.from_numpy(input_ids),
        "attention_mask": torch.from_numpy(attention.astype(np.int64)),
        "labels": torch.from_numpy(full_labels),
    }
    if return_segment_info:
        batch["segment_info"] = torch.tensor([(s[1], s[2]) for s in segments], dtype=torch.long).reshape(-1, 2)
    return batch


# ----------------------------------------------------------------------------------------------------------------
# Buffer
# ----------------------------------------------------------------------------------------------------------------


class _Buffer:
    """Segments in insertion order, indexed by length for best-fit queries (ties: oldest first)."""

    def __init__(self, segments: Sequence[Segment] = ()):
        self._items: dict[int, Segment] = {}
        self._keys: list[tuple[int, int]] = []  # (length, -insertion number), sorted
        self._count = 0
        self.tokens = 0
        for segment in segments:
            self.add(segment)

    def __len__(self) -> int:
        return len(self._items)

    def add(self, segment: Segment) -> None:
        number = self._count
        self._count += 1
        self._items[number] = segment
        bisect.insort(self._keys, (segment[0].size, -number))
        self.tokens += segment[0].size

    def _remove(self, key_index: int) -> Segment:
        length, negative = self._keys.pop(key_index)
        segment = self._items.pop(-negative)
        self.tokens -= length
        return segment

    def pop_oldest(self) -> Segment:
        number, segment = next(iter(self._items.items()))
        return self._remove(bisect.bisect_left(self._keys, (segment[0].size, -number)))

    def pop_largest_fitting(self, budget: int) -> Segment | None:
        index = bisect.bisect_right(self._keys, (budget, math.inf)) - 1
        return None if index < 0 else self._remove(index)

    def pop_oldest_n(self, n: int) -> list[Segment]:
        return [self.pop_oldest() for _ in range(min(n, len(self._items)))]

    def segments(self) -> tuple[Segment, ...]:
        return tuple(self._items.values())


def _segments_to_state(prefix: str, segments: Sequence[Segment]) -> dict[str, torch.Tensor]:
    tokens = np.concatenate([s[0] for s in segments]) if segments else np.zeros(0, dtype=np.int32)
    return {
        f"{prefix}_tokens": torch.from_numpy(tokens.astype(np.int32)),
        f"{prefix}_lengths": torch.tensor([s[0].size for s in segments], dtype=torch.long),
        f"{prefix}_sample_indices": torch.tensor([s[1] for s in segments], dtype=torch.long),
        f"{prefix}_offsets": torch.tensor([s[2] for s in segments], dtype=torch.long),
    }


def _segments_from_state(prefix: str, state: Mapping[str, Any]) -> tuple[Segment, ...]:
    lengths = state[f"{prefix}_lengths"].tolist()
    tokens = state[f"{prefix}_tokens"].numpy().astype(np.int32)
    starts = np.cumsum([0, *lengths])
    pairs = zip(state[f"{prefix}_sample_indices"].tolist(), state[f"{prefix}_offsets"].tolist(), strict=True)
    return tuple((tokens[starts[i] : starts[i + 1]], int(sample), int(offset)) for i, (sample, offset) in enumerate(pairs))


# ----------------------------------------------------------------------------------------------------------------
# Sources
# ----------------------------------------------------------------------------------------------------------------


def _as_tokens(value: Any) -> np.ndarray:
    if torch.is_tensor(value):
        value = value.numpy()
    return np.asarray(value, dtype=np.int32).reshape(-1)


class _TokenColumn:
    """Zero-copy random access to the token lists of a `datasets.Dataset` column (or of any sequence of documents).

    Reading one chunk of a document costs a slice of the Arrow buffer, whatever the document's length, so chunks can
    be read in any order.
    """

    def __init__(self, data: Any, column: str):
        self.data, self.column = data, column
        self._values: list[np.ndarray] | None = None
        try:
            from datasets import Dataset
        except ImportError:  # pragma: no cover - datasets is a dependency
            Dataset = ()
        if isinstance(data, Dataset):
            if column not in data.column_names:
                raise ValueError(
                    f"The dataset has no {column!r} column (columns: {data.column_names}); tokenize it first "
                    "with `tokenize_dataset` or `preprocess`."
                )
            self._init_arrow(data, column)
            return
        self.lengths = np.fromiter((self._item(row).size for row in range(len(data))), dtype=np.int64, count=len(data))

    def _init_arrow(self, data: Any, column: str) -> None:
        chunked = data.data.column(column)  # pyarrow ChunkedArray of lists, memory-mapped for saved datasets
        self._values, starts, ends = [], [], []
        for chunk in chunked.chunks:
            if chunk.null_count:
                raise ValueError(f"The {column!r} column has {chunk.null_count} null rows; drop them before packing.")
            offsets = chunk.offsets.to_numpy()  # absolute positions into chunk.values (slices accounted for)
            self._values.append(chunk.values.to_numpy(zero_copy_only=False))
            starts.append(offsets[:-1])
            ends.append(offsets[1:])
        self._chunk_of_row = np.repeat(np.arange(len(starts)), [len(x) for x in starts])
        self._start = np.concatenate(starts).astype(np.int64) if starts else np.zeros(0, np.int64)
        end = np.concatenate(ends).astype(np.int64) if ends else np.zeros(0, np.int64)
        # A select()/shuffle() without flatten_indices() keeps an indices mapping: logical row -> physical row.
        indices = getattr(data, "_indices", None)
        self._physical = None if indices is None else indices.column(0).to_numpy().astype(np.int64)
        physical_lengths = end - self._start
        self.lengths = physical_lengths if self._physical is None else physical_lengths[self._physical]

    def _item(self, row: int) -> np.ndarray:
        item = self.data[row]
        return _as_tokens(item[self.column] if isinstance(item, Mapping) else item)

    def read(self, row: int, start: int, stop: int) -> np.ndarray:
        """Tokens `[start, stop)` of document `row`, as int32."""
        if self._values is None:
            return self._item(row)[start:stop]
        physical = row if self._physical is None else int(self._physical[row])
        base = int(self._start[physical])
        stop = min(stop, int(self.lengths[row]))
        values = self._values[self._chunk_of_row[physical]]
        return values[base + start : base + stop].astype(np.int32, copy=False)


class _MapSource:
    """Random-access source (`datasets.Dataset` or any sequence), read chunk by chunk in a global per-epoch order.

    Every document is cut into chunks of at most `max_seq_length` tokens; with `shuffle`, *all chunks of all
    documents* are read in one seeded permutation per epoch (`default_rng([seed, epoch])`), so the chunks of a long
    document are spread over the whole epoch, as when a concatenated corpus is cut into blocks and shuffled. Without
    `shuffle`, documents and their chunks come in order. Position = chunks read in the epoch.
    """

    kind = "map"

    def __init__(self, data: Any, column: str, shuffle: bool, seed: int, max_seq_length: int):
        self.shuffle, self.seed, self.size = shuffle, seed, max_seq_length
        self.tokens = _TokenColumn(data, column)
        self.length = len(data)
        counts = -(-self.tokens.lengths // max_seq_length)  # chunks per document (0 for an empty one)
        self._first_chunk = np.zeros(self.length + 1, dtype=np.int64)
        np.cumsum(counts, out=self._first_chunk[1:])
        self.num_chunks = int(self._first_chunk[-1])

    def order(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.num_chunks, dtype=np.int64)
        return np.random.default_rng([self.seed, epoch]).permutation(self.num_chunks)

    def segments(self, epoch: int, start: int) -> Iterator[Segment]:
        order = self.order(epoch)
        for block_start in range(start, self.num_chunks, _MAP_BLOCK):
            chunk_ids = order[block_start : block_start + _MAP_BLOCK]
            rows = np.searchsorted(self._first_chunk, chunk_ids, side="right") - 1
            offsets = (chunk_ids - self._first_chunk[rows]) * self.size
            for row, offset in zip(rows.tolist(), offsets.tolist()):
                yield self.tokens.read(row, offset, offset + self.size), row, offset

    def state_dict(self) -> None:
        return None


class _StreamSource:
    """A `datasets.IterableDataset`: position restored with its own `state_dict()`; sample index = ordinal."""

    kind = "stream"

    def __init__(self, data: Any, column: str):
        self.data, self.column, self.length = data, column, None

    def documents(self, epoch: int, start: int, state: Any) -> Iterator[tuple[int, np.ndarray]]:
        parallel_state = isinstance(state, Mapping) and str(state.get("format", "")).startswith(
            "neobert_hf.ParallelTokenizedStream/"
        )
        if parallel_state and not hasattr(self.data, "num_workers"):
            raise ValueError(
                "This data position was saved by a run whose stream was tokenized by worker processes "
                "(preprocessing_num_workers > 1); it continues exactly only with workers again (any number of them). "
                "Resume with preprocessing_num_workers set."
            )
        self.data.set_epoch(epoch)
        self.data.load_state_dict(state)  # None starts the epoch from scratch
        for ordinal, row in enumerate(self.data, start=start):
            if self.column not in row:
                raise ValueError(
                    f"The stream has no {self.column!r} column (columns: {sorted(row)}); tokenize it first with "
                    "`tokenize_dataset`."
                )
            yield ordinal, _as_tokens(row[self.column])

    def state_dict(self) -> dict:
        return self.data.state_dict()


class _ReplaySource:
    """Any other re-iterable: resumed by replaying (skipping) the documents already consumed."""

    kind = "replay"

    def __init__(self, data: Any, column: str):
        self.data, self.column, self.length = data, column, None

    def documents(self, epoch: int, start: int, state: Any) -> Iterator[tuple[int, np.ndarray]]:
        if hasattr(self.data, "set_epoch"):
            self.data.set_epoch(epoch)
        iterator = iter(self.data)
        if iterator is self.data:
            raise TypeError(
                "The source is a one-shot iterator; pass something that can be iterated again (a list, a dataset, "
                "or an object whose __iter__ starts over) so that epochs and resume can replay it."
            )
        for ordinal, item in enumerate(iterator):
            if ordinal < start:
                continue
            yield ordinal, _as_tokens(item[self.column] if isinstance(item, Mapping) else item)

    def state_dict(self) -> None:
        return None


def _make_source(
    data: Any, column: str, shuffle: bool | None, seed: int, max_seq_length: int
) -> _MapSource | _StreamSource | _ReplaySource:
    try:
        from datasets import IterableDataset as HFIterableDataset
    except ImportError:  # pragma: no cover
        HFIterableDataset = ()
    if isinstance(data, HFIterableDataset):
        if shuffle:
            raise ValueError(
                "shuffle=True needs a map-style source; a datasets.IterableDataset is read in its own order, and its "
                "chunks are mixed by the shuffle buffer (shuffle_buffer_size). Shuffle its shards upstream with "
                "IterableDataset.shuffle, or pass a map-style Dataset for a global shuffle."
            )
        return _StreamSource(data, column)
    if hasattr(data, "__len__") and hasattr(data, "__getitem__") and not isinstance(data, (str, bytes, Mapping)):
        return _MapSource(data, column, shuffle if shuffle is not None else True, seed, max_seq_length)
    if shuffle:
        raise ValueError("shuffle=True needs a map-style source (with __len__ and __getitem__).")
    return _ReplaySource(data, column)


# ----------------------------------------------------------------------------------------------------------------
# The dataset
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class _Snapshot:
    epoch: int = 0
    position: int = 0  # documents consumed in this epoch
    source_state: Any = None  # upstream datasets.IterableDataset state after `position` documents
    batches_in_epoch: int = 0  # batches built in this epoch, all shards
    buffer: tuple[Segment, ...] = ()
    stats: PackingStats = field(default_factory=PackingStats)
    pool: tuple[Segment, ...] = ()  # streams: the shuffle buffer's chunks
    pool_rng: dict | None = None  # streams: the shuffle buffer's generator state


class _ShufflePool:
    """Shuffle buffer of chunks for sources read in order (streams): a new chunk replaces a random one, which leaves.

    The chunks of a long document enter one after another, so without it they would land in consecutive batches.
    With `size` chunks held, a document of `n` chunks makes up about `n / size` of what is drawn while it passes
    through (all of the buffer if `n >= size`). Its contents and generator state are part of the resume state.
    """

    def __init__(self, size: int, segments: Sequence[Segment], rng_state: dict | None, seed: int, epoch: int):
        self.size = size
        self.items = list(segments)
        self.rng = np.random.default_rng([seed, epoch, _POOL_STREAM])
        if rng_state is not None:
            self.rng.bit_generator.state = rng_state

    def push(self, segment: Segment) -> Segment | None:
        if len(self.items) < self.size:
            self.items.append(segment)
            return None
        index = int(self.rng.integers(len(self.items)))
        out, self.items[index] = self.items[index], segment
        return out

    def pop(self) -> Segment:
        index = int(self.rng.integers(len(self.items)))
        self.items[index], self.items[-1] = self.items[-1], self.items[index]
        return self.items.pop()


class MicrobatchDataset(TorchIterableDataset):
    r"""Iterable dataset of whole MLM microbatches, packed to a fixed token budget (or padded), resumable exactly.

    See the module docstring for the batch format, the padding convention, the packing policy, shuffling, resume
    and multi-worker rules.

    Args:
        source (`datasets.Dataset`, `datasets.IterableDataset`, sequence or re-iterable):
            Tokenized documents: rows with an `input_column` of token ids (as made by `tokenize_dataset`), or the
            token id sequences themselves.
        tokens_per_batch (`int`, *optional*):
            Packed mode: the fixed token budget `T` of every batch (required).
        max_seq_length (`int`, *optional*, defaults to 512):
            Documents longer than this are split into chunks of this length (the last chunk is shorter); no
            segment, real or padding, is longer.
        pad_token_id (`int`, *optional*, defaults to 0):
            Id of the padding token.
        masker ([`MLMMasker`], *optional*):
            MLM masking applied to every yielded batch. Without it, `labels` are a copy of the real input ids.
        mode (`"packed"` or `"padded"`, *optional*, defaults to `"packed"`):
            Output layout.
        batch_size (`int`, *optional*):
            Padded mode: segments (rows) per batch (required).
        pad_to_multiple_of (`int`, *optional*, defaults to 8):
            Padded mode: round the row length up to a multiple of this (`max_seq_length` gives fixed shapes).
        buffer_size (`int`, *optional*, defaults to 512):
            Packed mode: segments held for best-fit packing; larger means fuller batches and more reordering.
        max_sequences_per_batch (`int`, *optional*):
            Packed mode: fixed number of sequences in `cu_seq_lens` (see module docstring). `None` = variable.
        shuffle (`bool`, *optional*):
            Read map-style sources chunk by chunk in a seeded per-epoch permutation of *all chunks of all documents*.
            Defaults to `True` for map-style sources and `False` for streams (which use `shuffle_buffer_size`).
        shuffle_buffer_size (`int`, *optional*, defaults to 16384):
            Streams and other sources read in order: chunks held in a shuffle buffer from which they leave in random
            order, so that the chunks of a long document spread over many batches. The buffer is saved in the resume
            state (up to `shuffle_buffer_size * max_seq_length` int32 tokens). 0 keeps the source's order.
        seed (`int`, *optional*, defaults to 0):
            Seed of the permutation and of the shuffle buffer.
        infinite (`bool`, *optional*, defaults to `False`):
            If `False`, one `iter()` covers the rest of the current epoch and the next `iter()` starts the next epoch;
            if `True`, iteration runs epoch after epoch forever (stop with `max_steps`).
        rewind (`bool`, *optional*, defaults to `False`):
            Every `iter()` starts again at the beginning of the same epoch, so every pass yields identical batches
            (same documents, order and masks) and the statistics describe the latest pass. Use it for eval data.
        input_column (`str`, *optional*, defaults to `"input_ids"`):
            Column with the token ids.
        num_shards (`int`, *optional*, defaults to 1):
            Number of ranks sharing the stream; each keeps every `num_shards`-th batch.
        shard_index (`int`, *optional*, defaults to 0):
            This rank.
        return_segment_info (`bool`, *optional*, defaults to `False`):
            Add `segment_info` `[n, 2]` (`sample_index`, offset) to each batch; for tests and debugging only (not a
            model input).
        min_batches_per_epoch (`int`, *optional*):
            Raise a `ValueError` at the end of an epoch that made fewer batches (all shards together) than this: data
            too small for one optimizer step, which a trainer that reads epoch by epoch cannot train on. For streams,
            whose size is known only once read (map-style sources can be counted up front).

    Example:

    ```python
    >>> from torch.utils.data import DataLoader
    >>> from neobert_hf.data import MicrobatchDataset, MLMMasker, PackedBatchCollator, load_tokenizer
    >>> prepared = load_tokenizer("data/tokenizer")
    >>> docs = [prepared.tokenizer(t)["input_ids"] for t in ["the dog barked", "a cat sat on the mat"] * 100]
    >>> dataset = MicrobatchDataset(
    ...     docs, tokens_per_batch=512, max_seq_length=128, pad_token_id=prepared.pad_token_id,
    ...     masker=MLMMasker.from_tokenizer(prepared.tokenizer, mlm_probability=0.2),
    ... )
    >>> batch = next(iter(DataLoader(dataset, batch_size=1, collate_fn=PackedBatchCollator())))
    >>> batch["input_ids"].shape, batch["cu_seq_lens_q"].dtype
    (torch.Size([1, 512]), torch.int32)

    ```
    """

    def __init__(
        self,
        source: Any,
        *,
        tokens_per_batch: int | None = None,
        max_seq_length: int = 512,
        pad_token_id: int = 0,
        masker: MLMMasker | None = None,
        mode: Literal["packed", "padded"] = "packed",
        batch_size: int | None = None,
        pad_to_multiple_of: int | None = 8,
        buffer_size: int = 512,
        max_sequences_per_batch: int | None = None,
        shuffle: bool | None = None,
        shuffle_buffer_size: int = 16384,
        seed: int = 0,
        infinite: bool = False,
        rewind: bool = False,
        input_column: str = "input_ids",
        num_shards: int = 1,
        shard_index: int = 0,
        return_segment_info: bool = False,
        min_batches_per_epoch: int | None = None,
    ):
        super().__init__()
        if mode not in ("packed", "padded"):
            raise ValueError(f"mode must be 'packed' or 'padded', got {mode!r}")
        if max_seq_length < 1:
            raise ValueError(f"max_seq_length must be >= 1, got {max_seq_length}")
        if mode == "packed":
            if tokens_per_batch is None or tokens_per_batch < max_seq_length:
                raise ValueError(
                    f"packed mode needs tokens_per_batch >= max_seq_length ({max_seq_length}), got {tokens_per_batch}"
                )
            if batch_size is not None:
                raise ValueError("batch_size is for mode='padded'; packed batches are sized by tokens_per_batch")
            if buffer_size < 1:
                raise ValueError(f"buffer_size must be >= 1, got {buffer_size}")
            if max_sequences_per_batch is not None:
                needed = -(-tokens_per_batch // max_seq_length) + 1
                if max_sequences_per_batch < needed:
                    raise ValueError(
                        f"max_sequences_per_batch={max_sequences_per_batch} is too small: a batch can need "
                        f"ceil(tokens_per_batch / max_seq_length) + 1 = {needed} sequences (real + padding)."
                    )
        else:
            if batch_size is None or batch_size < 1:
                raise ValueError(f"padded mode needs batch_size >= 1, got {batch_size}")
            if tokens_per_batch is not None or max_sequences_per_batch is not None:
                raise ValueError("tokens_per_batch and max_sequences_per_batch are for mode='packed'")
        if shuffle_buffer_size < 0:
            raise ValueError(f"shuffle_buffer_size must be >= 0 (0 keeps the source's order), got {shuffle_buffer_size}")
        if infinite and rewind:
            raise ValueError("infinite=True and rewind=True contradict each other: rewind replays one epoch per iter()")
        if not 0 <= shard_index < num_shards:
            raise ValueError(
                f"need 0 <= shard_index < num_shards, got shard_index={shard_index}, num_shards={num_shards}"
            )

        self.mode = mode
        self.tokens_per_batch = tokens_per_batch
        self.max_seq_length = max_seq_length
        self.pad_token_id = pad_token_id
        self.masker = masker
        self.batch_size = batch_size
        self.pad_to_multiple_of = pad_to_multiple_of
        self.buffer_size = buffer_size
        self.max_sequences_per_batch = max_sequences_per_batch
        self.seed = seed
        self.infinite = infinite
        self.rewind = rewind
        self.input_column = input_column
        self.num_shards = num_shards
        self.shard_index = shard_index
        # Not a model input, and no trainer asks for it: kept because it is the only record of which document chunk
        # sits where in a batch, which the packing invariant tests (every token once per epoch, masks and positions
        # per segment) and anyone debugging a data order need. Off by default, it costs nothing; the collators drop it.
        self.return_segment_info = return_segment_info
        self.min_batches_per_epoch = min_batches_per_epoch
        self._source = _make_source(source, input_column, shuffle, seed, max_seq_length)
        self.shuffle = getattr(self._source, "shuffle", False)
        # A map-style source is shuffled globally, chunk by chunk; the shuffle buffer is for sources read in order.
        self.shuffle_buffer_size = 0 if self._source.kind == "map" else shuffle_buffer_size
        self._snapshot = _Snapshot()
        self._generation = 0

    # -- public state -------------------------------------------------------------------------------------------

    @property
    def epoch(self) -> int:
        """The epoch the next batch comes from."""
        return self._snapshot.epoch

    @property
    def source_kind(self) -> str:
        """`"map"` (random access, with a length), `"stream"` (a `datasets.IterableDataset`) or `"replay"`."""
        return self._source.kind

    @property
    def stats(self) -> PackingStats:
        """Statistics of the batches yielded so far (a copy)."""
        return copy.copy(self._snapshot.stats)

    def set_epoch(self, epoch: int) -> None:
        """Jump to the start of `epoch` if it is ahead of the current state; otherwise do nothing.

        Moving only forward keeps a restored mid-epoch position when a trainer calls `set_epoch` with the epoch it
        believes it is in (transformers' `Trainer` counts epochs differently for iterable datasets).
        """
        if epoch > self._snapshot.epoch:
            self._snapshot = _Snapshot(epoch=epoch, stats=self._snapshot.stats)
            self._generation += 1

    def _config(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "tokens_per_batch": self.tokens_per_batch,
            "batch_size": self.batch_size,
            "max_seq_length": self.max_seq_length,
            "pad_token_id": self.pad_token_id,
            "pad_to_multiple_of": self.pad_to_multiple_of if self.mode == "padded" else None,
            "buffer_size": self.buffer_size if self.mode == "packed" else None,
            "max_sequences_per_batch": self.max_sequences_per_batch,
            "shuffle": self.shuffle,
            "shuffle_buffer_size": self.shuffle_buffer_size,
            "seed": self.seed,
            "num_shards": self.num_shards,
            "shard_index": self.shard_index,
            "source_kind": self._source.kind,
            "source_length": self._source.length,
            "masker": self.masker.config() if self.masker is not None else None,
        }

    def state_dict(self) -> dict[str, Any]:
        """The exact position after the last yielded batch. A loader that fetches ahead of the training step needs
        the position of an earlier batch: keep [`~MicrobatchDataset.state_handle`]s for that.

        Returns:
            `dict`: plain Python values and CPU tensors; save it with `torch.save`.
        """
        return self.state_dict_from_handle(self._snapshot)

    def state_handle(self) -> object:
        """A cheap, immutable reference to the current position (after the last yielded batch).

        Taking a handle copies nothing; [`~MicrobatchDataset.state_dict_from_handle`] turns it into the state dict
        later. A tracker that must remember the position after every batch (because the loader runs ahead of the
        training step) keeps handles instead of materialised states, which would copy the packing buffer and the
        shuffle buffer at every batch.
        """
        return self._snapshot

    def state_dict_from_handle(self, handle: object) -> dict[str, Any]:
        """The state dict of a position taken with [`~MicrobatchDataset.state_handle`]."""
        if not isinstance(handle, _Snapshot):
            raise TypeError(f"expected a handle from MicrobatchDataset.state_handle(), got {type(handle).__name__}")
        snapshot = handle
        return {
            "format": _STATE_FORMAT,
            "config": self._config(),
            "epoch": snapshot.epoch,
            "position": snapshot.position,
            "batches_in_epoch": snapshot.batches_in_epoch,
            "source_state": copy.deepcopy(snapshot.source_state),
            **_segments_to_state("buffer", snapshot.buffer),
            **_segments_to_state("pool", snapshot.pool),
            "pool_rng": copy.deepcopy(snapshot.pool_rng),
            "stats": asdict(snapshot.stats),
        }

    def load_state_dict(self, state: Mapping[str, Any], strict: bool = True) -> None:
        """Restore a position saved by [`~MicrobatchDataset.state_dict`]; the next `iter()` continues from it.

        Args:
            state (`dict`):
                The saved state.
            strict (`bool`, *optional*, defaults to `True`):
                Raise if the packing/masking settings or the source length differ from the saved ones (the batches
                would not match the uninterrupted run); with `False`, only log a warning.
        """
        if state.get("format") == "neobert_hf.MicrobatchDataset/1":
            raise ValueError(
                "This data state was written by an older neobert-hf that read documents whole; chunks are now shuffled "
                "across the epoch, so its position cannot be continued exactly. Start a new run, or continue "
                "training from the checkpoint's weights with --model_name_or_path (a new data order)."
            )
        if state.get("format") != _STATE_FORMAT:
            raise ValueError(
                f"not a MicrobatchDataset state (format {state.get('format')!r}, expected {_STATE_FORMAT!r})"
            )
        saved, current = state["config"], self._config()
        differences = {k: (saved.get(k), current.get(k)) for k in current if saved.get(k) != current.get(k)}
        if differences:
            message = "The saved data state was made with other settings (saved, current): " + ", ".join(
                f"{k}={v[0]!r} vs {v[1]!r}" for k, v in differences.items()
            )
            if strict:
                raise ValueError(message + ". Resume with the same settings, or pass strict=False to accept it.")
            logger.warning(message)
        self._snapshot = _Snapshot(
            epoch=int(state["epoch"]),
            position=int(state["position"]),
            source_state=copy.deepcopy(state["source_state"]),
            batches_in_epoch=int(state["batches_in_epoch"]),
            buffer=_segments_from_state("buffer", state),
            stats=PackingStats(**state["stats"]),
            pool=_segments_from_state("pool", state),
            pool_rng=copy.deepcopy(state["pool_rng"]),
        )
        self._generation += 1

    # -- iteration ------------------------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if get_worker_info() is not None:
            raise RuntimeError(
                "MicrobatchDataset must be iterated in the main process (DataLoader num_workers=0): its exact-resume "
                "state lives in the iterator and would be lost in a worker. If data loading is slow, tokenize with "
                "worker processes (tokenize_dataset(..., num_proc=N), for streams too; preprocessing_num_workers in "
                "recipes) or ahead of time with `neobert_hf.data.preprocess`; packing itself is cheap."
            )
        self._generation += 1
        generation = self._generation
        if self.rewind:
            self._snapshot = _Snapshot(epoch=self._snapshot.epoch)
        while True:
            yield from self._iterate_epoch(generation)
            if self._generation != generation or self.rewind:
                return  # a newer iterator, set_epoch or load_state_dict took over; or the pass is complete
            self._snapshot = _Snapshot(epoch=self._snapshot.epoch + 1, stats=self._snapshot.stats)
            if not self.infinite:
                return

    def batches_in_epoch(self, epoch: int = 0) -> int:
        """How many microbatches (of all shards) one pass over a map-style source makes in `epoch`: the packing of
        that epoch run on the chunk lengths only, without building or masking a batch. Streams have no length.

        Raises:
            `ValueError`: the source is not map-style.
        """
        if self._source.kind != "map":
            raise ValueError("batches_in_epoch needs a map-style source; a stream's length is unknown until read.")
        progress = {"position": 0, "batches": 0, "stats": PackingStats(), "pool": None}
        buffer, count = _Buffer(), 0
        for _ in self._incoming(_Snapshot(epoch=epoch), progress, buffer):
            while self._ready(buffer):
                self._take(buffer)
                count += 1
        while len(buffer):
            self._take(buffer)
            count += 1
        return count

    def _ready(self, buffer: _Buffer) -> bool:
        if self.mode == "padded":
            return len(buffer) >= self.batch_size
        return len(buffer) >= self.buffer_size and buffer.tokens >= 2 * self.tokens_per_batch

    def _take(self, buffer: _Buffer) -> list[Segment]:
        if self.mode == "padded":
            return buffer.pop_oldest_n(self.batch_size)
        budget, limit, size = self.tokens_per_batch, self.max_sequences_per_batch, self.max_seq_length
        chosen = [buffer.pop_oldest()]  # bounded waiting: every batch takes the oldest segment
        remaining = budget - chosen[0][0].size
        while remaining > 0 and len(buffer):
            if limit is not None:
                # Keep room for the padding segments that the leftover will need.
                index = bisect.bisect_right(buffer._keys, (remaining, math.inf)) - 1
                if index < 0:
                    break
                length = buffer._keys[index][0]
                if len(chosen) + 1 + -(-(remaining - length) // size) > limit:
                    break
            segment = buffer.pop_largest_fitting(remaining)
            if segment is None:
                break
            chosen.append(segment)
            remaining -= segment[0].size
        return chosen

    def _build(self, segments: list[Segment], epoch: int) -> dict[str, Any]:
        if self.mode == "padded":
            return build_padded_batch(
                segments,
                pad_token_id=self.pad_token_id,
                masker=self.masker,
                epoch=epoch,
                pad_to_multiple_of=self.pad_to_multiple_of,
                return_segment_info=self.return_segment_info,
            )
        return build_packed_batch(
            segments,
            tokens_per_batch=self.tokens_per_batch,
            max_seq_length=self.max_seq_length,
            pad_token_id=self.pad_token_id,
            masker=self.masker,
            epoch=epoch,
            max_sequences_per_batch=self.max_sequences_per_batch,
            return_segment_info=self.return_segment_info,
        )

    def _incoming(self, start: _Snapshot, progress: dict[str, Any], buffer: _Buffer) -> Iterator[None]:
        """Move segments into the packing buffer; yield wherever a batch may be taken (the state is consistent)."""
        epoch, stats = start.epoch, progress["stats"]
        if self._source.kind == "map":
            for segment in self._source.segments(epoch, progress["position"]):
                progress["position"] += 1
                stats.documents += segment[2] == 0
                buffer.add(segment)
                yield
            return
        pool = progress["pool"]
        size = self.max_seq_length
        for sample_index, tokens in self._source.documents(epoch, progress["position"], start.source_state):
            progress["position"] += 1
            stats.documents += 1
            for offset in range(0, tokens.size, size):
                segment = (tokens[offset : offset + size], sample_index, offset)
                out = pool.push(segment) if pool is not None else segment
                if out is not None:
                    buffer.add(out)
            yield
        while pool is not None and pool.items:  # the source is exhausted: empty the shuffle buffer
            buffer.add(pool.pop())
            yield

    def _iterate_epoch(self, generation: int) -> Iterator[dict[str, Any]]:
        start = self._snapshot
        epoch = start.epoch
        pool = None
        if self.shuffle_buffer_size:
            pool = _ShufflePool(self.shuffle_buffer_size, start.pool, start.pool_rng, self.seed, epoch)
        progress = {"position": start.position, "batches": start.batches_in_epoch, "stats": copy.copy(start.stats),
                    "pool": pool}
        stats = progress["stats"]
        buffer = _Buffer(start.buffer)

        def snapshot() -> _Snapshot:
            return _Snapshot(
                epoch=epoch,
                position=progress["position"],
                source_state=self._source.state_dict(),
                batches_in_epoch=progress["batches"],
                buffer=buffer.segments(),
                stats=copy.copy(stats),
                pool=tuple(pool.items) if pool is not None else (),
                pool_rng=pool.rng.bit_generator.state if pool is not None else None,
            )

        def emit() -> dict[str, Any] | None:
            segments = self._take(buffer)
            keep = progress["batches"] % self.num_shards == self.shard_index
            progress["batches"] += 1
            if not keep:
                return None
            batch = self._build(segments, epoch)
            real = sum(s[0].size for s in segments)
            per_document: dict[int, int] = {}
            for tokens, sample_index, _ in segments:
                per_document[sample_index] = per_document.get(sample_index, 0) + tokens.size
            stats.batches += 1
            stats.sequences += len(segments)
            stats.real_tokens += real
            stats.budget_tokens += int(batch["input_ids"].numel())
            stats.document_share_sum += max(per_document.values()) / real if real else 0.0
            self._snapshot = snapshot()
            return batch

        for _ in self._incoming(start, progress, buffer):
            while self._ready(buffer):
                batch = emit()
                if batch is not None:
                    yield batch
                    if self._generation != generation:
                        return
        while len(buffer):
            batch = emit()
            if batch is not None:
                yield batch
                if self._generation != generation:
                    return
        # End of the epoch: record what was read after the last batch this shard yielded.
        self._snapshot = dataclasses.replace(snapshot(), buffer=(), pool=(), pool_rng=None)
        if self.min_batches_per_epoch is not None and progress["batches"] < self.min_batches_per_epoch:
            raise ValueError(
                f"The training data is too small for one optimizer step: one pass over it makes "
                f"{progress['batches']} microbatch(es) ({stats.real_tokens:,} tokens), and one step takes "
                f"{self.min_batches_per_epoch}. Use more data, or lower tokens_per_batch, the batch size or "
                "gradient_accumulation_steps."
            )

    def __repr__(self) -> str:
        layout = (
            f"tokens_per_batch={self.tokens_per_batch}, buffer_size={self.buffer_size}"
            if self.mode == "packed"
            else f"batch_size={self.batch_size}, pad_to_multiple_of={self.pad_to_multiple_of}"
        )
        return (
            f"MicrobatchDataset(mode={self.mode!r}, {layout}, max_seq_length={self.max_seq_length}, "
            f"source={self._source.kind}, shuffle={self.shuffle}, seed={self.seed}, epoch={self.epoch}, "
            f"masker={self.masker!r})"
        )

"""Tokenizer preparation and dataset tokenization for MLM pretraining.

- [`prepare_tokenizer`] / [`load_tokenizer`]: make sure the tokenizer has the pad and mask tokens MLM needs, and
  pad its vocabulary with inert tokens to a multiple of `pad_vocab_to_multiple_of` (128 by default: tensor-core
  friendly embedding and decoder shapes). The returned [`PreparedTokenizer`] carries the `vocab_size` and
  `pad_token_id` to copy into the model config, so that `len(tokenizer) == config.vocab_size`.
- [`tokenize_dataset`]: `datasets.map` (batched, `num_proc` processes) that turns text into `input_ids` with
  `[CLS] ... [SEP]` around each document and **no truncation**: long documents are split into `max_seq_length`
  chunks later by the packer, so no text is thrown away. A stream with `num_proc > 1` is tokenized by worker
  processes while training reads it ([`ParallelTokenizedStream`]), with the same tokens in the same order and an
  exact resume position.
- [`preprocess`]: load a source, tokenize every split and `save_to_disk` it for reuse (`neobert-hf preprocess`).

Inert tokens are added as special tokens named `[unused_<k>]` (skipping names already in the vocabulary). They
never come out of tokenizing ordinary text, MLM never selects them and never draws them as random replacements.
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import weakref
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from datasets import Dataset, DatasetDict, Features, IterableDataset, List, Value

from ..tokenize_workers import encode_documents, encode_in_worker, start_worker
from .loading import Source, find_text_column, load_splits, select_split

__all__ = [
    "INERT_TOKEN_FORMAT",
    "ParallelTokenizedStream",
    "PreparedTokenizer",
    "TokenizeFunction",
    "load_tokenizer",
    "prepare_tokenizer",
    "preprocess",
    "tokenize_dataset",
]

INERT_TOKEN_FORMAT = "[unused_{}]"
"""Name of the k-th inert vocabulary-padding token."""

_PAD_CANDIDATES = ("[PAD]", "<pad>")
_MASK_CANDIDATES = ("[MASK]", "<mask>")


@dataclass(frozen=True)
class PreparedTokenizer:
    """A tokenizer ready for MLM, with the values the model config must share.

    Attributes:
        tokenizer (`PreTrainedTokenizerBase`):
            The tokenizer (modified in place: pad/mask set, inert tokens added).
        vocab_size (`int`):
            `len(tokenizer)` after padding: set `config.vocab_size` to it.
        pad_token_id (`int`):
            Set `config.pad_token_id` to it.
        mask_token_id (`int`):
            Id of the mask token.
        num_inert_tokens (`int`):
            How many inert tokens were added by this call.
        real_vocab_size (`int`):
            `len(tokenizer)` before the inert tokens were added.
    """

    tokenizer: Any
    vocab_size: int
    pad_token_id: int
    mask_token_id: int
    num_inert_tokens: int
    real_vocab_size: int

    def config_updates(self) -> dict[str, int]:
        """The model-config fields to sync: `{"vocab_size": ..., "pad_token_id": ...}`."""
        return {"vocab_size": self.vocab_size, "pad_token_id": self.pad_token_id}


def _ensure_special_token(tokenizer: Any, attribute: str, candidates: tuple[str, ...], add_missing: bool) -> None:
    if getattr(tokenizer, f"{attribute}_id") is not None:
        return
    vocab = tokenizer.get_vocab()
    for candidate in candidates:
        if candidate in vocab:
            tokenizer.add_special_tokens({attribute: candidate})
            return
    if not add_missing:
        raise ValueError(
            f"{type(tokenizer).__name__} has no {attribute.replace('_token', '')} token and none of "
            f"{list(candidates)} is in its vocabulary, but MLM pretraining needs one. Pass "
            f"`add_missing_special_tokens=True` to add {candidates[0]!r} as a new token (the model's vocabulary "
            f"grows by one), or set `tokenizer.{attribute}` to an existing token that never occurs in text."
        )
    tokenizer.add_special_tokens({attribute: candidates[0]})


def prepare_tokenizer(
    tokenizer: Any,
    *,
    pad_vocab_to_multiple_of: int | None = 128,
    add_missing_special_tokens: bool = False,
) -> PreparedTokenizer:
    """Give a tokenizer the pad and mask tokens MLM needs and pad its vocabulary with inert tokens.

    Args:
        tokenizer (`PreTrainedTokenizerBase`):
            Any HuggingFace tokenizer; modified in place.
        pad_vocab_to_multiple_of (`int`, *optional*, defaults to 128):
            Pad `len(tokenizer)` up to a multiple of this with inert `[unused_<k>]` special tokens. `None`, 0 or 1
            turn padding off.
        add_missing_special_tokens (`bool`, *optional*, defaults to `False`):
            If the tokenizer has no pad or mask token and its vocabulary has none of `[PAD]`/`<pad>` or
            `[MASK]`/`<mask>`, add them as new tokens instead of raising.

    Returns:
        [`PreparedTokenizer`].

    Raises:
        `ValueError`: no pad or mask token and none can be set (with `add_missing_special_tokens=False`).

    Example:

    ```python
    >>> from transformers import AutoTokenizer
    >>> from neobert_hf.data import prepare_tokenizer
    >>> prepared = prepare_tokenizer(AutoTokenizer.from_pretrained("data/tokenizer"))
    >>> prepared.config_updates()
    {'vocab_size': 8192, 'pad_token_id': 0}

    ```
    """
    if pad_vocab_to_multiple_of is not None and pad_vocab_to_multiple_of < 0:
        raise ValueError(f"pad_vocab_to_multiple_of must be >= 0, got {pad_vocab_to_multiple_of}")
    _ensure_special_token(tokenizer, "pad_token", _PAD_CANDIDATES, add_missing_special_tokens)
    _ensure_special_token(tokenizer, "mask_token", _MASK_CANDIDATES, add_missing_special_tokens)

    real_size = len(tokenizer)
    ids = tokenizer.get_vocab().values()
    if max(ids) >= real_size:
        raise ValueError(
            f"{type(tokenizer).__name__} has ids up to {max(ids)} but only {real_size} entries: its ids are not "
            "contiguous, so its vocabulary cannot be padded safely. Pass pad_vocab_to_multiple_of=None."
        )
    multiple = pad_vocab_to_multiple_of or 1
    target = -(-real_size // multiple) * multiple
    names: list[str] = []
    vocab = tokenizer.get_vocab()
    k = 0
    while len(names) < target - real_size:
        name = INERT_TOKEN_FORMAT.format(k)
        if name not in vocab:
            names.append(name)
        k += 1
    if names:
        from tokenizers import AddedToken

        tokenizer.add_tokens(
            [AddedToken(name, special=True, normalized=False, single_word=False) for name in names],
            special_tokens=True,
        )
    if len(tokenizer) != target:
        raise RuntimeError(f"padding the vocabulary gave {len(tokenizer)} entries instead of {target}")
    return PreparedTokenizer(
        tokenizer=tokenizer,
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        mask_token_id=tokenizer.mask_token_id,
        num_inert_tokens=len(names),
        real_vocab_size=real_size,
    )


def load_tokenizer(
    name_or_path: str | os.PathLike,
    *,
    pad_vocab_to_multiple_of: int | None = 128,
    add_missing_special_tokens: bool = False,
    **from_pretrained_kwargs: Any,
) -> PreparedTokenizer:
    """Load any HuggingFace tokenizer with `AutoTokenizer` and [`prepare_tokenizer`] it.

    Args:
        name_or_path (`str`):
            Hub id or local folder (e.g. `"data/tokenizer"`, the shipped 8192-entry WordPiece tokenizer).
        pad_vocab_to_multiple_of, add_missing_special_tokens:
            See [`prepare_tokenizer`].
        from_pretrained_kwargs:
            Passed to `AutoTokenizer.from_pretrained` (`revision`, `trust_remote_code`, ...).

    Returns:
        [`PreparedTokenizer`].
    """
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(os.fspath(name_or_path), **from_pretrained_kwargs)
    except OSError as error:
        raise OSError(
            f"Could not load a tokenizer from {os.fspath(name_or_path)!r}: {error} Pass a local folder holding "
            "tokenizer files (tokenizer.json / tokenizer_config.json), or a Hub id while online."
        ) from error
    return prepare_tokenizer(
        tokenizer,
        pad_vocab_to_multiple_of=pad_vocab_to_multiple_of,
        add_missing_special_tokens=add_missing_special_tokens,
    )


class TokenizeFunction:
    """Batched `datasets.map` function: text -> `input_ids` with `[CLS]`/`[SEP]` around each document.

    Special tokens are added explicitly (cls/bos first, sep/eos last, when the tokenizer has them), not through the
    tokenizer's post-processor, so every tokenizer gives the same document layout. Nothing is truncated. Empty or
    missing texts are dropped. The output is a batch with the single column `input_ids`.

    Args:
        tokenizer (`PreTrainedTokenizerBase`):
            The tokenizer.
        text_column (`str`, *optional*, defaults to `"text"`):
            Column with the raw text.
    """

    def __init__(self, tokenizer: Any, text_column: str = "text"):
        self.tokenizer = tokenizer
        self.text_column = text_column
        first = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
        last = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
        self.prefix = [first] if first is not None else []
        self.suffix = [last] if last is not None else []

    def __call__(self, batch: dict[str, list]) -> dict[str, list[list[int]]]:
        return {"input_ids": [ids for ids in self.encode(batch[self.text_column]) if ids is not None]}

    def encode(self, texts: list[str | None]) -> list[list[int] | None]:
        """One entry per text: its `input_ids`, or `None` for an empty or missing text (which `__call__` drops)."""
        return encode_documents(self.tokenizer, texts, self.prefix, self.suffix)


def tokenize_dataset(
    dataset: Dataset | IterableDataset,
    tokenizer: Any,
    *,
    text_column: str | None = None,
    num_proc: int | None = None,
    batch_size: int = 1000,
    load_from_cache_file: bool = True,
) -> Dataset | IterableDataset:
    """Tokenize a text dataset into a single `input_ids` column (int32), one row per non-empty document.

    Args:
        dataset (`Dataset` or `IterableDataset`):
            Raw text data.
        tokenizer (`PreTrainedTokenizerBase`):
            The (prepared) tokenizer.
        text_column (`str`, *optional*):
            Text column; auto-detected when not given.
        num_proc (`int`, *optional*):
            Tokenizing processes. Map-style datasets: `datasets.map`'s `num_proc`. Streams: with `num_proc > 1`, a
            [`ParallelTokenizedStream`] whose worker processes tokenize batches of `batch_size` documents ahead of
            the reader, in order (same tokens, same order, exact resume); otherwise the stream is tokenized lazily in
            the reading process.
        batch_size (`int`, *optional*, defaults to 1000):
            Documents per tokenizer call.
        load_from_cache_file (`bool`, *optional*, defaults to `True`):
            Reuse the `datasets` cache for map-style datasets.

    Returns:
        `Dataset` or `IterableDataset` with the column `input_ids`.
    """
    column = find_text_column(dataset, text_column)
    function = TokenizeFunction(tokenizer, column)
    if isinstance(dataset, IterableDataset):
        if num_proc is not None and num_proc > 1:
            return ParallelTokenizedStream(dataset, function, num_workers=num_proc, batch_size=batch_size)
        columns = dataset.column_names or list(_first_columns(dataset))
        return dataset.map(function, batched=True, batch_size=batch_size, remove_columns=columns)
    return dataset.map(
        function,
        batched=True,
        batch_size=batch_size,
        num_proc=num_proc if num_proc and num_proc > 1 else None,
        remove_columns=dataset.column_names,
        features=Features({"input_ids": List(Value("int32"))}),
        load_from_cache_file=load_from_cache_file,
        desc="Tokenizing",
    )


def _first_columns(dataset: IterableDataset) -> list[str]:
    first = next(iter(dataset.take(1)), None)
    return list(first) if first else []


# ---------------------------------------------------------------------------------------------------------------------
# Parallel tokenization of streams
# ---------------------------------------------------------------------------------------------------------------------

_PARALLEL_STATE_FORMAT = "neobert_hf.ParallelTokenizedStream/1"
_TOKENIZER_WORKER_ENV = "NEOBERT_HF_TOKENIZER_WORKER"  # read by neobert_hf/__init__.py
# A task ends at `batch_size` records or this much text, whichever comes first, so that long documents (books,
# manuals) still make several tasks for the workers to share.
_TASK_CHARACTERS = 1 << 20
class ParallelTokenizedStream(IterableDataset):
    """A text stream tokenized by worker processes while it is read: the same rows, in the same order, as
    `tokenize_dataset(stream)`, with an exact resume position.

    The reading process takes `batch_size` records at a time (fewer once they hold 1 MiB of text) from the text stream
    and hands each batch to a pool of `num_workers` processes; at most `prefetch` batches are in flight, and results are consumed in the order the
    batches were read, so the output is the serial one whatever the timing. The position (`state_dict()`) counts
    *consumed* records: the text stream's own `state_dict()` at the start of the batch the last row came from, plus
    how many of that batch's records were used. Batches tokenized ahead but not yet consumed are not part of it; on
    resume they are read and tokenized again, so a resumed run yields exactly what the uninterrupted one would have
    yielded next (for a `datasets.IterableDataset` whose own resume is exact).

    Everything except iteration and the position (`take`, `column_names`, `features`, ...) behaves as the serial
    `stream.map(TokenizeFunction(...), batched=True)`; the position is not interchangeable with the serial stream's
    (a run resumes with the tokenization it was saved with: workers or not, though any number of workers).

    Workers are started (spawned: no fork of a process that holds threads) on the first iteration, a few seconds once,
    and live as long as this object; each tokenizes with the tokenizer's own thread pool off. As with any spawned
    pool, a script that iterates it must guard its entry point with `if __name__ == "__main__":`.

    Args:
        texts (`datasets.IterableDataset`):
            The text stream.
        function ([`TokenizeFunction`]):
            Tokenizer and text column.
        num_workers (`int`):
            Worker processes (>= 1; 1 moves tokenization out of the reading process).
        batch_size (`int`, *optional*, defaults to 1000):
            Records per task (at most; a task also ends at 1 MiB of text).
        prefetch (`int`, *optional*):
            Batches in flight; defaults to `2 * num_workers`.

    Example:

    ```python
    >>> from datasets import Dataset
    >>> from neobert_hf.data import load_tokenizer, tokenize_dataset
    >>> tokenizer = load_tokenizer("data/tokenizer").tokenizer
    >>> stream = Dataset.from_dict({"text": ["the dog barked", "", "a cat sat"]}).to_iterable_dataset()
    >>> parallel = tokenize_dataset(stream, tokenizer, num_proc=2)  # doctest: +SKIP
    >>> serial = tokenize_dataset(stream, tokenizer)  # doctest: +SKIP
    >>> [row["input_ids"].tolist() for row in parallel] == [row["input_ids"] for row in serial]  # doctest: +SKIP
    True
    ```
    """

    def __init__(
        self,
        texts: IterableDataset,
        function: TokenizeFunction,
        *,
        num_workers: int,
        batch_size: int = 1000,
        prefetch: int | None = None,
    ):
        if num_workers < 1:
            raise ValueError(f"num_workers must be >= 1, got {num_workers}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        columns = texts.column_names or list(_first_columns(texts))
        serial = texts.map(function, batched=True, batch_size=batch_size, remove_columns=columns)
        # Become the serial mapped stream for everything but iteration and position (its state is its __dict__,
        # as datasets pickles it).
        self.__setstate__(dict(serial.__getstate__()))
        self._texts = texts
        self._function = function
        self._num_workers = num_workers
        self._batch_size = batch_size
        self._prefetch = prefetch if prefetch is not None else 2 * num_workers
        if self._prefetch < 1:
            raise ValueError(f"prefetch must be >= 1, got {self._prefetch}")
        self._pool = None
        self._resume_from: dict | None = None
        self._position: dict = self._state(None, 0)

    @property
    def num_workers(self) -> int:
        return self._num_workers

    @staticmethod
    def _state(texts_state: dict | None, records: int) -> dict:
        return {"format": _PARALLEL_STATE_FORMAT, "texts": texts_state, "records": records}

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self._texts.set_epoch(epoch)

    def state_dict(self) -> dict:
        """The position after the last row yielded: `{"texts": <text stream state at a batch start>, "records":
        records of that batch consumed}`."""
        return copy.deepcopy(self._position)

    def load_state_dict(self, state_dict: dict | None) -> None:
        """Continue, on the next iteration, after the position saved by [`~ParallelTokenizedStream.state_dict`]
        (`None`: from the start of the epoch)."""
        ours = isinstance(state_dict, dict) and state_dict.get("format") == _PARALLEL_STATE_FORMAT
        if state_dict is not None and not ours:
            raise ValueError(
                "This stream position was saved by a run that tokenized the stream in the reading process "
                "(preprocessing_num_workers unset or 1); it cannot be continued with tokenizing workers. Resume with "
                "the setting the run was saved with."
            )
        self._resume_from = copy.deepcopy(state_dict)
        self._position = self._state(None, 0) if state_dict is None else copy.deepcopy(state_dict)

    def _workers(self):
        if self._pool is None:
            import multiprocessing

            # The workers inherit the environment when they start: mark them as tokenizer workers so that importing
            # neobert_hf there skips registering the model classes (torch's and transformers' modeling imports).
            previous = os.environ.get(_TOKENIZER_WORKER_ENV)
            os.environ[_TOKENIZER_WORKER_ENV] = "1"
            try:
                function = self._function
                pool = multiprocessing.get_context("spawn").Pool(
                    self._num_workers,
                    initializer=start_worker,
                    initargs=(function.tokenizer, function.prefix, function.suffix),
                )
            finally:
                if previous is None:
                    del os.environ[_TOKENIZER_WORKER_ENV]
                else:
                    os.environ[_TOKENIZER_WORKER_ENV] = previous
            self._pool = pool
            weakref.finalize(self, pool.terminate)
        return self._pool

    def close(self) -> None:
        """Stop the worker processes now (they are also stopped when this object is garbage collected)."""
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_pool"] = None  # processes do not travel; a copy starts its own
        return state

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        start = self._resume_from or self._state(None, 0)
        self._position = copy.deepcopy(start)
        self._texts.load_state_dict(copy.deepcopy(start["texts"]))
        reader = iter(self._texts)
        column = self._function.text_column
        for _ in itertools.islice(reader, start["records"]):  # records consumed before the saved position
            pass
        pool = self._workers()
        in_flight: deque = deque()
        batch_state, batch_offset = start["texts"], start["records"]
        exhausted = False
        while True:
            while not exhausted and len(in_flight) < self._prefetch:
                texts, characters = [], 0
                for record in reader:
                    texts.append(record[column])
                    characters += len(record[column] or "")
                    if len(texts) == self._batch_size or characters >= _TASK_CHARACTERS:
                        break
                if not texts:
                    exhausted = True
                    break
                in_flight.append((batch_state, batch_offset, pool.apply_async(encode_in_worker, (texts,))))
                # The next batch starts where the text stream stands now.
                batch_state, batch_offset = self._texts.state_dict(), 0
            if not in_flight:
                return
            texts_state, offset, result = in_flight.popleft()
            flat, lengths = result.get()
            end = 0
            for index, length in enumerate(lengths.tolist()):
                if length < 0:
                    continue  # an empty text: no row, as in the serial stream
                begin, end = end, end + length
                self._position = self._state(texts_state, offset + index + 1)
                yield {"input_ids": flat[begin:end].copy()}  # a copy: a kept chunk must not pin the whole batch


def preprocess(
    source: Source,
    tokenizer: Any,
    output_dir: str | os.PathLike,
    *,
    config_name: str | None = None,
    splits: list[str] | None = None,
    text_column: str | None = None,
    num_proc: int | None = None,
    batch_size: int = 1000,
    cache_dir: str | None = None,
    **load_kwargs: Any,
) -> DatasetDict:
    """Tokenize a text source and save it with `save_to_disk`, ready for [`load_pretraining_data`].

    Writes `output_dir/` (a `DatasetDict` folder with one `input_ids` column per split), the tokenizer in
    `output_dir/tokenizer/`, and `output_dir/preprocess_info.json` (source, text column, documents and tokens per
    split). Loading `output_dir` later gives pre-tokenized data (`PretrainingData.tokenized`).

    Args:
        source:
            Any source accepted by [`load_splits`].
        tokenizer (`PreTrainedTokenizerBase` or `str`):
            The tokenizer, or a name/folder to load with `AutoTokenizer` (prepared or not: inert tokens never occur
            in text, so the token ids are the same).
        output_dir (`str`):
            Destination folder (created; an existing dataset there is overwritten).
        config_name (`str`, *optional*):
            Hub dataset configuration.
        splits (`list[str]`, *optional*):
            Splits to keep, slicing allowed (`["train[:10%]", "validation"]`); the slice is dropped from the saved
            name. Defaults to all splits.
        text_column (`str`, *optional*):
            Text column; auto-detected when not given.
        num_proc (`int`, *optional*):
            Tokenization processes.
        batch_size (`int`, *optional*, defaults to 1000):
            Documents per tokenizer call.
        cache_dir (`str`, *optional*):
            The `datasets` cache folder.
        load_kwargs:
            Passed to `datasets.load_dataset`.

    Returns:
        `DatasetDict`: the tokenized splits.
    """
    if isinstance(tokenizer, (str, os.PathLike)):
        tokenizer = load_tokenizer(tokenizer, pad_vocab_to_multiple_of=None).tokenizer
    all_splits = load_splits(source, config_name=config_name, streaming=False, cache_dir=cache_dir, **load_kwargs)
    chosen = {spec.split("[", 1)[0]: select_split(all_splits, spec) for spec in (splits or list(all_splits))}
    column = find_text_column(next(iter(chosen.values())), text_column)
    tokenized = DatasetDict(
        {
            name: tokenize_dataset(split, tokenizer, text_column=column, num_proc=num_proc, batch_size=batch_size)
            for name, split in chosen.items()
        }
    )
    empty = [name for name, split in tokenized.items() if len(split) == 0]
    if empty:
        raise ValueError(
            f"Nothing to save: the split(s) {empty} of {source!r} have no tokens (every document in text column "
            f"{column!r} is empty or null). Check the text column and the split."
        )
    output = Path(output_dir)
    tokenized.save_to_disk(str(output), num_proc=num_proc if num_proc and num_proc > 1 else None)
    tokenizer.save_pretrained(str(output / "tokenizer"))
    info = {
        "source": source if isinstance(source, str) else repr(source),
        "config_name": config_name,
        "text_column": column,
        "tokenizer": getattr(tokenizer, "name_or_path", None),
        "splits": {
            name: {"documents": len(split), "tokens": _count_tokens(split)} for name, split in tokenized.items()
        },
    }
    (output / "preprocess_info.json").write_text(json.dumps(info, indent=2) + "\n")
    return tokenized


def _count_tokens(dataset: Dataset) -> int:
    import pyarrow.compute as pc

    lengths = pc.list_value_length(dataset.with_format("arrow")[:]["input_ids"])
    return int(pc.sum(lengths).as_py() or 0)


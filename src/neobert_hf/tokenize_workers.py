"""Document encoding shared by the reading process and the processes that tokenize streams in parallel.

It lives outside `neobert_hf.data` and imports neither torch nor datasets, so that a worker process of
[`neobert_hf.data.ParallelTokenizedStream`] starts with only the tokenizer's own imports.
"""

from __future__ import annotations

import itertools
import os
from typing import Any

import numpy as np


__all__ = ["encode_documents", "encode_in_worker", "start_worker"]


def encode_documents(
    tokenizer: Any, texts: list[str | None], prefix: list[int], suffix: list[int]
) -> list[list[int] | None]:
    """One entry per text: `prefix + ids + suffix` (no truncation, no other special tokens), or `None` for an
    empty or missing text."""
    kept = [index for index, text in enumerate(texts) if text is not None and text.strip()]
    out: list[list[int] | None] = [None] * len(texts)
    if not kept:
        return out
    encoded = tokenizer(
        [texts[index] for index in kept],
        add_special_tokens=False,
        truncation=False,
        return_attention_mask=False,
        return_token_type_ids=False,
        verbose=False,
    )["input_ids"]
    for index, ids in zip(kept, encoded):
        out[index] = prefix + ids + suffix
    return out


_worker: tuple[Any, list[int], list[int]] | None = None


def start_worker(tokenizer: Any, prefix: list[int], suffix: list[int]) -> None:
    """Pool initializer: keep the tokenizer for [`encode_in_worker`]."""
    global _worker
    # One process per core: the tokenizer's own thread pool would compete with the other workers.
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    _worker = (tokenizer, prefix, suffix)


def encode_in_worker(texts: list[str | None]) -> tuple[np.ndarray, np.ndarray]:
    """`(all ids concatenated, int32; length per text, -1 for a dropped one)`: two arrays pickle far faster than a
    list of lists."""
    tokenizer, prefix, suffix = _worker
    encoded = encode_documents(tokenizer, texts, prefix, suffix)
    lengths = np.fromiter((-1 if ids is None else len(ids) for ids in encoded), dtype=np.int64, count=len(encoded))
    flat = np.fromiter(
        itertools.chain.from_iterable(ids for ids in encoded if ids is not None),
        dtype=np.int32,
        count=int(lengths[lengths > 0].sum()),
    )
    return flat, lengths

"""Collators for `transformers.Trainer` (or a plain `DataLoader`).

Two ways to feed MLM batches:

1. **Whole microbatches from [`MicrobatchDataset`]** (recommended). The dataset already packs (or pads) and masks;
   give the `DataLoader` `batch_size=1` (the Trainer's `per_device_train_batch_size=1`) and
   [`PackedBatchCollator`], which hands the microbatch through unchanged. With `batch_size=k > 1` it concatenates
   `k` microbatches: packed ones along the token axis into `[1, k * T]` (boundaries shifted, so every sequence still
   attends only to itself), padded ones along the batch axis. Set `dataloader_num_workers=0`.

2. **Padding per batch from a map-style dataset** with the loader's own sampler: [`PaddedMLMCollator`] pads
   `input_ids` to `[B, S]`, builds the `attention_mask` and masks tokens with the same deterministic
   [`MLMMasker`] as the packed path, keyed by each row's `sample_index` (add it with [`add_sample_index`]) and the
   collator's epoch (advance it with `set_epoch`). It is the deterministic counterpart of transformers'
   `DataCollatorForLanguageModeling`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from .masking import MLMMasker
from .packing import build_padded_batch

__all__ = ["PackedBatchCollator", "PaddedMLMCollator", "add_sample_index"]

_TOKEN_KEYS = ("input_ids", "labels", "position_ids")


def _strip_repeated_boundaries(cu: torch.Tensor) -> torch.Tensor:
    """Drop the repeated trailing `T` entries of fixed-length `cu_seq_lens` (zero-length sequences)."""
    keep = torch.ones_like(cu, dtype=torch.bool)
    keep[1:] = cu[1:] != cu[:-1]
    return cu[keep]


class PackedBatchCollator:
    """Pass whole microbatches from [`MicrobatchDataset`] through a `DataLoader`.

    - one microbatch (`batch_size=1`, or `batch_size=None`): returned as is;
    - several packed microbatches: concatenated into one `[1, sum T]` batch with merged `cu_seq_lens` (any fixed
      `cu_seq_lens` padding is removed; `max_length_q/k` is the maximum);
    - several padded microbatches: right-padded to the longest and stacked along the batch axis.

    Keys listed in `drop_keys` (by default the debug-only `segment_info`) are removed so the batch can go straight
    into the model.

    Args:
        drop_keys (`Sequence[str]`, *optional*, defaults to `("segment_info",)`):
            Keys to remove from the output.
        pad_token_id (`int`, *optional*, defaults to 0):
            Padding id when stacking padded microbatches of different widths.
    """

    def __init__(self, drop_keys: Sequence[str] = ("segment_info",), pad_token_id: int = 0):
        self.drop_keys = tuple(drop_keys)
        self.pad_token_id = pad_token_id

    def __call__(self, features: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        if isinstance(features, Mapping):
            batch = dict(features)
        elif len(features) == 1:
            batch = dict(features[0])
        elif "cu_seq_lens_q" in features[0]:
            batch = self._concatenate_packed(features)
        else:
            batch = self._stack_padded(features)
        for key in self.drop_keys:
            batch.pop(key, None)
        return batch

    def _concatenate_packed(self, features: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        batch: dict[str, Any] = {key: torch.cat([f[key] for f in features], dim=1) for key in _TOKEN_KEYS}
        boundaries, offset = [torch.zeros(1, dtype=torch.int32)], 0
        for feature in features:
            cu = _strip_repeated_boundaries(feature["cu_seq_lens_q"])
            boundaries.append(cu[1:] + offset)
            offset += int(feature["input_ids"].shape[1])
        cu = torch.cat(boundaries).to(torch.int32)
        batch["cu_seq_lens_q"], batch["cu_seq_lens_k"] = cu, cu.clone()
        batch["max_length_q"] = batch["max_length_k"] = max(int(f["max_length_q"]) for f in features)
        return batch

    def _stack_padded(self, features: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        width = max(int(f["input_ids"].shape[1]) for f in features)
        fill = {"input_ids": self.pad_token_id, "attention_mask": 0, "labels": -100}
        return {
            key: torch.cat(
                [torch.nn.functional.pad(f[key], (0, width - f[key].shape[1]), value=value) for f in features], dim=0
            )
            for key, value in fill.items()
        }


class PaddedMLMCollator:
    """Pad and mask a list of tokenized documents into `[B, S]` MLM batches, deterministically.

    Each feature is a mapping with `input_ids` and, when a masker is given, `sample_index` (the document's identity,
    e.g. its row index, see [`add_sample_index`]) and optionally `offset` (position of the first token in its
    document, for chunks). The mask of a token depends only on `(masker.seed, epoch, sample_index, position)`, so
    it equals the mask the packed path gives the same document.

    Args:
        masker ([`MLMMasker`], *optional*):
            The masking; without it `labels` are the input ids (-100 on padding).
        pad_token_id (`int`, *optional*, defaults to 0):
            Padding id.
        pad_to_multiple_of (`int`, *optional*, defaults to 8):
            Round `S` up to a multiple of this.
        max_length (`int`, *optional*):
            Reject longer documents (tokenize with truncation, or use [`MicrobatchDataset`], which chunks them).
        epoch (`int`, *optional*, defaults to 0):
            Epoch of the masks; advance it with `set_epoch` (e.g. from a `TrainerCallback.on_epoch_begin`).
    """

    def __init__(
        self,
        masker: MLMMasker | None = None,
        *,
        pad_token_id: int = 0,
        pad_to_multiple_of: int | None = 8,
        max_length: int | None = None,
        epoch: int = 0,
    ):
        self.masker = masker
        self.pad_token_id = pad_token_id
        self.pad_to_multiple_of = pad_to_multiple_of
        self.max_length = max_length
        self.epoch = epoch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        segments = []
        for feature in features:
            ids = feature["input_ids"]
            tokens = np.asarray(ids.numpy() if torch.is_tensor(ids) else ids, dtype=np.int32).reshape(-1)
            if self.max_length is not None and tokens.size > self.max_length:
                raise ValueError(
                    f"a document has {tokens.size} tokens, more than max_length={self.max_length}; truncate at "
                    "tokenization or use MicrobatchDataset, which splits long documents into chunks."
                )
            if self.masker is not None and "sample_index" not in feature:
                raise ValueError(
                    "PaddedMLMCollator needs a 'sample_index' in every feature to mask deterministically; add it with "
                    "`neobert_hf.data.add_sample_index(dataset)`."
                )
            segments.append((tokens, int(feature.get("sample_index", -1)), int(feature.get("offset", 0))))
        return build_padded_batch(
            segments,
            pad_token_id=self.pad_token_id,
            masker=self.masker,
            epoch=self.epoch,
            pad_to_multiple_of=self.pad_to_multiple_of,
        )


def add_sample_index(dataset: Any, column: str = "sample_index") -> Any:
    """Add each row's index as a column, the document identity used by [`PaddedMLMCollator`] for its masks.

    Args:
        dataset (`datasets.Dataset` or `datasets.IterableDataset`):
            Tokenized documents.
        column (`str`, *optional*, defaults to `"sample_index"`):
            Name of the new column.

    Returns:
        The dataset with the extra column. The Trainer drops unknown columns unless
        `remove_unused_columns=False`: set it when using this collator.
    """
    return dataset.map(lambda _, index: {column: index}, with_indices=True)

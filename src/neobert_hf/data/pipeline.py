"""One call from resolved pretraining data to the train and eval microbatch datasets a Trainer consumes."""

from __future__ import annotations

from typing import Any, Literal

from .loading import PretrainingData
from .masking import MLMMasker
from .packing import MicrobatchDataset
from .tokenization import tokenize_dataset

__all__ = ["build_mlm_datasets"]


def build_mlm_datasets(
    data: PretrainingData,
    tokenizer: Any,
    *,
    masker: MLMMasker,
    tokens_per_batch: int | None = None,
    max_seq_length: int = 512,
    mode: Literal["packed", "padded"] = "packed",
    batch_size: int | None = None,
    pad_to_multiple_of: int | None = 8,
    buffer_size: int = 512,
    shuffle_buffer_size: int = 16384,
    max_sequences_per_batch: int | None = None,
    seed: int = 0,
    infinite: bool = False,
    num_proc: int | None = None,
    num_shards: int = 1,
    shard_index: int = 0,
    min_batches_per_epoch: int | None = None,
) -> tuple[MicrobatchDataset, MicrobatchDataset | None]:
    """Tokenize (when needed) and wrap train and eval data into [`MicrobatchDataset`]s.

    The train dataset is shuffled per epoch chunk by chunk (map-style data over the whole epoch, streams through a
    shuffle buffer of `shuffle_buffer_size` chunks). The eval dataset is read in order with `rewind=True`, so every
    evaluation sees the same batches and the same masks (epoch 0).

    Args:
        data ([`PretrainingData`]):
            From [`load_pretraining_data`].
        tokenizer (`PreTrainedTokenizerBase`):
            The prepared tokenizer (see [`prepare_tokenizer`]); used when `data` is not tokenized yet.
        masker ([`MLMMasker`]):
            The MLM masking (its seed fixes the masks of train and eval).
        tokens_per_batch, max_seq_length, mode, batch_size, pad_to_multiple_of, buffer_size, shuffle_buffer_size,
        max_sequences_per_batch, infinite, num_shards, shard_index, min_batches_per_epoch:
            See [`MicrobatchDataset`].
        seed (`int`, *optional*, defaults to 0):
            Seed of the train order.
        num_proc (`int`, *optional*):
            Tokenization processes for map-style data.

    Returns:
        `tuple[MicrobatchDataset, MicrobatchDataset | None]`: train and eval (`None` when `data.eval` is `None`).
    """
    train, evaluation = data.train, data.eval
    if not data.tokenized:
        train = tokenize_dataset(train, tokenizer, text_column=data.text_column, num_proc=num_proc)
        if evaluation is not None:
            evaluation = tokenize_dataset(evaluation, tokenizer, text_column=data.text_column, num_proc=num_proc)
    common = {
        "tokens_per_batch": tokens_per_batch,
        "max_seq_length": max_seq_length,
        "pad_token_id": tokenizer.pad_token_id,
        "masker": masker,
        "mode": mode,
        "batch_size": batch_size,
        "pad_to_multiple_of": pad_to_multiple_of,
        "buffer_size": buffer_size,
        "max_sequences_per_batch": max_sequences_per_batch,
        "num_shards": num_shards,
        "shard_index": shard_index,
    }
    train_dataset = MicrobatchDataset(
        train,
        seed=seed,
        infinite=infinite,
        shuffle_buffer_size=shuffle_buffer_size,
        min_batches_per_epoch=min_batches_per_epoch,
        **common,
    )
    eval_dataset = None
    if evaluation is not None:
        eval_dataset = MicrobatchDataset(evaluation, shuffle=False, shuffle_buffer_size=0, rewind=True, **common)
    return train_dataset, eval_dataset

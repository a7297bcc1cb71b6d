"""Deterministic, vectorised MLM masking.

Which tokens of a document are masked, and what they are replaced by, is a pure function of
`(seed, epoch, sample_index, position of the token in its document)`:

- `sample_index` identifies the document: its row index in a map-style dataset (not its shuffled position), or its
  ordinal in a stream (counted from the start of the stream, per epoch).
- the position is counted from the first token of the *document*, so a long document split into chunks gets the
  same masks however it is chunked, and the same masks whether it is packed (`[1, T]`) or padded (`[B, S]`).

So a resumed run sees exactly the masks the uninterrupted run would have seen, packed and padded ablations mask the
same tokens, and a new epoch draws new masks.

Randomness comes from a counter-based hash rather than a stateful generator: each document gets a 64-bit key per
random stream from BLAKE2b of `(seed, epoch, sample_index, stream)` (one Python call per document), and each token
then gets a 32-bit value `h(key, position)` computed for the whole batch at once with numpy `uint32` arithmetic
(the `lowbias32` mixer; numpy rather than torch because small elementwise torch ops contend for intra-op threads
with the training step). Three streams are used: token selection
(`h < mlm_probability * 2**32`), the 80/10/10 action, and the random replacement token.

Tokens that are never selected: every id in `special_token_ids` (by default the tokenizer's `all_special_ids`:
[PAD], [CLS], [SEP], [UNK], [MASK], ...) and every id at or above the real vocabulary (inert padding tokens).
Random replacements are drawn from `replacement_token_ids` only: the real vocabulary minus special, added and
`[unused*]` tokens.
"""

from __future__ import annotations

import hashlib
import re
import struct
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["MLMMasker", "real_vocabulary_ids", "special_token_ids"]

_TWO_32 = 1 << 32
_NUM_STREAMS = 3  # selection, action (mask / random / keep), replacement token
_UNUSED_TOKEN = re.compile(r"^\[unused_?\d+\]$|^<unused_?\d+>$")
_C1, _C2 = np.uint32(0x7FEB352D), np.uint32(0x846CA68B)


def _hash32(x: np.ndarray) -> np.ndarray:
    """The `lowbias32` integer mixer (C. Wellons) on uint32: a bijection with good avalanche; wraps mod 2**32."""
    x = x ^ (x >> np.uint32(16))
    x = x * _C1
    x = x ^ (x >> np.uint32(15))
    x = x * _C2
    return x ^ (x >> np.uint32(16))


def special_token_ids(tokenizer: Any) -> list[int]:
    """Ids that MLM must never select: `all_special_ids` plus every added token flagged special (inert padding).

    Added tokens that are *not* special (domain words added with `add_tokens`) are ordinary text and stay maskable.
    """
    ids = set(tokenizer.all_special_ids)
    for index, token in getattr(tokenizer, "added_tokens_decoder", {}).items():
        if getattr(token, "special", False):
            ids.add(index)
    return sorted(ids)


def real_vocabulary_ids(tokenizer: Any, vocab_size: int | None = None) -> list[int]:
    """Ids of the tokens that can stand for real text: not special, not `[unused*]`, below `vocab_size`.

    Args:
        tokenizer (`PreTrainedTokenizerBase`):
            Any HuggingFace tokenizer.
        vocab_size (`int`, *optional*):
            Upper bound on ids (the model's vocabulary size); defaults to `len(tokenizer)`.

    Returns:
        `list[int]`: the sorted ids, the pool that random MLM replacements are drawn from.
    """
    limit = len(tokenizer) if vocab_size is None else vocab_size
    excluded = set(special_token_ids(tokenizer))
    ids = []
    for token, index in tokenizer.get_vocab().items():
        if index < limit and index not in excluded and not _UNUSED_TOKEN.match(token):
            ids.append(index)
    return sorted(ids)


class MLMMasker:
    r"""Masks tokens for MLM, deterministically per `(seed, epoch, sample_index, position)`.

    Args:
        mask_token_id (`int`):
            Id of the `[MASK]` token.
        vocab_size (`int`):
            Size of the model's vocabulary (including inert padding tokens). Ids at or above `real_vocab_size` are
            never selected; ids at or above `vocab_size` are an error.
        special_token_ids (`Iterable[int]`):
            Ids that are never selected (pad, cls, sep, unk, mask, inert padding tokens, ...).
        replacement_token_ids (`Sequence[int]` or `np.ndarray`):
            Pool for the "random token" replacement (the real vocabulary).
        mlm_probability (`float`, *optional*, defaults to 0.2):
            Probability that an eligible token is selected for prediction (NeoBERT uses 0.2).
        mask_all (`bool`, *optional*, defaults to `False`):
            If `True`, every selected token becomes `[MASK]` (NeoBERT's recipe); otherwise a selected token becomes
            `[MASK]` with probability `mask_replace_prob`, a random real token with probability
            `random_replace_prob`, and stays unchanged otherwise (BERT's 80/10/10).
        mask_replace_prob (`float`, *optional*, defaults to 0.8):
            See `mask_all`.
        random_replace_prob (`float`, *optional*, defaults to 0.1):
            See `mask_all`.
        seed (`int`, *optional*, defaults to 0):
            Seed of the masks; change it to draw different masks for the same data.
        real_vocab_size (`int`, *optional*):
            Ids at or above it (rows of the model's embedding that no tokenizer entry names) are never selected;
            defaults to `vocab_size`.

    Example:

    ```python
    >>> import torch
    >>> from transformers import AutoTokenizer
    >>> from neobert_hf.data import MLMMasker
    >>> tokenizer = AutoTokenizer.from_pretrained("data/tokenizer")
    >>> masker = MLMMasker.from_tokenizer(tokenizer, mlm_probability=0.2, mask_all=True, seed=0)
    >>> ids = torch.tensor(tokenizer("the dog barked all night")["input_ids"])
    >>> masked, labels = masker.mask(ids, lengths=[len(ids)], sample_indices=[7], epoch=0)
    >>> bool(((labels == -100) | (masked == tokenizer.mask_token_id)).all())
    True

    ```
    """

    def __init__(
        self,
        *,
        mask_token_id: int,
        vocab_size: int,
        special_token_ids: Iterable[int],
        replacement_token_ids: Sequence[int] | torch.Tensor,
        mlm_probability: float = 0.2,
        mask_all: bool = False,
        mask_replace_prob: float = 0.8,
        random_replace_prob: float = 0.1,
        seed: int = 0,
        real_vocab_size: int | None = None,
    ):
        if not 0.0 < mlm_probability < 1.0:
            raise ValueError(f"mlm_probability must be in (0, 1), got {mlm_probability}")
        if mask_replace_prob < 0 or random_replace_prob < 0 or mask_replace_prob + random_replace_prob > 1:
            raise ValueError(
                "mask_replace_prob and random_replace_prob must be >= 0 and sum to at most 1, got "
                f"{mask_replace_prob} and {random_replace_prob}"
            )
        if not 0 <= mask_token_id < vocab_size:
            raise ValueError(f"mask_token_id {mask_token_id} is outside the vocabulary [0, {vocab_size})")
        replacement = np.asarray(
            replacement_token_ids.numpy() if torch.is_tensor(replacement_token_ids) else list(replacement_token_ids),
            dtype=np.int64,
        )
        if not mask_all and random_replace_prob > 0 and replacement.size == 0:
            raise ValueError("replacement_token_ids is empty but random replacement is enabled")
        self.mask_token_id = int(mask_token_id)
        self.vocab_size = int(vocab_size)
        self.real_vocab_size = int(vocab_size if real_vocab_size is None else real_vocab_size)
        self.mlm_probability = float(mlm_probability)
        self.mask_all = bool(mask_all)
        self.mask_replace_prob = 1.0 if mask_all else float(mask_replace_prob)
        self.random_replace_prob = 0.0 if mask_all else float(random_replace_prob)
        self.seed = int(seed)
        self.replacement_token_ids = replacement
        self.special_token_ids = sorted({int(i) for i in special_token_ids})
        never = np.zeros(self.vocab_size, dtype=bool)
        never[[i for i in self.special_token_ids if 0 <= i < self.vocab_size]] = True
        never[self.real_vocab_size :] = True
        self._never_selected = never
        self._select_threshold = round(self.mlm_probability * _TWO_32)
        self._mask_threshold = round(self.mask_replace_prob * _TWO_32)
        self._random_threshold = round((self.mask_replace_prob + self.random_replace_prob) * _TWO_32)

    @classmethod
    def from_tokenizer(
        cls,
        tokenizer: Any,
        *,
        vocab_size: int | None = None,
        mlm_probability: float = 0.2,
        mask_all: bool = False,
        mask_replace_prob: float = 0.8,
        random_replace_prob: float = 0.1,
        seed: int = 0,
    ) -> MLMMasker:
        """Build a masker from a tokenizer (after any vocabulary padding, see `prepare_tokenizer`).

        Args:
            tokenizer (`PreTrainedTokenizerBase`):
                Tokenizer with a mask token.
            vocab_size (`int`, *optional*):
                The model's vocabulary size; defaults to `len(tokenizer)`.
            mlm_probability, mask_all, mask_replace_prob, random_replace_prob, seed:
                See the class docstring.

        Returns:
            [`MLMMasker`]
        """
        if tokenizer.mask_token_id is None:
            raise ValueError(
                f"{type(tokenizer).__name__} has no mask token, which MLM needs. Prepare the tokenizer with "
                "`neobert_hf.data.prepare_tokenizer(tokenizer, add_missing_special_tokens=True)` or set "
                "`tokenizer.mask_token` to a token of its vocabulary."
            )
        vocab_size = len(tokenizer) if vocab_size is None else vocab_size
        return cls(
            mask_token_id=tokenizer.mask_token_id,
            vocab_size=vocab_size,
            special_token_ids=special_token_ids(tokenizer),
            replacement_token_ids=real_vocabulary_ids(tokenizer, vocab_size),
            mlm_probability=mlm_probability,
            mask_all=mask_all,
            mask_replace_prob=mask_replace_prob,
            random_replace_prob=random_replace_prob,
            seed=seed,
            real_vocab_size=len(tokenizer),
        )

    def config(self) -> dict[str, Any]:
        """The settings that determine the masks (stored in packer checkpoints to detect a changed setup)."""
        return {
            "seed": self.seed,
            "mlm_probability": self.mlm_probability,
            "mask_all": self.mask_all,
            "mask_replace_prob": self.mask_replace_prob,
            "random_replace_prob": self.random_replace_prob,
            "mask_token_id": self.mask_token_id,
            "vocab_size": self.vocab_size,
        }

    def document_keys(self, epoch: int, sample_indices: Sequence[int]) -> np.ndarray:
        """Per-document keys: uint32 array `[n, 2 * 3]` (two 32-bit lanes for each of the three random streams)."""
        digests = b"".join(
            hashlib.blake2b(
                struct.pack("<4q", self.seed, int(epoch), int(sample_index), 0x4E656F42), digest_size=8 * _NUM_STREAMS
            ).digest()
            for sample_index in sample_indices
        )
        return np.frombuffer(digests, dtype="<u4").reshape(len(sample_indices), 2 * _NUM_STREAMS)

    def random_bits(self, token_keys: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """uint32 hash values `[3, N]` for tokens with per-token document keys `[N, 6]` and positions `[N]`."""
        positions = positions.astype(np.uint32, copy=False)
        out = np.empty((_NUM_STREAMS, positions.shape[0]), dtype=np.uint32)
        for stream in range(_NUM_STREAMS):
            lane_a, lane_b = token_keys[:, 2 * stream], token_keys[:, 2 * stream + 1]
            out[stream] = _hash32(_hash32(positions ^ lane_a) + lane_b)
        return out

    def mask(
        self,
        input_ids: torch.Tensor | np.ndarray,
        *,
        lengths: Sequence[int] | np.ndarray | torch.Tensor,
        sample_indices: Sequence[int],
        epoch: int,
        offsets: Sequence[int] | np.ndarray | torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mask a flat run of segments; each segment is a contiguous piece of one document.

        Args:
            input_ids (`torch.LongTensor` or `np.ndarray` of shape `[N]`):
                Concatenated token ids of the segments (`sum(lengths) == N`).
            lengths (`Sequence[int]`):
                Length of each segment.
            sample_indices (`Sequence[int]`):
                Document identity of each segment (row index or stream ordinal); use -1 for padding segments
                (their pad tokens are never selected anyway).
            epoch (`int`):
                The epoch, so that each epoch draws new masks.
            offsets (`Sequence[int]`, *optional*):
                Position of each segment's first token in its document (chunk start); defaults to 0.

        Returns:
            `tuple[torch.LongTensor, torch.LongTensor]`: the corrupted `input_ids` `[N]` and the `labels` `[N]`
            (original id where selected, -100 elsewhere).
        """
        ids = input_ids.numpy() if torch.is_tensor(input_ids) else np.asarray(input_ids)
        ids = ids.reshape(-1).astype(np.int64, copy=False)
        lengths_a = np.asarray(lengths, dtype=np.int64).reshape(-1)
        if int(lengths_a.sum()) != ids.size:
            raise ValueError(f"segment lengths sum to {int(lengths_a.sum())} but there are {ids.size} tokens")
        if len(sample_indices) != lengths_a.size:
            raise ValueError(f"{len(sample_indices)} sample_indices for {lengths_a.size} segments")
        if ids.size == 0:
            return torch.from_numpy(ids.copy()), torch.full((0,), -100, dtype=torch.long)
        if int(ids.max()) >= self.vocab_size or int(ids.min()) < 0:
            raise ValueError(
                f"token id {int(ids.max())} is outside the vocabulary [0, {self.vocab_size}): the tokenizer and "
                "the model's vocab_size disagree (sync `vocab_size` from `prepare_tokenizer`)."
            )
        starts = np.cumsum(lengths_a) - lengths_a
        offsets_a = np.zeros_like(lengths_a) if offsets is None else np.asarray(offsets, dtype=np.int64).reshape(-1)
        # Position of every token in its document: segment offset + index within the segment.
        positions = np.arange(ids.size, dtype=np.int64) - np.repeat(starts - offsets_a, lengths_a)
        token_keys = np.repeat(self.document_keys(epoch, sample_indices), lengths_a, axis=0)
        select_bits, action_bits, token_bits = self.random_bits(token_keys, positions)

        selected = (select_bits < self._select_threshold) & ~self._never_selected[ids]
        labels = np.where(selected, ids, -100)
        to_mask = selected & (action_bits < self._mask_threshold)
        masked = np.where(to_mask, self.mask_token_id, ids)
        if self.random_replace_prob > 0:
            to_random = selected & ~to_mask & (action_bits < self._random_threshold)
            pool = self.replacement_token_ids
            masked = np.where(to_random, pool[token_bits % np.uint32(pool.size)], masked)
        return torch.from_numpy(masked.astype(np.int64, copy=False)), torch.from_numpy(labels.astype(np.int64))

    def mask_document(
        self, input_ids: torch.Tensor | Sequence[int], *, sample_index: int, epoch: int, offset: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mask one document (or one chunk of it starting at `offset`); see [`~MLMMasker.mask`]."""
        ids = torch.as_tensor(input_ids, dtype=torch.long).reshape(-1)
        return self.mask(ids, lengths=[ids.numel()], sample_indices=[sample_index], epoch=epoch, offsets=[offset])

    def __repr__(self) -> str:
        return (
            f"MLMMasker(mlm_probability={self.mlm_probability}, mask_all={self.mask_all}, "
            f"mask_replace_prob={self.mask_replace_prob}, random_replace_prob={self.random_replace_prob}, "
            f"seed={self.seed}, vocab_size={self.vocab_size}, replacement_pool={self.replacement_token_ids.size})"
        )

"""MLM masking invariants: deterministic per (seed, epoch, document, position); identical packed, padded and
chunked; rate and 80/10/10 split within tolerance; special and inert tokens never selected or drawn."""

from pathlib import Path

import numpy as np
import pytest
import torch

from neobert_hf.data import (
    MicrobatchDataset,
    MLMMasker,
    PaddedMLMCollator,
    load_tokenizer,
    prepare_tokenizer,
    real_vocabulary_ids,
)

TOKENIZER_DIR = Path(__file__).resolve().parents[2] / "data" / "tokenizer"
VOCAB = 1000
PAD, UNK, CLS, SEP, MASK = 0, 1, 2, 3, 4


def make_masker(**kwargs) -> MLMMasker:
    return MLMMasker(
        mask_token_id=MASK,
        vocab_size=VOCAB,
        special_token_ids=[PAD, UNK, CLS, SEP, MASK],
        replacement_token_ids=range(5, VOCAB),
        **kwargs,
    )


def make_docs(n: int, seed: int = 0, max_len: int = 400) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(np.log(100), 0.8, n).astype(int), 3, max_len)
    return [np.concatenate([[CLS], rng.integers(5, VOCAB, n_ - 2), [SEP]]).astype(np.int64) for n_ in lengths]


def masks_by_document(dataset: MicrobatchDataset) -> dict[tuple[int, int], tuple[np.ndarray, np.ndarray]]:
    """(sample_index, offset) -> (input_ids, labels) for every real segment the dataset yields (packed or padded)."""
    out = {}
    for batch in dataset:
        info = batch["segment_info"].tolist()
        if "cu_seq_lens_q" in batch:
            cu = batch["cu_seq_lens_q"].tolist()
            rows = [(cu[k], cu[k + 1]) for k in range(len(info))]
            ids, labels = batch["input_ids"][0], batch["labels"][0]
            for (sample, offset), (a, b) in zip(info, rows):
                out[(sample, offset)] = (ids[a:b].numpy(), labels[a:b].numpy())
        else:
            for row, (sample, offset) in enumerate(info):
                n = int(batch["attention_mask"][row].sum())
                assert bool((batch["labels"][row, n:] == -100).all())
                out[(sample, offset)] = (batch["input_ids"][row, :n].numpy(), batch["labels"][row, :n].numpy())
    return out


def test_masks_are_a_function_of_seed_epoch_and_document():
    masker = make_masker(mlm_probability=0.2, seed=3)
    doc = make_docs(1, seed=1)[0]
    first = masker.mask_document(doc, sample_index=17, epoch=2)
    again = masker.mask_document(doc, sample_index=17, epoch=2)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    for other in (
        masker.mask_document(doc, sample_index=18, epoch=2),
        masker.mask_document(doc, sample_index=17, epoch=3),
        make_masker(mlm_probability=0.2, seed=4).mask_document(doc, sample_index=17, epoch=2),
    ):
        assert not torch.equal(first[1], other[1])
    # Batching does not matter: masking a document alone or among others gives the same result.
    docs = make_docs(5, seed=2)
    together_ids, together_labels = masker.mask(
        np.concatenate(docs), lengths=[len(d) for d in docs], sample_indices=[10, 11, 12, 13, 14], epoch=2
    )
    alone = [masker.mask_document(d, sample_index=10 + i, epoch=2) for i, d in enumerate(docs)]
    assert torch.equal(together_ids, torch.cat([a[0] for a in alone]))
    assert torch.equal(together_labels, torch.cat([a[1] for a in alone]))


def test_packed_padded_and_chunked_masks_are_identical():
    docs = make_docs(150, seed=3, max_len=700)
    masker = make_masker(mlm_probability=0.2, seed=5)
    common = dict(masker=masker, pad_token_id=PAD, return_segment_info=True, seed=9)
    packed = masks_by_document(MicrobatchDataset(docs, tokens_per_batch=2048, max_seq_length=256, **common))
    padded = masks_by_document(MicrobatchDataset(docs, mode="padded", batch_size=8, max_seq_length=256, **common))
    assert packed.keys() == padded.keys()
    for key in packed:
        np.testing.assert_array_equal(packed[key][0], padded[key][0])
        np.testing.assert_array_equal(packed[key][1], padded[key][1])
    # Chunking by 128 instead of 256 splits documents differently but masks every token the same way.
    finer = masks_by_document(MicrobatchDataset(docs, tokens_per_batch=2048, max_seq_length=128, **common))
    for sample in range(len(docs)):
        coarse = np.concatenate([packed[k][1] for k in sorted(packed) if k[0] == sample])
        fine = np.concatenate([finer[k][1] for k in sorted(finer) if k[0] == sample])
        np.testing.assert_array_equal(coarse, fine)
    # The padded collator (for map-style datasets and a Trainer sampler) gives the same masks too.
    collator = PaddedMLMCollator(masker, pad_token_id=PAD, pad_to_multiple_of=8, epoch=0)
    short = [i for i, d in enumerate(docs) if len(d) <= 256][:6]
    batch = collator([{"input_ids": docs[i].tolist(), "sample_index": i} for i in short])
    for row, i in enumerate(short):
        n = len(docs[i])
        np.testing.assert_array_equal(batch["labels"][row, :n].numpy(), packed[(i, 0)][1])
        np.testing.assert_array_equal(batch["input_ids"][row, :n].numpy(), packed[(i, 0)][0])


def test_mask_rate_and_replacement_split_within_tolerance():
    masker = make_masker(mlm_probability=0.2, seed=0)
    docs = make_docs(2000, seed=4)
    tokens = np.concatenate(docs)
    ids, labels = masker.mask(tokens, lengths=[len(d) for d in docs], sample_indices=range(len(docs)), epoch=0)
    original = torch.from_numpy(tokens)
    eligible = original >= 5
    selected = labels != -100
    assert bool((labels[selected] == original[selected]).all())
    rate = selected.sum().item() / eligible.sum().item()
    assert abs(rate - 0.2) < 0.005, rate  # ~200k eligible tokens: 5 sigma is ~0.0045
    n = selected.sum().item()
    as_mask = (ids[selected] == MASK).sum().item() / n
    kept = (ids[selected] == original[selected]).sum().item() / n
    assert abs(as_mask - 0.8) < 0.01 and abs(kept - 0.1) < 0.01 and abs(1 - as_mask - kept - 0.1) < 0.01
    assert bool((ids[~selected] == original[~selected]).all())


def test_mask_all_turns_every_selected_token_into_mask():
    masker = make_masker(mlm_probability=0.3, mask_all=True, seed=1)
    docs = make_docs(200, seed=5)
    ids, labels = masker.mask(np.concatenate(docs), lengths=[len(d) for d in docs], sample_indices=range(200), epoch=1)
    selected = labels != -100
    assert bool((ids[selected] == MASK).all()) and selected.float().mean() > 0.2
    # Same selection as 80/10/10 with the same seed: mask_all changes what replaces, not what is selected.
    _, labels_801010 = make_masker(mlm_probability=0.3, seed=1).mask(
        np.concatenate(docs), lengths=[len(d) for d in docs], sample_indices=range(200), epoch=1
    )
    assert torch.equal(labels, labels_801010)


def test_special_tokens_are_never_selected():
    rng = np.random.default_rng(6)
    tokens = rng.integers(0, VOCAB, 50_000)
    specials = rng.random(50_000) < 0.3
    tokens[specials] = rng.integers(0, 5, int(specials.sum()))  # plenty of every special id
    masker = make_masker(mlm_probability=0.5, seed=2)
    ids, labels = masker.mask(tokens, lengths=[50_000], sample_indices=[0], epoch=0)
    special = torch.from_numpy(tokens) < 5
    assert special.sum() > 5000
    assert bool((labels[special] == -100).all())
    assert bool((ids[special] == torch.from_numpy(tokens)[special]).all())


def test_shipped_tokenizer_inert_and_special_tokens_never_selected_nor_drawn():
    prepared = load_tokenizer(TOKENIZER_DIR, pad_vocab_to_multiple_of=1000)  # 8192 -> 9000: 808 inert tokens
    tokenizer = prepared.tokenizer
    assert prepared.vocab_size == 9000 and prepared.num_inert_tokens == 808
    masker = MLMMasker.from_tokenizer(tokenizer, mlm_probability=0.4, seed=0)
    pool = set(masker.replacement_token_ids.tolist())
    assert pool == set(real_vocabulary_ids(tokenizer))
    assert not pool & set(tokenizer.all_special_ids)
    assert max(pool) < prepared.real_vocab_size
    assert len(pool) == prepared.real_vocab_size - 5
    text = "[CLS] the dog barked all night [MASK] [PAD] [unused_3] and [UNK] slept " * 200
    ids = torch.tensor(tokenizer(text)["input_ids"])
    inert = tokenizer.convert_tokens_to_ids("[unused_3]")
    assert inert >= prepared.real_vocab_size and bool((ids == inert).any())
    masked, labels = masker.mask(ids, lengths=[len(ids)], sample_indices=[0], epoch=0)
    never = torch.tensor([i in set(tokenizer.all_special_ids) or i >= prepared.real_vocab_size for i in ids.tolist()])
    assert bool((labels[never] == -100).all())
    replaced = (labels != -100) & (masked != tokenizer.mask_token_id) & (masked != ids)
    assert replaced.any() and bool((masked[replaced] < prepared.real_vocab_size).all())
    assert not set(masked[replaced].tolist()) & set(tokenizer.all_special_ids)


def test_masker_rejects_ids_outside_the_vocabulary():
    with pytest.raises(ValueError, match="outside the vocabulary"):
        make_masker().mask(np.array([5, VOCAB + 3]), lengths=[2], sample_indices=[0], epoch=0)
    with pytest.raises(ValueError, match="mlm_probability"):
        make_masker(mlm_probability=0.0)


def test_collator_requires_sample_index_for_deterministic_masks():
    collator = PaddedMLMCollator(make_masker(), pad_token_id=PAD)
    with pytest.raises(ValueError, match="add_sample_index"):
        collator([{"input_ids": [2, 7, 3]}])
    no_mask = PaddedMLMCollator(None, pad_token_id=PAD, pad_to_multiple_of=4)([{"input_ids": [2, 7, 3]}])
    assert no_mask["input_ids"].tolist() == [[2, 7, 3, 0]] and no_mask["attention_mask"].tolist() == [[1, 1, 1, 0]]


def test_prepare_tokenizer_is_idempotent_for_a_multiple():
    prepared = load_tokenizer(TOKENIZER_DIR)
    assert prepared.num_inert_tokens == 0 and prepared.vocab_size == 8192
    again = prepare_tokenizer(prepared.tokenizer, pad_vocab_to_multiple_of=128)
    assert again.vocab_size == 8192 and again.num_inert_tokens == 0

"""Invariants of the stateful packer: every token exactly once, DataCollatorWithFlattening format, fixed budget,
>= 99% utilisation on long-tailed lengths, exact resume (map-style and `datasets` streams), epochs, shards."""

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset
from torch.utils.data import DataLoader
from transformers import DataCollatorWithFlattening

from neobert_hf.data import (
    MicrobatchDataset,
    MLMMasker,
    PackedBatchCollator,
    build_mlm_datasets,
    build_packed_batch,
    load_pretraining_data,
    load_tokenizer,
    tokenize_dataset,
)

REPO = Path(__file__).resolve().parents[2]
VOCAB = 1000
PAD, UNK, CLS, SEP, MASK = 0, 1, 2, 3, 4


def lognormal_docs(n: int, seed: int = 0, median: float = 120, sigma: float = 0.8, max_len: int = 512) -> list:
    """Token-id documents `[CLS] ... [SEP]` with lognormal lengths (median ~120, clipped to [3, max_len])."""
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(np.log(median), sigma, n).astype(int), 3, max_len)
    docs = []
    for length in lengths:
        body = rng.integers(5, VOCAB, length - 2)
        docs.append(np.concatenate([[CLS], body, [SEP]]).astype(np.int64))
    return docs


def masker(**kwargs) -> MLMMasker:
    return MLMMasker(
        mask_token_id=MASK,
        vocab_size=VOCAB,
        special_token_ids=[PAD, UNK, CLS, SEP, MASK],
        replacement_token_ids=range(5, VOCAB),
        **kwargs,
    )


def segments_of(batch: dict) -> list[tuple[int, int, np.ndarray, np.ndarray]]:
    """Real segments of a packed batch: (sample_index, offset, input_ids, labels)."""
    cu = batch["cu_seq_lens_q"].tolist()
    info = batch["segment_info"].tolist()
    out = []
    for k, (sample, offset) in enumerate(info):
        start, stop = cu[k], cu[k + 1]
        out.append((sample, offset, batch["input_ids"][0, start:stop].numpy(), batch["labels"][0, start:stop].numpy()))
    return out


def check_format(batch: dict, tokens_per_batch: int, max_seq_length: int, fixed: int | None = None) -> None:
    assert "attention_mask" not in batch
    for key in ("input_ids", "labels", "position_ids"):
        assert batch[key].shape == (1, tokens_per_batch) and batch[key].dtype == torch.int64, key
    cu = batch["cu_seq_lens_q"]
    assert cu.dtype == torch.int32 and cu.ndim == 1
    assert torch.equal(cu, batch["cu_seq_lens_k"])
    assert cu[0] == 0 and cu[-1] == tokens_per_batch and bool((cu[1:] >= cu[:-1]).all())
    lengths = (cu[1:] - cu[:-1]).long()
    if fixed is None:
        assert bool((lengths > 0).all())
    else:
        assert cu.numel() == fixed + 1
    assert isinstance(batch["max_length_q"], int) and batch["max_length_q"] == batch["max_length_k"]
    assert int(lengths.max()) <= batch["max_length_q"] <= max_seq_length
    expected_positions = torch.arange(tokens_per_batch) - torch.repeat_interleave(cu[:-1].long(), lengths)
    assert torch.equal(batch["position_ids"][0], expected_positions)


def test_every_token_appears_exactly_once_in_order():
    docs = lognormal_docs(600, seed=1, max_len=1500)  # some documents need several chunks
    dataset = MicrobatchDataset(
        docs, tokens_per_batch=1024, max_seq_length=256, pad_token_id=PAD, buffer_size=64, return_segment_info=True
    )
    seen: dict[int, list[int]] = {i: [] for i in range(len(docs))}
    batches = list(dataset)
    for batch in batches:
        check_format(batch, 1024, 256)
        segments = segments_of(batch)
        real = sum(len(ids) for _, _, ids, _ in segments)
        for sample, offset, ids, labels in segments:
            assert len(ids) <= 256
            np.testing.assert_array_equal(ids, docs[sample][offset : offset + len(ids)])
            np.testing.assert_array_equal(labels, ids)  # no masker: labels are the tokens
            seen[sample].append(offset)
        # Trailing padding: its own segments, pad ids, no loss, positions restarting.
        assert bool((batch["input_ids"][0, real:] == PAD).all())
        assert bool((batch["labels"][0, real:] == -100).all())
        assert int(batch["cu_seq_lens_q"][len(segments)]) == real
    for sample, offsets in seen.items():
        assert sorted(offsets) == list(range(0, len(docs[sample]), 256)), sample
    assert dataset.stats.documents == len(docs)
    assert dataset.stats.real_tokens == sum(len(d) for d in docs)
    assert dataset.stats.batches == len(batches)


def test_format_matches_data_collator_with_flattening():
    docs = lognormal_docs(40, seed=2, max_len=200)
    dataset = MicrobatchDataset(docs, tokens_per_batch=2048, max_seq_length=256, pad_token_id=PAD, buffer_size=8,
                                return_segment_info=True)
    batch = next(iter(dataset))
    cu = batch["cu_seq_lens_q"].tolist()
    features = [{"input_ids": batch["input_ids"][0, a:b].tolist()} for a, b in zip(cu[:-1], cu[1:])]
    reference = DataCollatorWithFlattening(return_flash_attn_kwargs=True)(features)
    for key in ("input_ids", "position_ids", "cu_seq_lens_q", "cu_seq_lens_k"):
        assert reference[key].dtype == batch[key].dtype, key
        assert torch.equal(reference[key], batch[key]), key
    assert reference["max_length_q"] == batch["max_length_q"]
    assert set(reference) - {"labels"} <= set(batch)


def test_utilization_at_least_99_percent_on_lognormal_lengths():
    docs = lognormal_docs(6000, seed=3, median=120, max_len=512)
    dataset = MicrobatchDataset(docs, tokens_per_batch=4096, max_seq_length=512, pad_token_id=PAD)
    batches = sum(1 for _ in dataset)
    stats = dataset.stats
    assert stats.batches == batches
    assert stats.budget_tokens == batches * 4096
    assert stats.utilization >= 0.99, stats.to_dict()
    assert stats.to_dict("data/")["data/utilization"] == stats.utilization


def test_fixed_number_of_sequences_for_compile():
    docs = lognormal_docs(300, seed=4, median=60, max_len=512)
    dataset = MicrobatchDataset(
        docs, tokens_per_batch=1024, max_seq_length=256, pad_token_id=PAD, max_sequences_per_batch=24,
        return_segment_info=True,
    )
    batches = list(dataset)
    for batch in batches:
        check_format(batch, 1024, 256, fixed=24)
        assert batch["max_length_q"] == 256
    assert sum(b["segment_info"].shape[0] for b in batches) == dataset.stats.sequences
    with pytest.raises(ValueError, match="max_sequences_per_batch=4 is too small"):
        MicrobatchDataset(docs, tokens_per_batch=1024, max_seq_length=256, max_sequences_per_batch=4)


def test_long_leftover_is_split_into_pad_segments_within_max_seq_length():
    batch = build_packed_batch(
        [(np.arange(5, 15, dtype=np.int32), 0, 0)], tokens_per_batch=1000, max_seq_length=300, pad_token_id=PAD
    )
    check_format(batch, 1000, 300)
    assert batch["cu_seq_lens_q"].tolist() == [0, 10, 310, 610, 910, 1000]
    assert int(batch["position_ids"].max()) == 299


def run_resume(make_dataset, k: int, finite: bool = True) -> None:
    """Consume k batches, save state, resume in a fresh dataset: the rest equals the uninterrupted run."""
    reference = list(make_dataset())
    assert len(reference) > k + 2
    first = make_dataset()
    iterator = iter(first)
    for _ in range(k):
        next(iterator)
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)  # the state survives a checkpoint round trip, safe-loadable
    buffer.seek(0)
    resumed = make_dataset()
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    rest = list(resumed)
    if finite:
        assert len(rest) == len(reference) - k
        assert resumed.stats.batches == len(reference)
    for expected, got in zip(reference[k:], rest):
        assert expected.keys() == got.keys()
        for key in expected:
            if torch.is_tensor(expected[key]):
                assert torch.equal(expected[key], got[key]), key
            else:
                assert expected[key] == got[key], key


class Take:
    """The first n batches of a dataset, as a max_steps loop would consume them; forwards the state API."""

    def __init__(self, dataset, n):
        self.dataset, self.n = dataset, n

    def __iter__(self):
        for i, batch in enumerate(self.dataset):
            if i >= self.n:
                return
            yield batch

    def state_dict(self):
        return self.dataset.state_dict()

    def load_state_dict(self, state):
        self.dataset.load_state_dict(state)

    @property
    def stats(self):
        return self.dataset.stats


def test_resume_map_style_is_exact():
    docs = Dataset.from_dict({"input_ids": [d.tolist() for d in lognormal_docs(400, seed=5, max_len=700)]})
    mlm = masker(mlm_probability=0.2, seed=7)

    def make():
        return MicrobatchDataset(docs, tokens_per_batch=2048, max_seq_length=256, masker=mlm, buffer_size=32, seed=3)

    run_resume(make, k=5)


def test_resume_in_padded_mode_is_exact():
    docs = lognormal_docs(120, seed=6, max_len=400)
    mlm = masker(mlm_probability=0.2, seed=1)

    def make():
        return MicrobatchDataset(docs, mode="padded", batch_size=8, max_seq_length=128, masker=mlm,
                                 pad_to_multiple_of=16)

    run_resume(make, k=7)


def test_resume_across_epoch_boundaries_is_exact():
    docs = lognormal_docs(120, seed=6, max_len=400)
    mlm = masker(mlm_probability=0.2, seed=1)

    def make():
        dataset = MicrobatchDataset(docs, tokens_per_batch=1024, max_seq_length=128, masker=mlm, buffer_size=16,
                                    infinite=True)
        return Take(dataset, 60)

    probe = make()
    for _ in probe:
        pass
    assert probe.dataset.epoch >= 2  # 60 batches span several epochs of 120 documents
    run_resume(make, k=37, finite=False)


def write_jsonl(path, texts):
    with open(path, "w") as f:
        f.writelines(json.dumps({"text": text}) + "\n" for text in texts)


@pytest.fixture(scope="module")
def shipped_tokenizer():
    return load_tokenizer(REPO / "data" / "tokenizer").tokenizer


def test_resume_datasets_stream_with_head_eval_is_exact(tmp_path, shipped_tokenizer):
    rng = np.random.default_rng(0)
    words = ["the", "dog", "cat", "barked", "sat", "on", "mat", "all", "night", "a", "small", "house", "river", "tree"]
    texts = [" ".join(rng.choice(words, size=int(rng.integers(3, 120)))) + f" {i}" for i in range(300)]
    write_jsonl(tmp_path / "train.jsonl", texts)
    mlm = MLMMasker.from_tokenizer(shipped_tokenizer, mlm_probability=0.2, seed=0)

    def make():
        data = load_pretraining_data(tmp_path / "train.jsonl", streaming=True, eval_samples=20, cache_dir=str(tmp_path))
        docs = tokenize_dataset(data.train, shipped_tokenizer, batch_size=16)
        return MicrobatchDataset(docs, tokens_per_batch=512, max_seq_length=64, masker=mlm, buffer_size=16,
                                 return_segment_info=True)

    run_resume(make, k=4)
    # The stream's sample indices count from the first training document (after the skipped eval head).
    samples = sorted(int(s) for b in make() for s, o in b["segment_info"].tolist() if o == 0)
    assert samples == list(range(280))


def test_epochs_reshuffle_and_set_epoch_only_moves_forward():
    docs = [np.array([CLS, 5 + i, SEP]) for i in range(50)]

    def order(dataset):
        return [int(s) for b in dataset for s, _ in b["segment_info"].tolist()]

    dataset = MicrobatchDataset(docs, mode="padded", batch_size=5, return_segment_info=True, seed=1)
    epoch0 = order(dataset)
    assert dataset.epoch == 1  # exhausting an epoch moves to the next one
    epoch1 = order(dataset)
    assert sorted(epoch0) == sorted(epoch1) == list(range(50)) and epoch0 != epoch1
    again = MicrobatchDataset(docs, mode="padded", batch_size=5, return_segment_info=True, seed=1)
    assert order(again) == epoch0
    again.set_epoch(0)  # behind the current epoch: ignored
    assert again.epoch == 1
    again.set_epoch(1)
    assert order(again) == epoch1
    unshuffled = MicrobatchDataset(docs, mode="padded", batch_size=5, return_segment_info=True, shuffle=False)
    assert order(unshuffled) == list(range(50))


def test_shards_split_the_batches_of_one_stream():
    docs = lognormal_docs(200, seed=8, max_len=300)
    mlm = masker(seed=2)
    kwargs = dict(tokens_per_batch=1024, max_seq_length=128, masker=mlm, buffer_size=16)
    full = list(MicrobatchDataset(docs, **kwargs))
    shards = [list(MicrobatchDataset(docs, num_shards=3, shard_index=r, **kwargs)) for r in range(3)]
    for rank, shard in enumerate(shards):
        expected = full[rank::3]
        assert len(shard) == len(expected)
        for a, b in zip(expected, shard):
            assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["labels"], b["labels"])


def test_state_handles_answer_for_loader_look_ahead():
    """A loader runs ahead of the training step: the handle taken after batch 5 still gives batch 5's exact state."""
    docs = lognormal_docs(150, seed=9, max_len=300)
    dataset = MicrobatchDataset(docs, tokens_per_batch=1024, max_seq_length=128, buffer_size=8)
    iterator = iter(dataset)
    handles = []
    for _ in range(6):
        next(iterator)
        handles.append(dataset.state_handle())
    state_after_5 = dataset.state_dict_from_handle(handles[4])
    assert state_after_5["stats"]["batches"] == 5
    resumed = MicrobatchDataset(docs, tokens_per_batch=1024, max_seq_length=128, buffer_size=8)
    resumed.load_state_dict(state_after_5)
    reference = list(MicrobatchDataset(docs, tokens_per_batch=1024, max_seq_length=128, buffer_size=8))
    assert torch.equal(next(iter(resumed))["input_ids"], reference[5]["input_ids"])
    with pytest.raises(TypeError, match="expected a handle"):
        dataset.state_dict_from_handle(5)


def test_resume_with_other_settings_is_refused():
    docs = lognormal_docs(50, seed=10)
    state = MicrobatchDataset(docs, tokens_per_batch=1024, max_seq_length=128).state_dict()
    other = MicrobatchDataset(docs, tokens_per_batch=2048, max_seq_length=128)
    with pytest.raises(ValueError, match="tokens_per_batch=1024 vs 2048"):
        other.load_state_dict(state)
    other.load_state_dict(state, strict=False)


def test_dataloader_with_collator_and_worker_error():
    docs = lognormal_docs(100, seed=11, max_len=300)
    dataset = MicrobatchDataset(docs, tokens_per_batch=1024, max_seq_length=128, return_segment_info=True)
    loader = DataLoader(dataset, batch_size=1, collate_fn=PackedBatchCollator())
    batch = next(iter(loader))
    assert batch["input_ids"].shape == (1, 1024) and "segment_info" not in batch

    pair = DataLoader(MicrobatchDataset(docs, tokens_per_batch=1024, max_seq_length=128, max_sequences_per_batch=40),
                      batch_size=2, collate_fn=PackedBatchCollator())
    merged = next(iter(pair))
    singles = list(MicrobatchDataset(docs, tokens_per_batch=1024, max_seq_length=128))[:2]
    check_format(merged, 2048, 128)
    assert torch.equal(merged["input_ids"], torch.cat([s["input_ids"] for s in singles], dim=1))
    expected_cu = torch.cat([singles[0]["cu_seq_lens_q"], singles[1]["cu_seq_lens_q"][1:] + 1024])
    assert torch.equal(merged["cu_seq_lens_q"], expected_cu)

    with pytest.raises(RuntimeError, match="num_workers=0"):
        next(iter(DataLoader(dataset, batch_size=1, num_workers=1, collate_fn=PackedBatchCollator())))


def test_invalid_settings_are_rejected():
    with pytest.raises(ValueError, match="tokens_per_batch >= max_seq_length"):
        MicrobatchDataset([[1, 2]], tokens_per_batch=64, max_seq_length=128)
    with pytest.raises(ValueError, match="padded mode needs batch_size"):
        MicrobatchDataset([[1, 2]], mode="padded")
    with pytest.raises(ValueError, match="shuffle=True needs a map-style source"):
        MicrobatchDataset(Dataset.from_dict({"input_ids": [[1, 2]]}).to_iterable_dataset(), tokens_per_batch=64,
                          max_seq_length=8, shuffle=True)


@pytest.mark.integration
def test_pipeline_from_shipped_corpus_to_train_and_rewinding_eval(tmp_path, shipped_tokenizer):
    data = load_pretraining_data(REPO / "data" / "corpus", train_split="train[:300]", cache_dir=str(tmp_path))
    data.eval = data.eval.select(range(60))
    mlm = MLMMasker.from_tokenizer(shipped_tokenizer, mlm_probability=0.2, mask_all=True, seed=0)
    train, evaluation = build_mlm_datasets(data, shipped_tokenizer, masker=mlm, tokens_per_batch=1024,
                                           max_seq_length=256, buffer_size=32)
    batch = next(iter(train))
    check_format(batch, 1024, 256)
    selected = batch["labels"] != -100
    assert bool((batch["input_ids"][selected] == shipped_tokenizer.mask_token_id).all()) and selected.any()
    first_pass = [b["labels"] for b in evaluation]
    second_pass = [b["labels"] for b in evaluation]  # every evaluation sees identical batches and masks
    assert len(first_pass) > 1 and all(torch.equal(a, b) for a, b in zip(first_pass, second_pass))
    assert evaluation.epoch == 0 and evaluation.stats.batches == len(first_pass)


# ---------------------------------------------------------------------------------------------------------------------
# Batch diversity: the chunks of a long document are spread over the epoch
# ---------------------------------------------------------------------------------------------------------------------


def long_and_short_docs() -> list[np.ndarray]:
    """4 very long documents (100 chunks of 128 tokens each, 3.4% of the tokens apiece) and 3,000 short ones."""
    rng = np.random.default_rng(0)
    long_docs = [rng.integers(5, VOCAB, 12_800) for _ in range(4)]
    short_docs = [rng.integers(5, VOCAB, int(rng.integers(20, 200))) for _ in range(3000)]
    return long_docs + short_docs


def document_shares(batches) -> np.ndarray:
    """Per batch, the largest share of its real tokens that comes from one document."""
    shares = []
    for batch in batches:
        per_document: dict[int, int] = {}
        for sample, _, ids, _ in segments_of(batch):
            per_document[sample] = per_document.get(sample, 0) + len(ids)
        shares.append(max(per_document.values()) / sum(per_document.values()))
    return np.asarray(shares)


def as_stream(docs):
    return Dataset.from_dict({"input_ids": [d.tolist() for d in docs]}).to_iterable_dataset()


# A batch holds T / max_seq_length = 16 full chunks' worth of tokens. When the chunks are shuffled uniformly, the
# number of chunks that one long document (100 of the 4,602 chunks) puts in a batch of ~20 segments is about
# Binomial(20, 0.022): P(>= 6 chunks) is ~4e-6 per document and batch, ~0.3% over the 4 documents and 186 batches of
# an epoch, whatever the seed. So no batch may draw more than 6 chunks, 6 * 128 / 2048 = 3/8 of its tokens, from one
# document. Read whole, a long document fills whole batches by itself (share 1.0).
MAX_SHARE = 6 * 128 / 2048


@pytest.mark.integration
@pytest.mark.parametrize(
    "kind, make_source, options",
    [
        ("map-style", lambda docs: docs, {}),
        ("datasets.Dataset", lambda docs: Dataset.from_dict({"input_ids": [d.tolist() for d in docs]}), {}),
        ("stream", as_stream, {"shuffle_buffer_size": 2048}),
    ],
)
def test_no_batch_is_dominated_by_one_long_document(kind, make_source, options):
    docs = long_and_short_docs()

    def make(seed=1):
        return MicrobatchDataset(make_source(docs), tokens_per_batch=2048, max_seq_length=128,
                                 return_segment_info=True, seed=seed, **options)

    dataset = make()
    batches = list(dataset)
    shares = document_shares(batches)
    assert shares.max() <= MAX_SHARE, (kind, shares.max())
    assert shares.mean() < 0.12, (kind, shares.mean())  # read whole, documents give 0.20 on this corpus
    assert dataset.stats.mean_document_share == pytest.approx(shares.mean())
    assert dataset.stats.utilization >= 0.99
    # Every token exactly once.
    assert dataset.stats.real_tokens == sum(d.size for d in docs)
    assert sorted((s, o) for b in batches for s, o, _, _ in segments_of(b)) == sorted(
        (i, o) for i, d in enumerate(docs) for o in range(0, d.size, 128)
    )
    # Deterministic for a seed, different for another.
    again = list(make())
    assert all(torch.equal(a["input_ids"], b["input_ids"]) for a, b in zip(batches, again, strict=True))
    other = next(iter(make(seed=2)))
    assert not torch.equal(other["input_ids"], batches[0]["input_ids"])


@pytest.mark.parametrize("kind", ["map-style", "stream"])
def test_reading_documents_whole_is_what_the_shuffle_prevents(kind):
    docs = long_and_short_docs()
    if kind == "map-style":
        dataset = MicrobatchDataset(docs, tokens_per_batch=2048, max_seq_length=128, shuffle=False,
                                    return_segment_info=True)
    else:
        dataset = MicrobatchDataset(as_stream(docs), tokens_per_batch=2048, max_seq_length=128,
                                    shuffle_buffer_size=0, return_segment_info=True)
    shares = document_shares(list(dataset))
    assert shares.max() == 1.0 and shares.mean() > 0.19


@pytest.mark.integration
@pytest.mark.parametrize("k", [3, 50, 97])  # early; mid-epoch; while the shuffle buffer is emptied (last ~15)
def test_resume_with_the_shuffle_buffer_is_exact(k):
    docs = long_and_short_docs()[:4] + long_and_short_docs()[4:1500]
    mlm = masker(mlm_probability=0.2, seed=3)

    def make():
        return MicrobatchDataset(as_stream(docs), tokens_per_batch=2048, max_seq_length=128, masker=mlm,
                                 shuffle_buffer_size=300, buffer_size=64, return_segment_info=True, seed=4)

    run_resume(make, k=k)


def test_map_style_chunks_come_from_an_indices_mapping_and_from_sliced_tables():
    docs = long_and_short_docs()[:2] + long_and_short_docs()[4:200]
    table = Dataset.from_dict({"input_ids": [d.tolist() for d in docs], "n": list(range(len(docs)))})
    for view, rows in [
        (table.select([5, 0, 7, 1, 3]), [5, 0, 7, 1, 3]),  # indices mapping
        (table.select(range(1, 60)), list(range(1, 60))),  # contiguous: a sliced table
        (table.shuffle(seed=0).select(range(50)), None),
    ]:
        rows = rows if rows is not None else view["n"]
        dataset = MicrobatchDataset(view, tokens_per_batch=1024, max_seq_length=128, return_segment_info=True)
        for batch in dataset:
            for sample, offset, ids, _ in segments_of(batch):
                np.testing.assert_array_equal(ids, docs[rows[sample]][offset : offset + 128])
        assert dataset.stats.real_tokens == sum(docs[r].size for r in rows)

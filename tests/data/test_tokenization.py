"""Tokenizer preparation (pad/mask tokens, inert vocabulary padding) and dataset tokenization/preprocessing."""

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from datasets import Dataset, load_dataset
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from neobert_hf.data import (
    INERT_TOKEN_FORMAT,
    MicrobatchDataset,
    MLMMasker,
    ParallelTokenizedStream,
    TokenizeFunction,
    load_pretraining_data,
    load_tokenizer,
    prepare_tokenizer,
    preprocess,
    tokenize_dataset,
)

TOKENIZER_DIR = Path(__file__).resolve().parents[2] / "data" / "tokenizer"


def word_level_tokenizer(words: list[str], **special) -> PreTrainedTokenizerFast:
    """A tiny in-memory tokenizer without the usual BERT special tokens unless given."""
    vocab = {word: i for i, word in enumerate(words)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token=words[0]))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token=words[0], **special)


def test_shipped_tokenizer_loads_offline_with_bert_layout():
    tokenizer = AutoTokenizer.from_pretrained(TOKENIZER_DIR)
    assert len(tokenizer) == 8192
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")}
    assert ids == {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "[MASK]": 4}
    assert tokenizer.pad_token_id == 0 and tokenizer.mask_token_id == 4
    encoded = tokenizer("The Dog barked.")["input_ids"]
    assert encoded[0] == 2 and encoded[-1] == 3
    assert tokenizer.decode(encoded, skip_special_tokens=True) == "the dog barked."
    assert (TOKENIZER_DIR / "vocab.txt").read_text().splitlines()[:5] == list(ids)


def test_vocabulary_padding_with_inert_tokens():
    prepared = load_tokenizer(TOKENIZER_DIR, pad_vocab_to_multiple_of=100)
    tokenizer = prepared.tokenizer
    assert prepared.vocab_size == len(tokenizer) == 8200 and prepared.num_inert_tokens == 8
    assert prepared.real_vocab_size == 8192
    assert prepared.config_updates() == {"vocab_size": 8200, "pad_token_id": 0}
    inert = [INERT_TOKEN_FORMAT.format(k) for k in range(8)]
    assert tokenizer.convert_tokens_to_ids(inert) == list(range(8192, 8200))
    text = "unused tokens such as unused_3 or [unused 3] never come out of ordinary text"
    assert max(tokenizer(text)["input_ids"]) < 8192
    for off in (None, 0, 1):
        assert load_tokenizer(TOKENIZER_DIR, pad_vocab_to_multiple_of=off).vocab_size == 8192


def test_missing_pad_or_mask_token_is_a_clear_error_or_added_on_request():
    plain = word_level_tokenizer(["<unk>", "the", "dog"])
    with pytest.raises(ValueError, match="has no pad token .*add_missing_special_tokens=True"):
        prepare_tokenizer(plain)
    prepared = prepare_tokenizer(plain, add_missing_special_tokens=True, pad_vocab_to_multiple_of=8)
    assert plain.pad_token == "[PAD]" and plain.mask_token == "[MASK]"
    assert prepared.vocab_size == 8 and prepared.pad_token_id == 3 and prepared.mask_token_id == 4
    # Existing spellings in the vocabulary are reused rather than added.
    spelled = word_level_tokenizer(["<unk>", "<pad>", "<mask>", "the"])
    reused = prepare_tokenizer(spelled, pad_vocab_to_multiple_of=None)
    assert (reused.pad_token_id, reused.mask_token_id, reused.vocab_size) == (1, 2, 4)
    with pytest.raises(ValueError, match="has no mask token"):
        MLMMasker.from_tokenizer(word_level_tokenizer(["<unk>", "a"], pad_token="<unk>"))


def test_tokenize_dataset_adds_cls_sep_drops_empty_and_never_truncates():
    tokenizer = load_tokenizer(TOKENIZER_DIR).tokenizer
    long_text = " ".join(["river"] * 5000)  # longer than model_max_length (4096)
    raw = Dataset.from_dict({"text": ["the dog barked", "", None, long_text, "   "], "id": [0, 1, 2, 3, 4]})
    tokenized = tokenize_dataset(raw, tokenizer, load_from_cache_file=False)
    assert tokenized.column_names == ["input_ids"] and len(tokenized) == 2
    assert str(tokenized.features["input_ids"].feature.dtype) == "int32"
    first, second = tokenized["input_ids"]
    assert first == tokenizer("the dog barked")["input_ids"]
    assert second[0] == tokenizer.cls_token_id and second[-1] == tokenizer.sep_token_id and len(second) == 5002
    # The same function, streamed (lazily, in this process) and in two worker processes.
    streamed = tokenize_dataset(raw.to_iterable_dataset(), tokenizer, batch_size=2)
    assert [row["input_ids"] for row in streamed] == [first, second]
    parallel = tokenize_dataset(raw, tokenizer, num_proc=2, batch_size=2, load_from_cache_file=False)
    assert parallel["input_ids"] == [first, second]


def test_preprocess_saves_a_reusable_tokenized_dataset(tmp_path):
    source = tmp_path / "corpus.jsonl"
    source.write_text("".join(f'{{"text": "the dog number {i} barked all night"}}\n' for i in range(30)))
    prepared = load_tokenizer(TOKENIZER_DIR)
    preprocess({"train": source, "validation": source}, prepared.tokenizer, tmp_path / "out",
               splits=["train", "validation[:5]"], cache_dir=str(tmp_path / "cache"))
    info = (tmp_path / "out" / "preprocess_info.json").read_text()
    assert '"validation": {\n      "documents": 5' in info and '"text_column": "text"' in info
    assert AutoTokenizer.from_pretrained(tmp_path / "out" / "tokenizer").vocab_size == 8192
    data = load_pretraining_data(tmp_path / "out")
    assert data.tokenized and data.eval_origin == "auto_split" and len(data.train) == 30 and len(data.eval) == 5
    batches = list(MicrobatchDataset(data.train, tokens_per_batch=256, max_seq_length=64, buffer_size=4))
    assert sum(int((b["labels"] != -100).sum()) for b in batches) == sum(len(x) for x in data.train["input_ids"])


# ---------------------------------------------------------------------------------------------------------------------
# Streams tokenized by worker processes: the serial token stream, and exact resume
# ---------------------------------------------------------------------------------------------------------------------

CORPUS = Path(__file__).resolve().parents[2] / "data" / "corpus" / "train.jsonl.gz"


@pytest.fixture(scope="module")
def text_stream_files(tmp_path_factory):
    """Real text from the shipped corpus in 3 JSON-lines shards (a stream with a nontrivial position), with empty
    and whitespace-only records mixed in (they make no row)."""
    folder = tmp_path_factory.mktemp("stream")
    with gzip.open(CORPUS, "rt", encoding="utf-8") as handle:
        texts = [json.loads(line)["text"] for _, line in zip(range(1500), handle)]
    for index in range(0, len(texts), 97):
        texts[index] = "" if index % 2 else "   "
    files = []
    for shard in range(3):
        path = folder / f"part-{shard}.jsonl"
        path.write_text("".join(json.dumps({"text": t, "id": i}) + "\n" for i, t in enumerate(texts[shard::3])))
        files.append(str(path))
    return files


def _text_stream(files):
    return load_dataset("json", data_files=files, split="train", streaming=True)


def _packed(source, masker, **overrides):
    return MicrobatchDataset(
        source,
        tokens_per_batch=512,
        max_seq_length=64,
        buffer_size=8,
        shuffle_buffer_size=64,
        masker=masker,
        seed=3,
        return_segment_info=True,
        **overrides,
    )


def _same_batches(left, right):
    assert len(left) == len(right)
    for a, b in zip(left, right):
        assert a.keys() == b.keys()
        for key in a:
            if hasattr(a[key], "shape"):
                assert np.array_equal(np.asarray(a[key]), np.asarray(b[key])), key
            else:
                assert a[key] == b[key], key


@pytest.mark.integration
def test_parallel_stream_tokenization_gives_the_serial_token_stream(text_stream_files):
    tokenizer = load_tokenizer(TOKENIZER_DIR).tokenizer
    serial = [row["input_ids"] for row in tokenize_dataset(_text_stream(text_stream_files), tokenizer)]
    parallel = tokenize_dataset(_text_stream(text_stream_files), tokenizer, num_proc=2, batch_size=37)
    assert isinstance(parallel, ParallelTokenizedStream) and parallel.num_workers == 2
    rows = [row["input_ids"] for row in parallel]
    assert len(rows) == len(serial) > 1000
    assert all(isinstance(r, np.ndarray) and r.dtype == np.int32 for r in rows)
    assert [r.tolist() for r in rows] == serial
    # Everything but iteration behaves as the serial mapped stream.
    assert next(iter(parallel.take(1)))["input_ids"] == serial[0]
    # A second pass (as every epoch makes) gives the same rows again.
    assert [row["input_ids"].tolist() for row in parallel] == serial
    parallel.close()


@pytest.mark.integration
def test_parallel_stream_resume_mid_stream_equals_uninterrupted(text_stream_files):
    prepared = load_tokenizer(TOKENIZER_DIR)
    masker = MLMMasker.from_tokenizer(prepared.tokenizer, mlm_probability=0.2, seed=5)
    serial_source = tokenize_dataset(_text_stream(text_stream_files), prepared.tokenizer)
    reference = list(_packed(serial_source, masker))  # the whole epoch, tokenized in this process

    source = tokenize_dataset(_text_stream(text_stream_files), prepared.tokenizer, num_proc=2, batch_size=50)
    uninterrupted = list(_packed(source, masker))
    _same_batches(uninterrupted, reference)  # workers change nothing in the batches

    first = _packed(source, masker)
    iterator = iter(first)
    head = [next(iterator) for _ in range(23)]  # workers have tokenized ahead of this point
    state = first.state_dict()
    assert state["source_state"]["format"].startswith("neobert_hf.ParallelTokenizedStream/")
    del iterator
    # A new stream with another number of workers and another batch size continues exactly.
    resumed_source = tokenize_dataset(_text_stream(text_stream_files), prepared.tokenizer, num_proc=3, batch_size=71)
    resumed = _packed(resumed_source, masker)
    resumed.load_state_dict(state)
    _same_batches(head + list(resumed), reference)
    source.close()
    resumed_source.close()


def test_parallel_and_serial_stream_positions_are_not_mixed_up(text_stream_files):
    prepared = load_tokenizer(TOKENIZER_DIR)
    serial = _packed(tokenize_dataset(_text_stream(text_stream_files), prepared.tokenizer), None)
    iterator = iter(serial)
    next(iterator)
    serial_state = serial.state_dict()
    parallel_stream = ParallelTokenizedStream(
        _text_stream(text_stream_files), TokenizeFunction(prepared.tokenizer), num_workers=1
    )
    with pytest.raises(ValueError, match="tokenized the stream in the reading process"):
        parallel_stream.load_state_dict(serial_state["source_state"])
    parallel_state = {**serial_state, "source_state": {"format": "neobert_hf.ParallelTokenizedStream/1",
                                                       "texts": None, "records": 3}}
    again = _packed(tokenize_dataset(_text_stream(text_stream_files), prepared.tokenizer), None)
    again.load_state_dict(parallel_state)
    with pytest.raises(ValueError, match="tokenized by worker processes"):
        next(iter(again))
    with pytest.raises(ValueError, match="num_workers must be >= 1"):
        ParallelTokenizedStream(_text_stream(text_stream_files), TokenizeFunction(prepared.tokenizer), num_workers=0)


@pytest.mark.integration
def test_pretrain_stream_with_tokenizing_workers_trains_and_resumes_as_serial(tmp_path, text_stream_files):
    # The end-to-end invariant through the Trainer (which fetches batches ahead of the step it saves): a streamed
    # run with preprocessing_num_workers gives the losses of the serial run, and a resume from its step-2
    # checkpoint ends with the same losses and weights as the uninterrupted run.
    import shutil

    import torch
    from safetensors.torch import load_file

    from neobert_hf.cli.main import main

    run = [
        "pretrain", "--tokenizer_name", str(TOKENIZER_DIR),
        "--hidden_size", "32", "--num_hidden_layers", "1", "--num_attention_heads", "2", "--intermediate_size", "64",
        "--max_position_embeddings", "128", "--data_files", *text_stream_files, "--streaming", "true",
        "--max_seq_length", "64", "--tokens_per_batch", "256", "--per_device_train_batch_size", "1",
        "--shuffle_buffer_size", "64", "--mlm_probability", "0.2", "--learning_rate", "1e-3", "--logging_steps", "1",
        "--max_steps", "4", "--gradient_accumulation_steps", "2", "--save_strategy", "steps", "--save_steps", "2",
        "--use_cpu", "true", "--report_to", "none", "--disable_tqdm", "true",
    ]  # fmt: skip
    workers = ["--preprocessing_num_workers", "2"]

    def losses(output_dir) -> dict:
        state = json.loads((output_dir / "checkpoints" / "4" / "trainer_state.json").read_text())
        return {entry["step"]: entry["loss"] for entry in state["log_history"] if "loss" in entry}

    serial, straight, resumed = tmp_path / "serial", tmp_path / "straight", tmp_path / "resumed"
    assert main([*run, "--output_dir", str(serial)]) == 0
    assert main([*run, *workers, "--output_dir", str(straight)]) == 0
    assert losses(straight) == losses(serial) and set(losses(serial)) == {1, 2, 3, 4}
    shutil.copytree(straight / "checkpoints" / "2", resumed / "checkpoints" / "2")
    assert main([*run, *workers, "--output_dir", str(resumed), "--resume_from_checkpoint", "latest"]) == 0
    assert losses(resumed) == losses(straight)
    a = load_file(straight / "checkpoints" / "4" / "model.safetensors")
    b = load_file(resumed / "checkpoints" / "4" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

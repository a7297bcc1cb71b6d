"""Tokenizer preparation (pad/mask tokens, inert vocabulary padding) and dataset tokenization/preprocessing."""

from pathlib import Path

import pytest
from datasets import Dataset
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from neobert_hf.data import (
    INERT_TOKEN_FORMAT,
    MicrobatchDataset,
    MLMMasker,
    load_pretraining_data,
    load_tokenizer,
    prepare_tokenizer,
    preprocess,
    tokenize_dataset,
)

TOKENIZER_DIR = Path(__file__).resolve().parents[1] / "data" / "tokenizer"


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
    with pytest.raises(ValueError, match="num_proc > 1 cannot be used with a streamed dataset"):
        tokenize_dataset(raw.to_iterable_dataset(), tokenizer, num_proc=2)
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

"""Data side of MLM pretraining: loading, tokenization, packing, masking and collation.

The usual pipeline:

```python
from neobert_hf.data import (
    MicrobatchDataset, MLMMasker, PackedBatchCollator, load_pretraining_data, load_tokenizer, tokenize_dataset,
)

prepared = load_tokenizer("data/tokenizer")                   # pads the vocabulary; sync prepared.config_updates()
data = load_pretraining_data("data/corpus")                   # train + auto-detected "validation"
train_docs = tokenize_dataset(data.train, prepared.tokenizer)  # input_ids with [CLS]/[SEP], no truncation
masker = MLMMasker.from_tokenizer(prepared.tokenizer, mlm_probability=0.2, mask_all=True, seed=0)
train = MicrobatchDataset(train_docs, tokens_per_batch=8192, max_seq_length=512,
                          pad_token_id=prepared.pad_token_id, masker=masker, seed=0)
# DataLoader(train, batch_size=1, collate_fn=PackedBatchCollator(), num_workers=0)
```
"""

from .collators import PackedBatchCollator, PaddedMLMCollator, add_sample_index
from .loading import (
    EVAL_SPLIT_NAMES,
    TEXT_COLUMN_NAMES,
    PretrainingData,
    find_text_column,
    is_tokenized,
    load_pretraining_data,
    load_splits,
    select_split,
)
from .masking import MLMMasker, real_vocabulary_ids, special_token_ids
from .packing import (
    MicrobatchDataset,
    PackingStats,
    Segment,
    build_packed_batch,
    build_padded_batch,
)
from .tokenization import (
    INERT_TOKEN_FORMAT,
    PreparedTokenizer,
    TokenizeFunction,
    load_tokenizer,
    prepare_tokenizer,
    preprocess,
    tokenize_dataset,
)

__all__ = [
    "EVAL_SPLIT_NAMES",
    "INERT_TOKEN_FORMAT",
    "TEXT_COLUMN_NAMES",
    "MLMMasker",
    "MicrobatchDataset",
    "PackedBatchCollator",
    "PackingStats",
    "PaddedMLMCollator",
    "PreparedTokenizer",
    "PretrainingData",
    "Segment",
    "TokenizeFunction",
    "add_sample_index",
    "build_packed_batch",
    "build_padded_batch",
    "find_text_column",
    "is_tokenized",
    "load_pretraining_data",
    "load_splits",
    "load_tokenizer",
    "prepare_tokenizer",
    "preprocess",
    "real_vocabulary_ids",
    "select_split",
    "special_token_ids",
    "tokenize_dataset",
]

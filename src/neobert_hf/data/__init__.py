"""Data side of MLM pretraining: loading, tokenization, packing, masking and collation.

The usual pipeline:

```python
from neobert_hf.data import (
    MLMMasker, PackedBatchCollator, build_mlm_datasets, load_pretraining_data, load_tokenizer,
)

prepared = load_tokenizer("data/tokenizer")   # pads the vocabulary: copy prepared.config_updates() into the config
data = load_pretraining_data("data/corpus")   # train + the auto-detected "validation" split
masker = MLMMasker.from_tokenizer(prepared.tokenizer, mlm_probability=0.2, mask_all=True, seed=0)
train, evaluation = build_mlm_datasets(      # tokenizes ([CLS] ... [SEP], no truncation) and packs
    data, prepared.tokenizer, masker=masker, tokens_per_batch=8192, max_seq_length=512, seed=0
)
# Trainer: per_device_train_batch_size=1, dataloader_num_workers=0, data_collator=PackedBatchCollator()
```

Step by step: [`load_pretraining_data`] (any `datasets` source, eval resolution), [`load_tokenizer`] /
[`prepare_tokenizer`] (pad/mask tokens, inert vocabulary padding), [`tokenize_dataset`] / [`preprocess`],
[`MLMMasker`] (deterministic masks), [`MicrobatchDataset`] (stateful packing, exact resume) and the collators.
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
from .pipeline import build_mlm_datasets
from .tokenization import (
    INERT_TOKEN_FORMAT,
    ParallelTokenizedStream,
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
    "ParallelTokenizedStream",
    "TokenizeFunction",
    "add_sample_index",
    "build_mlm_datasets",
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

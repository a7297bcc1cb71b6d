"""Model and data arguments of `neobert-hf pretrain` and `neobert-hf preprocess`.

Together with [`NeoBERTTrainingArguments`] they are every key a pretraining recipe may hold. Defaults are not
repeated here: a model field left at `None` keeps [`NeoBERTConfig`]'s default (or the value of the checkpoint or
config it starts from), and the data fields take their defaults from the `neobert_hf.data` functions they feed
(read from their signatures below), so each default lives in one place.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Literal

from ..data import MicrobatchDataset, MLMMasker, load_pretraining_data, prepare_tokenizer


__all__ = ["ATTENTION_IMPLEMENTATIONS", "DataArguments", "DataSourceArguments", "ModelArguments", "PreprocessArguments"]


def _default(function: Any, name: str) -> Any:
    """The default of parameter `name` of `function`: the data package owns these values."""
    return inspect.signature(function).parameters[name].default


ATTENTION_IMPLEMENTATIONS = (
    "sdpa",
    "eager",
    "flex_attention",
    "flash_attention_2",
    "flash_attention_3",
    "torch_varlen",
)

# The config fields that `ModelArguments` can set, in the order they are applied.
ARCHITECTURE_FIELDS = (
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "hidden_act",
    "rope",
    "rms_norm",
    "tie_word_embeddings",
)
"""Fields that change the shapes or the set of weights: fixed by a checkpoint given as `model_name_or_path`."""

FREE_FIELDS = (
    "max_position_embeddings",
    "rope_theta",
    "norm_eps",
    "dropout",
    "embedding_init_range",
    "decoder_init_range",
)
"""Fields without weights of their own: they may differ from a checkpoint given as `model_name_or_path` (for
example `max_position_embeddings` to extend the context of a RoPE model)."""

_TOKENIZER_HELP = (
    "Tokenizer to use: a local folder or a Hub id, loaded with AutoTokenizer. Defaults to the tokenizer saved with "
    "model_name_or_path, then to the tokenizer/ folder written by `neobert-hf preprocess` next to a preprocessed "
    "dataset_name."
)


@dataclass
class ModelArguments:
    """Which model to pretrain: a new one built from a config, or an existing checkpoint to continue."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Continue pretraining from these weights: a checkpoints/<step>/ folder, an exported model folder or "
            "a Hub id (AutoModelForMaskedLM.from_pretrained). Leave unset to train a new model from config_name and the "
            "size fields below. Only the fields without weights (max_position_embeddings, rope_theta, norm_eps, "
            "dropout, ...) may then differ from the checkpoint's config."
        },
    )
    config_name: str | None = field(
        default=None,
        metadata={
            "help": "Start a new model from this NeoBERT config (a folder or config.json path, or a Hub id); the size "
            "fields below override it. Unset: NeoBERTConfig's defaults (the released 28x768 NeoBERT)."
        },
    )
    hidden_size: int | None = field(default=None, metadata={"help": "Width of the residual stream. None: the config's."})
    num_hidden_layers: int | None = field(default=None, metadata={"help": "Number of encoder blocks. None: the config's."})
    num_attention_heads: int | None = field(
        default=None, metadata={"help": "Attention heads per block (hidden_size must be a multiple). None: the config's."}
    )
    intermediate_size: int | None = field(
        default=None,
        metadata={"help": "Nominal feed-forward width (SwiGLU uses 2/3 of it, rounded to 8). None: the config's."},
    )
    max_position_embeddings: int | None = field(
        default=None,
        metadata={"help": "Longest sequence the model accepts; max_seq_length may not exceed it. None: the config's."},
    )
    hidden_act: Literal["swiglu", "gelu"] | None = field(
        default=None, metadata={"help": "Feed-forward type. None: the config's."}
    )
    rope: bool | None = field(
        default=None,
        metadata={"help": "Rotary position embeddings (False: learned absolute positions). None: the config's."},
    )
    rope_theta: float | None = field(default=None, metadata={"help": "RoPE base frequency. None: the config's."})
    rms_norm: bool | None = field(
        default=None, metadata={"help": "RMSNorm (True) or LayerNorm with bias (False). None: the config's."}
    )
    norm_eps: float | None = field(default=None, metadata={"help": "Epsilon of the norm layers. None: the config's."})
    dropout: float | None = field(
        default=None,
        metadata={"help": "Dropout on attention probabilities and both residual branches. None: the config's."},
    )
    embedding_init_range: float | None = field(
        default=None, metadata={"help": "Embeddings are initialised uniform(-r, r). None: the config's."}
    )
    decoder_init_range: float | None = field(
        default=None, metadata={"help": "Linear layers are initialised uniform(-r, r). None: the config's."}
    )
    tie_word_embeddings: bool | None = field(
        default=None, metadata={"help": "Tie the MLM decoder to the token embedding. None: the config's."}
    )
    attn_implementation: Literal[ATTENTION_IMPLEMENTATIONS] = field(  # type: ignore[valid-type]
        default="sdpa",
        metadata={
            "help": "Attention kernel. sdpa (CPU and GPU; exact on packed batches without a T x T mask), eager "
            "(reference), flex_attention, flash_attention_2/3 (CUDA, flash-attn installed) or torch_varlen (CUDA, "
            "torch's native varlen kernel). A kernel that cannot run here is an error, never a silent fallback."
        },
    )
    tokenizer_name: str | None = field(default=None, metadata={"help": _TOKENIZER_HELP})
    pad_vocab_to_multiple_of: int | None = field(
        default=_default(prepare_tokenizer, "pad_vocab_to_multiple_of"),
        metadata={
            "help": "Pad the tokenizer with inert tokens to a multiple of this; the model's vocab_size and "
            "pad_token_id are set from the padded tokenizer, which is saved with every checkpoint. 0 or None: no "
            "padding. With model_name_or_path the tokenizer is padded to exactly the checkpoint's vocab_size instead."
        },
    )
    add_missing_special_tokens: bool = field(
        default=_default(prepare_tokenizer, "add_missing_special_tokens"),
        metadata={
            "help": "If the tokenizer has no pad or mask token and none of [PAD]/<pad>, [MASK]/<mask> in its "
            "vocabulary, add them as new tokens instead of failing."
        },
    )

    def __post_init__(self):
        for name in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                     "max_position_embeddings"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}.")
        if self.dropout is not None and not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}.")
        if self.model_name_or_path is not None and self.config_name is not None:
            raise ValueError(
                "Pass either model_name_or_path (continue from a checkpoint) or config_name (a new model), not both."
            )

    def config_overrides(self) -> dict[str, Any]:
        """The config fields given (not `None`)."""
        return {
            name: getattr(self, name)
            for name in (*ARCHITECTURE_FIELDS, *FREE_FIELDS)
            if getattr(self, name) is not None
        }


@dataclass
class DataSourceArguments:
    """Where the text comes from: any `datasets` source."""

    dataset_name: str | None = field(
        default=None,
        metadata={
            "help": "The data: a Hub dataset name, a folder written by save_to_disk (e.g. by `neobert-hf "
            "preprocess`), a data folder such as data/corpus, a file or a glob (json/jsonl/parquet/txt/csv, "
            "optionally compressed)."
        },
    )
    dataset_config_name: str | None = field(
        default=None, metadata={"help": "Configuration of a Hub dataset (e.g. wikitext-103-raw-v1)."}
    )
    data_files: list[str] | None = field(
        default=None,
        metadata={"help": "Local training files or globs (one 'train' split), instead of dataset_name."},
    )
    eval_data_files: list[str] | None = field(
        default=None,
        metadata={"help": "Local eval files or globs (a 'validation' split), with data_files."},
    )
    text_column: str | None = field(
        default=None,
        metadata={
            "help": "Column holding the text. None: the first of text/content/document/sentence/body/passage/article "
            "that is a string column, else the only string column. Pre-tokenized data (input_ids) needs none."
        },
    )
    cache_dir: str | None = field(default=None, metadata={"help": "Cache folder of `datasets`."})
    preprocessing_num_workers: int | None = field(
        default=None,
        metadata={
            "help": "Processes that tokenize. Map-style data: datasets.map num_proc, before training. A stream "
            "(streaming: true) with 2 or more: worker processes tokenize batches of 1,000 documents ahead of the "
            "reader while training runs, in order, so the tokens are those of one process and resume stays exact "
            "(the checkpoint counts consumed documents, not tokenized ones); a run resumes with workers again (any "
            "number). Unset or 1: the stream is tokenized by the training process."
        },
    )

    def __post_init__(self):
        if self.data_files is None and self.eval_data_files is not None:
            raise ValueError("eval_data_files needs data_files (the training files).")
        if self.preprocessing_num_workers is not None and self.preprocessing_num_workers < 1:
            raise ValueError(f"preprocessing_num_workers must be >= 1, got {self.preprocessing_num_workers}.")

    def source(self) -> Any:
        """The `source` argument of `neobert_hf.data.load_splits`."""
        if self.dataset_name is not None and self.data_files is not None:
            raise ValueError("Pass either dataset_name or data_files, not both.")
        if self.data_files is not None:
            if self.eval_data_files is None:
                return list(self.data_files)
            return {"train": list(self.data_files), "validation": list(self.eval_data_files)}
        if self.dataset_name is None:
            raise ValueError(
                "No training data: pass dataset_name (a Hub name, a local folder or file) or data_files."
            )
        return self.dataset_name


@dataclass
class DataArguments(DataSourceArguments):
    """Data of `neobert-hf pretrain`: source, splits and eval data, packing and MLM masking."""

    train_split: str = field(
        default=_default(load_pretraining_data, "train_split"),
        metadata={"help": "Training split, slicing allowed: 'train', 'train[:10%%]', 'train[1000:5000]'."},
    )
    eval_split: str | None = field(
        default=None,
        metadata={
            "help": "Eval split (slicing allowed). None: the first split named validation/eval/test/dev, else "
            "eval_fraction, else eval_samples, else no eval data."
        },
    )
    eval_fraction: float | None = field(
        default=None,
        metadata={"help": "Without an eval split: hold out this random fraction of train (map-style data only)."},
    )
    eval_samples: int | None = field(
        default=None,
        metadata={
            "help": "Without an eval split: evaluate on the first eval_samples documents of train and skip them for "
            "training (no leakage; works for streams)."
        },
    )
    streaming: bool = field(
        default=_default(load_pretraining_data, "streaming"),
        metadata={
            "help": "Stream the data (datasets.IterableDataset) instead of loading it; resume is exact through the "
            "stream's state_dict."
        },
    )
    max_seq_length: int = field(
        default=_default(MicrobatchDataset.__init__, "max_seq_length"),
        metadata={
            "help": "Longest sequence: longer documents are split into chunks of this many tokens. Must not exceed the "
            "model's max_position_embeddings."
        },
    )
    packing: bool = field(
        default=True,
        metadata={
            "help": "Pack documents without padding into microbatches of exactly tokens_per_batch tokens "
            "(variable-length attention). False: right-padded [rows, max_seq_length] batches (ablation)."
        },
    )
    tokens_per_batch: int | None = field(
        default=None,
        metadata={
            "help": "Packed microbatch size in tokens (fixed). per_device_train_batch_size counts such microbatches "
            "per forward pass, so a device sees per_device_train_batch_size * tokens_per_batch tokens per forward "
            "and an optimizer step tokens_per_batch * per_device_train_batch_size * gradient_accumulation_steps * "
            "devices. None: max_seq_length (per_device_train_batch_size then counts sequences' worth of tokens)."
        },
    )
    pad_to_multiple_of: int | None = field(
        default=_default(MicrobatchDataset.__init__, "pad_to_multiple_of"),
        metadata={"help": "Padded mode (packing false): round each row length up to a multiple of this."},
    )
    packing_buffer_size: int = field(
        default=_default(MicrobatchDataset.__init__, "buffer_size"),
        metadata={
            "help": "Segments held by the best-fit packer; larger gives fuller batches (>= 99%% real tokens on "
            "long-tailed lengths) and more reordering."
        },
    )
    shuffle_buffer_size: int = field(
        default=_default(MicrobatchDataset.__init__, "shuffle_buffer_size"),
        metadata={
            "help": "Streaming data: chunks held in a shuffle buffer that hands them out in random order, so that the "
            "chunks of a long document spread over many batches (a document of n chunks is then about n / "
            "shuffle_buffer_size of the batches it passes through). Saved in every checkpoint for exact resume "
            "(up to shuffle_buffer_size * max_seq_length tokens). 0 keeps the stream's order. Map-style data is "
            "always shuffled chunk by chunk over the whole epoch."
        },
    )
    max_sequences_per_batch: int | None = field(
        default=_default(MicrobatchDataset.__init__, "max_sequences_per_batch"),
        metadata={
            "help": "Fix the number of sequences of a packed microbatch (cu_seq_lens has this many + 1 entries) so "
            "that every shape is constant, e.g. for torch_compile. Needs >= ceil(tokens_per_batch / max_seq_length) "
            "+ 1. None: variable."
        },
    )
    mlm_probability: float = field(
        default=_default(MLMMasker.__init__, "mlm_probability"),
        metadata={"help": "Probability that a token is selected for prediction (NeoBERT: 0.2; BERT: 0.15)."},
    )
    mask_all: bool = field(
        default=_default(MLMMasker.__init__, "mask_all"),
        metadata={
            "help": "Every selected token becomes [MASK] (NeoBERT's recipe). False: BERT's 80/10/10 (see "
            "mask_replace_prob and random_replace_prob)."
        },
    )
    mask_replace_prob: float = field(
        default=_default(MLMMasker.__init__, "mask_replace_prob"),
        metadata={"help": "Without mask_all: probability that a selected token becomes [MASK]."},
    )
    random_replace_prob: float = field(
        default=_default(MLMMasker.__init__, "random_replace_prob"),
        metadata={"help": "Without mask_all: probability that a selected token becomes a random real token."},
    )

    def __post_init__(self):
        super().__post_init__()
        if self.max_seq_length < 1:
            raise ValueError(f"max_seq_length must be >= 1, got {self.max_seq_length}.")
        if self.tokens_per_batch is not None:
            if not self.packing:
                raise ValueError(
                    "tokens_per_batch sizes packed microbatches; with packing false the batch is "
                    "per_device_train_batch_size rows. Remove tokens_per_batch or set packing true."
                )
            if self.tokens_per_batch < self.max_seq_length:
                raise ValueError(
                    f"tokens_per_batch ({self.tokens_per_batch}) must be at least max_seq_length "
                    f"({self.max_seq_length}): a whole sequence must fit in a packed microbatch."
                )
        if self.max_sequences_per_batch is not None and not self.packing:
            raise ValueError("max_sequences_per_batch applies to packed microbatches (packing true).")

    @property
    def microbatch_tokens(self) -> int:
        """Token budget of one packed microbatch."""
        return self.tokens_per_batch if self.tokens_per_batch is not None else self.max_seq_length


@dataclass
class PreprocessArguments(DataSourceArguments):
    """`neobert-hf preprocess`: tokenize a source once and save it for `neobert-hf pretrain --dataset_name`."""

    tokenizer_name: str | None = field(default=None, metadata={"help": _TOKENIZER_HELP.split(" Defaults")[0]})
    output_dir: str | None = field(
        default=None,
        metadata={
            "help": "Where to save the tokenized DatasetDict (save_to_disk), its tokenizer/ and preprocess_info.json. "
            "Pass this folder as dataset_name to `neobert-hf pretrain`."
        },
    )
    splits: list[str] | None = field(
        default=None,
        metadata={"help": "Splits to keep, slicing allowed ('train[:10%%]' is saved as 'train'). None: every split."},
    )
    tokenize_batch_size: int = field(
        default=1000, metadata={"help": "Documents per tokenizer call in datasets.map."}
    )
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Replace a dataset already saved in output_dir."}
    )

    def __post_init__(self):
        super().__post_init__()
        if self.tokenizer_name is None:
            raise ValueError("preprocess needs tokenizer_name (a local tokenizer folder or a Hub id).")
        if self.output_dir is None:
            raise ValueError("preprocess needs output_dir (where the tokenized dataset is saved).")
        if self.tokenize_batch_size < 1:
            raise ValueError(f"tokenize_batch_size must be >= 1, got {self.tokenize_batch_size}.")

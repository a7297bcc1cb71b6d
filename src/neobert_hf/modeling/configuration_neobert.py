# Copyright 2026 the neobert-hf authors. Licensed under the Apache License, Version 2.0.
"""NeoBERT configuration.

This file is shipped next to `modeling_neobert.py` in every exported checkpoint (remote code), so it imports only
`transformers` and the standard library.
"""

from typing import Literal

from transformers.configuration_utils import PreTrainedConfig
from transformers.modeling_rope_utils import RopeParameters
from transformers.utils import logging


logger = logging.get_logger(__name__)

_ACTIVATIONS = ("swiglu", "gelu")


class NeoBERTConfig(PreTrainedConfig):
    r"""
    Configuration of a NeoBERT encoder (arXiv 2502.19587): a pre-RMSNorm bidirectional transformer with rotary
    position embeddings and a SwiGLU feed-forward. The defaults are those of the released `chandar-lab/NeoBERT`
    (28 layers, hidden size 768, 12 heads, 4096 positions, bert-base-uncased vocabulary).

    This is the only place where NeoBERT defaults live: recipes and the CLI start from these values.

    Args:
        vocab_size (`int`, defaults to 30522):
            Size of the token vocabulary (rows of the `encoder` embedding and of the MLM `decoder`).
        hidden_size (`int`, defaults to 768):
            Width `H` of the residual stream.
        num_hidden_layers (`int`, defaults to 28):
            Number of encoder blocks.
        num_attention_heads (`int`, defaults to 12):
            Number of attention heads; `hidden_size` must be a multiple of it (head dim `H / nH`).
        intermediate_size (`int`, defaults to 3072):
            Nominal feed-forward width `I`. With `hidden_act="swiglu"` the gate/up width is
            `F = 8 * ceil(int(2 * I / 3) / 8)` (3072 -> 2048), which keeps the parameter count of a GELU MLP.
        hidden_act (`Literal["swiglu", "gelu"]`, defaults to `"swiglu"`):
            Feed-forward type. The released config spells it `"SwiGLU"`; the spelling is case-insensitive.
        max_position_embeddings (`int`, defaults to 4096):
            Longest sequence the model accepts. The released `config.json` calls it `max_length`, which is read and
            mapped here (it is not kept under that name, so it never shadows the generation setting).
        norm_eps (`float`, defaults to 1e-5):
            Epsilon of the RMSNorm (or LayerNorm) layers.
        rms_norm (`bool`, defaults to `True`):
            RMSNorm (weight only) when `True`, LayerNorm with bias otherwise.
        rope (`bool`, defaults to `True`):
            Rotary position embeddings (adjacent-pair convention). When `False` a learned absolute position
            embedding `positional_embedding` is used instead.
        rope_parameters (`RopeParameters` or `dict`, *optional*):
            transformers' RoPE configuration, `{"rope_type": "default", "rope_theta": 10000.0}` unless given. Configs
            written before it existed store a flat `rope_theta`, which is read into it; `config.rope_theta` reads and
            sets `rope_parameters["rope_theta"]`. Scaled types (`linear`, `yarn`, `llama3`, ...) change the
            frequencies; the adjacent-pair rotation stays.
        dropout (`float`, defaults to 0.0):
            Dropout on attention probabilities and on both residual branches.
        embedding_init_range (`float`, defaults to 0.02):
            Embeddings are initialised uniform(-r, r).
        decoder_init_range (`float`, defaults to 0.02):
            Linear layers (attention, feed-forward, MLM decoder) are initialised uniform(-r, r).
        classifier_init_range (`float`, defaults to 0.02):
            Classification heads are initialised normal(0, r).
        classifier_dropout (`float`, *optional*):
            Dropout before the classification heads; `None` uses `dropout`.
        classifier_pooling (`Literal["cls", "mean"]`, defaults to `"cls"`):
            How `NeoBERTForSequenceClassification` pools the sequence.
        decoder_bias (`bool`, *optional*):
            Whether the MLM `decoder` has a bias. `None` means "bias unless tied": the released checkpoint has an
            untied decoder with bias, the fork's later export a tied decoder without bias.
        sparse_prediction (`bool`, defaults to `False`):
            When `True` and `labels` are given, `NeoBERTForMaskedLM` projects only the rows whose label is not -100
            to the vocabulary (masked-logits-only MLM); the returned logits then have shape `(n_masked, V)`.
        tie_word_embeddings (`bool`, defaults to `False`):
            Tie the MLM decoder weight to the token embedding. The released model is untied.
        pad_token_id (`int`, defaults to 0):
            Padding token (bert-base-uncased `[PAD]`).
        bos_token_id, eos_token_id, sep_token_id (`int`, *optional*):
            Special tokens, unset by default (NeoBERT's inputs are `[CLS] ... [SEP]`, which need no config entry);
            read by transformers' padding warning (`warn_if_padding_and_no_attention_mask`).

    Example:

    ```python
    >>> from neobert_hf import NeoBERTConfig, NeoBERTModel
    >>> config = NeoBERTConfig(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512)
    >>> model = NeoBERTModel(config)
    ```
    """

    model_type = "neobert"
    keys_to_ignore_at_inference = ["hidden_states", "attentions"]

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 28
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "swiglu"
    max_position_embeddings: int = 4096
    norm_eps: float = 1e-5
    rms_norm: bool = True
    rope: bool = True
    rope_parameters: RopeParameters | dict | None = None
    dropout: float = 0.0
    embedding_init_range: float = 0.02
    decoder_init_range: float = 0.02
    classifier_init_range: float = 0.02
    classifier_dropout: float | None = None
    classifier_pooling: Literal["cls", "mean"] = "cls"
    decoder_bias: bool | None = None
    sparse_prediction: bool = False
    tie_word_embeddings: bool = False
    pad_token_id: int | None = 0
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    sep_token_id: int | None = None

    def __post_init__(self, **kwargs):
        # The released config.json stores the context length as `max_length`: map it before the base class
        # drops it as a generation parameter. Dataclass fields are assigned before `__post_init__` and never reach
        # `kwargs`, so an explicit `max_position_embeddings` is recognised by differing from the field default.
        if "max_length" in kwargs:
            max_length = kwargs.pop("max_length")
            if max_length is not None and self.max_position_embeddings == type(self).max_position_embeddings:
                self.max_position_embeddings = int(max_length)
        # Configs of the original NeoBERT code carry a `flash_attention` switch; the kernel is now chosen with
        # `attn_implementation`.
        if kwargs.pop("flash_attention", None) is not None:
            logger.info("Ignoring legacy config key `flash_attention`: choose the kernel with `attn_implementation`.")
        # `dim_head` is derived; a stored value must agree with it.
        dim_head = kwargs.pop("dim_head", None)
        self.hidden_act = str(self.hidden_act).lower()
        if self.decoder_bias is None:
            self.decoder_bias = not self.tie_word_embeddings
        super().__post_init__(**kwargs)
        if dim_head is not None and int(dim_head) != self.head_dim:
            raise ValueError(
                f"config has dim_head={dim_head} but hidden_size / num_attention_heads = {self.head_dim}; "
                "fix one of them."
            )
        self.validate_architecture()

    def validate_architecture(self):
        """Checks the architecture fields agree with each other (also run by `save_pretrained`)."""
        super().validate_architecture()
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be a multiple of num_attention_heads "
                f"({self.num_attention_heads})."
            )
        if self.rope and self.head_dim % 2 != 0:
            raise ValueError(f"RoPE needs an even head dim, got {self.head_dim}.")
        if self.hidden_act not in _ACTIVATIONS:
            raise ValueError(f"hidden_act must be one of {_ACTIVATIONS}, got {self.hidden_act!r}.")
        if self.classifier_pooling not in ("cls", "mean"):
            raise ValueError(f"classifier_pooling must be 'cls' or 'mean', got {self.classifier_pooling!r}.")

    @property
    def rope_theta(self) -> float:
        """RoPE base frequency, stored in `rope_parameters` (the flat field of configs written before it)."""
        return float((self.__dict__.get("rope_parameters") or {}).get("rope_theta", self.default_theta))

    @rope_theta.setter
    def rope_theta(self, value: float) -> None:
        parameters = dict(self.__dict__.get("rope_parameters") or {"rope_type": "default"})
        parameters["rope_theta"] = float(value)
        self.rope_parameters = parameters

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def ffn_size(self) -> int:
        """Width `F` of the SwiGLU gate and up projections (the GELU MLP uses `intermediate_size`)."""
        if self.hidden_act == "swiglu":
            return 8 * ((int(2 * self.intermediate_size / 3) + 7) // 8)
        return self.intermediate_size


__all__ = ["NeoBERTConfig"]

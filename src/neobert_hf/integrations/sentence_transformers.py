"""A NeoBERT checkpoint as a sentence-transformers `SentenceTransformer`.

The model is sentence-transformers' own modules: `Transformer` (holding a [`NeoBERTModel`]), `Pooling` with one of
`mean` | `cls` | `max`, and an optional `Normalize`. The encoder weights are loaded strictly
([`~neobert_hf.checkpoints.load_pretrained_strict`]): a checkpoint whose encoder keys do not match (a
prefixed state dict, a different architecture) is an error that names the keys, never a model that silently starts
from random weights. A checkpoint with a head (`NeoBERTForMaskedLM`, a classifier) gives its encoder; the head
weights are dropped.

The saved folder (`model.save(path)`) is a standard sentence-transformers folder whose `config.json` carries the
`auto_map` and the modeling code, so it loads without `neobert_hf`:

```python
>>> from sentence_transformers import SentenceTransformer
>>> model = SentenceTransformer("path/to/saved", trust_remote_code=True)  # doctest: +SKIP
```

With `neobert_hf` imported the NeoBERT classes are registered and `trust_remote_code` is not needed.
"""

from __future__ import annotations

import json
import logging
import os
from typing import TYPE_CHECKING, Any, Literal, get_args

from ..import_utils import require


if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from ..modeling import NeoBERTModel


__all__ = [
    "POOLING_ALIASES",
    "POOLING_MODES",
    "PoolingMode",
    "build_sentence_transformer",
    "load_encoder",
    "validate_pooling",
]

logger = logging.getLogger(__name__)

PoolingMode = Literal["mean", "cls", "max"]
POOLING_MODES: tuple[str, ...] = get_args(PoolingMode)
# Accepted spellings that name one of POOLING_MODES (the original NeoBERT trainer's configs say `avg`).
POOLING_ALIASES: dict[str, PoolingMode] = {"avg": "mean"}


def validate_pooling(pooling: str) -> PoolingMode:
    """The pooling mode `pooling` names: one of [`POOLING_MODES`], or an alias of one ([`POOLING_ALIASES`]: `avg` is
    `mean`), returned in its canonical spelling.

    Callers store the returned name, so every later comparison sees exactly one spelling per mode (`mean`).

    Raises:
        `ValueError`: naming the valid modes.
    """
    if pooling in POOLING_ALIASES:
        return POOLING_ALIASES[pooling]
    if pooling not in POOLING_MODES:
        valid = ", ".join([*POOLING_MODES, *(f"{alias} (= {mode})" for alias, mode in POOLING_ALIASES.items())])
        raise ValueError(f"Unknown pooling {pooling!r}. Valid pooling modes: {valid}.")
    return pooling  # type: ignore[return-value]


def load_encoder(
    model_name_or_path: str | os.PathLike,
    *,
    dropout: float | None = None,
    **from_pretrained_kwargs: Any,
) -> NeoBERTModel:
    """Load the NeoBERT encoder of a checkpoint strictly.

    Args:
        model_name_or_path (`str` or `os.PathLike`):
            A `checkpoints/<step>/` folder, an exported model folder, a run folder (its best or latest checkpoint) or
            a Hub id. Checkpoints of `NeoBERTModel`, `NeoBERTForMaskedLM` and the task models are accepted; the head
            weights are dropped.
        dropout (`float`, *optional*):
            Overrides `config.dropout` (attention and residual dropout). SimCSE needs it above 0.
        from_pretrained_kwargs:
            Passed to `from_pretrained` (`revision`, `attn_implementation`, `dtype`, ...).

    Returns:
        [`NeoBERTModel`]: the encoder; `encoder.loaded_from` is the folder (or Hub id) it was read from.

    Raises:
        [`~neobert_hf.checkpoints.CheckpointLoadError`]: the source does not exist, or an encoder key
            is missing, unexpected or has another shape (the message names them).
    """
    from ..modeling import NeoBERTModel
    from .checkpoints import load_pretrained_strict

    if dropout is not None:
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}.")
        from_pretrained_kwargs["dropout"] = dropout
    return load_pretrained_strict(os.fspath(model_name_or_path), NeoBERTModel, **from_pretrained_kwargs)


def saved_pooling(path: str) -> str | None:
    """The pooling mode of a saved sentence-transformers folder (`None` for a plain model folder)."""
    modules_file = os.path.join(path, "modules.json")
    if not os.path.isfile(modules_file):
        return None
    with open(modules_file, encoding="utf-8") as handle:
        modules = json.load(handle)
    for module in modules:
        config_file = os.path.join(path, module.get("path", ""), "config.json")
        if module.get("type", "").endswith(".Pooling") and os.path.isfile(config_file):
            with open(config_file, encoding="utf-8") as handle:
                mode = json.load(handle).get("pooling_mode")
            return mode if isinstance(mode, str) else None
    return None


def _has_tokenizer(path: str) -> bool:
    return os.path.isdir(path) and any(
        os.path.isfile(os.path.join(path, name)) for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt")
    )


def build_sentence_transformer(
    model_name_or_path: str | os.PathLike,
    *,
    pooling: PoolingMode = "mean",
    normalize: bool = False,
    max_seq_length: int | None = None,
    tokenizer_name_or_path: str | os.PathLike | None = None,
    dropout: float | None = None,
    prompts: dict[str, str] | None = None,
    default_prompt_name: str | None = None,
    device: str | None = None,
    model_kwargs: dict[str, Any] | None = None,
) -> SentenceTransformer:
    """Turn a NeoBERT checkpoint into a `SentenceTransformer` (Transformer -> Pooling [-> Normalize]).

    Args:
        model_name_or_path (`str` or `os.PathLike`):
            A `checkpoints/<step>/` folder, an exported model folder, or a Hub id.
        pooling (`str`, *optional*, defaults to `"mean"`):
            `"mean"` (over non-padding tokens; `"avg"` is accepted as the same mode), `"cls"` (the first token) or
            `"max"` (element-wise over non-padding tokens). Any other name is an error.
        normalize (`bool`, *optional*, defaults to `False`):
            Append a `Normalize` module so that embeddings have unit L2 norm.
        max_seq_length (`int`, *optional*):
            Truncate inputs to this many tokens; defaults to the smaller of the tokenizer's `model_max_length` and
            `max_position_embeddings`. Larger than `max_position_embeddings` is an error.
        tokenizer_name_or_path (`str` or `os.PathLike`, *optional*):
            Where the tokenizer is, when the checkpoint folder has none.
        dropout (`float`, *optional*):
            Overrides the encoder's `config.dropout` (SimCSE uses dropout as its noise).
        prompts (`dict[str, str]`, *optional*):
            Named prompts prepended to the inputs, e.g. `{"query": "query: ", "document": "passage: "}`.
        default_prompt_name (`str`, *optional*):
            The prompt used when `encode` is given none; must be a key of `prompts`.
        device (`str`, *optional*):
            Where the model is placed (sentence-transformers chooses when `None`).
        model_kwargs (`dict`, *optional*):
            Passed to `from_pretrained` (`attn_implementation`, `dtype`, `revision`, ...).

    Returns:
        `SentenceTransformer`: the model; `model[0].auto_model` is the strictly loaded encoder.

    Raises:
        `ValueError`: an unknown pooling mode, a bad `max_seq_length`, a checkpoint without a tokenizer.
        [`~neobert_hf.checkpoints.CheckpointLoadError`]: a checkpoint whose encoder keys do not match.

    Example:

    ```python
    >>> from neobert_hf.integrations.sentence_transformers import build_sentence_transformer
    >>> model = build_sentence_transformer("runs/tiny/checkpoints/100", normalize=True)  # doctest: +SKIP
    >>> model.encode(["a sentence"]).shape  # doctest: +SKIP
    (1, 768)
    >>> model.save("runs/tiny/sentence-transformer")  # doctest: +SKIP
    ```
    """
    pooling = validate_pooling(pooling)
    require("sentence_transformers", "A NeoBERT SentenceTransformer")
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    import neobert_hf  # noqa: F401 - registers model_type "neobert" with the Auto classes used below

    path = os.fspath(model_name_or_path)
    model_kwargs = dict(model_kwargs or {})
    if prompts is not None and default_prompt_name is not None and default_prompt_name not in prompts:
        raise ValueError(f"default_prompt_name {default_prompt_name!r} is not one of the prompts {sorted(prompts)}.")
    encoder = load_encoder(path, dropout=dropout, **model_kwargs)
    path = getattr(encoder, "loaded_from", path)  # a run folder resolves to one of its checkpoints
    tokenizer_path = os.fspath(tokenizer_name_or_path) if tokenizer_name_or_path is not None else None
    if tokenizer_path is None and os.path.isdir(path) and not _has_tokenizer(path):
        raise ValueError(
            f"{path} has no tokenizer files (tokenizer.json / tokenizer_config.json / vocab.txt); pass "
            "tokenizer_name_or_path."
        )
    previous = saved_pooling(path) if os.path.isdir(path) else None
    if previous is not None and previous != pooling:
        logger.warning(f"{path} was saved with pooling {previous!r}; building the model with pooling {pooling!r}.")
    limit = encoder.config.max_position_embeddings
    if max_seq_length is not None and not 0 < max_seq_length <= limit:
        raise ValueError(f"max_seq_length must be in [1, {limit}] (max_position_embeddings), got {max_seq_length}.")

    config_kwargs = {"dropout": dropout} if dropout is not None else None
    transformer = Transformer(
        path,
        model_kwargs=model_kwargs,
        config_kwargs=config_kwargs,
        max_seq_length=max_seq_length,
        tokenizer_name_or_path=tokenizer_path,
    )
    # The Transformer module loaded the weights with a plain from_pretrained, which only warns about missing keys;
    # use the strictly checked encoder instead (same class, same config, same weights when the check passed).
    transformer.model = encoder
    transformer.unpad_inputs = transformer.unpad_inputs  # re-evaluated for the swapped-in model

    modules = [transformer, Pooling(transformer.get_embedding_dimension(), pooling_mode=pooling)]
    if normalize:
        modules.append(Normalize())
    model = SentenceTransformer(
        modules=modules, device=device, prompts=prompts, default_prompt_name=default_prompt_name
    )
    return model

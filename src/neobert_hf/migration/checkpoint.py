"""Checkpoints written by the original NeoBERT trainer, made loadable as transformers model folders.

The original trainer saves `checkpoints/<step>/` (older runs: `model_checkpoints/<step>/`) holding `model.safetensors`
(fp32), its nested `config.yaml`, `tokenizer_info.json`, a `tokenizer/` folder and accelerate's training state
(`optimizer.bin`, `scheduler.bin`, `random_states_0.pkl`, ...), but no `config.json`. Its weight names are those of
this package's `NeoBERTForMaskedLM` except that the SwiGLU gate and up projections are stored apart (`ffn.w1`,
`ffn.w2`, fused into `ffn.w12` on load) and the decoder has no bias. The embedding and the decoder are both stored;
under transformers 5 the original tie call did nothing, so a decoder may have been trained apart from the embedding:
the weights are loaded as the file holds them (untied).

[`as_model_folder`] turns such a folder into a transformers model folder (`config.json`, the fused
`model.safetensors`, the tokenizer files) that every part of the package loads: export, GLUE and contrastive
fine-tuning, continued pretraining. [`find_original_checkpoint`] picks the step folder of a run folder.

```python
from neobert_hf.migration.checkpoint import as_model_folder
path = as_model_folder("old_run/model_checkpoints/100000")  # a temporary folder, removed at exit
model = AutoModelForMaskedLM.from_pretrained(path)
```
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import tempfile
from typing import Any

from .base import MigrationError


__all__ = [
    "ORIGINAL_STEP_FOLDERS",
    "as_model_folder",
    "convert_original_checkpoint",
    "find_original_checkpoint",
    "is_original_checkpoint",
    "original_config",
]

ORIGINAL_STEP_FOLDERS = ("checkpoints", "model_checkpoints")
_CONFIG_FIELDS = (
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "max_position_embeddings",
    "hidden_act",
    "dropout",
    "norm_eps",
    "rms_norm",
    "rope",
    "embedding_init_range",
    "decoder_init_range",
)
_LAYER_KEY = re.compile(r"^model\.transformer_encoder\.(\d+)\.(.+)$")
_LAYER_PARAMS = ("attention_norm.weight", "qkv.weight", "wo.weight", "ffn_norm.weight", "ffn.w3.weight")


def is_original_checkpoint(path: str | os.PathLike) -> bool:
    """Whether `path` is a step folder of the original trainer: `config.yaml` and `model.safetensors`, no
    `config.json`."""
    path = os.fspath(path)
    return (
        os.path.isdir(path)
        and os.path.isfile(os.path.join(path, "config.yaml"))
        and os.path.isfile(os.path.join(path, "model.safetensors"))
        and not os.path.isfile(os.path.join(path, "config.json"))
    )


def find_original_checkpoint(path: str | os.PathLike, step: int | str | None = None) -> str | None:
    """The original trainer's step folder that `path` names: `path` itself, or in a run folder the newest (or the
    given) step under `checkpoints/` or `model_checkpoints/`; `None` when `path` is neither.

    Raises:
        [`MigrationError`]: a run folder without the requested step.
    """
    path = os.fspath(path)
    if is_original_checkpoint(path):
        return path
    steps: dict[int, str] = {}
    for name in ORIGINAL_STEP_FOLDERS:
        root = os.path.join(path, name)
        if not os.path.isdir(root):
            continue
        for entry in os.listdir(root):
            if entry.isdigit() and is_original_checkpoint(os.path.join(root, entry)):
                steps.setdefault(int(entry), os.path.join(root, entry))
    if not steps:
        return None
    if step is None or str(step).strip().lower() == "latest":
        return steps[max(steps)]
    if int(step) not in steps:
        raise MigrationError(f"{path} has no original checkpoint for step {step}; it has steps {sorted(steps)}.")
    return steps[int(step)]


def _read_yaml(path: str) -> dict[str, Any]:
    import yaml

    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise MigrationError(f"Cannot read {path}: {error}") from None
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        raise MigrationError(f"{path} has no `model:` section; it is not a config saved by the original trainer.")
    return data


def _typed(name: str, value: Any) -> Any:
    """`value` of the config field `name` with the field's type: the original trainer's YAML gives numbers such as
    `1e-5` as strings."""
    from ..modeling import NeoBERTConfig
    from .converters import _flag, _number

    kind = type(getattr(NeoBERTConfig, name, None))
    try:
        if kind is bool:
            return _flag(value)
        if kind in (int, float):
            return kind(_number(value))
    except MigrationError as err:
        raise MigrationError(f"model.{name}: {err}") from None
    return value


def original_config(folder: str | os.PathLike, vocab_size: int | None = None):
    """The [`NeoBERTConfig`] of an original checkpoint, from the `model:` section of its `config.yaml` (read through
    the same key table as `neobert-hf convert-config`; numbers saved as strings are typed; the saved `norm_eps` is
    used as it is). `vocab_size` (from the weights) wins over the saved value.

    Raises:
        [`MigrationError`]: no `model:` section, an nGPT or otherwise unsupported model.
    """
    from ..modeling import NeoBERTConfig
    from .convert import convert_config

    folder = os.fspath(folder)
    model = dict(_read_yaml(os.path.join(folder, "config.yaml"))["model"])
    if str(model.get("ngpt", False)).strip().lower() in ("true", "1", "yes"):
        raise MigrationError(f"{folder} is an nGPT model (model.ngpt: true), which neobert-hf does not implement.")
    if isinstance(model.get("hidden_act"), str):
        model["hidden_act"] = model["hidden_act"].lower()  # the model class lower-cases it too
    recipe = convert_config({"task": "pretraining", "model": model}).recipe
    values = {name: _typed(name, recipe[name]) for name in _CONFIG_FIELDS if recipe.get(name) is not None}
    saved_vocab = model.get("vocab_size")
    values["vocab_size"] = int(vocab_size if vocab_size is not None else saved_vocab)
    pad = model.get("pad_token_id")
    if pad is not None:
        values["pad_token_id"] = int(pad)
    # Both matrices are stored and may differ: loaded as they are. No decoder bias in this format.
    return NeoBERTConfig(**values, tie_word_embeddings=False, decoder_bias=False)


def _state_dict(folder: str, config) -> dict:
    """The checkpoint's tensors under this package's names (`ffn.w1`/`ffn.w2` fused into `ffn.w12`, gate first).

    Raises:
        [`MigrationError`]: missing or unexpected tensors, or shapes that do not match `config.yaml`.
    """
    import torch
    from safetensors.torch import load_file

    path = os.path.join(folder, "model.safetensors")
    try:
        tensors = load_file(path)
    except Exception as error:  # safetensors raises its own error types for damaged files
        raise MigrationError(f"Cannot read {path}: {error}") from None
    layers = config.num_hidden_layers
    expected = {"model.encoder.weight", "model.layer_norm.weight", "decoder.weight"}
    for i in range(layers):
        expected |= {f"model.transformer_encoder.{i}.{name}" for name in (*_LAYER_PARAMS, "ffn.w1.weight", "ffn.w2.weight")}
    fused = {f"model.transformer_encoder.{i}.ffn.w12.weight" for i in range(layers)}
    given = set(tensors)
    if given & fused:  # a checkpoint of the released layout: no fusing needed
        expected = (expected - {k.replace("w12", "w1") for k in fused} - {k.replace("w12", "w2") for k in fused}) | fused
    missing, unexpected = sorted(expected - given), sorted(given - expected)
    if missing or unexpected:
        raise MigrationError(
            f"{path} does not hold the weights of the {layers}-layer NeoBERT its config.yaml describes: "
            + (f"missing {missing[:6]}{' ...' if len(missing) > 6 else ''}; " if missing else "")
            + (f"unexpected {unexpected[:6]}{' ...' if len(unexpected) > 6 else ''}" if unexpected else "").rstrip("; ")
            + ". Is this folder a checkpoint of the original NeoBERT trainer, and is its config.yaml the one it was "
            "saved with?"
        )
    state = {}
    for name, tensor in tensors.items():
        match = _LAYER_KEY.match(name)
        if match and match.group(2) == "ffn.w2.weight":
            continue
        if match and match.group(2) == "ffn.w1.weight":
            up = tensors[name.replace("ffn.w1.", "ffn.w2.")]
            state[name.replace("ffn.w1.", "ffn.w12.")] = torch.cat([tensor, up], dim=0)
        else:
            state[name] = tensor
    return state


def convert_original_checkpoint(folder: str | os.PathLike, output_dir: str | os.PathLike) -> str:
    """Write the original step folder `folder` as a transformers model folder in `output_dir`: `config.json`,
    `model.safetensors` in this package's layout, and the tokenizer of `folder/tokenizer/` (when present). Loads
    strictly: every tensor must have its place and every place a tensor.

    Returns:
        `str`: `output_dir`.

    Raises:
        [`MigrationError`]: an unreadable or inconsistent folder, naming what is wrong.
    """
    from safetensors import safe_open

    from ..modeling import NeoBERTForMaskedLM

    folder, output_dir = os.fspath(folder), os.fspath(output_dir)
    if not is_original_checkpoint(folder):
        raise MigrationError(
            f"{folder} is not a checkpoint of the original NeoBERT trainer (it needs config.yaml and "
            "model.safetensors, and has no config.json)."
        )
    with safe_open(os.path.join(folder, "model.safetensors"), framework="pt") as handle:
        keys = set(handle.keys())
        vocab = handle.get_slice("model.encoder.weight").get_shape()[0] if "model.encoder.weight" in keys else None
    config = original_config(folder, vocab_size=vocab)
    state = _state_dict(folder, config)
    model = NeoBERTForMaskedLM(config)
    for name, tensor in model.state_dict().items():
        if name in state and tuple(state[name].shape) != tuple(tensor.shape):
            raise MigrationError(
                f"{folder}: {name} has shape {tuple(state[name].shape)} but config.yaml describes "
                f"{tuple(tensor.shape)}. The config.yaml does not belong to these weights."
            )
    model.load_state_dict(state, strict=True)
    model.save_pretrained(output_dir)
    tokenizer_dir = os.path.join(folder, "tokenizer")
    if os.path.isdir(tokenizer_dir):
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(output_dir)
    return output_dir


_CONVERTED: dict[str, str] = {}


def _remove_converted() -> None:
    for path in _CONVERTED.values():
        shutil.rmtree(path, ignore_errors=True)


def as_model_folder(path: str | os.PathLike, step: int | str | None = None) -> str | None:
    """A transformers model folder for the original checkpoint that `path` names (a step folder or a run folder, see
    [`find_original_checkpoint`]), converted once per process into a temporary folder removed at exit; `None` when
    `path` is not an original checkpoint."""
    found = find_original_checkpoint(path, step)
    if found is None:
        return None
    key = os.path.realpath(found)
    if key not in _CONVERTED:
        if not _CONVERTED:
            atexit.register(_remove_converted)
        target = tempfile.mkdtemp(prefix="neobert-original-")
        try:
            convert_original_checkpoint(found, target)
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            raise
        _CONVERTED[key] = target
    return _CONVERTED[key]

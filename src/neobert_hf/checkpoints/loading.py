"""Finding and loading a model from a checkpoint: one resolver for every source ([`resolve_pretrained_path`]) and
strict loading ([`load_pretrained_strict`] for NeoBERT with a change of head, [`load_strict`] for any class).

A checkpoint loaded with `strict=False` silently trains from random weights wherever its keys do not match. Here
every load compares the checkpoint's keys with the model's and fails, naming the keys, unless the difference is one
of the few that a change of head implies:

- a task head (`classifier.*`) that the checkpoint does not have is created fresh (the only keys allowed to be
  missing), for a model class that has such a head;
- a head that the target class does not have is dropped: the MLM `decoder.*` of a pretraining checkpoint, or the
  `classifier.*` of a fine-tuned one loaded into a class without a classifier.

Everything else (an encoder key missing, an unexpected encoder key, a shape that differs) is an error.

A source is any of:

- a model folder (`config.json` + weights): an exported model or one `checkpoints/<step>/` folder;
- a run folder holding `checkpoints/<step>/` (pretraining or GLUE): its best checkpoint when the run recorded one
  (`glue_results.json`), else its latest complete checkpoint; `checkpoint=` picks another (`"latest"`, `"best"`, a
  step);
- a Hub id (`chandar-lab/NeoBERT`);
- a checkpoint of the original NeoBERT trainer (a `checkpoints/<step>/` or `model_checkpoints/<step>/` folder with
  `config.yaml`, or its run folder), converted once per process (see `neobert_hf.migration.checkpoint`).
"""

from __future__ import annotations

import json
import logging
import os
from typing import Literal

from torch import nn

from .tree import CHECKPOINTS_DIR, TMP_PREFIX, CheckpointError, model_file_problems, resolve_checkpoint


__all__ = [
    "CheckpointLoadError",
    "RUN_RESULTS_NAME",
    "load_pretrained_strict",
    "load_strict",
    "resolve_pretrained_path",
]

# Written by `neobert-hf glue` in its output folder; names the best checkpoint of the run.
RUN_RESULTS_NAME = "glue_results.json"
_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
# The subset that also applies to reading the config.
_CONFIG_LOADING_KWARGS = ("cache_dir", "revision", "token", "local_files_only", "force_download", "subfolder")
HEAD_PREFIX = "classifier."
# from_pretrained arguments that are not config attributes; every other keyword overrides the checkpoint's config.
_LOADING_KWARGS = frozenset(
    {
        "attn_implementation",
        "dtype",
        "torch_dtype",
        "device_map",
        "cache_dir",
        "revision",
        "token",
        "local_files_only",
        "force_download",
        "subfolder",
        "trust_remote_code",
        "low_cpu_mem_usage",
        "use_safetensors",
        "weights_only",
        "key_mapping",
    }
)
MLM_HEAD_PREFIX = "decoder."
logger = logging.getLogger(__name__)


class CheckpointLoadError(ValueError):
    """A checkpoint that cannot be found, or whose weights do not match the model they are loaded into."""


def _is_hub_id(path: str) -> bool:
    """`name` or `org/name`, as the Hub spells repository ids; anything else is meant as a local path."""
    return not path.startswith((".", "/", "~")) and path.count("/") <= 1 and "\\" not in path and bool(path.strip())


def _best_checkpoint(run_dir: str) -> str | None:
    results = os.path.join(run_dir, RUN_RESULTS_NAME)
    if not os.path.isfile(results):
        return None
    with open(results, encoding="utf-8") as f:
        best = json.load(f).get("best_checkpoint")
    if not best:
        return None
    return best if os.path.isabs(best) else os.path.join(run_dir, best)


def _check_manifest(folder: str) -> None:
    """The model files of a checkpoint folder with a manifest must match it (there, with their recorded sizes)."""
    try:
        problems = model_file_problems(folder)
    except CheckpointError as err:
        problems = [str(err)]
    if problems:
        raise CheckpointLoadError(
            f"{folder} is a damaged checkpoint: {'; '.join(problems)}. Load another checkpoint of the run "
            "(checkpoint=<step>)."
        )


def _original_checkpoint(path: str, checkpoint: str | int | None) -> str | None:
    """A model folder converted from a checkpoint of the original NeoBERT trainer (a step folder with `config.yaml`
    and `model.safetensors`, or a run folder with `checkpoints/<step>/` or `model_checkpoints/<step>/` of them), or
    `None` when `path` is not one."""
    from ..migration.checkpoint import as_model_folder, find_original_checkpoint
    from ..migration.base import MigrationError

    try:
        if find_original_checkpoint(path, checkpoint) is None:
            return None
        converted = as_model_folder(path, checkpoint)
    except MigrationError as err:
        raise CheckpointLoadError(str(err)) from err
    logger.info(f"{path}: a checkpoint of the original NeoBERT trainer, converted into {converted}")
    return converted


def resolve_pretrained_path(
    path: str | os.PathLike, checkpoint: str | int | None = None, *, allow_hub_id: bool = True
) -> str:
    """Turns a model source into the folder (or Hub id) to load from: the one resolver of fine-tuning, embeddings,
    export, push and evaluation.

    Args:
        path (`str` or `os.PathLike`):
            A model folder, a run folder with `checkpoints/<step>/`, or a Hub id.
        checkpoint (`str` or `int`, *optional*):
            For a run folder: `"best"`, `"latest"` or a step. Default: `"best"` when the run recorded one, else
            `"latest"` (the newest step, which must be complete: a damaged newest step is an error naming the newest
            complete one).
        allow_hub_id (`bool`, defaults to `True`):
            Whether a `path` that is not a local folder may be a Hub id.

    Returns:
        `str`: a folder holding `config.json` and weights, or the Hub id unchanged.

    Raises:
        [`CheckpointLoadError`]: the folder does not exist, is incomplete, or holds neither a model nor checkpoints.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        original = _original_checkpoint(path, checkpoint)
        if original is not None:
            return original
        _check_manifest(path)
        if os.path.isfile(os.path.join(path, "config.json")):
            if checkpoint is not None:
                raise CheckpointLoadError(
                    f"{path} is a model folder, not a run folder with {CHECKPOINTS_DIR}/<step>/; "
                    f"checkpoint={checkpoint!r} cannot select anything in it. Pass the run folder, or drop the "
                    "checkpoint selector."
                )
            if os.path.basename(os.path.normpath(path)).startswith(TMP_PREFIX):
                raise CheckpointLoadError(
                    f"{path} is a temporary folder left by an interrupted checkpoint save; it is incomplete."
                )
            if not any(os.path.isfile(os.path.join(path, name)) for name in _WEIGHT_FILES):
                raise CheckpointLoadError(
                    f"{path} has a config.json but no weights ({', '.join(_WEIGHT_FILES[:2])}). A LoRA adapter "
                    "folder? Load the checkpoint folder that holds the merged model instead."
                )
            return path
        if os.path.isdir(os.path.join(path, CHECKPOINTS_DIR)):
            spec = "best" if checkpoint is None and _best_checkpoint(path) else (checkpoint or "latest")
            if str(spec).lower() == "best":
                best = _best_checkpoint(path)
                if best is None:
                    raise CheckpointLoadError(
                        f"checkpoint='best' but {path} records no best checkpoint ({RUN_RESULTS_NAME})."
                    )
                if not os.path.isdir(best):
                    raise CheckpointLoadError(
                        f"{path} records {best} as its best checkpoint, but it no longer exists."
                    )
                _check_manifest(best)
                return best
            try:
                return resolve_checkpoint(spec, path)
            except CheckpointError as err:
                raise CheckpointLoadError(str(err)) from err
        raise CheckpointLoadError(
            f"{path} is neither a model folder (config.json + weights) nor a run folder ({CHECKPOINTS_DIR}/<step>/): "
            f"it is not a model folder to load. Pass a {CHECKPOINTS_DIR}/<step>/ folder, an exported folder or a "
            "run's output_dir."
        )
    if os.path.exists(path):
        raise CheckpointLoadError(f"{path} is a file; pass the folder that holds config.json and the weights.")
    if not allow_hub_id or not _is_hub_id(path):
        raise CheckpointLoadError(f"Model folder {path} does not exist.")
    if checkpoint is not None:
        raise CheckpointLoadError(
            f"checkpoint={checkpoint!r} applies to a local run folder, not to the Hub id {path!r}."
        )
    return path


def _names(keys) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:12])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > 12 else "")


def load_pretrained_strict(
    path: str | os.PathLike,
    model_class,
    *,
    checkpoint: str | int | None = None,
    task_head: Literal["auto", "load", "new"] = "auto",
    **kwargs,
):
    """Loads `model_class` from a NeoBERT checkpoint and fails on any weight that is not accounted for.

    Args:
        path (`str` or `os.PathLike`):
            A model folder (exported, or `checkpoints/<step>/`), a run folder, or a Hub id; see
            [`resolve_pretrained_path`].
        model_class:
            A NeoBERT model class (`NeoBERTForSequenceClassification`, `NeoBERTModel`, ...).
        checkpoint (`str` or `int`, *optional*):
            Which checkpoint of a run folder: `"best"`, `"latest"` or a step.
        task_head (`Literal["auto", "load", "new"]`, defaults to `"auto"`):
            For a class with a `classifier` head. `"auto"`: load the checkpoint's head when it has one of the same
            shape, start a fresh head when it has none (a head of another shape is an error). `"load"`: the head must
            come from the checkpoint (same label count). `"new"`: a fresh head whatever the checkpoint holds; only
            the encoder is transferred.
        kwargs:
            Loading options of `from_pretrained` (`attn_implementation`, `dtype`, `revision`, ...); every other
            keyword sets that attribute of the checkpoint's config (`num_labels`, `id2label`, `problem_type`,
            `finetuning_task`, `classifier_dropout`, ...).

    Returns:
        The model, with `model.loaded_from` set to the resolved folder or Hub id.

    Raises:
        [`CheckpointLoadError`]: the source cannot be found, or keys are missing, unexpected or of another shape
            beyond what the head change allows; the message names them.

    Example:

    ```python
    >>> from neobert_hf import NeoBERTForSequenceClassification
    >>> from neobert_hf.checkpoints import load_pretrained_strict
    >>> model = load_pretrained_strict(  # doctest: +SKIP
    ...     "outputs/pretrain", NeoBERTForSequenceClassification, num_labels=3
    ... )
    ```
    """
    if task_head not in ("auto", "load", "new"):
        raise ValueError(f"task_head must be 'auto', 'load' or 'new', got {task_head!r}.")
    source = resolve_pretrained_path(path, checkpoint)
    local = os.path.isdir(source)
    config_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k not in _LOADING_KWARGS}
    hub_kwargs = {k: kwargs[k] for k in _CONFIG_LOADING_KWARGS if k in kwargs}
    try:
        config = model_class.config_class.from_pretrained(source, **hub_kwargs)
    except OSError as err:
        where = "" if local else " (it is not a local folder, so it was looked up as a Hub id)"
        raise CheckpointLoadError(f"Cannot read the config of {source!r}{where}: {err}") from err
    source_labels, source_task = config.num_labels, getattr(config, "finetuning_task", None)
    # num_labels first: setting it resets id2label, which an explicit id2label then replaces.
    if "num_labels" in config_kwargs:
        config.num_labels = config_kwargs.pop("num_labels")
    for key, value in config_kwargs.items():
        setattr(config, key, value)

    if task_head == "load" and config.num_labels != source_labels:
        raise CheckpointLoadError(
            f"Cannot transfer the task head of {source} ({source_labels} labels"
            f"{', task ' + source_task if source_task else ''}) to a model with {config.num_labels} labels. Start a "
            "new head on the transferred encoder instead (GLUE: transfer_head=false; here: task_head='new')."
        )

    try:
        model, info = model_class.from_pretrained(
            source, config=config, output_loading_info=True, ignore_mismatched_sizes=True, **kwargs
        )
    except OSError as err:
        raise CheckpointLoadError(f"Cannot load weights from {source!r}: {err}") from err

    has_head = isinstance(getattr(model, "classifier", None), nn.Module)
    is_mlm = hasattr(model, "decoder")
    missing = set(info["missing_keys"])
    unexpected = set(info["unexpected_keys"])
    mismatched = {key: (tuple(ckpt), tuple(mine)) for key, ckpt, mine in info["mismatched_keys"]}
    head_keys = {k for k in model.state_dict() if k.startswith(HEAD_PREFIX)} if has_head else set()

    problems = []
    head_missing = {k for k in missing if k.startswith(HEAD_PREFIX)} if has_head else set()
    head_unexpected = {k for k in unexpected if k.startswith(HEAD_PREFIX)}
    head_mismatched = {k for k in mismatched if k.startswith(HEAD_PREFIX)} if has_head else set()
    other_missing = missing - head_missing
    other_unexpected = (
        unexpected - head_unexpected - (set() if is_mlm else {k for k in unexpected if k.startswith(MLM_HEAD_PREFIX)})
    )
    other_mismatched = set(mismatched) - head_mismatched
    if not has_head:
        # A fine-tuned head dropped by a class without one (an embedding model, an export of the encoder).
        head_unexpected = set()

    if other_missing:
        problems.append(f"missing keys (in the model, not in the checkpoint): {_names(other_missing)}")
    if other_unexpected:
        problems.append(f"unexpected keys (in the checkpoint, not in the model): {_names(other_unexpected)}")
    if other_mismatched:
        problems.append(
            "keys of another shape: "
            + ", ".join(
                f"{k} {mismatched[k][0]} in the checkpoint vs {mismatched[k][1]}" for k in sorted(other_mismatched)
            )
        )
    if has_head and task_head != "new":
        if head_unexpected:
            problems.append(f"the checkpoint's head has keys this head does not: {_names(head_unexpected)}")
        if head_mismatched:
            problems.append(
                "the checkpoint's head has another shape ("
                + ", ".join(f"{k} {mismatched[k][0]} vs {mismatched[k][1]}" for k in sorted(head_mismatched))
                + "); pass task_head='new' (GLUE: transfer_head=false) to start a new head on this encoder"
            )
        if task_head == "load" and head_missing:
            problems.append(
                f"task_head='load' but the checkpoint has no task head ({_names(head_missing)} missing); it is not a "
                "fine-tuned classifier"
            )
        elif head_missing and head_missing != head_keys:
            problems.append(f"the checkpoint has only part of the head: missing {_names(head_missing)}")
    if problems:
        raise CheckpointLoadError(
            f"The checkpoint {source} does not match {model_class.__name__}:\n- "
            + "\n- ".join(problems)
            + "\nNo weights were loaded silently: fix the checkpoint or the model class (a prefixed or renamed "
            "checkpoint must be converted first)."
        )

    if has_head and task_head == "new" and head_missing != head_keys:
        # The checkpoint had a head (maybe of the same shape): replace all of it so only the encoder is transferred.
        old = model.classifier
        reference = next(old.parameters())
        fresh = type(old)(model.config)
        fresh.apply(model._init_weights)
        model.classifier = fresh.to(device=reference.device, dtype=reference.dtype)
    model.loaded_from = source
    return model


def load_strict(path: str | os.PathLike, model_class: type, *, error: type[Exception] = CheckpointLoadError, **kwargs):
    """`model_class.from_pretrained(path)` that fails on any missing, unexpected or mis-shaped weight, for any
    `PreTrainedModel` class or Auto class (NeoBERT sources with a change of head go through
    [`load_pretrained_strict`] instead).

    Args:
        path: a model folder or Hub id.
        model_class: the class to load.
        error: the exception class raised (the exporter raises its own).
        kwargs: passed to `from_pretrained` (`config`, `dtype`, `trust_remote_code`, ...).

    Returns:
        The model, in eval mode.

    Raises:
        `error` ([`CheckpointLoadError`] by default): naming every missing, unexpected and mismatched key.
    """
    try:
        model, info = model_class.from_pretrained(os.fspath(path), output_loading_info=True, **kwargs)
    except RuntimeError as err:  # shape mismatches and state-dict errors
        raise error(f"The weights in {path} do not load into {model_class.__name__}: {err}") from err
    parts = []
    for key, what in (
        ("missing_keys", "missing keys (they would be randomly initialised)"),
        ("unexpected_keys", "unexpected keys (they would be silently ignored)"),
        ("mismatched_keys", "keys with mismatched shapes"),
        ("error_msgs", "errors"),
    ):
        values = sorted(str(k) for k in info.get(key) or ())
        if values:
            parts.append(f"{what}: {values}")
    if parts:
        raise error(f"The weights in {path} do not match {model_class.__name__}: " + "; ".join(parts) + ".")
    return model.eval()

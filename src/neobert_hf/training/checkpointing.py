"""The checkpoint tree: `<output_dir>/checkpoints/<step>/`, one folder per saved step.

Each folder is both a resumable training state and a loadable model:

```
checkpoints/<step>/
  model.safetensors  config.json  modeling_neobert.py  configuration_neobert.py   # AutoModel*.from_pretrained
  tokenizer.json  tokenizer_config.json  ...                                       # the tokenizer, when given
  README.md                                                                        # model card
  optimizer.pt  scheduler.pt  rng_state.pth  trainer_state.json  training_args.bin # resume (no token: see below)
  data_state.json (or .pt)                                                         # stream position, when stateful
```

A folder is written as `checkpoints/.tmp-<step>-<random>/` and renamed to its final name once complete, so a crash
never leaves a half-written folder under a step name. `trainer_state.json` is written last inside the temporary
folder; a folder without it is incomplete. [`CheckpointTreeMixin`] writes this tree for every Trainer of the package
(pretraining, GLUE, contrastive).

No secret is written: `training_args.bin` (pickled by every `save_model`) holds a copy of the arguments whose
`*_token` fields (`hub_token`) are `None` ([`redacted_training_args`]); JSON records use transformers'
`TrainingArguments.to_dict()`, which already replaces them with `<HUB_TOKEN>`.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
import re
import secrets
import shutil
from collections.abc import Iterable

import torch


logger = logging.getLogger(__name__)

CHECKPOINTS_DIR = "checkpoints"
TMP_PREFIX = ".tmp-"
TRAINER_STATE_NAME = "trainer_state.json"
DATA_STATE_JSON = "data_state.json"
DATA_STATE_PT = "data_state.pt"
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
_STEP_RE = re.compile(r"^\d+$")


class CheckpointError(ValueError):
    """A checkpoint that was asked for does not exist or is not complete."""


def redacted_training_args(args):
    """A shallow copy of `args` (a `TrainingArguments`) with every `*_token` field set to `None`: the same fields that
    transformers' `TrainingArguments.to_dict()` redacts, so that pickling the copy writes no Hub token. `args` itself
    is unchanged (the Trainer still pushes with its token)."""
    clean = copy.copy(args)
    for name in list(vars(args)):
        if name.endswith("_token") and getattr(args, name) is not None:
            setattr(clean, name, None)
    return clean


def checkpoints_root(output_dir: str | os.PathLike) -> str:
    return os.path.join(os.fspath(output_dir), CHECKPOINTS_DIR)


def checkpoint_dir(output_dir: str | os.PathLike, step: int) -> str:
    return os.path.join(checkpoints_root(output_dir), str(int(step)))


def incomplete_reason(path: str | os.PathLike) -> str | None:
    """Why `path` is not a complete checkpoint folder, or `None` when it is one."""
    path = os.fspath(path)
    name = os.path.basename(os.path.normpath(path))
    if name.startswith(TMP_PREFIX):
        return "it is a temporary folder left by an interrupted save (its name starts with '.tmp-')"
    if not os.path.isdir(path):
        return "it does not exist" if not os.path.exists(path) else "it is not a folder"
    if not os.path.isfile(os.path.join(path, TRAINER_STATE_NAME)):
        return f"it has no {TRAINER_STATE_NAME}"
    if not any(os.path.isfile(os.path.join(path, f)) for f in _WEIGHT_FILES):
        return "it has no model.safetensors"
    return None


def list_checkpoints(output_dir: str | os.PathLike) -> list[tuple[int, str]]:
    """Complete checkpoints under `<output_dir>/checkpoints/`, as `(step, path)` sorted by step."""
    root = checkpoints_root(output_dir)
    if not os.path.isdir(root):
        return []
    found = []
    for name in os.listdir(root):
        path = os.path.join(root, name)
        if _STEP_RE.match(name) and incomplete_reason(path) is None:
            found.append((int(name), path))
    return sorted(found)


def latest_checkpoint(output_dir: str | os.PathLike) -> str | None:
    """Path of the complete checkpoint with the highest step, or `None`."""
    found = list_checkpoints(output_dir)
    return found[-1][1] if found else None


def resolve_checkpoint(spec: str | int | bool | os.PathLike, output_dir: str | os.PathLike) -> str:
    """Turns `--resume_from_checkpoint` into the path of a complete checkpoint folder.

    Args:
        spec: `"latest"` (or `True`): the highest complete step under `<output_dir>/checkpoints/`; an integer or a
            string of digits: that step under `<output_dir>/checkpoints/`; anything else: a path to a checkpoint
            folder.
        output_dir: the run's output folder.

    Returns:
        `str`: the checkpoint folder.

    Raises:
        [`CheckpointError`]: when no such checkpoint exists or the folder is incomplete.
    """
    root = checkpoints_root(output_dir)
    if spec is True or (isinstance(spec, str) and spec.strip().lower() == "latest"):
        path = latest_checkpoint(output_dir)
        if path is None:
            raise CheckpointError(
                f"resume_from_checkpoint=latest but there is no complete checkpoint under {root}."
                + _leftovers_note(root)
            )
        return path
    if isinstance(spec, int) or (isinstance(spec, str) and _STEP_RE.match(spec.strip())):
        path = checkpoint_dir(output_dir, int(spec))
        available = [step for step, _ in list_checkpoints(output_dir)]
        if not os.path.exists(path):
            raise CheckpointError(
                f"resume_from_checkpoint={spec}: there is no checkpoint for step {int(spec)} under {root} "
                f"(complete steps: {available or 'none'})." + _leftovers_note(root)
            )
    else:
        path = os.fspath(spec)
    reason = incomplete_reason(path)
    if reason is not None:
        raise CheckpointError(
            f"Cannot resume from {path}: {reason}. Resume from a complete checkpoint folder "
            f"(checkpoints/<step>/ with {TRAINER_STATE_NAME} and model.safetensors), a step number, or 'latest'."
        )
    return path


def check_run_not_finished(path: str, max_steps: int) -> None:
    """Refuses to resume from a checkpoint already at `max_steps` (transformers' loop checks `max_steps` only after a
    step, so it would train one step past the end). `max_steps <= 0` (epoch-based runs) is not checked."""
    state_file = os.path.join(path, TRAINER_STATE_NAME)
    if max_steps <= 0 or not os.path.isfile(state_file):
        return
    with open(state_file, encoding="utf-8") as handle:
        step = json.load(handle).get("global_step", 0)
    if step >= max_steps:
        raise CheckpointError(
            f"{path} is at step {step} and max_steps is {max_steps}: that run is complete. Pass a larger max_steps to "
            "train further (the learning-rate schedule then follows the new max_steps)."
        )


def _leftovers_note(root: str) -> str:
    if not os.path.isdir(root):
        return ""
    leftovers = sorted(n for n in os.listdir(root) if n.startswith(TMP_PREFIX))
    if not leftovers:
        return ""
    return f" Interrupted saves (not resumable): {', '.join(leftovers)}."


def new_tmp_dir(output_dir: str | os.PathLike, step: int, token: str) -> str:
    return os.path.join(checkpoints_root(output_dir), f"{TMP_PREFIX}{int(step)}-{token}")


def publish(tmp_dir: str, final_dir: str) -> None:
    """Renames the finished `tmp_dir` to `final_dir` (atomic on POSIX). An existing `final_dir` of the same step is
    moved aside first and removed after the rename, so a complete folder is always present under the final name."""
    old = None
    if os.path.exists(final_dir):
        old = f"{tmp_dir}.replaced"
        os.rename(final_dir, old)
    os.rename(tmp_dir, final_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def rotate(
    output_dir: str | os.PathLike,
    save_total_limit: int | None,
    keep: Iterable[str | None] = (),
    current_tmp: str | None = None,
) -> list[str]:
    """Deletes the oldest complete checkpoints beyond `save_total_limit` (never those in `keep`, e.g. the best
    model) and any leftover `.tmp-*` folder of an interrupted save other than `current_tmp`. Returns what it
    deleted."""
    root = checkpoints_root(output_dir)
    deleted = []
    if os.path.isdir(root):
        for name in os.listdir(root):
            path = os.path.join(root, name)
            if name.startswith(TMP_PREFIX) and (
                current_tmp is None or os.path.abspath(path) != os.path.abspath(current_tmp)
            ):
                shutil.rmtree(path, ignore_errors=True)
                deleted.append(path)
    if save_total_limit is None or save_total_limit <= 0:
        return deleted
    keep_paths = {os.path.abspath(p) for p in keep if p}
    found = list_checkpoints(output_dir)
    removable = [path for _, path in found if os.path.abspath(path) not in keep_paths]
    excess = len(found) - save_total_limit
    for path in removable[: max(excess, 0)]:
        shutil.rmtree(path, ignore_errors=True)
        deleted.append(path)
    return deleted


# ---------------------------------------------------------------------------------------------------------------------
# Data position
# ---------------------------------------------------------------------------------------------------------------------


def save_data_state(folder: str, state) -> str:
    """Writes a dataset's `state_dict()` as JSON when it is JSON-serialisable, else with `torch.save`."""
    try:
        text = json.dumps(state)
    except (TypeError, ValueError):
        path = os.path.join(folder, DATA_STATE_PT)
        torch.save(state, path)
        return path
    path = os.path.join(folder, DATA_STATE_JSON)
    with open(path, "w") as f:
        f.write(text)
    return path


def load_data_state(folder: str):
    """Reads what [`save_data_state`] wrote; `None` when the checkpoint holds no data position."""
    json_path, pt_path = os.path.join(folder, DATA_STATE_JSON), os.path.join(folder, DATA_STATE_PT)
    if os.path.isfile(json_path):
        with open(json_path) as f:
            return json.load(f)
    if os.path.isfile(pt_path):
        return torch.load(pt_path, weights_only=True)
    return None


# ---------------------------------------------------------------------------------------------------------------------
# Model card
# ---------------------------------------------------------------------------------------------------------------------


def write_checkpoint_card(folder: str, final_dir: str, state, args, **facts) -> str:
    """Writes `<folder>/README.md`, the model card of a checkpoint being saved, with [`~neobert_hf.model_card`] (the
    package's only card renderer).

    Args:
        folder: the folder being written (`checkpoints/.tmp-<step>-<random>/`); it already holds `config.json` and the
            weights, not yet `trainer_state.json`.
        final_dir: the folder's final name, which the card's loading snippets use.
        state: the Trainer's `TrainerState`.
        args: the Trainer's `TrainingArguments` (learning rate, schedule, batch size, ... shown in the card).
        facts: overrides of [`~neobert_hf.model_card.ModelCardFacts`] (e.g. `finetuned_on`).

    Returns:
        `str`: the path of the card.
    """
    from ..model_card import collect_facts, write_model_card

    gathered = collect_facts(
        folder, trainer_state=dataclasses.asdict(state), run_args=args.to_dict(), model_id=final_dir, **facts
    )
    return write_model_card(folder, gathered)



# ---------------------------------------------------------------------------------------------------------------------
# Trainer mixin
# ---------------------------------------------------------------------------------------------------------------------


class CheckpointTreeMixin:
    """`Trainer._save_checkpoint` writing the `<output_dir>/checkpoints/<step>/` tree instead of transformers'
    `checkpoint-<step>/` folders; shared by the pretraining, GLUE and contrastive Trainers. List it before the
    `Trainer` class in the bases.

    The folder is written as `checkpoints/.tmp-<step>-<random>/` (the random part is the same on every rank): the
    model, the optimizer, scheduler, scaler and RNG state (unless `save_only_model`), the subclass's files, the state
    of the stateful callbacks and, last, `trainer_state.json`; then it is renamed to `checkpoints/<step>/`, pushed
    when `push_to_hub`, and `save_total_limit` is applied, never deleting the best checkpoint (with
    `load_best_model_at_end`, a limit of 1 keeps 2, as transformers does, so the run can still resume).

    Hooks for subclasses:

    - `_save_checkpoint_model(tmp_dir)`: weights, config and tokenizer (default: `save_model`);
    - `_save_checkpoint_files(tmp_dir, final_dir)`: files written by the main process before the trainer state
      (default: the model card, [`write_checkpoint_card`]).
    """

    def _shared_token(self) -> str:
        token = [secrets.token_hex(4)]
        if self.args.world_size > 1:
            from accelerate.utils import broadcast_object_list

            broadcast_object_list(token)
        return token[0]

    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        """`Trainer._save` (weights, tokenizer, `training_args.bin`) with the `*_token` fields of the pickled
        arguments set to `None` ([`redacted_training_args`]): no Hub token is ever written to disk."""
        args = self.args
        self.args = redacted_training_args(args)
        try:
            super()._save(output_dir, state_dict=state_dict)
        finally:
            self.args = args

    def _save_checkpoint_model(self, tmp_dir: str) -> None:
        self.save_model(tmp_dir, _internal_call=True)

    def _save_checkpoint_files(self, tmp_dir: str, final_dir: str) -> None:
        write_checkpoint_card(tmp_dir, final_dir, self.state, self.args)

    def _save_checkpoint(self, model, trial) -> None:
        from transformers.trainer_callback import ExportableState
        from transformers.trainer_utils import SaveStrategy

        if self.hp_search_backend is None and trial is None:
            self.store_flos()
        run_dir = self._get_output_dir(trial=trial)
        step = self.state.global_step
        final_dir = checkpoint_dir(run_dir, step)
        tmp_dir = new_tmp_dir(run_dir, step, self._shared_token())
        os.makedirs(tmp_dir, exist_ok=True)

        self._save_checkpoint_model(tmp_dir)

        if self.args.save_strategy in (SaveStrategy.STEPS, SaveStrategy.EPOCH, SaveStrategy.BEST) and (
            self.state.best_global_step
        ):
            best_dir = checkpoint_dir(run_dir, self.state.best_global_step)
            if self.state.best_global_step == step or os.path.isdir(best_dir):
                self.state.best_model_checkpoint = best_dir

        if not self.args.save_only_model:
            self._save_optimizer_and_scheduler(tmp_dir)
            self._save_scaler(tmp_dir)
            self._save_rng_state(tmp_dir)

        if self.args.should_save:
            self._save_checkpoint_files(tmp_dir, final_dir)
            for cb in [c for c in self.callback_handler.callbacks + [self.control] if isinstance(c, ExportableState)]:
                name, cb_state = cb.__class__.__name__, cb.state()
                if isinstance(self.state.stateful_callbacks.get(name), list):
                    self.state.stateful_callbacks[name].append(cb_state)
                else:
                    self.state.stateful_callbacks[name] = cb_state
            # Written last: its presence marks the folder complete.
            self.state.save_to_json(os.path.join(tmp_dir, TRAINER_STATE_NAME))

        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            publish(tmp_dir, final_dir)
            if self.args.push_to_hub:
                self._push_from_checkpoint(final_dir)
            limit = self.args.save_total_limit
            if limit == 1 and self.args.load_best_model_at_end:
                limit = 2
            for path in rotate(run_dir, limit, keep=[self.state.best_model_checkpoint]):
                logger.info(f"Deleted {path} (save_total_limit={self.args.save_total_limit} or interrupted save)")
        self.accelerator.wait_for_everyone()

__all__ = [
    "CHECKPOINTS_DIR",
    "CheckpointError",
    "CheckpointTreeMixin",
    "checkpoint_dir",
    "checkpoints_root",
    "incomplete_reason",
    "latest_checkpoint",
    "list_checkpoints",
    "load_data_state",
    "publish",
    "redacted_training_args",
    "resolve_checkpoint",
    "rotate",
    "save_data_state",
    "write_checkpoint_card",
]

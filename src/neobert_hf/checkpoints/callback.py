"""The checkpoint tree for any `Trainer`: [`CheckpointTreeCallback`], plus [`CheckpointTreeTrainerMixin`] for the
parts that a callback cannot do.

How the callback writes a step (transformers 5.25, `Trainer._maybe_log_save_evaluate`): the stock
`Trainer._save_checkpoint` writes `<output_dir>/checkpoint-<step>/` in place (no temporary folder: model and tokenizer
through `save_model`, then optimizer, scheduler, scaler, RNG and `trainer_state.json`), pushes it when `push_to_hub`
(`_push_from_checkpoint`), and rotates `checkpoint-*` folders (`trainer_utils.rotate_checkpoints`); right after it
returns, `callback_handler.on_save` runs. [`CheckpointTreeCallback.on_save`] then moves that folder to
`checkpoints/.tmp-<step>-<random>/`, rewrites `training_args.bin` without token, points `best_model_checkpoint` at
the tree and rewrites `trainer_state.json`, adds the model card and the caller's files (the data position of a stream),
writes the manifest last, renames the folder to `checkpoints/<step>/` and applies `save_total_limit` to the tree
(keeping the best checkpoint). The stock rotation never fights it: when it runs, the folder just written is the only
`checkpoint-*` there is.

What cannot be a callback, and so lives in [`CheckpointTreeTrainerMixin`] (public `Trainer.train` and `save_model`
only):

- resuming from `latest` or a step: `Trainer.train` turns `resume_from_checkpoint=True` into
  `trainer_utils.get_last_checkpoint(output_dir)`, which knows only `checkpoint-*` folders, and loads the weights before
  any callback event (`_load_from_checkpoint` in `train`, optimizer and scheduler in `_prepare_for_training`; the first
  event, `on_train_begin`, comes after both in `_inner_training_loop`). So verifying the checkpoint's manifest, and
  checking that its weights cover the model, must happen before `super().train(...)`;
- holding the output folder's lock from before anything is read until the final save after training, and the final
  save of a step that no save event covered (a stop requested after this callback ran): both are outside the events;
- no token on disk, ever: `Trainer._save` pickles `self.args` into `training_args.bin` before `on_save` can rewrite
  it, so a crash in between would leave the token in `checkpoint-<step>/`; `save_model` pickles a copy without it.

With a plain `Trainer` the callback takes the lock itself from `on_train_begin` to `on_train_end`, and resuming takes
the folder of a checkpoint: `trainer.train(resume_from_checkpoint="out/checkpoints/4")`.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable, Iterable, Iterator

import torch
from transformers import PreTrainedModel, TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, SaveStrategy
from transformers.utils import logging

from .lock import OutputDirLock
from .tree import (
    ADAPTER_DIR,
    TRAINER_STATE_NAME,
    CheckpointError,
    OutputDirLockedError,
    check_resumable,
    check_weights_match,
    checkpoint_dir,
    checkpoints_root,
    clean_leftovers,
    new_tmp_dir,
    publish,
    redacted_training_args,
    resolve_checkpoint,
    rotate,
    step_folder,
    verify_checkpoint,
    write_checkpoint_card,
    write_manifest,
)


logger = logging.get_logger(__name__)

_TRAINING_ARGS_NAME = "training_args.bin"
_NO_RESUME = (None, False, "", "false", "False", "none", "None")


def _is_peft(model) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "get_base_model")


def _wait_for_everyone(args) -> None:
    if args.world_size > 1:
        from accelerate import PartialState

        PartialState().wait_for_everyone()


class CheckpointTreeCallback(TrainerCallback):
    """Writes the `<output_dir>/checkpoints/<step>/` tree from any `Trainer`: each saved step becomes a folder that
    `AutoModel*.from_pretrained` loads and `trainer.train(resume_from_checkpoint=<folder>)` resumes from, published
    atomically with a manifest written last, `save_total_limit` applied to the tree (never deleting the best
    checkpoint; with `load_best_model_at_end` a limit of 1 keeps 2, as transformers does), and a save of the last step.

    Args:
        save_final (`bool`, defaults to `True`):
            Save the step at which training stops (the last step, or an early stop), whatever `save_strategy` says.
        files (iterable of callables, *optional*):
            Each is called as `write(folder)` with the folder being written, before the manifest: files of the
            caller (the pretraining Trainer writes the stream position there).
        on_publish (iterable of callables, *optional*):
            Each is called as `hook(folder, final)` once `checkpoints/<step>/` is published (the Hub push of the
            package's Trainers); `final` is `True` for the step where training stops.
        card_facts (`dict` or callable, *optional*):
            Overrides of the model card's facts ([`~neobert_hf.model_card.ModelCardFacts`]), or a callable
            `facts(model) -> dict`. No card is written when the saved model wrote its own `README.md`
            (sentence-transformers).
        lock (`bool`, defaults to `True`):
            Hold `<output_dir>/run.lock` from `on_train_begin` to `on_train_end` unless this process holds it already.

    Example:

    ```python
    >>> from transformers import Trainer
    >>> from neobert_hf import CheckpointTreeCallback
    >>> trainer = Trainer(model=model, args=args, train_dataset=train,  # doctest: +SKIP
    ...                   callbacks=[CheckpointTreeCallback()])
    >>> trainer.train()  # doctest: +SKIP
    >>> trainer.train(resume_from_checkpoint="out/checkpoints/4")  # doctest: +SKIP
    ```
    """

    def __init__(
        self,
        save_final: bool = True,
        files: Iterable[Callable[[str], None]] = (),
        on_publish: Iterable[Callable[[str, bool], None]] = (),
        card_facts: dict | Callable | None = None,
        lock: bool = True,
    ):
        self.save_final = save_final
        self.files = list(files)
        self.on_publish = list(on_publish)
        self.card_facts = card_facts
        self.lock = lock
        self.pushes_clean_exports = False  # set by Trainers whose Hub push uploads an export (CleanHubPushMixin)
        self._held: OutputDirLock | None = None
        self._last_saved_step: int | None = None

    # -- events ---------------------------------------------------------------------------------------------------

    def on_init_end(self, args, state, control, **kwargs):
        if args.push_to_hub and not self.pushes_clean_exports:
            # Trainer._push_from_checkpoint uploads `output_dir` (ignoring only `checkpoint-*`), which here holds the
            # whole tree with its optimizer state.
            raise ValueError(
                "CheckpointTreeCallback with push_to_hub=True: the stock Trainer push would upload the checkpoints/ "
                "tree (optimizer and training state). Train without push_to_hub and push an export "
                "(neobert_hf.export.export_model, then neobert_hf.export.push_to_hub), or use a Trainer of "
                "neobert_hf (CleanHubPushMixin)."
            )

    def on_train_begin(self, args, state, control, **kwargs):
        self._last_saved_step = None
        if not self.lock or not args.should_save:
            return
        lock = OutputDirLock(args.output_dir)
        if lock.held:  # the Trainer holds it around the whole of train() (CheckpointTreeTrainerMixin)
            return
        lock.acquire()
        self._held = lock
        clean_leftovers(args.output_dir)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self._record_best_step(args, state, model)
        if self._held is not None:
            self._held.release()
            self._held = None

    def on_epoch_end(self, args, state, control, **kwargs):
        # Every way training stops (the last step, early stopping, a stream that ran out, a callback's request) leaves
        # the step loop of `Trainer._run_epoch` and passes here before its last `_maybe_log_save_evaluate`.
        if self.save_final and control.should_training_stop and state.global_step > 0:
            if state.global_step != self._last_saved_step:
                control.should_save = True

    def on_save(self, args, state, control, model=None, **kwargs):
        self._last_saved_step = state.global_step
        source = os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
        _wait_for_everyone(args)  # every process has written its files (rng_state_<rank>.pth, shards)
        if args.should_save:
            if not os.path.isdir(source):
                raise CheckpointError(
                    f"CheckpointTreeCallback: the Trainer saved no {source}. Hyperparameter search (a run folder per "
                    "trial) is not supported by the checkpoint tree."
                )
            self.publish_step(source, args, state, model, final=control.should_training_stop)
        _wait_for_everyone(args)

    @staticmethod
    def _record_best_step(args, state, model) -> None:
        """Tells a sentence-transformers model card which step's weights it holds after `load_best_model_at_end`.
        `SentenceTransformerTrainer._load_best_model` reads the step from a `checkpoint-<step>` name, which the tree
        has renamed to `checkpoints/<step>`; it then records nothing (it ignores its own parsing error)."""
        card = getattr(model, "model_card_data", None)
        if not (args.load_best_model_at_end and state.best_model_checkpoint and hasattr(card, "set_best_model_step")):
            return
        name = os.path.basename(step_folder(state.best_model_checkpoint))
        if name.isdigit():
            card.set_best_model_step(int(name))

    # -- the tree -------------------------------------------------------------------------------------------------

    def best_model_path(self, step_dir: str, model) -> str:
        """The folder that `best_model_checkpoint` names for the checkpoint `step_dir`: the folder itself, or for a
        PEFT model its `adapter/` subfolder (where transformers' `Trainer._load_best_model` finds the adapter)."""
        adapter = os.path.join(step_dir, ADAPTER_DIR)
        return adapter if _is_peft(model) and os.path.isdir(adapter) else step_dir

    def publish_step(self, source: str, args, state, model=None, final: bool = False) -> str:
        """Turns the Trainer's `checkpoint-<step>/` folder `source` into `checkpoints/<step>/` (see the module
        docstring). Returns the published folder."""
        run_dir = args.output_dir
        step = state.global_step
        final_dir = checkpoint_dir(run_dir, step)
        os.makedirs(checkpoints_root(run_dir), exist_ok=True)
        tmp_dir = new_tmp_dir(run_dir, step, secrets.token_hex(4))
        os.rename(source, tmp_dir)  # from here on a crash leaves a `.tmp-` folder, cleaned at the next start

        redacted = redacted_training_args(args)
        for folder, _, names in os.walk(tmp_dir):
            if _TRAINING_ARGS_NAME in names:
                torch.save(redacted, os.path.join(folder, _TRAINING_ARGS_NAME))

        # The stock save names `checkpoint-<best>`, which is gone: name the tree's folder instead.
        if args.save_strategy in (SaveStrategy.STEPS, SaveStrategy.EPOCH, SaveStrategy.BEST) and state.best_global_step:
            best_dir = checkpoint_dir(run_dir, state.best_global_step)
            if state.best_global_step == step:  # still at tmp_dir: judge its layout there
                inner = os.path.relpath(self.best_model_path(tmp_dir, model), tmp_dir)
                state.best_model_checkpoint = os.path.normpath(os.path.join(final_dir, inner))
            elif os.path.isdir(best_dir):
                state.best_model_checkpoint = self.best_model_path(best_dir, model)

        for write in self.files:
            write(tmp_dir)
        if not os.path.isfile(os.path.join(tmp_dir, "README.md")):
            facts = self.card_facts(model) if callable(self.card_facts) else (self.card_facts or {})
            write_checkpoint_card(tmp_dir, final_dir, state, args, **facts)
        if os.path.isfile(os.path.join(tmp_dir, TRAINER_STATE_NAME)):
            state.save_to_json(os.path.join(tmp_dir, TRAINER_STATE_NAME))

        write_manifest(tmp_dir, step)  # last: what the folder holds
        publish(tmp_dir, final_dir)
        for hook in self.on_publish:
            hook(final_dir, final)

        limit = args.save_total_limit
        if limit == 1 and args.load_best_model_at_end:
            limit = 2
        keep = step_folder(state.best_model_checkpoint) if state.best_model_checkpoint else None
        for path in rotate(run_dir, limit, keep=[keep]):
            logger.info(f"Deleted {path} (save_total_limit={args.save_total_limit})")
        return final_dir


class CheckpointTreeTrainerMixin:
    """What the checkpoint tree needs beyond [`CheckpointTreeCallback`] (see the module docstring for why), through
    the public `Trainer.train` and `Trainer.save_model` only. List it before the `Trainer` class in the bases; it adds
    the callback (`checkpoint_callback`) unless one was given.

    `train` holds `<output_dir>/run.lock` (on the processes that save) from before anything is read or written until
    the final save; resolves `resume_from_checkpoint` (`latest`/`True`, a step or a folder of the tree; default
    `args.resume_from_checkpoint`), verifies that checkpoint ([`~neobert_hf.checkpoints.verify_checkpoint`]: the damaged
    file and the newest good step are named) and checks that training can continue from it
    ([`~neobert_hf.checkpoints.check_resumable`], [`~neobert_hf.checkpoints.check_weights_match`]); cleans up what
    interrupted runs left; trains; and saves the step where training stopped when no save event covered it.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        callback = next((c for c in self.callback_handler.callbacks if isinstance(c, CheckpointTreeCallback)), None)
        if callback is None:
            callback = self.make_checkpoint_callback()
            self.add_callback(callback)  # after the given callbacks: it sees the stop that early stopping requests
        self.checkpoint_callback: CheckpointTreeCallback = callback

    def make_checkpoint_callback(self) -> CheckpointTreeCallback:
        """The callback this Trainer adds (subclasses pass their files, hooks and card facts)."""
        return CheckpointTreeCallback()

    # -- the run: lock, resume, final save ------------------------------------------------------------------------

    def _any_process(self, flag: bool) -> bool:
        """`flag` of any process (a collective call in distributed runs, so every process gets the same answer)."""
        if self.args.world_size <= 1 or not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return flag
        value = torch.tensor([int(flag)], device=self.args.device)
        torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
        return bool(value.item())

    @contextlib.contextmanager
    def output_dir_lock(self) -> Iterator[None]:
        """Holds `<output_dir>/run.lock` on the processes that save; every process fails if one of them cannot."""
        lock = OutputDirLock(self.args.output_dir) if self.args.should_save else None
        error = None
        if lock is not None:
            try:
                lock.acquire()
            except OutputDirLockedError as err:
                error = err
        if self._any_process(error is not None):
            raise error or OutputDirLockedError(f"The main process could not lock {self.args.output_dir}.")
        try:
            yield
        finally:
            if lock is not None:
                lock.release()

    def resume_path(self, spec) -> str | None:
        """The verified checkpoint folder that `spec` (`resume_from_checkpoint`) names, or `None`, checked for
        resuming this Trainer's model and data. Hashes are checked by the processes that save; every process fails
        if a check does."""
        if spec in _NO_RESUME:
            return None
        path = resolve_checkpoint(spec, self.args.output_dir)
        error = None
        if self.args.should_save:
            try:
                verify_checkpoint(path)
            except CheckpointError as err:
                error = err
        if self._any_process(error is not None):
            raise error or CheckpointError(f"{path} did not verify on the main process.")
        check_resumable(path, self.args, self.train_dataset)
        unwrapped = self.accelerator.unwrap_model(self.model)
        if isinstance(unwrapped, PreTrainedModel) and not _is_peft(unwrapped):
            # transformers' layout (a sentence-transformers folder nests the encoder's keys; a PEFT model loads its
            # adapter): transformers would load it with strict=False and only warn.
            check_weights_match(path, unwrapped)
        return path

    def train(self, resume_from_checkpoint=None, trial=None, **kwargs):
        """`Trainer.train` holding the output folder's lock, from a verified checkpoint of the tree
        (`resume_from_checkpoint`: `latest`/`True`, a step or a folder; default `args.resume_from_checkpoint`), after
        cleaning up what interrupted runs left; the step where training stopped is saved."""
        if resume_from_checkpoint is None:
            resume_from_checkpoint = self.args.resume_from_checkpoint
        with self.output_dir_lock():
            path = self.resume_path(resume_from_checkpoint)
            if self.args.should_save:
                clean_leftovers(self.args.output_dir)
            self.before_train(path)
            try:
                output = super().train(resume_from_checkpoint=path, trial=trial, **kwargs)
            finally:
                self.after_train()
            self.save_last_step(trial)
        return output

    def before_train(self, resume_from_checkpoint: str | None) -> None:
        """Called inside the lock with the verified checkpoint (or `None`), right before `Trainer.train`."""

    def after_train(self) -> None:
        """Called when `Trainer.train` returns or fails, inside the lock."""

    def save_last_step(self, trial=None) -> None:
        """Saves the step where training stopped unless a save event covered it (a stop requested by a callback that
        ran after [`CheckpointTreeCallback`]). Not after `load_best_model_at_end` loaded another step's weights:
        they would be filed under the wrong step."""
        callback = self.checkpoint_callback
        step = self.state.global_step
        best_loaded = self.args.load_best_model_at_end and self.state.best_model_checkpoint is not None
        if not callback.save_final or step <= 0 or best_loaded:
            return
        if os.path.isdir(checkpoint_dir(self.args.output_dir, step)):
            return
        # The stock save, then the callback's on_save, as `Trainer._maybe_log_save_evaluate` runs them.
        self._save_checkpoint(self.model_wrapped, trial)
        self.control = self.callback_handler.on_save(self.args, self.state, self.control)

    # -- no token on disk -----------------------------------------------------------------------------------------

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """`Trainer.save_model` pickling `training_args.bin` from a copy of the arguments whose `*_token` fields are
        `None` ([`~neobert_hf.checkpoints.redacted_training_args`]): no Hub token is written to disk."""
        args = self.args
        self.args = redacted_training_args(args)
        try:
            super().save_model(output_dir, _internal_call=True)
        finally:
            self.args = args
        if args.push_to_hub and not _internal_call:  # what Trainer.save_model does last, with the token
            self.push_to_hub(commit_message="Model save", revision=args.hub_revision)


__all__ = ["CheckpointTreeCallback", "CheckpointTreeTrainerMixin"]

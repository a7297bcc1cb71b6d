"""Trainer-side `push_to_hub` that uploads only a clean exported model folder, and of it only the allow-listed files.

transformers' `Trainer` pushes `args.output_dir` (which here holds the whole `checkpoints/` tree, since its ignore
pattern only knows `checkpoint-*`) plus `training_args.bin`, and with `hub_strategy="checkpoint"` the resumable
checkpoint itself (optimizer, scheduler, RNG). [`CleanHubPushMixin`] replaces the three Hub paths of `Trainer`:

- `__init__`: with `push_to_hub=True`, `hub_model_id` is required (no repo named after the output folder) and
  `hub_strategy` must be `every_save` or `end` (`checkpoint`/`all_checkpoints` would upload optimizer state); the
  tokenizer (`processing_class`) is required so the pushed folder is usable. Checked before anything is written.
- every published `checkpoints/<step>/` (a hook of [`~neobert_hf.checkpoints.CheckpointTreeCallback`], when
  `push_to_hub=True`): exports that checkpoint with [`~neobert_hf.export.export_model`] to
  `<output_dir>/.hub-export-<step>-<random>/` and uploads that folder (in the background during training, like the
  Trainer; the step where training stops is uploaded before `train()` returns). The staging folder is removed once
  uploaded. The stock per-save push (`Trainer._push_from_checkpoint`) does nothing.
- `push_to_hub()` (explicit calls, and `save_model()` with `push_to_hub=True`): saves the current model with
  `save_model` (GLUE's LoRA runs save the merged model), exports it the same way and uploads the export.

Every upload sends only the files of [`~neobert_hf.export.push_allow_list`] (weights, config, tokenizer, remote code,
model card, sentence-transformers module files), and logs their list first. The pretraining, GLUE and contrastive
Trainers all use this mixin; the contrastive Trainer's export is the allow-listed files of its sentence-transformers
folder (`_stage_export` copies them), the others' is [`~neobert_hf.export.export_model`].
"""

from __future__ import annotations

import os
import secrets
import shutil
from typing import Any

from transformers.trainer_utils import HubStrategy
from transformers.utils import logging

from ..checkpoints.callback import CheckpointTreeCallback
from ..checkpoints.tree import HUB_STAGING_PREFIX


logger = logging.get_logger(__name__)

STAGING_PREFIX = HUB_STAGING_PREFIX  # cleaned up by the next run if an upload never finished
_ALLOWED_STRATEGIES = (HubStrategy.EVERY_SAVE, HubStrategy.END)


def _hf_api():
    from transformers.utils.hub import hf_api

    return hf_api()


class CleanHubPushMixin:
    """Put before `transformers.Trainer` in the bases of a Trainer: every Hub upload is a clean exported folder."""

    #: The Trainer needs `processing_class` to push a usable folder (a SentenceTransformer holds its own tokenizer).
    push_needs_processing_class: bool = True

    def __init__(self, *args: Any, **kwargs: Any):
        training_args = kwargs.get("args")
        if training_args is None and len(args) > 1:
            training_args = args[1]
        if training_args is not None and training_args.push_to_hub:
            check_push_arguments(
                training_args, kwargs.get("processing_class"), needs_tokenizer=self.push_needs_processing_class
            )
        for callback in kwargs.get("callbacks") or ():
            if isinstance(callback, CheckpointTreeCallback):
                callback.pushes_clean_exports = True
        super().__init__(*args, **kwargs)
        for callback in self.callback_handler.callbacks:
            if isinstance(callback, CheckpointTreeCallback):
                callback.pushes_clean_exports = True
                callback.on_publish.append(self._push_checkpoint)

    # ------------------------------------------------------------------------------------------------------------------

    def _stage_export(self, source: str, tag: str) -> str:
        from neobert_hf.export import export_model

        staging = os.path.join(self.args.output_dir, f"{STAGING_PREFIX}{tag}-{secrets.token_hex(3)}")
        name = self.hub_model_id.split("/")[-1]  # not the staging folder's name
        export_model(source, staging, card_facts={"model_id": self.hub_model_id, "model_name": name})
        return staging

    def _upload(self, folder: str, commit_message: str, blocking: bool, token: str | None = None, revision=None):
        from neobert_hf.export import push_allow_list, upload_allowed

        files = push_allow_list(folder)
        logger.info(f"Pushing {len(files)} files to {self.hub_model_id}: {', '.join(files)}")
        future_or_info = upload_allowed(
            _hf_api(),
            self.hub_model_id,
            folder,
            files,
            commit_message=commit_message,
            token=token if token is not None else self.args.hub_token,
            run_as_future=not blocking,
            revision=revision if revision is not None else self.args.hub_revision,
        )
        if blocking:
            shutil.rmtree(folder, ignore_errors=True)
            return future_or_info
        future_or_info.add_done_callback(lambda _: shutil.rmtree(folder, ignore_errors=True))
        from transformers.trainer import PushInProgress

        if self.push_in_progress is None or self.push_in_progress.is_done():
            self.push_in_progress = PushInProgress([future_or_info])
        else:
            self.push_in_progress.jobs.append(future_or_info)
        return future_or_info

    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        # Private override (one of three in the package; tests/test_private_overrides.py watches its signature): the
        # stock `Trainer._save_checkpoint` calls it with the raw `checkpoint-<step>/` folder whenever `push_to_hub` is
        # set (trainer.py `_save_checkpoint`: `if self.args.push_to_hub: self._push_from_checkpoint(output_dir)`), and
        # uploads `output_dir` (the whole checkpoint tree); no public hook or argument turns that off while keeping
        # `push_to_hub`. The clean export is pushed once the step is published (`_push_checkpoint`).
        return

    def _push_checkpoint(self, checkpoint_folder: str, final: bool) -> None:
        """Upload the clean export of a just-published `checkpoints/<step>/`; `final` (the step where training stops)
        waits for the upload."""
        if not self.args.push_to_hub or not self.is_world_process_zero() or self.args.hub_strategy == HubStrategy.END:
            return
        if final:
            self._finish_current_push()
        elif (
            not self.args.hub_always_push and self.push_in_progress is not None and not self.push_in_progress.is_done()
        ):
            return
        self.callback_handler.on_push_begin(self.args, self.state, self.control)
        step = self.state.global_step
        staging = self._stage_export(checkpoint_folder, f"step{step}")
        self._upload(staging, f"Training in progress, step {step}", blocking=final)

    def push_to_hub(
        self,
        commit_message: str | None = "End of training",
        blocking: bool = True,
        token: str | None = None,
        revision: str | None = None,
        private: bool | None = None,
        **kwargs: Any,
    ):
        """Upload the clean export of the current model to `args.hub_model_id` (replaces `Trainer.push_to_hub`;
        `kwargs` of transformers' card are not used: the card is neobert-hf's)."""
        self.callback_handler.on_push_begin(self.args, self.state, self.control)
        check_push_arguments(self.args, self.processing_class, require_push_flag=False)
        token = token if token is not None else self.args.hub_token
        if self.hub_model_id is None:
            self.init_hf_repo(token=token, private=private)
        # All processes take part in saving (sharded models); the folder name must be the same on every rank.
        scratch = os.path.join(self.args.output_dir, f"{STAGING_PREFIX}save-step{self.state.global_step}")
        self.save_model(scratch, _internal_call=True)
        if not self.is_world_process_zero():
            return None
        try:
            self.state.save_to_json(os.path.join(scratch, "trainer_state.json"))  # the facts of the card
            staging = self._stage_export(scratch, f"final{self.state.global_step}")
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        self._finish_current_push()
        return self._upload(staging, commit_message or "Upload model", blocking, token=token, revision=revision)


def check_push_arguments(args, processing_class=None, require_push_flag: bool = True, needs_tokenizer: bool = True) -> None:
    """Errors for a Trainer push that cannot upload a clean, usable folder (see the module docstring). The CLIs call it
    with `needs_tokenizer=False` while checking their arguments (they always load a tokenizer)."""
    if require_push_flag and not args.push_to_hub:
        return
    if not args.hub_model_id:
        raise ValueError(
            "push_to_hub needs hub_model_id (the Hub repository, org/name); nothing is pushed to a repository named "
            "after the output folder."
        )
    strategy = HubStrategy(args.hub_strategy)
    if strategy not in _ALLOWED_STRATEGIES:
        raise ValueError(
            f"hub_strategy={strategy.value} would upload the resumable checkpoint (optimizer, scheduler, RNG and "
            "trainer state). Use hub_strategy=every_save (a clean export of every saved checkpoint) or end."
        )
    if needs_tokenizer and processing_class is None:
        raise ValueError(
            "push_to_hub needs the tokenizer (processing_class=...) so that the pushed model folder is usable."
        )


__all__ = ["STAGING_PREFIX", "CleanHubPushMixin", "check_push_arguments"]

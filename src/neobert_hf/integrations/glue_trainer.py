"""The Trainer of GLUE fine-tuning: transformers' `Trainer` writing the `<output_dir>/checkpoints/<step>/` tree of
pretraining (SPEC 3), with LoRA checkpoints that stay loadable as full models, and early stopping that works with
several evaluation sets (MNLI matched and mismatched).
"""

from __future__ import annotations

import copy
import logging
import os
import secrets

from torch import nn
from transformers import EarlyStoppingCallback, Trainer
from transformers.trainer_callback import ExportableState
from transformers.trainer_utils import SaveStrategy

from ..training.checkpointing import (
    TRAINER_STATE_NAME,
    checkpoint_dir,
    new_tmp_dir,
    publish,
    rotate,
    write_checkpoint_card,
)


logger = logging.getLogger(__name__)

__all__ = ["ADAPTER_DIR", "GlueEarlyStoppingCallback", "GlueTrainer"]

# LoRA checkpoints keep the adapter here; the folder itself holds the merged model, so it loads like any other.
ADAPTER_DIR = "adapter"


def _is_peft(model) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "get_base_model")


class GlueEarlyStoppingCallback(EarlyStoppingCallback):
    """transformers' [`~transformers.EarlyStoppingCallback`] for several evaluation sets.

    With MNLI's matched and mismatched sets, `on_evaluate` runs once per set and only one set carries
    `metric_for_best_model`; the other is skipped (transformers would warn that early stopping is disabled). The
    metric's presence is checked up front and by the Trainer's best-model bookkeeping.
    """

    def on_evaluate(self, args, state, control, metrics, **kwargs):
        key = args.metric_for_best_model
        key = key if key.startswith("eval_") else f"eval_{key}"
        if key not in metrics:
            return
        super().on_evaluate(args, state, control, metrics, **kwargs)


class GlueTrainer(Trainer):
    """[`~transformers.Trainer`] writing the `<output_dir>/checkpoints/<step>/` tree.

    Each folder is written as `checkpoints/.tmp-<step>-<random>/` and renamed once complete (trainer state last);
    `save_total_limit` never deletes the best checkpoint. With LoRA the folder holds the merged model (so it loads
    with `from_pretrained` like any other) and the adapter under `adapter/`, which best-model loading and resume use.
    """

    def _save_checkpoint(self, model: nn.Module, trial) -> None:
        if self.hp_search_backend is None and trial is None:
            self.store_flos()
        run_dir = self._get_output_dir(trial=trial)
        step = self.state.global_step
        final_dir = checkpoint_dir(run_dir, step)
        token = [secrets.token_hex(4)]
        if self.args.world_size > 1:
            from accelerate.utils import broadcast_object_list

            broadcast_object_list(token)
        tmp_dir = new_tmp_dir(run_dir, step, token[0])
        os.makedirs(tmp_dir, exist_ok=True)

        unwrapped = self.accelerator.unwrap_model(self.model)
        if _is_peft(unwrapped):
            self.save_model(os.path.join(tmp_dir, ADAPTER_DIR), _internal_call=True)
            if self.args.should_save:
                merged = copy.deepcopy(unwrapped).merge_and_unload()
                merged.save_pretrained(tmp_dir)
                del merged
                if self.processing_class is not None:
                    self.processing_class.save_pretrained(tmp_dir)
        else:
            self.save_model(tmp_dir, _internal_call=True)

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
            task = getattr(self.accelerator.unwrap_model(self.model).config, "finetuning_task", None)
            write_checkpoint_card(
                tmp_dir, final_dir, self.state, self.args, finetuned_on=f"GLUE {task.upper()}" if task else None
            )
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
                limit = 2  # as transformers does: the best and the latest, so the run can still resume
            for path in rotate(run_dir, limit, keep=[self.state.best_model_checkpoint]):
                logger.info(f"Deleted {path} (save_total_limit={self.args.save_total_limit} or interrupted save)")
        self.accelerator.wait_for_everyone()

    def _load_best_model(self) -> None:
        if not _is_peft(self.accelerator.unwrap_model(self.model)):
            return super()._load_best_model()
        best = self.state.best_model_checkpoint
        self.state.best_model_checkpoint = os.path.join(best, ADAPTER_DIR)
        try:
            super()._load_best_model()
        finally:
            self.state.best_model_checkpoint = best

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        if _is_peft(self.accelerator.unwrap_model(self.model)):
            resume_from_checkpoint = os.path.join(resume_from_checkpoint, ADAPTER_DIR)
        return super()._load_from_checkpoint(resume_from_checkpoint, model=model)

    def _issue_warnings_after_load(self, load_result) -> None:
        """Best-model loading and resume load weights with `strict=False`: fail on any key that is not there."""
        missing, unexpected = sorted(load_result.missing_keys), sorted(load_result.unexpected_keys)
        if missing or unexpected:
            raise ValueError(
                f"The checkpoint does not match the model: missing keys {missing}, unexpected keys {unexpected}."
            )

"""The Trainer of GLUE fine-tuning: transformers' `Trainer` writing the `<output_dir>/checkpoints/<step>/` tree of
pretraining (SPEC 3), with LoRA checkpoints that stay loadable as full models, and early stopping that works with
several evaluation sets (MNLI matched and mismatched).
"""

from __future__ import annotations

import copy
import os

from transformers import EarlyStoppingCallback, Trainer

from ..training.checkpointing import CheckpointTreeMixin, write_checkpoint_card
from ..training.hub import CleanHubPushMixin


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


class GlueTrainer(CleanHubPushMixin, CheckpointTreeMixin, Trainer):
    """[`~transformers.Trainer`] writing the `<output_dir>/checkpoints/<step>/` tree of pretraining
    ([`~neobert_hf.training.checkpointing.CheckpointTreeMixin`]), each folder with a model card naming the GLUE task.
    With `push_to_hub` it uploads a clean export of the model, never the checkpoint tree
    ([`~neobert_hf.training.hub.CleanHubPushMixin`]).

    With LoRA the folder holds the merged model (so it loads with `from_pretrained` like any other) and the adapter
    under `adapter/`, which best-model loading and resume use.
    """

    def _save_checkpoint_model(self, tmp_dir: str) -> None:
        unwrapped = self.accelerator.unwrap_model(self.model)
        if not _is_peft(unwrapped):
            return super()._save_checkpoint_model(tmp_dir)
        self.save_model(os.path.join(tmp_dir, ADAPTER_DIR), _internal_call=True)
        if self.args.should_save:
            merged = copy.deepcopy(unwrapped).merge_and_unload()
            merged.save_pretrained(tmp_dir)
            del merged
            if self.processing_class is not None:
                self.processing_class.save_pretrained(tmp_dir)

    def _save_checkpoint_files(self, tmp_dir: str, final_dir: str) -> None:
        task = getattr(self.accelerator.unwrap_model(self.model).config, "finetuning_task", None)
        write_checkpoint_card(
            tmp_dir, final_dir, self.state, self.args, finetuned_on=f"GLUE {task.upper()}" if task else None
        )

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

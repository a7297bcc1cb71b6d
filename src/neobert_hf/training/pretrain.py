"""MLM pretraining from parsed arguments: the run behind `neobert-hf pretrain`.

[`prepare_pretraining`] checks every argument and builds the tokenizer, the model config, the data and the model;
it writes nothing, so a bad recipe fails before `output_dir` is touched. [`PretrainingSetup.build_trainer`] then
builds the [`NeoBERTTrainer`] (which creates `output_dir`), and [`run_pretraining`] does both and trains.

```python
from neobert_hf.training.pretrain import run_pretraining
from neobert_hf.training.pretrain_arguments import DataArguments, ModelArguments
from neobert_hf.training import NeoBERTTrainingArguments

trainer = run_pretraining(
    ModelArguments(tokenizer_name="data/tokenizer", hidden_size=128, num_hidden_layers=2, num_attention_heads=2),
    DataArguments(dataset_name="data/corpus", max_seq_length=128, tokens_per_batch=2048),
    NeoBERTTrainingArguments(output_dir="runs/demo", max_steps=10, per_device_train_batch_size=1, use_cpu=True),
)
```
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import shutil
from dataclasses import dataclass
from typing import Any

import torch
from transformers import TrainerCallback

from ..data import (
    MLMMasker,
    PackedBatchCollator,
    PretrainingData,
    PreparedTokenizer,
    build_mlm_datasets,
    load_pretraining_data,
    load_tokenizer,
    prepare_tokenizer,
    tokenize_dataset,
)
from ..converters.arguments import PrecisionArguments
from ..modeling import NeoBERTConfig, NeoBERTForMaskedLM
from .arguments import NeoBERTTrainingArguments
from ..checkpoints import (
    CheckpointError,
    CheckpointLoadError,
    check_resumable,
    checkpoints_root,
    latest_checkpoint,
    list_checkpoints,
    load_data_state,
    load_strict,
    resolve_checkpoint,
)
from .argument_checks import check_training_values
from .output_dir import check_output_dir, failed_start_cleanup
from .pretrain_arguments import ARCHITECTURE_FIELDS, DataArguments, ModelArguments


__all__ = ["PretrainingSetup", "prepare_pretraining", "run_pretraining"]

logger = logging.getLogger("neobert_hf.pretrain")

_CUDA_ONLY_ATTENTION = ("flash_attention_2", "flash_attention_3", "torch_varlen")
_PREPROCESSED_TOKENIZER = "tokenizer"
_PREPROCESS_INFO = "preprocess_info.json"
RUN_ARGS_NAME = "run_args.json"


@dataclass
class PretrainingSetup:
    """Everything a pretraining run needs, built and checked by [`prepare_pretraining`]; nothing written yet.

    Attributes:
        model_args, data_args, training_args: the parsed arguments.
        tokenizer: the prepared tokenizer (pad/mask tokens, inert vocabulary padding); saved with every checkpoint.
        config ([`NeoBERTConfig`]): the model config, with `vocab_size`/`pad_token_id` synced to the tokenizer.
        model ([`NeoBERTForMaskedLM`]): new or loaded weights.
        data ([`~neobert_hf.data.PretrainingData`]): the tokenized train/eval documents.
        train_dataset, eval_dataset ([`~neobert_hf.data.MicrobatchDataset`]): packed (or padded) masked microbatches.
        collator ([`~neobert_hf.data.PackedBatchCollator`]): joins `per_device_*_batch_size` microbatches.
        resume_from_checkpoint (`str`, *optional*): the checkpoint folder to resume from, resolved and checked.
        precision_args ([`~neobert_hf.converters.PrecisionArguments`], *optional*): low-precision backend and kernels.
        callbacks (`list`): extra Trainer callbacks, e.g. the [`~neobert_hf.converters.PrecisionCallback`] that
            converts the model at the end of `Trainer.__init__` (before compile, wrapping and the optimizer).
        overwritten_steps (`list[int]`): with `overwrite_output_dir`, the steps of the earlier run's checkpoints that
            are deleted when training begins.
    """

    model_args: ModelArguments
    data_args: DataArguments
    training_args: NeoBERTTrainingArguments
    tokenizer: Any
    config: NeoBERTConfig
    model: NeoBERTForMaskedLM
    data: PretrainingData
    train_dataset: Any
    eval_dataset: Any
    collator: PackedBatchCollator
    resume_from_checkpoint: str | None
    precision_args: PrecisionArguments | None = None
    callbacks: list = dataclasses.field(default_factory=list)
    overwritten_steps: list[int] = dataclasses.field(default_factory=list)

    def run_args(self) -> dict[str, Any]:
        """Every parsed argument of the run as one JSON-ready dict (model, data, precision, training), the record
        that `run_args.json` holds and that the model cards of the run's checkpoints read (data, hyperparameters)."""
        record: dict[str, Any] = {}
        for group in (self.model_args, self.data_args, self.precision_args):
            if group is not None:
                record.update(dataclasses.asdict(group))
        record.update(self.training_args.to_dict())
        return json.loads(json.dumps(record, default=str))

    def save_run_args(self) -> str | None:
        """Writes `<output_dir>/run_args.json` (main process only; written to a temporary name, then renamed) and
        returns its path, or `None` on the other processes. The Trainer of [`build_trainer`] calls it when training
        begins (weights, optimizer and resume state loaded), so a start that fails leaves the file as it was; a
        resumed run then rewrites it with its own arguments."""
        if self.training_args.process_index != 0:
            return None
        os.makedirs(self.training_args.output_dir, exist_ok=True)
        path = os.path.join(self.training_args.output_dir, RUN_ARGS_NAME)
        tmp = f"{path}.tmp-{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(self.run_args(), handle, indent=2, sort_keys=True)
            handle.write("\n")
        os.replace(tmp, path)
        return path

    def build_trainer(self):
        """The [`NeoBERTTrainer`] of this setup (creates `output_dir`; `run_args.json` is written there when training
        begins, see [`save_run_args`])."""
        from .trainer import NeoBERTTrainer

        return NeoBERTTrainer(
            model=self.model,
            args=self.training_args,
            train_dataset=self.train_dataset,
            eval_dataset=self.eval_dataset,
            data_collator=self.collator,
            processing_class=self.tokenizer,
            callbacks=[*self.callbacks, RunArgsRecorder(self)],
        )

    def train(self, trainer=None):
        """Build the Trainer (unless given) and train from the resolved checkpoint. A start that fails before training
        begins (optimizer, resume state) leaves no new folder behind: an `output_dir` that this call created and that
        holds no file is removed again (with the parent folders it created). Returns the Trainer."""
        recorder = None

        def started() -> bool:
            return recorder is not None and recorder.started

        with failed_start_cleanup(self.training_args.output_dir, started):
            trainer = trainer if trainer is not None else self.build_trainer()
            recorder = next((c for c in trainer.callback_handler.callbacks if isinstance(c, RunArgsRecorder)), None)
            with stream_read_errors(
                self.data_args.source(),
                self.data.streaming,
                step=lambda: trainer.state.global_step,
                saved=lambda: latest_checkpoint(self.training_args.output_dir) is not None,
            ):
                trainer.train(resume_from_checkpoint=self.resume_from_checkpoint)
        return trainer

    def output_dir_action(self) -> str:
        """What this run does with its `output_dir`: resume, overwrite an earlier run, or start a new one."""
        if self.resume_from_checkpoint:
            return f"resuming from {self.resume_from_checkpoint}"
        if self.overwritten_steps:
            return (
                f"overwrite_output_dir: the earlier run's checkpoints (steps {self.overwritten_steps}) are deleted when "
                "training begins"
            )
        return "new run"

    def summary(self) -> str:
        """A few lines describing the run, printed before training."""
        data_args, args, config = self.data_args, self.training_args, self.config
        microbatch = self.training_args.per_device_train_batch_size
        if data_args.packing:
            forward = f"{microbatch} x {data_args.microbatch_tokens} packed tokens"
            step_tokens = data_args.microbatch_tokens * microbatch * args.gradient_accumulation_steps * args.world_size
            step = f"{step_tokens:,} token slots"
        else:
            forward = f"{microbatch} padded rows of <= {data_args.max_seq_length} tokens"
            step = f"{microbatch * args.gradient_accumulation_steps * args.world_size} rows"
        params = sum(p.numel() for p in self.model.parameters())
        masking = "mask_all" if data_args.mask_all else "80/10/10"
        lines = [
            f"model: NeoBERT {config.num_hidden_layers}x{config.hidden_size}, {config.num_attention_heads} heads, "
            f"{params / 1e6:.1f}M parameters, vocab {config.vocab_size}, attention "
            f"{self.model.config._attn_implementation}"
            + (f", from {self.model_args.model_name_or_path}" if self.model_args.model_name_or_path else ", new"),
            f"data: {self.data.description}",
            f"batch: {forward} per device and forward; x {args.gradient_accumulation_steps} accumulation x "
            f"{args.world_size} devices = {step} per optimizer step; max_seq_length {data_args.max_seq_length}; "
            f"masking {data_args.mlm_probability:g} ({masking})",
            f"output: {os.path.join(args.output_dir, 'checkpoints')}/<step>/; {self.output_dir_action()}",
        ]
        if self.precision_args is not None and self.precision_args.enabled:
            lines.append(
                f"precision: {self.precision_args.precision_backend} {self.precision_args.recipe} (keeping "
                f"{self.precision_args.filter_fqns} in high precision); kernels {self.precision_args.kernel_backend}"
            )
        return "\n".join(lines)


class RunArgsRecorder(TrainerCallback):
    """When training begins: deletes the earlier run's checkpoints with `overwrite_output_dir`, then writes the
    setup's `run_args.json` ([`PretrainingSetup.save_run_args`])."""

    def __init__(self, setup: PretrainingSetup):
        self.setup = setup
        self.started = False

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = True
        if self.setup.overwritten_steps and args.process_index == 0:
            root = checkpoints_root(args.output_dir)
            shutil.rmtree(root)
            logger.info(f"overwrite_output_dir: deleted the earlier run's {root} (steps {self.setup.overwritten_steps})")
        if args.world_size > 1 and self.setup.overwritten_steps:
            from accelerate import PartialState

            PartialState().wait_for_everyone()
        self.setup.save_run_args()


# ---------------------------------------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------------------------------------


def _check_training_args(
    args: NeoBERTTrainingArguments, has_eval: bool | None = None, eval_note: str | None = None
) -> None:
    if (args.max_steps is None or args.max_steps <= 0) and not args.num_train_epochs > 0:
        raise ValueError(
            "Set max_steps (> 0), or num_train_epochs (> 0) for map-style data: the run is measured in optimizer "
            "steps, and epochs are turned into steps by counting the packed microbatches of a pass."
        )
    if args.dataloader_num_workers:
        raise ValueError(
            f"dataloader_num_workers must be 0 (got {args.dataloader_num_workers}): the packing dataset keeps its exact "
            "resume position in the main process. Packing and masking are cheap; to tokenize in parallel, use "
            "preprocessing_num_workers or `neobert-hf preprocess`."
        )
    sampling = getattr(args, "train_sampling_strategy", "random")
    if str(getattr(sampling, "value", sampling)) != "random":
        raise ValueError(
            f"train_sampling_strategy={getattr(sampling, 'value', sampling)} has no effect on pretraining: the Trainer's "
            "samplers apply to datasets it indexes, and pretraining batches come from the packing stream, whose order "
            "is set by shuffle_buffer_size and data_seed (or seed). Drop it."
        )
    check_training_values(args)  # also in NeoBERTTrainingArguments.__post_init__; here for arguments changed since
    check_output_dir(args.output_dir)
    if has_eval is False and args.eval_strategy != "no":
        # Eval data named explicitly (eval_split, eval_samples) always resolves or fails while loading; reaching here
        # means it was looked for (a validation-style split) or asked of a stream (eval_fraction) and not found. Like
        # the original trainer, evaluation is then skipped, unless best-model selection depends on it.
        strategy = args.eval_strategy.value if hasattr(args.eval_strategy, "value") else args.eval_strategy
        why = eval_note or "the source has no validation/eval/test/dev split"
        if args.load_best_model_at_end:
            raise ValueError(
                f"load_best_model_at_end needs eval data, and none was found ({why}). Set eval_split or eval_samples."
            )
        logger.warning(
            f"eval_strategy={strategy} but there is no eval data ({why}): evaluation is skipped (eval_strategy set to "
            "no). Set eval_split or eval_samples to evaluate."
        )
        from transformers.trainer_utils import IntervalStrategy

        args.eval_strategy = IntervalStrategy.NO
        args.do_eval = False


def _check_attention(model_args: ModelArguments, args: NeoBERTTrainingArguments) -> None:
    implementation = model_args.attn_implementation
    if implementation in _CUDA_ONLY_ATTENTION and (args.use_cpu or not torch.cuda.is_available()):
        raise ValueError(
            f"attn_implementation={implementation} needs a CUDA GPU, and this run is on the CPU. Use "
            "attn_implementation sdpa (exact on packed batches, CPU and GPU)."
        )
    if implementation in ("flash_attention_2", "flash_attention_3"):
        from ..import_utils import require

        require("flash_attn", f"attn_implementation={implementation}")


def _resolve_resume(args: NeoBERTTrainingArguments) -> str | None:
    """The complete checkpoint to resume from, or `None`; refuses to start a new run on top of an old one."""
    spec = args.resume_from_checkpoint
    if spec in (None, "", False) or (isinstance(spec, str) and spec.lower() in ("false", "none")):
        existing = list_checkpoints(args.output_dir)
        if existing and not args.overwrite_output_dir:
            raise CheckpointError(
                f"{args.output_dir} already holds checkpoints of an earlier run (steps "
                f"{[step for step, _ in existing]}). Continue it with --resume_from_checkpoint latest, start over with "
                "--overwrite_output_dir true (deletes them), or use another output_dir."
            )
        return None
    if args.overwrite_output_dir:
        raise ValueError(
            "resume_from_checkpoint and overwrite_output_dir exclude each other: resume continues the earlier run, "
            "overwrite_output_dir deletes it. Pass one of them."
        )
    path = resolve_checkpoint(spec, args.output_dir)
    check_resumable(path, args, stream=True)  # pretraining reads a stream; the Trainer verifies the hashes
    return path


def _check_resume_matches(path: str, config: NeoBERTConfig) -> None:
    saved = NeoBERTConfig.from_pretrained(path)
    fields = (*ARCHITECTURE_FIELDS, "vocab_size")
    differences = {f: (getattr(saved, f), getattr(config, f)) for f in fields if getattr(saved, f) != getattr(config, f)}
    if differences:
        detail = ", ".join(f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in differences.items())
        raise CheckpointError(
            f"Cannot resume from {path}: the model it holds differs from the one these arguments build ({detail}). "
            "Resume with the arguments of the original run."
        )


# ---------------------------------------------------------------------------------------------------------------------
# Tokenizer and config
# ---------------------------------------------------------------------------------------------------------------------


def _preprocessed_tokenizer_dir(data_args: DataArguments) -> str | None:
    name = data_args.dataset_name
    if name is None or not os.path.isdir(name):
        return None
    folder = os.path.join(name, _PREPROCESSED_TOKENIZER)
    return folder if os.path.isfile(os.path.join(name, _PREPROCESS_INFO)) and os.path.isdir(folder) else None


def _check_same_vocabulary(tokenizer: Any, reference_dir: str) -> None:
    """Data tokenized by `neobert-hf preprocess` must be read with the tokenizer that made it."""
    from transformers import AutoTokenizer

    reference = AutoTokenizer.from_pretrained(reference_dir).get_vocab()
    ours = tokenizer.get_vocab()
    different = [token for token, index in reference.items() if ours.get(token) != index]
    if different:
        raise ValueError(
            f"The dataset was tokenized with the tokenizer in {reference_dir}, which differs from tokenizer_name "
            f"({len(different)} of {len(reference)} entries differ, e.g. {different[:3]}). Use that tokenizer (leave "
            "tokenizer_name unset) or preprocess the data again with this one."
        )


def load_pretraining_tokenizer(
    model_args: ModelArguments, data_args: DataArguments, checkpoint_config: NeoBERTConfig | None = None
) -> PreparedTokenizer:
    """Load and prepare the tokenizer; with a checkpoint, pad it to exactly the checkpoint's vocabulary.

    Raises:
        `ValueError`: no tokenizer given, or a tokenizer that cannot match the checkpoint's vocabulary.
    """
    preprocessed = _preprocessed_tokenizer_dir(data_args)
    name = model_args.tokenizer_name or model_args.model_name_or_path or preprocessed
    if name is None:
        raise ValueError(
            "No tokenizer: set tokenizer_name (a local tokenizer folder such as data/tokenizer, or a Hub id)."
        )
    if checkpoint_config is None:
        prepared = load_tokenizer(
            name,
            pad_vocab_to_multiple_of=model_args.pad_vocab_to_multiple_of or None,
            add_missing_special_tokens=model_args.add_missing_special_tokens,
        )
    else:
        vocab_size = checkpoint_config.vocab_size
        prepared = load_tokenizer(
            name, pad_vocab_to_multiple_of=None, add_missing_special_tokens=model_args.add_missing_special_tokens
        )
        if prepared.vocab_size > vocab_size:
            raise ValueError(
                f"The tokenizer {name!r} has {prepared.vocab_size} entries but the model in "
                f"{model_args.model_name_or_path!r} has only vocab_size={vocab_size} embedding rows: the vocabularies "
                "cannot be synced. Continue with the tokenizer the checkpoint was trained with (leave tokenizer_name "
                "unset to use the one saved next to it)."
            )
        if prepared.vocab_size < vocab_size:
            # Inert tokens fill the remaining embedding rows, so that len(tokenizer) == config.vocab_size.
            prepared = prepare_tokenizer(prepared.tokenizer, pad_vocab_to_multiple_of=vocab_size)
        if checkpoint_config.pad_token_id is not None and checkpoint_config.pad_token_id != prepared.pad_token_id:
            raise ValueError(
                f"The tokenizer {name!r} pads with id {prepared.pad_token_id} but the model in "
                f"{model_args.model_name_or_path!r} was trained with pad_token_id={checkpoint_config.pad_token_id}: "
                "it is not the tokenizer of this checkpoint."
            )
    if preprocessed is not None and name != preprocessed:
        _check_same_vocabulary(prepared.tokenizer, preprocessed)
    return prepared


def _with_original_checkpoint(model_args: ModelArguments) -> ModelArguments:
    """`model_args` reading a checkpoint of the original NeoBERT trainer (a step folder with `config.yaml`, or its run
    folder) from a converted model folder; unchanged for any other source."""
    source = model_args.model_name_or_path
    if source is None or not os.path.isdir(source):
        return model_args
    from ..migration.checkpoint import as_model_folder

    converted = as_model_folder(source)
    if converted is None:
        return model_args
    logger.info(f"model_name_or_path {source}: a checkpoint of the original NeoBERT trainer, read from {converted}")
    return dataclasses.replace(model_args, model_name_or_path=converted)


def _load_neobert_config(name: str, what: str) -> NeoBERTConfig:
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(name)
    except (OSError, ValueError) as error:
        raise OSError(f"Could not load the config of {what}={name!r}: {error}") from error
    if not isinstance(config, NeoBERTConfig):
        raise ValueError(f"{what}={name!r} is a {type(config).__name__} (model_type {config.model_type!r}), not NeoBERT.")
    return config


def build_model_config(model_args: ModelArguments, prepared: PreparedTokenizer | None = None) -> NeoBERTConfig:
    """The model config: the checkpoint's, `config_name`'s or [`NeoBERTConfig`]'s defaults, with the size fields
    given and, for a new model, the tokenizer's `vocab_size`/`pad_token_id`."""
    overrides = model_args.config_overrides()
    if model_args.model_name_or_path is not None:
        config = _load_neobert_config(model_args.model_name_or_path, "model_name_or_path")
        changed = {k: (getattr(config, k), v) for k, v in overrides.items() if k in ARCHITECTURE_FIELDS}
        changed = {k: pair for k, pair in changed.items() if pair[0] != pair[1]}
        if not config.rope and overrides.get("max_position_embeddings", config.max_position_embeddings) != (
            config.max_position_embeddings
        ):
            changed["max_position_embeddings"] = (config.max_position_embeddings, overrides["max_position_embeddings"])
        if changed:
            detail = ", ".join(f"{k}: checkpoint {a!r}, asked {b!r}" for k, (a, b) in changed.items())
            raise ValueError(
                f"Cannot change the architecture of the checkpoint {model_args.model_name_or_path!r} ({detail}): "
                "these fields have weights. Remove them to continue from the checkpoint, or drop model_name_or_path "
                "to train a new model."
            )
        for key, value in overrides.items():
            setattr(config, key, value)
    else:
        base = _load_neobert_config(model_args.config_name, "config_name").to_dict() if model_args.config_name else {}
        for key in ("model_type", "transformers_version", "architectures", "auto_map"):
            base.pop(key, None)
        if "tie_word_embeddings" in overrides:
            base.pop("decoder_bias", None)  # follows tying unless set explicitly
        values = {**base, **overrides}
        if prepared is not None:
            values.update(prepared.config_updates())
        config = NeoBERTConfig(**values)
    config.validate_architecture()
    return config


# ---------------------------------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------------------------------


def _is_empty(dataset: Any) -> bool:
    from datasets import Dataset

    if isinstance(dataset, Dataset):
        return len(dataset) == 0
    return next(iter(dataset.take(1)), None) is None


def _count_until(dataset: Any, max_seq_length: int, tokens_needed: int, chunks_needed: int) -> tuple[int, int, bool]:
    """`(tokens, chunks, complete)`: the tokens and `max_seq_length` chunks of a tokenized map-style dataset, counted
    block by block until both needs are met (`complete` is `True` when the whole dataset was counted)."""
    import numpy as np
    import pyarrow.compute as pc

    tokens = chunks = 0
    block = 16_384
    for start in range(0, len(dataset), block):
        column = dataset.with_format("arrow")[start : start + block]["input_ids"]
        lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False).astype(np.int64)
        tokens += int(lengths.sum())
        chunks += int(((lengths + max_seq_length - 1) // max_seq_length).sum())
        if tokens >= tokens_needed and chunks >= chunks_needed:
            return tokens, chunks, start + block >= len(dataset)
    return tokens, chunks, True


def steps_for_epochs(train_dataset: Any, args: NeoBERTTrainingArguments) -> int:
    """The optimizer steps of `num_train_epochs` passes over map-style data: each epoch's packed microbatches are
    counted (its own chunk order, lengths only), summed over the whole epochs and the fraction of the last one, and
    divided by the microbatches of one step (rounded up: the last partial step is trained).

    Raises:
        `ValueError`: a stream (no length), or data that makes no step.
    """
    if train_dataset.source_kind != "map":
        raise ValueError(
            "num_train_epochs without max_steps needs map-style data: a stream has no length until it has been read. "
            "Set max_steps, or load the data without streaming (streaming false)."
        )
    epochs = args.num_train_epochs
    whole, fraction = int(epochs), epochs - int(epochs)
    microbatches = sum(train_dataset.batches_in_epoch(epoch) for epoch in range(whole))
    if fraction > 0:
        microbatches += fraction * train_dataset.batches_in_epoch(whole)
    per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
    steps = math.ceil(microbatches / per_step)
    if steps < 1:
        raise ValueError(f"num_train_epochs={epochs} makes no optimizer step; set max_steps.")
    logger.info(
        f"num_train_epochs {epochs}: {microbatches:,.0f} microbatches, {per_step} per optimizer step -> "
        f"max_steps {steps}"
    )
    return steps


def _stream_counts(train: Any, max_seq_length: int, tokens_needed: int, chunks_needed: int) -> tuple[int, int]:
    """`(tokens, chunks)` of a tokenized stream, read from its start until both needs are met or it ends. Reads at
    most one optimizer step's worth of documents (the first step reads them again)."""
    tokens = chunks = 0
    for row in train:
        length = len(row["input_ids"])
        tokens += length
        chunks += -(-length // max_seq_length)
        if tokens >= tokens_needed and chunks >= chunks_needed:
            break
    return tokens, chunks


def check_fills_one_step(train: Any, data_args: DataArguments, args: NeoBERTTrainingArguments) -> None:
    """Refuse training data whose whole epoch holds less than one optimizer step.

    The Trainer reads the packed stream epoch by epoch: with less than one step of data per epoch, every step would
    be a nearly empty batch (a one-document corpus gives a step of a few real tokens, often none of them masked:
    loss 0, gradient 0), and with gradient accumulation a step would never complete. Map-style data is counted block
    by block; a stream is read from its start until one step's worth of tokens is found (a stream whose later
    epochs could come out shorter is still checked by the dataset at the end of each epoch,
    `min_batches_per_epoch`). Both happen before anything is written.

    Raises:
        `ValueError`: with the tokens or chunks the data has and what one optimizer step needs.
    """
    from datasets import Dataset

    per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
    arithmetic = (
        f"per_device_train_batch_size {args.per_device_train_batch_size} x gradient_accumulation_steps "
        f"{args.gradient_accumulation_steps} x {args.world_size} process(es)"
    )
    needed_tokens = data_args.microbatch_tokens * per_step if data_args.packing else 0
    needed_chunks = 0 if data_args.packing else per_step
    if isinstance(train, Dataset):
        tokens, chunks, _ = _count_until(train, data_args.max_seq_length, needed_tokens, needed_chunks)
    else:
        tokens, chunks = _stream_counts(train, data_args.max_seq_length, needed_tokens, needed_chunks)
    what = "The training data" if isinstance(train, Dataset) else "The training stream"
    if data_args.packing:
        if tokens < needed_tokens:
            raise ValueError(
                f"{what} is too small for one optimizer step: {tokens:,} tokens in {chunks:,} chunk(s), "
                f"and one step packs tokens_per_batch {data_args.microbatch_tokens:,} x {arithmetic} = "
                f"{needed_tokens:,} tokens. Use more data, or lower tokens_per_batch, the batch size or "
                "gradient_accumulation_steps."
            )
    elif chunks < per_step:
        raise ValueError(
            f"{what} is too small for one optimizer step: {chunks:,} chunk(s) of at most "
            f"{data_args.max_seq_length} tokens, and one step takes {arithmetic} = {per_step:,} rows. Use more "
            "data, or lower the batch size or gradient_accumulation_steps."
        )


def _local_data_files(source: Any) -> list[str]:
    """The local data files behind a pretraining `source` (a file, a glob, a list, a split mapping or a data folder);
    `[]` for a Hub name or a `save_to_disk` folder."""
    from ..data.loading import _data_files_in, _expand_files, _is_saved_dataset

    try:
        if isinstance(source, dict):
            return [f for spec in source.values() for f in _expand_files(spec)]
        if isinstance(source, (list, tuple)):
            return _expand_files(source)
        path = os.path.expanduser(os.fspath(source))
        if os.path.isdir(path):
            return [] if _is_saved_dataset(path) else _data_files_in(path)
        return _expand_files(path) if os.path.isfile(path) or any(c in path for c in "*?[") else []
    except (OSError, ValueError):
        return []


@contextlib.contextmanager
def stream_read_errors(source: Any, streaming: bool, *, step: Any = None, saved: Any = None):
    """Name the file and line when a streamed local data file turns out to be unreadable while it is read.

    A stream is read lazily: a line that is not UTF-8 or not valid JSON is met only when the reader gets there (at
    the first batch, or after hours of training), and `datasets`/`pyarrow` then raise an error that names neither the
    file nor the line. On such an error the local files are scanned for the first bad line; when one is found the
    error becomes a `ValueError` naming it, otherwise the original error is raised unchanged.

    Args:
        source: the data source (see `DataArguments.source`).
        streaming (`bool`): whether the data is streamed; map-style data is checked whole when it is loaded.
        step (`Callable[[], int]`, *optional*): the optimizer step reached, for a failure during training.
        saved (`Callable[[], bool]`, *optional*): whether the run has a checkpoint to resume from.
    """
    try:
        yield
    except Exception as error:
        from datasets.exceptions import DatasetsError

        from ..data.read_errors import first_bad_line

        if not streaming or not isinstance(error, (ValueError, DatasetsError)):
            raise
        found = first_bad_line(_local_data_files(source))
        if not found:
            raise
        where = ""
        if step is not None and saved is not None and saved():
            where = (
                f" Training stopped at step {step()}; the checkpoints saved before are complete: fix or remove the "
                "line and resume (--resume_from_checkpoint latest)."
            )
        elif step is not None:
            where = f" Training stopped at step {step()}, before its first checkpoint: fix or remove the line and start again."
        raise ValueError(f"Cannot read the training stream: {found}{where}") from error


def load_pretraining_datasets(
    data_args: DataArguments, tokenizer: Any, config: NeoBERTConfig, args: NeoBERTTrainingArguments
):
    """Load, tokenize and wrap the data into masked microbatch datasets.

    Returns:
        `tuple`: `(data, train_dataset, eval_dataset)`; `eval_dataset` is `None` when no eval data was resolved.
    """
    seed = args.data_seed if args.data_seed is not None else args.seed
    data = load_pretraining_data(
        data_args.source(),
        config_name=data_args.dataset_config_name,
        train_split=data_args.train_split,
        eval_split=data_args.eval_split,
        eval_fraction=data_args.eval_fraction,
        eval_samples=data_args.eval_samples,
        streaming=data_args.streaming,
        text_column=data_args.text_column,
        seed=seed,
        cache_dir=data_args.cache_dir,
    )
    if not data.tokenized:
        num_proc = data_args.preprocessing_num_workers
        # Map-style data: datasets.map processes. A training stream: worker processes that tokenize while training
        # reads it, with an exact resume position. An eval stream, small and re-read at every evaluation, is
        # tokenized by the reader.
        train = tokenize_dataset(data.train, tokenizer, text_column=data.text_column, num_proc=num_proc)
        evaluation = (
            None
            if data.eval is None
            else tokenize_dataset(
                data.eval, tokenizer, text_column=data.text_column, num_proc=None if data.streaming else num_proc
            )
        )
        data = dataclasses.replace(data, train=train, eval=evaluation, tokenized=True)
    if _is_empty(data.train):
        raise ValueError(
            f"The training data has no tokens: every document of {data_args.source()!r} is empty after tokenization "
            f"(text column {data.text_column!r}). Check the text column and the split."
        )
    if data.eval is not None and _is_empty(data.eval):
        raise ValueError(f"The eval data has no tokens after tokenization ({data.description}).")
    masker = MLMMasker.from_tokenizer(
        tokenizer,
        vocab_size=config.vocab_size,
        mlm_probability=data_args.mlm_probability,
        mask_all=data_args.mask_all,
        mask_replace_prob=data_args.mask_replace_prob,
        random_replace_prob=data_args.random_replace_prob,
        seed=seed,
    )
    packed = data_args.packing
    train_dataset, eval_dataset = build_mlm_datasets(
        data,
        tokenizer,
        masker=masker,
        tokens_per_batch=data_args.microbatch_tokens if packed else None,
        max_seq_length=data_args.max_seq_length,
        mode="packed" if packed else "padded",
        # Padded mode: one row per item; the collator stacks per_device_*_batch_size of them.
        batch_size=None if packed else 1,
        pad_to_multiple_of=data_args.pad_to_multiple_of,
        buffer_size=data_args.packing_buffer_size,
        shuffle_buffer_size=data_args.shuffle_buffer_size,
        max_sequences_per_batch=data_args.max_sequences_per_batch,
        seed=seed,
        # A stream too small for one optimizer step per epoch is found once read (see check_fills_one_step).
        min_batches_per_epoch=args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size,
    )
    return data, train_dataset, eval_dataset


# ---------------------------------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------------------------------


def build_model(model_args: ModelArguments, config: NeoBERTConfig, seed: int) -> NeoBERTForMaskedLM:
    """A new [`NeoBERTForMaskedLM`] (seeded) or the checkpoint's weights, loaded strictly."""
    from transformers import AutoModelForMaskedLM, set_seed

    set_seed(seed)
    implementation = model_args.attn_implementation
    if model_args.model_name_or_path is None:
        return NeoBERTForMaskedLM._from_config(config, attn_implementation=implementation)
    try:
        model = load_strict(
            model_args.model_name_or_path, AutoModelForMaskedLM, config=config, attn_implementation=implementation
        )
    except CheckpointLoadError as err:
        raise ValueError(
            f"{err} Continue from a NeoBERTForMaskedLM checkpoint (a checkpoints/<step>/ folder or an export with its "
            "decoder)."
        ) from err
    return model


# ---------------------------------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------------------------------


def prepare_pretraining(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: NeoBERTTrainingArguments,
    precision_args: PrecisionArguments | None = None,
) -> PretrainingSetup:
    """Check the arguments and build tokenizer, config, data and model. Writes nothing.

    Raises:
        `ValueError` (including [`~neobert_hf.training.CheckpointError`]), `OSError`, `ImportError`: a clear message
        for each bad input (missing max_steps, `max_seq_length > max_position_embeddings`, vocabularies that cannot
        be synced, empty data, missing text column, incomplete resume checkpoint, a CUDA-only kernel on CPU, ...).
    """
    from .hub import check_push_arguments

    _check_training_args(training_args)
    check_push_arguments(training_args, needs_tokenizer=False)  # the tokenizer is loaded below
    model_args = _with_original_checkpoint(model_args)
    _check_attention(model_args, training_args)
    callbacks = []
    if precision_args is not None:
        from ..converters import PrecisionCallback
        from ..converters.arguments import check_precision_data_args

        check_precision_data_args(precision_args, data_args)
        # Checks the argument combinations, the library and the hardware now; converts at Trainer init.
        callbacks.append(PrecisionCallback(precision_args, training_args))
    resume = _resolve_resume(training_args)
    overwritten = [] if resume is not None or not training_args.overwrite_output_dir else [
        step for step, _ in list_checkpoints(training_args.output_dir)
    ]

    checkpoint_config = None
    if model_args.model_name_or_path is not None:
        checkpoint_config = _load_neobert_config(model_args.model_name_or_path, "model_name_or_path")
    prepared = load_pretraining_tokenizer(model_args, data_args, checkpoint_config)
    config = build_model_config(model_args, prepared)
    if data_args.max_seq_length > config.max_position_embeddings:
        raise ValueError(
            f"max_seq_length ({data_args.max_seq_length}) is larger than the model's max_position_embeddings "
            f"({config.max_position_embeddings}). Lower max_seq_length or raise max_position_embeddings."
        )
    if resume is not None:
        _check_resume_matches(resume, config)

    with stream_read_errors(data_args.source(), data_args.streaming):
        data, train_dataset, eval_dataset = load_pretraining_datasets(
            data_args, prepared.tokenizer, config, training_args
        )
    eval_note = data.description.partition("; eval: none (")[2].removesuffix(")") or None
    _check_training_args(training_args, has_eval=eval_dataset is not None, eval_note=eval_note)
    if training_args.max_steps is None or training_args.max_steps <= 0:
        training_args.max_steps = steps_for_epochs(train_dataset, training_args)
    with stream_read_errors(data_args.source(), data_args.streaming):
        check_fills_one_step(data.train, data_args, training_args)
    if resume is not None and not training_args.ignore_data_skip:
        # The trainer restores the data position again when training starts; loading it here checks, before
        # anything is written, that the data and packing settings are those of the checkpoint.
        train_dataset.load_state_dict(load_data_state(resume))

    model = build_model(model_args, config, training_args.seed)
    return PretrainingSetup(
        model_args=model_args,
        data_args=data_args,
        training_args=training_args,
        tokenizer=prepared.tokenizer,
        config=model.config,
        model=model,
        data=data,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        collator=PackedBatchCollator(pad_token_id=prepared.pad_token_id),
        resume_from_checkpoint=resume,
        precision_args=precision_args,
        callbacks=callbacks,
        overwritten_steps=overwritten,
    )


def run_pretraining(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: NeoBERTTrainingArguments,
    precision_args: PrecisionArguments | None = None,
):
    """Prepare (see [`prepare_pretraining`]) and train; returns the [`NeoBERTTrainer`] after training."""
    setup = prepare_pretraining(model_args, data_args, training_args, precision_args)
    logger.info(setup.summary())
    return setup.train()

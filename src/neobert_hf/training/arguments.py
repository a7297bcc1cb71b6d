"""Training arguments for NeoBERT MLM pretraining: transformers' `TrainingArguments` plus the knobs of the MLM loss,
MuonClip, the final learning-rate floor, the checkpoint tree and step-time attribution.

Only options with an effect live here, and each is validated in `__post_init__` so that a bad combination fails
before anything is written. Paper defaults (learning rate, warmup, masking rate, ...) belong to the recipes.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Literal

from transformers import TrainingArguments
from transformers.utils import logging

from .argument_checks import check_training_values


logger = logging.get_logger(__name__)

# `final_lr_ratio` turns these user-facing schedules into the transformers schedules that decay to a floor.
_FLOOR_SCHEDULES = {"cosine": "cosine_with_min_lr", "linear": "polynomial"}

DEEPSPEED_ERROR = (
    "NeoBERT pretraining does not run under DeepSpeed ({source}). Its sharding equivalents are FSDP2's: ZeRO-2 "
    "(optimizer state and gradients sharded, weights whole on every rank) is FSDP2 with fsdp_reshard_after_forward: "
    "false, ZeRO-3 is FSDP2's default. Launch with accelerate launch --config_file recipes/accelerate/fsdp2.yaml "
    "(see docs/distributed.md), or DDP (recipes/accelerate/ddp.yaml). DeepSpeed's engine takes over gradient "
    "accumulation, loss scaling and the optimizer step, where the package normalises the masked-token loss over the "
    "whole optimizer step and steps its own optimizers (MuonClip, QK-clip); that combination is not tested, so it is "
    "refused rather than left to train differently."
)

FSDP1_ERROR = (
    "NeoBERT pretraining supports FSDP2 (fully_shard) only, and this run asks for FSDP version 1 ({source}). The "
    "masked-logits-only loss sends a data-dependent subset of rows (the masked tokens) through the sharded decoder "
    "weight: FSDP2 gathers that weight for each decoder call, in forward and backward, and reshards it after (tested "
    "against single-process training). FSDP1 can reach full weights outside its wrapped forward only through "
    "summon_full_params, inside which forward and backward may not run, and transformers deprecates it. Set "
    "fsdp_version: 2 in the accelerate config (recipes/accelerate/fsdp2.yaml) or fsdp_config={{\"version\": 2}}, or "
    "use DDP (recipes/accelerate/ddp.yaml)."
)


def _report_to(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return ["wandb"] if value == "all" else [] if value == "none" else [value]
    return list(value)


_WANDB_FIELDS = ("wandb_project", "wandb_entity", "wandb_tags", "wandb_mode", "wandb_dir")


@dataclass
class WandbArguments:
    """The W&B run settings shared by the pretraining, GLUE and contrastive training arguments (mixed into their
    `TrainingArguments` subclasses). transformers' `WandbCallback` reads only environment variables; these reach
    `wandb.init` through [`~neobert_hf.training.callbacks.WandbInitCallback`]. The subclass's `__post_init__` calls
    [`check_wandb`]."""

    # --- Weights & Biases (with report_to=wandb) ---
    wandb_project: str | None = field(
        default=None, metadata={"help": "W&B project of the run (report_to must include wandb). None: WANDB_PROJECT."}
    )
    wandb_entity: str | None = field(default=None, metadata={"help": "W&B entity (user or team). None: WANDB_ENTITY."})
    wandb_tags: list[str] | None = field(default=None, metadata={"help": "W&B run tags. None: WANDB_TAGS."})
    wandb_mode: Literal["online", "offline", "disabled"] | None = field(
        default=None, metadata={"help": "W&B mode: online, offline (sync later with `wandb sync`) or disabled."}
    )
    wandb_dir: str | None = field(
        default=None, metadata={"help": "Folder where W&B writes its run files. None: WANDB_DIR or ./wandb."}
    )

    def check_wandb(self) -> None:
        """Refuses W&B settings that would have no effect (report_to without wandb)."""
        given = [name for name in _WANDB_FIELDS if getattr(self, name)]
        if given and "wandb" not in _report_to(self.report_to):
            raise ValueError(
                f"{', '.join(given)} set but report_to={self.report_to!r} does not include wandb: add "
                "--report_to wandb, or drop the W&B settings."
            )

    def wandb_init_kwargs(self) -> dict:
        """The `wandb.init` arguments these arguments set (project, entity, tags, mode, dir; the run name with any of
        them), `{}` when none is set."""
        values = {
            "project": self.wandb_project,
            "entity": self.wandb_entity,
            "tags": list(self.wandb_tags) if self.wandb_tags else None,
            "mode": self.wandb_mode,
            "dir": self.wandb_dir,
        }
        given = {name: value for name, value in values.items() if value}
        if given and self.run_name is not None:
            given["name"] = self.run_name
        return given


@dataclass
class FinalLRRatioArguments:
    """`final_lr_ratio`, shared by the pretraining, GLUE and contrastive training arguments (mixed into their
    `TrainingArguments` subclasses, whose `__post_init__` calls [`apply_final_lr_ratio`] before transformers' own):
    warmup, then cosine or linear decay to `learning_rate * final_lr_ratio`, mapped onto transformers'
    `cosine_with_min_lr` / `polynomial` (power 1) schedulers."""

    final_lr_ratio: float | None = field(
        default=None,
        metadata={
            "help": "After warmup, decay to learning_rate * final_lr_ratio instead of 0. With "
            "lr_scheduler_type=cosine this selects transformers' cosine_with_min_lr (min_lr_rate), with linear the "
            "polynomial schedule of power 1 (lr_end). None keeps the scheduler as given."
        },
    )

    def apply_final_lr_ratio(self) -> None:
        """Maps `final_lr_ratio` onto transformers' floor-decay schedulers (idempotent: args rebuilt from `to_dict()`
        already carry the mapped scheduler and kwargs)."""
        ratio = self.final_lr_ratio
        if ratio is None:
            return
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"final_lr_ratio must be in [0, 1], got {ratio}.")
        schedule = getattr(self.lr_scheduler_type, "value", self.lr_scheduler_type)
        kwargs = self.lr_scheduler_kwargs
        if isinstance(kwargs, str) and kwargs.startswith("{"):
            import json

            kwargs = json.loads(kwargs)
        kwargs = dict(kwargs or {})
        if schedule in ("cosine", "cosine_with_min_lr"):
            if kwargs.get("min_lr") is not None or kwargs.get("min_lr_rate", ratio) != ratio:
                raise ValueError(
                    f"final_lr_ratio={ratio} conflicts with lr_scheduler_kwargs={kwargs}; set only one of them."
                )
            kwargs.pop("min_lr", None)
            self.lr_scheduler_type = _FLOOR_SCHEDULES["cosine"]
            self.lr_scheduler_kwargs = {**kwargs, "min_lr_rate": ratio}
        elif schedule in ("linear", "polynomial"):
            if schedule == "polynomial" and kwargs.get("power", 1.0) != 1.0:
                raise ValueError("final_lr_ratio with a polynomial schedule needs power=1 (linear decay).")
            lr_end = self.learning_rate * ratio
            if kwargs.get("lr_end", lr_end) != lr_end:
                raise ValueError(
                    f"final_lr_ratio={ratio} conflicts with lr_scheduler_kwargs={kwargs}; set only one of them."
                )
            if ratio >= 1.0 or self.learning_rate <= 0:
                raise ValueError(
                    "A linear decay to learning_rate * final_lr_ratio needs learning_rate > 0 and final_lr_ratio < 1; "
                    "use lr_scheduler_type=constant_with_warmup for a flat schedule."
                )
            self.lr_scheduler_type = _FLOOR_SCHEDULES["linear"]
            self.lr_scheduler_kwargs = {**kwargs, "lr_end": lr_end, "power": 1.0}
        else:
            raise ValueError(
                f"final_lr_ratio applies to lr_scheduler_type 'cosine' or 'linear', got '{schedule}'. Pass the floor "
                "through lr_scheduler_kwargs for other schedulers."
            )


@dataclass
class NeoBERTTrainingArguments(WandbArguments, FinalLRRatioArguments, TrainingArguments):
    r"""[`~transformers.TrainingArguments`] for [`NeoBERTTrainer`].

    Every field of `TrainingArguments` keeps its meaning. The additions:

    - the MLM loss path (`masked_logits_only_loss`);
    - the optimizer family (`optimizer`: `adamw` uses `optim`, `muonclip` is Muon + AdamW + QK-clip);
    - `final_lr_ratio`: warmup then cosine or linear decay to `learning_rate * final_lr_ratio`, mapped onto
      transformers' `cosine_with_min_lr` / `polynomial` (power 1) schedulers;
    - the checkpoint tree (`<output_dir>/checkpoints/<step>/`, see [`~neobert_hf.checkpoints`]);
    - throughput and step-time logging (`log_timing`, `log_train_accuracy`);
    - distributed defaults: `ddp_find_unused_parameters` is `False` unless set (every parameter gets a gradient
      in MLM pretraining, so DDP's extra search of the autograd graph on every step is wasted), and FSDP must be
      version 2 (FSDP1, from `fsdp_config` or an accelerate config, is an error that says why).

    Example:

    ```python
    >>> from neobert_hf.training import NeoBERTTrainingArguments
    >>> args = NeoBERTTrainingArguments(output_dir="out", lr_scheduler_type="cosine", final_lr_ratio=0.1)
    >>> args.lr_scheduler_type.value, args.lr_scheduler_kwargs
    ('cosine_with_min_lr', {'min_lr_rate': 0.1})
    ```
    """

    # --- MLM loss ---
    masked_logits_only_loss: bool = field(
        default=True,
        metadata={
            "help": "Project only the masked positions (labels != -100) to the vocabulary, so the (B, S, V) logits are "
            "never built. False runs the full-logits cross-entropy (ablation path); both sum the loss in fp32 and "
            "divide by the number of masked tokens of the whole optimizer step."
        },
    )
    loss_chunk_size: int | None = field(
        default=None,
        metadata={
            "help": "Compute the masked-token loss this many masked rows at a time without ever building their logits "
            "(gradients are formed chunk by chunk in the forward pass; same loss and gradients): the loss head then "
            "needs the decoder's weight gradient plus one (loss_chunk_size, V) chunk instead of the (n_masked, V) "
            "logits, their log-softmax and gradient. The PyTorch counterpart of kernel_backend=liger's fused linear "
            "cross-entropy (which supersedes it). Needs masked_logits_only_loss. None: build the masked rows' logits."
        },
    )
    log_train_accuracy: bool = field(
        default=False,
        metadata={
            "help": "Log the MLM accuracy of the training batches (argmax over the masked rows) every logging step."
        },
    )
    eval_max_batches: int | None = field(
        default=None,
        metadata={"help": "Evaluate on at most this many batches (useful for a streaming eval set). None = all."},
    )

    # --- Optimizer ---
    optimizer: Literal["adamw", "adam", "muonclip"] = field(
        default="adamw",
        metadata={
            "help": "'adamw': the optimizer named by `optim` (AdamW by default) with decay/no-decay groups (no decay "
            "for biases and norms). 'adam': torch.optim.Adam with the same groups, its weight decay an L2 term added "
            "to the gradient (coupled, not decoupled as in AdamW); adam_beta1/adam_beta2/adam_epsilon apply. "
            "'muonclip': torch.optim.Muon on the 2-D matrices of the encoder blocks (qkv, wo, ffn), AdamW on "
            "everything else (embeddings, decoder, norms), plus QK-clip. `optim`, `optim_args` and "
            "`optim_target_modules` apply to 'adamw' only (an error with the others)."
        },
    )
    muon_lr: float | None = field(default=None, metadata={"help": "Muon learning rate. None = `learning_rate`."})
    muon_momentum: float = field(default=0.95, metadata={"help": "Muon momentum (Nesterov)."})
    muon_weight_decay: float | None = field(
        default=None, metadata={"help": "Muon decoupled weight decay. None = `weight_decay`."}
    )
    muon_ns_steps: int = field(default=5, metadata={"help": "Orthogonalization iterations of Muon."})
    muon_orthogonalization: Literal["newton_schulz", "polar_express"] = field(
        default="newton_schulz",
        metadata={
            "help": "How Muon orthogonalizes its update: 'newton_schulz' (torch.optim.Muon's fixed quintic; singular "
            "values end up spread over about [0.7, 1.2]) or 'polar_express' (a minimax-optimal quintic per "
            "iteration, arXiv 2505.16932: singular values close to 1 in the same 5 iterations)."
        },
    )
    muon_adjust_lr: Literal["original", "match_rms_adamw"] = field(
        default="match_rms_adamw",
        metadata={
            "help": "Muon per-matrix learning-rate scaling: 'match_rms_adamw' (0.2 * sqrt(max(A, B)), so Muon and "
            "AdamW can share one learning rate) or 'original' (sqrt(max(1, A / B)))."
        },
    )
    qk_clip_threshold: float | None = field(
        default=50.0,
        metadata={
            "help": "QK-clip threshold tau on the per-head maximum attention logit (q.k / sqrt(Dh)); heads above it "
            "get their query rows scaled by eta^alpha and key rows by eta^(1-alpha), eta = tau / max. None disables "
            "QK-clip. Used with optimizer=muonclip."
        },
    )
    qk_clip_alpha: float = field(
        default=0.5, metadata={"help": "QK-clip balance alpha in [0, 1]: share of the rescaling put on the queries."}
    )
    qk_clip_interval: int = field(default=10, metadata={"help": "Apply QK-clip every this many optimizer steps."})
    qk_clip_warmup_steps: int = field(
        default=0, metadata={"help": "No QK-clip during the first this many optimizer steps."}
    )
    qk_clip_chunk_size: int = field(
        default=1024,
        metadata={"help": "Query rows per block when computing the maximum attention logit (bounds its memory)."},
    )
    qk_clip_layers_mapping: dict | str | None = field(
        default=None,
        metadata={
            "help": "Where MuonClip finds its layers in a model whose blocks are named differently, as a JSON object: "
            "'blocks' (the encoder-block list inside the base model, default 'transformer_encoder') and 'qkv' (the "
            "fused query/key/value projection inside a block, rows ordered per head, default 'qkv'). Muon takes the "
            "2-D matrices under 'blocks'; QK-clip hooks and rescales every 'qkv'."
        },
    )
    detect_anomalies: bool = field(
        default=False,
        metadata={
            "help": "Before every optimizer step, check every gradient for NaN/inf and stop with the names of the "
            "parameters that have one (and the step), before the optimizer writes them into the weights. Costs one "
            "device sync per step."
        },
    )

    log_weight_norms: bool = field(
        default=False,
        metadata={
            "help": "Log the L2 norm of the weights at every logging step: all weights (weight_norm) and per kind of "
            "parameter across layers (weight_norm/<name>, e.g. weight_norm/qkv.weight). Costs a pass over the weights."
        },
    )

    # --- Schedule length ---
    decay_steps: int | None = field(
        default=None,
        metadata={
            "help": "Length of the learning-rate schedule in optimizer steps, independent of max_steps: warmup "
            "(warmup_steps, or a fraction of decay_steps when warmup_steps < 1) then decay until step decay_steps, "
            "then the final rate is held. Lets a run stop before the schedule ends and be continued, or train on "
            "at the floor after it. None: the schedule spans max_steps (transformers' behaviour)."
        },
    )

    # --- Checkpoints ---
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Start a new run in an output_dir that holds an earlier run's checkpoints: its checkpoints/ are "
            "deleted when training begins (after every check passed). Without it such a folder is refused; continue "
            "it with --resume_from_checkpoint latest instead."
        },
    )
    save_final_checkpoint: bool = field(
        default=True,
        metadata={
            "help": "Always write checkpoints/<last step>/ when training ends, whatever save_steps/save_strategy say."
        },
    )

    # --- Logging ---
    log_timing: bool = field(
        default=False,
        metadata={
            "help": "Log the split of the step time into data wait / forward / backward / optimizer (p50 and p95 "
            "over the logging window). CPU: wall clock; CUDA: events, read once per logging step."
        },
    )
    logging_nan_inf_filter: bool = field(
        default=False,
        metadata={
            "help": "transformers' filter that hides non-finite losses from the logs. NeoBERT training stops on the "
            "first non-finite loss instead, so the filter only costs a device sync per microbatch; off by default."
        },
    )

    def __post_init__(self):
        check_training_values(self)
        if self.deepspeed:  # before TrainingArguments imports deepspeed
            raise ValueError(DEEPSPEED_ERROR.format(source=f"deepspeed={self.deepspeed!r}"))
        if os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true":
            raise ValueError(DEEPSPEED_ERROR.format(source="accelerate launch with a DeepSpeed config"))
        if self.fp16 or self.fp16_full_eval:
            raise ValueError(
                "fp16 is not supported for pretraining; use bf16 (--bf16 true). fp16 needs loss scaling and "
                "overflows in the fp32-summed masked-token loss."
            )
        if self.label_smoothing_factor != 0.0:
            raise ValueError(
                "label_smoothing_factor is not supported by the NeoBERT MLM loss (masked-logits-only summed "
                "cross-entropy); leave it at 0."
            )
        if self.loss_chunk_size is not None:
            if self.loss_chunk_size < 1:
                raise ValueError(f"loss_chunk_size must be >= 1 (rows per chunk) or None, got {self.loss_chunk_size}.")
            if not self.masked_logits_only_loss:
                raise ValueError(
                    "loss_chunk_size chunks the masked-logits-only loss; masked_logits_only_loss=false (the full-logits "
                    "ablation) builds every logit anyway. Drop one of the two."
                )
        self.check_wandb()
        if self.decay_steps is not None and self.decay_steps < 1:
            raise ValueError(f"decay_steps must be >= 1 (the optimizer step where the decay ends), got {self.decay_steps}.")
        if self.eval_max_batches is not None and self.eval_max_batches < 1:
            raise ValueError(f"eval_max_batches must be >= 1 or None, got {self.eval_max_batches}.")
        self._validate_muonclip()
        self._refuse_unused_optim()
        self.apply_final_lr_ratio()
        if self.ddp_find_unused_parameters is None:
            # transformers defaults to True for a PreTrainedModel without activation checkpointing.
            self.ddp_find_unused_parameters = False
        super().__post_init__()
        self._reject_fsdp1()
        if getattr(self.accelerator_config, "dispatch_batches", False) is None:
            # accelerate would otherwise read an IterableDataset on rank 0 only and slice each tensor of the batch
            # along dim 0 for the other ranks: that breaks packed batches (1-D cu_seq_lens, [1, T] rows) and
            # per-batch padding. Every rank reads the stream and keeps its share instead.
            self.accelerator_config.dispatch_batches = False
        if self.optimizer == "muonclip" and self.fsdp:
            raise ValueError(
                "optimizer=muonclip needs whole 2-D matrices on every rank (Newton-Schulz, per-head QK-clip); it is "
                "not supported with FSDP. Use DDP, or optimizer=adamw."
            )

    def _reject_fsdp1(self) -> None:
        """FSDP1 from `fsdp`/`fsdp_config` or from an `accelerate launch` config (its `FSDP_VERSION` defaults to 1)."""
        if self.fsdp and int(self.fsdp_config.get("version", 2)) != 2:
            raise ValueError(FSDP1_ERROR.format(source=f"fsdp_config version {self.fsdp_config.get('version')}"))
        if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true":
            version = os.environ.get("FSDP_VERSION", "1")
            if version != "2":
                source = f"accelerate launch FSDP_VERSION={version}, its default when the config has no fsdp_version"
                raise ValueError(FSDP1_ERROR.format(source=source))

    def _refuse_unused_optim(self) -> None:
        """`optim`, `optim_args` and `optim_target_modules` choose and configure transformers' optimizer, which only
        `optimizer=adamw` builds: with `adam` or `muonclip` they would be ignored."""
        if self.optimizer == "adamw":
            return
        default = next(f.default for f in dataclasses.fields(TrainingArguments) if f.name == "optim")
        given = [
            name
            for name, value in (
                ("optim", getattr(self.optim, "value", self.optim) if self.optim != default else None),
                ("optim_args", self.optim_args),
                ("optim_target_modules", self.optim_target_modules),
            )
            if value
        ]
        if given:
            raise ValueError(
                f"{', '.join(given)} set with optimizer={self.optimizer}: they configure transformers' optimizer, which "
                f"only optimizer=adamw builds. Drop them, or use optimizer=adamw."
            )

    def _validate_muonclip(self) -> None:
        if self.muon_lr is not None and self.muon_lr < 0:
            raise ValueError(f"muon_lr must be >= 0, got {self.muon_lr}.")
        if self.muon_weight_decay is not None and self.muon_weight_decay < 0:
            raise ValueError(f"muon_weight_decay must be >= 0, got {self.muon_weight_decay}.")
        if not 0.0 <= self.muon_momentum < 1.0:
            raise ValueError(f"muon_momentum must be in [0, 1), got {self.muon_momentum}.")
        if self.muon_ns_steps < 1:
            raise ValueError(f"muon_ns_steps must be >= 1, got {self.muon_ns_steps}.")
        if self.qk_clip_threshold is not None and self.qk_clip_threshold <= 0:
            raise ValueError(
                f"qk_clip_threshold must be > 0 (or None to disable QK-clip), got {self.qk_clip_threshold}."
            )
        if not 0.0 <= self.qk_clip_alpha <= 1.0:
            raise ValueError(f"qk_clip_alpha must be in [0, 1], got {self.qk_clip_alpha}.")
        if self.qk_clip_interval < 1:
            raise ValueError(f"qk_clip_interval must be >= 1, got {self.qk_clip_interval}.")
        if self.qk_clip_warmup_steps < 0:
            raise ValueError(f"qk_clip_warmup_steps must be >= 0, got {self.qk_clip_warmup_steps}.")
        if self.qk_clip_chunk_size < 1:
            raise ValueError(f"qk_clip_chunk_size must be >= 1, got {self.qk_clip_chunk_size}.")
        from .optim import qk_clip_layers

        if self.qk_clip_layers_mapping is not None:
            if self.optimizer != "muonclip":
                raise ValueError("qk_clip_layers_mapping applies to optimizer=muonclip; drop it or set the optimizer.")
            self.qk_clip_layers_mapping = qk_clip_layers(self.qk_clip_layers_mapping)
        if self.muon_orthogonalization != "newton_schulz" and self.optimizer != "muonclip":
            raise ValueError("muon_orthogonalization applies to optimizer=muonclip; drop it or set the optimizer.")

    @property
    def effective_muon_lr(self) -> float:
        return self.learning_rate if self.muon_lr is None else self.muon_lr

    @property
    def effective_muon_weight_decay(self) -> float:
        return self.weight_decay if self.muon_weight_decay is None else self.muon_weight_decay


__all__ = ["FinalLRRatioArguments", "NeoBERTTrainingArguments", "WandbArguments"]

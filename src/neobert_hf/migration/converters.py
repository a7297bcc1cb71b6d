"""Converters of the table: `(value, ctx) -> {recipe key: value}`, or `NoEquivalent(reason)` for a value that has
no equivalent. Unit changes (a warmup percent, betas, SimCSE's log weight) live here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from .base import GLUE, PRETRAIN, Context, MigrationError, NoEquivalent


def _number(value: Any) -> float:
    """PyYAML reads `1e-4` (no dot) as a string: numbers are taken from strings too."""
    try:
        return float(value)
    except (TypeError, ValueError):
        raise MigrationError(f"expected a number, got {value!r}") from None


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise MigrationError(f"expected true or false, got {value!r}")


def _mixed_precision(value: Any, ctx: Context) -> dict[str, Any]:
    # The original accepts a bool (True: bf16), 'bf16', 'no' and 'fp32' (same as 'no'); fp16 was refused there too.
    mode = ("bf16" if value else "no") if isinstance(value, bool) else str(value).strip().lower()
    if mode in ("bf16", "no", "fp32"):
        return {"bf16": mode == "bf16"}
    if mode == "fp16":
        raise NoEquivalent("fp16 was refused by the original trainer and is by neobert-hf: use bf16")
    raise MigrationError(f"mixed_precision must be bf16, no or fp32, got {value!r}")


_ATTENTION = {"sdpa": "sdpa", "flash_attn_varlen": "flash_attention_2"}


def _attn_backend(value: Any, ctx: Context) -> dict[str, Any]:
    name = str(value).strip().lower()
    if name not in _ATTENTION:
        raise MigrationError(f"model.attn_backend must be sdpa or flash_attn_varlen, got {value!r}")
    return {"attn_implementation": _ATTENTION[name]}


def _legacy_attention(value: Any, ctx: Context) -> dict[str, Any]:
    return {"attn_implementation": "flash_attention_2" if _flag(value) else "sdpa"}


def _superseded_by(*keys: str) -> Callable[[Context], None]:
    def check(ctx: Context) -> None:
        for key in keys:
            if ctx.given(key):
                raise NoEquivalent(f"superseded by {key} (the original trainer's precedence)")

    return check


def _model_source(target: str, *winners: str) -> Callable[[Any, Context], dict[str, Any]]:
    def convert(value: Any, ctx: Context) -> dict[str, Any]:
        _superseded_by(*winners)(ctx)
        return {target: str(value)}

    return convert


def _tokenizer_name(target: str) -> Callable[[Any, Context], dict[str, Any]]:
    def convert(value: Any, ctx: Context) -> dict[str, Any]:
        _superseded_by("tokenizer.path")(ctx)
        return {target: str(value)}

    return convert


def _dataset_name(target: str) -> Callable[[Any, Context], dict[str, Any]]:
    def convert(value: Any, ctx: Context) -> dict[str, Any]:
        _superseded_by("dataset.path")(ctx)
        return {target: str(value)}

    return convert


def _dataset_path(target: str) -> Callable[[Any, Context], dict[str, Any]]:
    def convert(value: Any, ctx: Context) -> dict[str, Any]:
        if value == "":
            raise NoEquivalent("empty: dataset.name is used")
        return {target: str(value)}

    return convert


def _with_workers(target: str) -> Callable[[Any, Context], dict[str, Any]]:
    def convert(value: Any, ctx: Context) -> dict[str, Any]:
        workers = ctx.get("dataset.num_workers", 0) if ctx.subcommand != GLUE else ctx.get("glue.num_workers", 0)
        if not int(_number(workers)) and ctx.subcommand != PRETRAIN:
            raise NoEquivalent("no effect without DataLoader workers")
        if ctx.subcommand == PRETRAIN:
            raise NoEquivalent("pretraining reads data in the main process (exact resume of the stream position)")
        return {target: value}

    return convert


def _workers(value: Any, ctx: Context) -> dict[str, Any]:
    if ctx.subcommand == PRETRAIN:
        raise NoEquivalent(
            "pretraining reads data in the main process (dataloader_num_workers must be 0 so that the stream "
            "position resumes exactly); tokenize ahead with `neobert-hf preprocess` for speed"
        )
    return {"dataloader_num_workers": value}


def _gradient_clipping(value: Any, ctx: Context) -> dict[str, Any]:
    # None (the original's default) is no clipping; transformers clips at 1.0 unless max_grad_norm is 0.
    return {"max_grad_norm": 0.0 if value is None else _number(value)}


_NULL_AWARE = (_gradient_clipping,)


def _scheduler_name(value: Any, ctx: Context) -> dict[str, Any]:
    name = str(value).strip().lower()
    return {"lr_scheduler_type": {"constant": "constant_with_warmup"}.get(name, name)}


def _warmup_steps(value: Any, ctx: Context) -> dict[str, Any]:
    _superseded_by("scheduler.warmup_percent")(ctx)
    return {"warmup_steps": int(_number(value))}


def _schedule_length(ctx: Context) -> float:
    """The original's base of the percentages: scheduler.total_steps, else trainer.max_steps."""
    total = ctx.get("scheduler.total_steps")
    return _number(total) if total is not None else _number(ctx.get("trainer.max_steps", 1_000_000))


def _decay_end_step(ctx: Context) -> float | None:
    """Where the original's decay ends, when a key says so: decay_percent, then decay_steps, then total_steps."""
    if ctx.given("scheduler.decay_percent"):
        return _schedule_length(ctx) * _number(ctx.get("scheduler.decay_percent")) / 100.0
    if ctx.given("scheduler.decay_steps"):
        return _number(ctx.get("scheduler.decay_steps"))
    if ctx.given("scheduler.total_steps"):
        return _number(ctx.get("scheduler.total_steps"))
    return None


def _our_schedule_length(ctx: Context) -> float:
    """What transformers' fractional warmup_steps refers to in the converted run: decay_steps when the converter
    writes it (pretraining), else max_steps."""
    end = _decay_end_step(ctx) if ctx.subcommand == PRETRAIN else None
    return end if end is not None else _number(ctx.get("trainer.max_steps", 1_000_000))


def _warmup_percent(value: Any, ctx: Context) -> dict[str, Any]:
    fraction = _number(value) / 100.0
    if not 0.0 <= fraction <= 1.0:
        raise MigrationError(f"scheduler.warmup_percent must be in [0, 100], got {value!r}")
    base = _schedule_length(ctx)
    if 0.0 < fraction < 1.0 and math.isclose(base, _our_schedule_length(ctx)):
        # warmup_steps below 1 is a fraction of the schedule's steps in transformers (and of decay_steps here).
        return {"warmup_steps": fraction}
    return {"warmup_steps": int(math.ceil(base * fraction))}


def _decay_end(key: str) -> Callable[[Any, Context], dict[str, Any]]:
    def convert(value: Any, ctx: Context) -> dict[str, Any]:
        order = ("decay_percent", "decay_steps", "total_steps")
        for winner in order[: order.index(key)]:
            if ctx.given(f"scheduler.{winner}"):
                raise NoEquivalent(f"superseded by scheduler.{winner} (the original trainer's precedence)")
        end = _decay_end_step(ctx)
        max_steps = _number(ctx.get("trainer.max_steps", 1_000_000))
        if ctx.subcommand == PRETRAIN:
            if not float(end).is_integer() and not math.isclose(end, round(end)):
                end = math.ceil(end)
            return {"decay_steps": int(round(end))}
        if math.isclose(end, max_steps):
            return {}
        raise NoEquivalent(
            f"the schedule would end at step {end:g} but `neobert-hf {ctx.subcommand}` decays over max_steps "
            f"({max_steps:g}); set max_steps to it or accept the longer decay"
        )

    return convert


def _final_lr_ratio(value: Any, ctx: Context) -> dict[str, Any]:
    name = str(ctx.get("scheduler.name", "cosine")).strip().lower()
    if name not in ("cosine", "linear"):
        raise NoEquivalent(f"applies to cosine or linear schedules in neobert-hf, not {name!r}")
    return {"final_lr_ratio": _number(value)}


_OPTIMIZERS = {"adamw": "adamw", "adam": "adam", "muonclip": "muonclip", "muon": "muonclip"}


def _optimizer_name(value: Any, ctx: Context) -> dict[str, Any]:
    name = str(value).strip().lower()
    if name not in _OPTIMIZERS:
        raise MigrationError(f"optimizer.name must be adamw, adam or muonclip, got {value!r}")
    if ctx.subcommand == PRETRAIN:
        return {"optimizer": _OPTIMIZERS[name]}
    if name == "adam":
        raise NoEquivalent("adam (coupled L2 decay) is a pretraining option here; fine-tuning uses AdamW")
    if name != "adamw":
        raise NoEquivalent("MuonClip is for pretraining only in neobert-hf; fine-tuning uses AdamW")
    return {"optim": "adamw_torch"}


def _betas(value: Any, ctx: Context) -> dict[str, Any]:
    if isinstance(value, str):
        value = [part for part in re.split(r"[\s,\[\]()]+", value) if part]
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise MigrationError(f"optimizer.betas must be two numbers, got {value!r}")
    return {"adam_beta1": _number(value[0]), "adam_beta2": _number(value[1])}


def _only_muonclip(ctx: Context) -> None:
    if str(ctx.get("optimizer.name", "adamw")).strip().lower() not in ("muonclip", "muon"):
        raise NoEquivalent("optimizer.name is not muonclip: MuonClip settings have no effect")


def _muon(target: str, transform: Callable[[Any], Any] = lambda v: v) -> Callable[[Any, Context], dict[str, Any]]:
    def convert(value: Any, ctx: Context) -> dict[str, Any]:
        _only_muonclip(ctx)
        return {target: transform(value)}

    return convert


def _qk_clip(target: str) -> Callable[[Any, Context], dict[str, Any]]:
    def convert(value: Any, ctx: Context) -> dict[str, Any]:
        _only_muonclip(ctx)
        if not _flag(ctx.get("optimizer.muon_config.enable_clipping", True)):
            raise NoEquivalent("QK-clip is off (enable_clipping: false)")
        return {target: value}

    return convert


def _enable_clipping(value: Any, ctx: Context) -> dict[str, Any]:
    _only_muonclip(ctx)
    return {} if _flag(value) else {"qk_clip_threshold": None}


def _must_equal(expected: Any, reason: str, normalize: Callable[[Any], Any] = lambda v: v):
    def convert(value: Any, ctx: Context) -> dict[str, Any]:
        if normalize(value) == expected:
            return {}
        raise NoEquivalent(reason)

    return convert


_ORTHOGONALIZATION = {"newton_schulz": "newton_schulz", "ns": "newton_schulz", "polar_express": "polar_express"}


def _orthogonalization(value: Any, ctx: Context) -> dict[str, Any]:
    _only_muonclip(ctx)
    name = str(value).strip().lower().replace("-", "_")
    if name not in _ORTHOGONALIZATION:
        raise MigrationError(f"orthogonalization must be newton_schulz or polar_express, got {value!r}")
    return {"muon_orthogonalization": _ORTHOGONALIZATION[name]}


def _polar_express(value: Any, ctx: Context) -> dict[str, Any]:
    _only_muonclip(ctx)
    if ctx.given("optimizer.muon_config.orthogonalization"):
        raise NoEquivalent("superseded by optimizer.muon_config.orthogonalization")
    return {"muon_orthogonalization": "polar_express" if _flag(value) else "newton_schulz"}


def _layers_mapping(value: Any, ctx: Context) -> dict[str, Any]:
    # The original reads q_proj/k_proj (and v_proj) names only for encoder blocks without a fused `qkv` projection.
    # Every NeoBERT block has one, so on the models it trains the mapping never took effect: nothing to carry over.
    if not value:
        return {}
    if not isinstance(value, dict):
        raise MigrationError(f"clipping_layers_mapping must be a mapping of q_proj/k_proj/v_proj names, got {value!r}")
    _only_muonclip(ctx)
    return {}


def _detect_anomalies(value: Any, ctx: Context) -> dict[str, Any]:
    _only_muonclip(ctx)
    return {"detect_anomalies": _flag(value)}


def _norm_factor(value: Any, ctx: Context) -> dict[str, Any]:
    _only_muonclip(ctx)
    name = str(value).strip().lower().replace("-", "_")
    name = {"legacy_compat": "neobert", "muon_reference": "original"}.get(name, name)
    if name in ("original", "match_rms_adamw"):
        return {"muon_adjust_lr": name}
    raise NoEquivalent(f"{value!r}: Muon's update scale is 'original' or 'match_rms_adamw' (muon_adjust_lr)")


def _report_to(value: Any, ctx: Context) -> dict[str, Any]:
    return {"report_to": "wandb" if _flag(value) else "none"}


_WANDB_ENV = {"project": "WANDB_PROJECT", "entity": "WANDB_ENTITY", "tags": "WANDB_TAGS", "mode": "WANDB_MODE",
              "dir": "WANDB_DIR", "resume": "WANDB_RESUME", "watch": "WANDB_WATCH"}  # fmt: skip


def _wandb_field(key: str) -> Callable[[Any, Context], dict[str, Any]]:
    def convert(value: Any, ctx: Context) -> dict[str, Any]:
        if not _flag(ctx.get("wandb.enabled", False)):
            raise NoEquivalent("W&B is off (wandb.enabled is false)")
        if key == "tags":
            value = list(value) if isinstance(value, (list, tuple)) else [value]
            if not value:
                return {}
        return {f"wandb_{key}": value}

    return convert


def _wandb_env(key: str) -> Callable[[Any, Context], dict[str, Any]]:
    def convert(value: Any, ctx: Context) -> dict[str, Any]:
        if not _flag(ctx.get("wandb.enabled", False)):
            raise NoEquivalent("W&B is off (wandb.enabled is false)")
        shown = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
        raise NoEquivalent(f"no recipe key; transformers' W&B callback reads {_WANDB_ENV[key]}={shown}")

    return convert


def _run_name(value: Any, ctx: Context) -> dict[str, Any]:
    return {"run_name": str(value)}


def _early_stopping(value: Any, ctx: Context) -> dict[str, Any]:
    patience = int(_number(value))
    if patience <= 0:
        return {}
    return {"early_stopping_patience": patience}


def _save_model(value: Any, ctx: Context) -> dict[str, Any]:
    return {"save_final_checkpoint": _flag(value)}


def _tf32(value: Any, ctx: Context) -> dict[str, Any]:
    if not _flag(value):
        return {"tf32": False}
    raise NoEquivalent(
        "the original enabled TF32 only where supported; transformers refuses tf32: true elsewhere, so add "
        "--tf32 true on Ampere or newer GPUs"
    )


def _debug(value: Any, ctx: Context) -> dict[str, Any]:
    return {"log_level": "debug"} if _flag(value) else {}


def _checkpoint_selector(value: Any, ctx: Context) -> dict[str, Any]:
    return {"checkpoint": str(value)}


def _contrastive_checkpoint(value: Any, ctx: Context) -> dict[str, Any]:
    if str(value).strip().lower() == "latest":
        return {}
    raise NoEquivalent(
        "give the checkpoint folder itself as model_name_or_path (a run folder means its latest checkpoint)"
    )


def _pooling(value: Any, ctx: Context) -> dict[str, Any]:
    name = str(value).strip().lower()
    return {"pooling": {"avg": "mean", "average": "mean"}.get(name, name)}


def _contrastive_loss(value: Any, ctx: Context) -> dict[str, Any]:
    name = str(value).strip().lower()
    if name == "simcse":
        return {"loss_type": "infonce"}
    if name == "supcon":
        return {"loss_type": "supcon"}
    raise NoEquivalent(f"{value!r}: neobert-hf's losses are infonce, cached_infonce and supcon")


def _hard_negative_weight(value: Any, ctx: Context) -> dict[str, Any]:
    # Both follow SimCSE: the value is added to the hard negatives' logits (0 = plain InfoNCE), so it is copied.
    number = _number(value)
    if not math.isfinite(number):
        raise NoEquivalent(f"{value!r} is not a finite number")
    return {"hard_negative_weight": number}


def _mteb_task_type(value: Any, ctx: Context) -> dict[str, Any]:
    names = value if isinstance(value, (list, tuple)) else [value]
    if any(str(name).strip().lower() == "all" for name in names):
        if len(names) > 1:
            raise MigrationError(f"mteb_task_type 'all' already selects every type, got {value!r}")
        return {"task_types": ["all"]}
    known = {t.lower(): t for t in ("Classification", "Clustering", "PairClassification", "Reranking",
                                    "Retrieval", "STS", "Summarization", "BitextMining", "MultilabelClassification",
                                    "InstructionRetrieval", "Regression", "InstructionReranking")}  # fmt: skip
    if len(names) == 1 and str(names[0]).strip().lower() not in known:
        return {"benchmark": str(names[0]).strip()}  # e.g. "MTEB(eng, v2)"; mteb checks the name at run time
    return {"task_types": [known.get(str(name).strip().lower(), str(name)) for name in names]}


def _random_init_config(value: Any, ctx: Context) -> dict[str, Any]:
    if not _flag(ctx.get("glue.allow_random_weights", False)):
        raise NoEquivalent(
            "the model's config comes with its checkpoint (glue.pretrained_checkpoint_dir -> model_name_or_path); "
            "it is only used with glue.allow_random_weights"
        )
    return {"config_name": str(value)}


def _enabled_section(section: str, backend: str) -> Callable[[Any, Context], dict[str, Any]]:
    def convert(value: Any, ctx: Context) -> dict[str, Any]:
        return {"precision_backend": backend} if _flag(value) else {}

    return convert


def _in_section(section: str, target: str, transform: Callable[[Any], Any] = lambda v: v):
    def convert(value: Any, ctx: Context) -> dict[str, Any]:
        if not _flag(ctx.get(f"{section}.enable", False)):
            raise NoEquivalent(f"{section}.enable is false: the section has no effect")
        return {target: transform(value)}

    return convert


def _torchao_recipe(value: Any) -> str:
    name = str(value).strip().lower()
    return name[len("float8_"):] if name.startswith("float8_") else name


def _quartet_recipe(value: Any, ctx: Context) -> dict[str, Any]:
    if str(value).strip().lower() in ("quartet_ii", "quartet2"):
        return {}
    raise NoEquivalent(f"{value!r}: the Quartet-II recipe is the only one")

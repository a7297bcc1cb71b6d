"""Convert the original NeoBERT trainer's nested YAML config into a flat `neobert-hf` recipe.

The original trainer reads one nested file (`model:`, `dataset:`, `trainer:`, `optimizer:`, ... sections, plus
`--section.key value` overrides); `neobert-hf` reads flat recipes whose keys are the fields of each subcommand's
argument dataclasses. [`RULES`] is the single table between the two: the converter
([`convert_config`]), the table it prints and `docs/migrating.md` ([`render_markdown`]) are all generated from it.

Each row names one key of the original format and what it becomes in the subcommands where it applies: one or more
recipe keys (with the unit change its converter applies) or nothing, with the reason. A key of the input that is
not in the table is an error, as it was for the original loader, so nothing is ever dropped silently.

```bash
neobert-hf convert-config old.yaml -o recipe.yaml --trainer.max_steps 1000
python -m neobert_hf.migration --markdown > docs/migrating.md
```

Nothing heavy is imported here: values are typed against the subcommand's parser only in
[`coerce_to_fields`], which imports it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


__all__ = [
    "RULES",
    "SECTIONS",
    "SUBCOMMAND_OF_TASK",
    "Conversion",
    "MigrationError",
    "Rule",
    "apply_overrides",
    "coerce_to_fields",
    "convert_config",
    "is_original_config",
    "load_original_config",
    "render_markdown",
    "refusal_message",
    "render_report",
]

PRETRAIN, GLUE, CONTRASTIVE, MTEB = "pretrain", "glue", "contrastive", "mteb"
SUBCOMMANDS = (PRETRAIN, GLUE, CONTRASTIVE, MTEB)
TRAINING = (PRETRAIN, GLUE, CONTRASTIVE)
SUBCOMMAND_OF_TASK = {"pretraining": PRETRAIN, "glue": GLUE, "contrastive": CONTRASTIVE, "mteb": MTEB}

# Mappings of the original format; anything else that holds a mapping is a leaf value (e.g. pretraining_metadata).
SECTIONS = (
    "model", "tokenizer", "dataset", "trainer", "optimizer", "optimizer.muon_config", "optimizer.hparams",
    "scheduler", "datacollator", "wandb", "glue", "contrastive", "torchao", "transformer_engine", "quartet2",
)  # fmt: skip
# Top-level keys that only the original format has: a `--config` recipe holding one of them is an original config.
_ORIGINAL_MARKERS = {"model", "tokenizer", "dataset", "trainer", "optimizer", "scheduler", "datacollator", "wandb",
                     "glue", "contrastive", "torchao", "transformer_engine", "quartet2"}  # fmt: skip


_ORIGINAL_TOP_LEVEL = {"task", "use_deepspeed", "mixed_precision", "mteb_task_type", "mteb_batch_size",
                       "mteb_pooling", "mteb_overwrite_results", "pretrained_checkpoint", "accelerate_config_file",
                       "pretraining_metadata", "config_path", "variables"}  # fmt: skip


class MigrationError(ValueError):
    """The original config cannot be converted: an unknown key, a malformed value or two keys that disagree."""


class NoEquivalent(Exception):
    """Raised by a converter when this value of the key has no equivalent (the reason is reported)."""


class _Absent:
    def __repr__(self) -> str:
        return "<absent>"


ABSENT = _Absent()


@dataclass(frozen=True)
class Rule:
    """One key of the original format and what it becomes.

    Args:
        old: dotted key of the original format (`trainer.max_steps`, `optimizer.muon_config.ns_steps`, `seed`).
        new: recipe keys it may write (fields of the subcommand's argument dataclasses); empty: no equivalent.
        where: subcommands this row applies to (a key may have one row per group of subcommands).
        convert: `(value, ctx) -> {recipe key: value}`, may raise `NoEquivalent(reason)`; None copies the value
            into `new[0]`.
        note: the unit change or meaning of a mapped key, or the reason a key has no equivalent.
        alias_of: a legacy key: converted exactly as this canonical key (a dict picks the key per subcommand).
        carry: for pretraining, the original trainer's default, written when the key is absent because the
            `neobert-hf` default differs.
        structural: handled while reading the file (`task`, `variables`, `optimizer.hparams.*`).
    """

    old: str
    new: tuple[str, ...] = ()
    where: tuple[str, ...] = SUBCOMMANDS
    convert: Callable[[Any, Context], dict[str, Any]] | None = None
    note: str = ""
    alias_of: str | dict[str, str] | None = None
    carry: Any = ABSENT
    structural: bool = False

    @property
    def status(self) -> str:
        if self.structural:
            return "structural"
        if self.alias_of is not None:
            return "renamed"
        if not self.new:
            return "refused"
        if self.convert is None and self.new == (self.old.rsplit(".", 1)[-1],):
            return "mapped"
        return "renamed"

    def canonical(self, subcommand: str) -> str | None:
        if isinstance(self.alias_of, dict):
            return self.alias_of.get(subcommand, self.alias_of.get("*"))
        return self.alias_of


@dataclass
class Context:
    """What a converter may read besides its own value: the whole (flattened) original config and the target."""

    values: dict[str, Any]
    subcommand: str

    def get(self, key: str, default: Any = None) -> Any:
        value = self.values.get(key, default)
        return default if value is None else value

    def given(self, key: str) -> bool:
        return self.values.get(key) is not None


# ---------------------------------------------------------------------------------------------------------------------
# Converters
# ---------------------------------------------------------------------------------------------------------------------


def _to(key: str, transform: Callable[[Any], Any] = lambda v: v) -> Callable[[Any, Context], dict[str, Any]]:
    def convert(value: Any, ctx: Context) -> dict[str, Any]:
        return {key: transform(value)}

    return convert


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


def _schedule_length(ctx: Context) -> float | None:
    total = ctx.get("scheduler.total_steps")
    return _number(total) if total is not None else (_number(ctx.get("trainer.max_steps", 1_000_000)))


def _warmup_percent(value: Any, ctx: Context) -> dict[str, Any]:
    fraction = _number(value) / 100.0
    if not 0.0 <= fraction <= 1.0:
        raise MigrationError(f"scheduler.warmup_percent must be in [0, 100], got {value!r}")
    total = ctx.get("scheduler.total_steps")
    max_steps = ctx.get("trainer.max_steps", 1_000_000)
    if total is None or _number(total) == _number(max_steps):
        if fraction < 1.0:
            # warmup_steps below 1 is a fraction of the training steps in transformers.
            return {"warmup_steps": fraction}
        total = max_steps
    return {"warmup_steps": int(math.ceil(_number(total) * fraction))}


def _decay_end(key: str) -> Callable[[Any, Context], dict[str, Any]]:
    def convert(value: Any, ctx: Context) -> dict[str, Any]:
        max_steps = _number(ctx.get("trainer.max_steps", 1_000_000))
        if key == "decay_percent":
            end = _schedule_length(ctx) * _number(value) / 100.0
        else:
            end = _number(value)
        if key == "total_steps" and (ctx.given("scheduler.decay_steps") or ctx.given("scheduler.decay_percent")):
            raise NoEquivalent("only sets the base of the percentages, converted with them")
        if key == "decay_steps" and ctx.given("scheduler.decay_percent"):
            raise NoEquivalent("superseded by scheduler.decay_percent (the original trainer's precedence)")
        if math.isclose(end, max_steps):
            return {}
        raise NoEquivalent(
            f"the schedule would end at step {end:g} but neobert-hf decays over max_steps ({max_steps:g}); set "
            "max_steps to it or accept the longer decay"
        )

    return convert


def _final_lr_ratio(value: Any, ctx: Context) -> dict[str, Any]:
    name = str(ctx.get("scheduler.name", "cosine")).strip().lower()
    if name not in ("cosine", "linear"):
        raise NoEquivalent(f"applies to cosine or linear schedules in neobert-hf, not {name!r}")
    return {"final_lr_ratio": _number(value)}


_OPTIMIZERS = {"adamw": "adamw", "muonclip": "muonclip", "muon": "muonclip"}


def _optimizer_name(value: Any, ctx: Context) -> dict[str, Any]:
    name = str(value).strip().lower()
    if name == "adam":
        raise NoEquivalent("adam (L2 weight decay) is not available; neobert-hf uses AdamW (decoupled decay)")
    if name not in _OPTIMIZERS:
        raise MigrationError(f"optimizer.name must be adamw, adam or muonclip, got {value!r}")
    if ctx.subcommand == PRETRAIN:
        return {"optimizer": _OPTIMIZERS[name]}
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


def _orthogonalization(value: Any, ctx: Context) -> dict[str, Any]:
    name = str(value).strip().lower().replace("-", "_")
    if name in ("newton_schulz", "ns"):
        return {}
    raise NoEquivalent(f"{value!r}: torch.optim.Muon orthogonalizes with Newton-Schulz iterations only")


def _polar_express(value: Any, ctx: Context) -> dict[str, Any]:
    if not _flag(value):
        return {}
    raise NoEquivalent("torch.optim.Muon orthogonalizes with Newton-Schulz iterations only")


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
    raise NoEquivalent(f"{value!r}: neobert-hf has InfoNCE losses only (infonce, cached_infonce)")


def _hard_negative_weight(value: Any, ctx: Context) -> dict[str, Any]:
    # SimCSE's convention: the original's value is the logarithm of the weight (0 = weight 1 = plain InfoNCE).
    return {"hard_negative_weight": math.exp(_number(value))}


def _mteb_task_type(value: Any, ctx: Context) -> dict[str, Any]:
    names = value if isinstance(value, (list, tuple)) else [value]
    if any(str(name).strip().lower() == "all" for name in names):
        raise NoEquivalent("'all' is not a task type here: name task_types (e.g. [STS, Retrieval]) or tasks")
    known = {t.lower(): t for t in ("Classification", "Clustering", "PairClassification", "Reranking",
                                    "Retrieval", "STS", "Summarization", "BitextMining", "MultilabelClassification",
                                    "InstructionRetrieval")}  # fmt: skip
    return {"task_types": [known.get(str(name).strip().lower(), str(name)) for name in names]}


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


def _refuse(reason: str) -> Callable[[Any, Context], dict[str, Any]]:
    def convert(value: Any, ctx: Context) -> dict[str, Any]:
        raise NoEquivalent(reason)

    return convert


# ---------------------------------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------------------------------

P, G, C, M, T = (PRETRAIN,), (GLUE,), (CONTRASTIVE,), (MTEB,), TRAINING
CHECKPOINT_FIXED = "fixed by the checkpoint that is fine-tuned or evaluated (its config.json)"
R = Rule

RULES: tuple[Rule, ...] = (
    # --- top level ---
    R("task", structural=True, note="Chooses the subcommand: pretraining -> pretrain, glue, contrastive, mteb."),
    R("variables", structural=True, note="`$variables.x`, `${variables.x}` and `{$variables.x}` are resolved first."),
    R("seed", ("seed",), T, carry=0),
    R("debug", ("log_level",), T, _debug, "true: log_level debug."),
    R("mixed_precision", alias_of="trainer.mixed_precision"),
    R("use_deepspeed", note="DeepSpeed, FSDP2 and DDP are chosen by the `accelerate launch` config "
      "(recipes/accelerate/, docs/distributed.md), not by the recipe."),
    R("accelerate_config_file", note="Give it to `accelerate launch --config_file FILE neobert-hf ...`."),
    R("pretraining_metadata", note="Metadata only; checkpoints carry their own config.json."),
    R("config_path", note="Metadata only."),
    R("pretrained_checkpoint", ("checkpoint",), G, _checkpoint_selector, "`best`, `latest` or a step number."),
    R("pretrained_checkpoint", (), C, _contrastive_checkpoint,
      "`latest` is what a run folder given as model_name_or_path means; otherwise give the checkpoint folder."),
    R("pretrained_checkpoint", (), P + M, note="Give the checkpoint folder itself (model_name_or_path / model)."),
    R("mteb_task_type", ("task_types",), M, _mteb_task_type, "Task type names in mteb's spelling (STS, Retrieval, "
      "...); `all` has no equivalent: name the types or tasks."),
    R("mteb_batch_size", ("batch_size",), M),
    R("mteb_pooling", ("pooling",), M),
    R("mteb_overwrite_results", ("overwrite_results",), M),
    # --- model ---
    R("model.name", (), P, note="Metadata in the original's pretraining; to continue from weights set "
      "model_name_or_path."),
    R("model.name", ("model_name_or_path",), G + C, _model_source("model_name_or_path",
      "glue.pretrained_checkpoint_dir", "contrastive.pretrained_checkpoint_dir"),
      "The model to fine-tune, unless a pretrained_checkpoint_dir is given."),
    R("model.name", ("model",), M, _model_source("model"), "The model to evaluate."),
    R("model.name_or_path", alias_of="model.name"),
    R("model.hidden_size", ("hidden_size",), P, carry=768),
    R("model.num_hidden_layers", ("num_hidden_layers",), P, carry=12),
    R("model.num_attention_heads", ("num_attention_heads",), P, carry=12),
    R("model.intermediate_size", ("intermediate_size",), P, carry=3072,
      note="Same meaning: SwiGLU uses 8 * ceil(int(2 * I / 3) / 8)."),
    R("model.max_position_embeddings", ("max_position_embeddings",), P, carry=512),
    R("model.hidden_act", ("hidden_act",), P),
    R("model.rope", ("rope",), P),
    R("model.rms_norm", ("rms_norm",), P),
    R("model.norm_eps", ("norm_eps",), P),
    R("model.dropout_prob", ("dropout",), P + C, note="Attention probabilities and both residual branches."),
    R("model.embedding_init_range", ("embedding_init_range",), P),
    R("model.decoder_init_range", ("decoder_init_range",), P),
    R("model.classifier_init_range", ("classifier_init_range",), G),
    R("model.hidden_size", (), G + C + M, note=CHECKPOINT_FIXED),
    R("model.num_hidden_layers", (), G + C + M, note=CHECKPOINT_FIXED),
    R("model.num_attention_heads", (), G + C + M, note=CHECKPOINT_FIXED),
    R("model.intermediate_size", (), G + C + M, note=CHECKPOINT_FIXED),
    R("model.max_position_embeddings", (), G + C + M, note=CHECKPOINT_FIXED),
    R("model.hidden_act", (), G + C + M, note=CHECKPOINT_FIXED),
    R("model.rope", (), G + C + M, note=CHECKPOINT_FIXED),
    R("model.rms_norm", (), G + C + M, note=CHECKPOINT_FIXED),
    R("model.norm_eps", (), G + C + M, note=CHECKPOINT_FIXED),
    R("model.dropout_prob", (), G + M, note="GLUE sets classifier_dropout only; the encoder keeps its config."),
    R("model.embedding_init_range", (), G + C + M, note="Initialization applies to new models (pretraining) only."),
    R("model.decoder_init_range", (), G + C + M, note="Initialization applies to new models (pretraining) only."),
    R("model.classifier_init_range", (), P + C + M, note="There is no classifier head here."),
    R("model.vocab_size", note="Set from the tokenizer, padded to pad_vocab_to_multiple_of (the original synced it "
      "from the tokenizer too)."),
    R("model.pad_token_id", note="Taken from the tokenizer (the original synced it too)."),
    R("model.attn_backend", ("attn_implementation",), P + G, _attn_backend,
      "sdpa -> sdpa; flash_attn_varlen -> flash_attention_2 (packed batches run varlen kernels)."),
    R("model.attn_backend", (), C + M, note="sentence-transformers loads the model with its default attention."),
    R("model.flash_attention", alias_of="model.attn_backend", convert=_legacy_attention,
      note="true -> flash_attention_2, false -> sdpa."),
    R("model.use_flash_attention", alias_of="model.attn_backend", convert=_legacy_attention,
      note="true -> flash_attention_2, false -> sdpa."),
    R("model.xformers_attention", alias_of="model.attn_backend", convert=_legacy_attention,
      note="true -> flash_attention_2, false -> sdpa."),
    R("model.kernel_backend", ("kernel_backend",), P, note="auto, liger or torch."),
    R("model.kernel_backend", (), G + C + M, note="Kernels are chosen for pretraining only."),
    R("model.ngpt", note="nGPT (normalized transformer) is not supported."),
    R("model.base_scale", note="nGPT only; nGPT is not supported."),
    R("model.from_hub", note="model_name_or_path takes a folder or a Hub id alike."),
    R("model.pretrained_config_path", alias_of="glue.pretrained_model_path"),
    R("model.pretrained_checkpoint_dir",
      alias_of={CONTRASTIVE: "contrastive.pretrained_checkpoint_dir", "*": "glue.pretrained_checkpoint_dir"}),
    R("model.pretrained_checkpoint",
      alias_of={CONTRASTIVE: "contrastive.pretrained_checkpoint", "*": "glue.pretrained_checkpoint"}),
    R("model.allow_random_weights",
      alias_of={CONTRASTIVE: "contrastive.allow_random_weights", "*": "glue.allow_random_weights"}),
    R("model.classifier_dropout", alias_of="glue.classifier_dropout"),
    R("model.transfer_from_task", alias_of="glue.transfer_from_task"),
    # --- tokenizer ---
    R("tokenizer.name", ("tokenizer_name",), P + G, _tokenizer_name("tokenizer_name"),
      "tokenizer.path wins when both are set.", carry="bert-base-uncased"),
    R("tokenizer.name", ("tokenizer_name_or_path",), C + M, _tokenizer_name("tokenizer_name_or_path"),
      "tokenizer.path wins when both are set."),
    R("tokenizer.path", ("tokenizer_name",), P + G),
    R("tokenizer.path", ("tokenizer_name_or_path",), C + M),
    R("tokenizer.tokenizer_name_or_path", alias_of="tokenizer.name"),
    R("tokenizer.max_length", (), P + C, note="Sequences are cut at max_seq_length (dataset.max_seq_length), to "
      "which the original synced this key."),
    R("tokenizer.max_length", (), G, note="Sequences are cut at max_seq_length (glue.max_seq_length), to which the "
      "original synced this key."),
    R("tokenizer.max_length", ("max_seq_length",), M),
    R("tokenizer.padding", note="Batches are packed or padded per batch (to pad_to_multiple_of); padding every "
      "sequence to max_length has no use."),
    R("tokenizer.truncation", note="Always on: sequences longer than max_seq_length are cut (pretraining splits "
      "documents into max_seq_length pieces)."),
    R("tokenizer.vocab_size", note="Set from the tokenizer (the original synced it too)."),
    R("tokenizer.trust_remote_code", note="Tokenizers are loaded without remote code."),
    R("tokenizer.revision", note="Give a local folder (or a Hub id at its default revision)."),
    R("tokenizer.allow_special_token_rewrite", note="Special tokens are never rewritten; "
      "add_missing_special_tokens (pretraining) adds missing [PAD]/[MASK] tokens."),
    # --- dataset ---
    R("dataset.name", ("dataset_name",), P, _dataset_name("dataset_name"), "dataset.path wins when both are set."),
    R("dataset.name", ("train_dataset",), C, _dataset_name("train_dataset"), "dataset.path wins when both are set."),
    R("dataset.name", (), G, note="GLUE data comes from dataset_name (nyu-mll/glue by default) or "
      "train_file/validation_file."),
    R("dataset.path", ("dataset_name",), P, _dataset_path("dataset_name"),
      "A save_to_disk folder (or any local data) is read by dataset_name."),
    R("dataset.path", ("train_dataset",), C, _dataset_path("train_dataset")),
    R("dataset.path", (), G, note="Give local GLUE files as train_file/validation_file."),
    R("dataset.path_to_disk", alias_of="dataset.path"),
    R("dataset.tokenizer_name", alias_of="tokenizer.name"),
    R("dataset.config", ("dataset_config_name",), P),
    R("dataset.config", ("train_dataset_config",), C),
    R("dataset.streaming", ("streaming",), P, note="Resuming a stream is exact here (the original refused it)."),
    R("dataset.max_seq_length", ("max_seq_length",), P + C),
    R("dataset.text_column", ("text_column",), P),
    R("dataset.column", alias_of="dataset.text_column"),
    R("dataset.train_split", ("train_split",), P + C),
    R("dataset.eval_split", ("eval_split",), P + C),
    R("dataset.validation_split", ("eval_fraction",), P, note="A fraction of train held out (map-style data)."),
    R("dataset.eval_samples", ("eval_samples",), P),
    R("dataset.num_workers", ("dataloader_num_workers",), P + C, _workers),
    R("dataset.pin_memory", ("dataloader_pin_memory",), T),
    R("dataset.persistent_workers", ("dataloader_persistent_workers",), P + C,
      _with_workers("dataloader_persistent_workers"), "Only with DataLoader workers."),
    R("dataset.prefetch_factor", ("dataloader_prefetch_factor",), P + C, _with_workers("dataloader_prefetch_factor"),
      "Only with DataLoader workers."),
    R("dataset.num_proc", ("preprocessing_num_workers",), P, note="Processes that tokenize map-style data."),
    R("dataset.shuffle_buffer_size", ("shuffle_buffer_size",), P),
    R("dataset.cache_dir", ("cache_dir",), P),
    R("dataset.pre_tokenize", note="Run `neobert-hf preprocess` first and give its folder as dataset_name."),
    R("dataset.pre_tokenize_output", note="The output_dir of `neobert-hf preprocess`."),
    R("dataset.trust_remote_code", note="Dataset loading scripts are not run."),
    R("dataset.load_all_from_disk", note="Local data is memory-mapped by `datasets`."),
    R("dataset.force_redownload", note="Use `datasets`' cache tools (or delete the cache folder)."),
    R("dataset.min_length", note="No length filter; filter the data beforehand."),
    R("dataset.alpha", note="No dataset mixing weights; mix the data beforehand."),
    R("dataset.pretraining_prob", alias_of="contrastive.pretraining_prob"),
    R("dataset.streaming_read_retries", note="`datasets` retries streamed reads itself (HF_DATASETS_* settings)."),
    R("dataset.streaming_read_retry_backoff_seconds", note="`datasets` retries streamed reads itself."),
    R("dataset.streaming_read_retry_max_backoff_seconds", note="`datasets` retries streamed reads itself."),
    R("dataset.num_workers", (), G + M, note="GLUE: glue.num_workers; MTEB reads no training data."),
    R("dataset.num_proc", (), G + C + M, note="GLUE: glue.preprocessing_num_proc."),
    # --- trainer ---
    R("trainer.per_device_train_batch_size", ("per_device_train_batch_size",), T, carry=16,
      note="Pretraining: sequences per microbatch, or set tokens_per_batch for token-budget batches."),
    R("trainer.per_device_eval_batch_size", ("per_device_eval_batch_size",), T, carry=32),
    R("trainer.train_batch_size", alias_of="trainer.per_device_train_batch_size"),
    R("trainer.eval_batch_size", alias_of="trainer.per_device_eval_batch_size"),
    R("trainer.gradient_accumulation_steps", ("gradient_accumulation_steps",), T),
    R("trainer.max_steps", ("max_steps",), T, carry=1_000_000),
    R("trainer.num_train_epochs", ("num_train_epochs",), T),
    R("trainer.save_steps", ("save_steps",), T, carry=10_000),
    R("trainer.eval_steps", ("eval_steps",), T, carry=10_000),
    R("trainer.logging_steps", ("logging_steps",), T, carry=100),
    R("trainer.output_dir", ("output_dir",), T, carry="./output", note="Checkpoints go to "
      "<output_dir>/checkpoints/<step>/ (model, tokenizer and training state in one folder)."),
    R("trainer.output_dir", ("output_folder",), M),
    R("trainer.dir", alias_of="trainer.output_dir"),
    R("trainer.mixed_precision", ("bf16",), T, _mixed_precision, "bf16 -> bf16: true; no / fp32 -> bf16: false.",
      carry="bf16"),
    R("trainer.bf16", alias_of="trainer.mixed_precision", note="true -> bf16, false -> no."),
    R("trainer.gradient_checkpointing", ("activation_checkpointing",), T, note="transformers 5 name."),
    R("trainer.gradient_clipping", ("max_grad_norm",), T, _gradient_clipping,
      "null (no clipping, the original's default) -> 0.0; transformers would clip at 1.0.", carry=None),
    R("trainer.max_grad_norm", alias_of="trainer.gradient_clipping"),
    R("trainer.torch_compile", ("torch_compile",), T),
    R("trainer.torch_compile_backend", ("torch_compile_backend",), T),
    R("trainer.torch_compile_dynamic", note="transformers compiles with torch's default dynamic-shape handling; "
      "torch_compile_mode sets the mode."),
    R("trainer.enforce_full_packed_batches", note="Packed batches are always filled to their token budget "
      "(tokens_per_batch)."),
    R("trainer.eval_max_batches", ("eval_max_batches",), P),
    R("trainer.log_train_accuracy", ("log_train_accuracy",), P),
    R("trainer.log_grad_norm", note="transformers logs grad_norm at every logging step."),
    R("trainer.log_weight_norms", note="Not available."),
    R("trainer.tf32", ("tf32",), T, _tf32, "false -> tf32: false; true has no portable equivalent (see the printed "
      "reason)."),
    R("trainer.masked_logits_only_loss", ("masked_logits_only_loss",), P),
    R("trainer.resume_from_checkpoint", ("resume_from_checkpoint",), T, note="`latest` or a checkpoint folder."),
    R("trainer.overwrite_output_dir", ("overwrite_output_dir",), P, note="Not carried over when absent: here it "
      "deletes the earlier run's checkpoints when training begins."),
    R("trainer.overwrite_output_dir", (), G + C, note="An output folder with checkpoints is refused; use another "
      "output_dir or resume_from_checkpoint."),
    R("trainer.eval_strategy", ("eval_strategy",), T),
    R("trainer.save_strategy", ("save_strategy",), T),
    R("trainer.save_total_limit", ("save_total_limit",), T, carry=3),
    R("trainer.max_ckpt", alias_of="trainer.save_total_limit"),
    R("trainer.disable_tqdm", ("disable_tqdm",), T),
    R("trainer.dataloader_num_workers", alias_of="dataset.num_workers"),
    R("trainer.use_cpu", ("use_cpu",), T),
    R("trainer.report_to", note="Ignored by the original too; wandb.enabled decides (-> report_to)."),
    R("trainer.early_stopping", ("early_stopping_patience",), G, _early_stopping, "0 (off) writes nothing."),
    R("trainer.early_stopping", (), P + C, note="Reserved (unused) in the original."),
    R("trainer.metric_for_best_model", ("metric_for_best_model",), G + C),
    R("trainer.greater_is_better", ("greater_is_better",), G + C),
    R("trainer.load_best_model_at_end", ("load_best_model_at_end",), G + C),
    R("trainer.metric_for_best_model", (), P, note="Reserved (unused) in the original's pretraining."),
    R("trainer.greater_is_better", (), P, note="Reserved (unused) in the original's pretraining."),
    R("trainer.load_best_model_at_end", (), P, note="Reserved (unused) in the original's pretraining."),
    R("trainer.save_model", ("save_final_checkpoint",), P, _save_model),
    R("trainer.save_model", (), G + C, note="The final checkpoint is always written."),
    R("trainer.seed", alias_of="seed"),
    R("trainer.run_name", alias_of="wandb.name"),
    R("trainer.learning_rate", alias_of="optimizer.lr"),
    R("trainer.warmup_steps", alias_of="scheduler.warmup_steps"),
    R("trainer.remove_unused_columns", note="Ignored by the original too."),
    # --- scheduler ---
    R("scheduler.name", ("lr_scheduler_type",), T, _scheduler_name, "constant -> constant_with_warmup.",
      carry="cosine"),
    R("scheduler.warmup_steps", ("warmup_steps",), T, _warmup_steps, "scheduler.warmup_percent wins when both are "
      "set.", carry=10_000),
    R("scheduler.warmup_percent", ("warmup_steps",), T, _warmup_percent,
      "A percent of the schedule's steps -> warmup_steps as a fraction (1.0 % -> 0.01; below 1 transformers reads "
      "a fraction of max_steps), or a step count when scheduler.total_steps differs from max_steps."),
    R("scheduler.total_steps", (), T, _decay_end("total_steps"),
      "The schedule spans max_steps: nothing to write when it equals max_steps, otherwise no equivalent."),
    R("scheduler.decay_steps", (), T, _decay_end("decay_steps"),
      "Decay ends at max_steps: nothing to write when it equals max_steps, otherwise no equivalent."),
    R("scheduler.decay_percent", (), T, _decay_end("decay_percent"),
      "Decay ends at max_steps: nothing to write when it is 100 % of max_steps, otherwise no equivalent."),
    R("scheduler.final_lr_ratio", ("final_lr_ratio",), P, _final_lr_ratio,
      "Decay to learning_rate * final_lr_ratio (cosine or linear).", carry=0.1),
    R("scheduler.final_lr_ratio", (), G + C, note="Use lr_scheduler_type cosine_with_min_lr with "
      "lr_scheduler_kwargs {min_lr_rate: ...}."),
    R("scheduler.num_cycles", note="Ignored by the original too."),
    # --- optimizer ---
    R("optimizer.name", ("optimizer",), P, _optimizer_name, "adamw or muonclip; adam has no equivalent."),
    R("optimizer.name", ("optim",), G + C, _optimizer_name, "adamw -> optim adamw_torch; adam and muonclip have no "
      "equivalent."),
    R("optimizer.lr", ("learning_rate",), T, carry=1e-4),
    R("optimizer.weight_decay", ("weight_decay",), T, carry=0.01),
    R("optimizer.betas", ("adam_beta1", "adam_beta2"), T, _betas, "[b1, b2] -> adam_beta1, adam_beta2."),
    R("optimizer.eps", ("adam_epsilon",), T),
    R("optimizer.hparams", structural=True, note="Legacy block: its keys are read as optimizer.* keys."),
    R("optimizer.muon_config.muon_beta", ("muon_momentum",), P, _muon("muon_momentum")),
    R("optimizer.muon_config.nesterov", (), P, _must_equal(True, "torch.optim.Muon here always uses Nesterov "
      "momentum", _flag), "true is what neobert-hf does; false has no equivalent."),
    R("optimizer.muon_config.muon_decay", ("muon_weight_decay",), P, _muon("muon_weight_decay")),
    R("optimizer.muon_config.ns_steps", ("muon_ns_steps",), P, _muon("muon_ns_steps")),
    R("optimizer.muon_config.enable_clipping", ("qk_clip_threshold",), P, _enable_clipping,
      "false -> qk_clip_threshold: null (QK-clip off)."),
    R("optimizer.muon_config.clipping_threshold", ("qk_clip_threshold",), P, _qk_clip("qk_clip_threshold")),
    R("optimizer.muon_config.clipping_alpha", ("qk_clip_alpha",), P, _qk_clip("qk_clip_alpha")),
    R("optimizer.muon_config.clipping_warmup_steps", ("qk_clip_warmup_steps",), P, _qk_clip("qk_clip_warmup_steps")),
    R("optimizer.muon_config.clipping_interval", ("qk_clip_interval",), P, _qk_clip("qk_clip_interval")),
    R("optimizer.muon_config.clipping_qk_chunk_size", ("qk_clip_chunk_size",), P, _qk_clip("qk_clip_chunk_size")),
    R("optimizer.muon_config.capture_last_microbatch_only", note="QK-clip reads the attention logits of the "
      "optimizer step's microbatches as neobert-hf captures them; no option."),
    R("optimizer.muon_config.detect_anomalies", note="Not available."),
    R("optimizer.muon_config.orthogonalization", (), P, _orthogonalization,
      "newton_schulz is what neobert-hf does; polar_express has no equivalent."),
    R("optimizer.muon_config.algorithm", alias_of="optimizer.muon_config.orthogonalization"),
    R("optimizer.muon_config.polar_express", (), P, _polar_express, "false matches; true has no equivalent."),
    R("optimizer.muon_config.norm_factor", ("muon_adjust_lr",), P, _norm_factor,
      "match_rms_adamw -> match_rms_adamw; muon_reference/original -> original; neobert and spectral have no "
      "equivalent."),
    R("optimizer.muon_config.param_policy", (), P, _must_equal("hidden_2d", "Muon updates the encoder blocks' 2-D "
      "matrices only", lambda v: {"transformer_only": "hidden_2d"}.get(str(v).lower(), str(v).lower())),
      "hidden_2d is what neobert-hf does; all_2d has no equivalent."),
    R("optimizer.muon_config.clipping_layers_mapping", note="Not available (QK-clip knows NeoBERT's qkv layout)."),
    # --- data collator ---
    R("datacollator.mlm_probability", ("mlm_probability",), P, carry=0.15),
    R("datacollator.mask_all", ("mask_all",), P),
    R("datacollator.pack_sequences", ("packing",), P, carry=False),
    R("datacollator.max_length", (), P, note="Packed rows are max_seq_length tokens; the batch's token budget is "
      "tokens_per_batch."),
    R("datacollator.pad_to_multiple_of", ("pad_to_multiple_of",), P),
    # --- W&B ---
    R("wandb.enabled", ("report_to",), T, _report_to, "true -> report_to: wandb, false -> none."),
    R("wandb.name", ("run_name",), T, _run_name),
    R("wandb.project", (), T, _wandb_env("project"), "No recipe key: export WANDB_PROJECT."),
    R("wandb.entity", (), T, _wandb_env("entity"), "No recipe key: export WANDB_ENTITY."),
    R("wandb.tags", (), T, _wandb_env("tags"), "No recipe key: export WANDB_TAGS (comma-separated)."),
    R("wandb.mode", (), T, _wandb_env("mode"), "No recipe key: export WANDB_MODE."),
    R("wandb.dir", (), T, _wandb_env("dir"), "No recipe key: export WANDB_DIR."),
    R("wandb.resume", (), T, _wandb_env("resume"), "No recipe key: export WANDB_RESUME."),
    R("wandb.watch", (), T, _wandb_env("watch"), "No recipe key: export WANDB_WATCH."),
    R("wandb.log_interval", alias_of="trainer.logging_steps"),
    # --- GLUE ---
    R("glue.task_name", ("task_name",), G),
    R("glue.num_labels", ("num_labels",), G),
    R("glue.max_seq_length", ("max_seq_length",), G),
    R("glue.pretrained_model_path", (), G, note="The model's config comes with its checkpoint: give the checkpoint "
      "or run folder as model_name_or_path (glue.pretrained_checkpoint_dir)."),
    R("glue.pretrained_checkpoint_dir", ("model_name_or_path",), G, note="A run folder; `checkpoint` picks the step."),
    R("glue.pretrained_checkpoint", ("checkpoint",), G, _checkpoint_selector),
    R("glue.allow_random_weights", note="Not available: fine-tuning starts from a pretrained checkpoint."),
    R("glue.classifier_dropout", ("classifier_dropout",), G),
    R("glue.classifier_init_range", ("classifier_init_range",), G),
    R("glue.transfer_from_task", ("transfer_head",), G),
    R("glue.num_workers", ("dataloader_num_workers",), G),
    R("glue.preprocessing_num_proc", ("preprocessing_num_workers",), G),
    # --- contrastive ---
    R("contrastive.temperature", ("temperature",), C),
    R("contrastive.pooling", ("pooling",), C, _pooling, "avg -> mean; cls and max unchanged."),
    R("contrastive.loss_type", ("loss_type",), C, _contrastive_loss, "simcse -> infonce; supcon has no equivalent."),
    R("contrastive.hard_negative_weight", ("hard_negative_weight",), C, _hard_negative_weight,
      "The original follows SimCSE (the value is log w; 0 = plain InfoNCE); here it is w itself: w = exp(value)."),
    R("contrastive.pretraining_prob", ("pretraining_prob",), C,
      note="Share of unsupervised SimCSE batches (text from simcse_dataset, default: the training pairs' texts)."),
    R("contrastive.pretrained_checkpoint_dir", ("model_name_or_path",), C,
      note="A run folder (its latest checkpoint) or a checkpoint folder."),
    R("contrastive.pretrained_checkpoint", (), C, _contrastive_checkpoint,
      "`latest` matches a run folder; another step: give that checkpoint folder as model_name_or_path."),
    R("contrastive.allow_random_weights", note="Not available: training starts from a pretrained checkpoint."),
    # --- low precision (pretraining) ---
    R("torchao.enable", ("precision_backend",), P, _enabled_section("torchao", "torchao"),
      "true -> precision_backend: torchao."),
    R("torchao.recipe", ("torchao_recipe",), P, _in_section("torchao", "torchao_recipe", _torchao_recipe),
      "float8_<x> -> <x> (tensorwise, rowwise, rowwise_with_gw_hp); MX and QAT names unchanged."),
    R("torchao.filter_fqns", ("filter_fqns",), P, _in_section("torchao", "filter_fqns")),
    R("torchao.skip_first_last_linear", ("skip_first_last_linear",), P,
      _in_section("torchao", "skip_first_last_linear")),
    R("torchao.require_compile", ("require_compile",), P, _in_section("torchao", "require_compile")),
    R("torchao.auto_filter_small_kn", ("auto_filter_small_kn",), P, _in_section("torchao", "auto_filter_small_kn")),
    R("torchao.enable_fsdp_float8_all_gather", ("enable_fsdp_float8_all_gather",), P,
      _in_section("torchao", "enable_fsdp_float8_all_gather")),
    R("torchao.precompute_float8_dynamic_scale_for_fsdp", ("precompute_float8_dynamic_scale_for_fsdp",), P,
      _in_section("torchao", "precompute_float8_dynamic_scale_for_fsdp")),
    R("transformer_engine.enable", ("precision_backend",), P,
      _enabled_section("transformer_engine", "transformer_engine"), "true -> precision_backend: transformer_engine."),
    R("transformer_engine.recipe", ("te_recipe",), P, _in_section("transformer_engine", "te_recipe")),
    R("transformer_engine.fp8_format", ("fp8_format",), P, _in_section("transformer_engine", "fp8_format")),
    R("transformer_engine.filter_fqns", ("filter_fqns",), P, _in_section("transformer_engine", "filter_fqns")),
    R("transformer_engine.skip_first_last_linear", ("skip_first_last_linear",), P,
      _in_section("transformer_engine", "skip_first_last_linear")),
    R("transformer_engine.require_compile", ("require_compile",), P,
      _in_section("transformer_engine", "require_compile")),
    R("transformer_engine.disable_2d_quantization", ("disable_2d_quantization",), P,
      _in_section("transformer_engine", "disable_2d_quantization")),
    R("transformer_engine.disable_rht", ("disable_rht",), P, _in_section("transformer_engine", "disable_rht")),
    R("transformer_engine.disable_stochastic_rounding", ("disable_stochastic_rounding",), P,
      _in_section("transformer_engine", "disable_stochastic_rounding")),
    R("quartet2.enable", ("precision_backend",), P, _enabled_section("quartet2", "quartet2"),
      "true -> precision_backend: quartet2."),
    R("quartet2.recipe", (), P, _quartet_recipe, "quartet_ii is the only recipe."),
    R("quartet2.filter_fqns", ("filter_fqns",), P, _in_section("quartet2", "filter_fqns")),
    R("quartet2.skip_first_last_linear", ("skip_first_last_linear",), P,
      _in_section("quartet2", "skip_first_last_linear")),
    R("quartet2.require_compile", ("require_compile",), P, _in_section("quartet2", "require_compile")),
    R("quartet2.required_dim_multiple", ("quartet_required_dim_multiple",), P,
      _in_section("quartet2", "quartet_required_dim_multiple")),
    R("quartet2.four_over_six", ("quartet_four_over_six",), P, _in_section("quartet2", "quartet_four_over_six")),
)
del R

_PRECISION_SECTIONS = ("torchao", "transformer_engine", "quartet2")
_TASK_SECTIONS = {"glue": GLUE, "contrastive": CONTRASTIVE}


def _rules_by_key() -> dict[str, list[Rule]]:
    table: dict[str, list[Rule]] = {}
    for rule in RULES:
        table.setdefault(rule.old, []).append(rule)
    return table


def _rule_for(key: str, subcommand: str) -> Rule | None:
    """The row of `key` that applies to `subcommand`; None when the key is in the table for other subcommands only."""
    for rule in _rules_by_key().get(key, ()):
        if rule.alias_of is not None or rule.structural or subcommand in rule.where:
            return rule
    return None


def _default_reason(key: str, subcommand: str) -> str:
    section = key.split(".", 1)[0]
    owners = sorted({s for rule in _rules_by_key().get(key, ()) for s in rule.where if rule.new})
    if section in _TASK_SECTIONS or section in _PRECISION_SECTIONS:
        return f"the {section} section has no effect in `neobert-hf {subcommand}`"
    if owners:
        return f"used by `neobert-hf {', '.join(owners)}`, not by `neobert-hf {subcommand}`"
    return f"no equivalent in `neobert-hf {subcommand}`"


# ---------------------------------------------------------------------------------------------------------------------
# Reading the original format
# ---------------------------------------------------------------------------------------------------------------------


_VAR_EXACT = re.compile(r"^\$variables\.([A-Za-z0-9_.-]+)$")
_VAR_INLINE = re.compile(r"\{\$variables\.([A-Za-z0-9_.-]+)\}|\$\{variables\.([A-Za-z0-9_.-]+)\}")


def _resolve_variables(config: dict[str, Any]) -> dict[str, Any]:
    variables = config.pop("variables", None)
    if variables is None:
        return config
    if not isinstance(variables, dict):
        raise MigrationError("Top-level 'variables' must be a mapping.")

    def lookup(path: str, where: str) -> Any:
        node: Any = variables
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                raise MigrationError(f"{where}: unknown variable $variables.{path}")
            node = node[part]
        return node

    def resolve(node: Any, where: str, depth: int = 0) -> Any:
        if depth > 20:
            raise MigrationError(f"{where}: variables refer to each other in a cycle")
        if isinstance(node, dict):
            return {k: resolve(v, f"{where}.{k}" if where else str(k), depth) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v, where, depth) for v in node]
        if isinstance(node, str):
            exact = _VAR_EXACT.match(node)
            if exact:
                return resolve(lookup(exact.group(1), where), where, depth + 1)
            return _VAR_INLINE.sub(
                lambda m: str(resolve(lookup(m.group(1) or m.group(2), where), where, depth + 1)), node
            )
        return node

    return resolve(config, "")


def load_original_config(path: str) -> dict[str, Any]:
    """Read an original trainer's YAML file as that trainer did (PyYAML `safe_load`, `variables` resolved).

    Raises:
        `MigrationError`: the file is missing, not YAML, or not a mapping.
    """
    import os

    import yaml

    if not os.path.isfile(path):
        raise MigrationError(f"Config file {path!r} does not exist.")
    try:
        with open(path, encoding="utf-8") as handle:
            config = yaml.safe_load(handle) or {}
    except yaml.YAMLError as err:
        raise MigrationError(f"Config {path!r} is not valid YAML: {' '.join(str(err).split())}") from err
    except UnicodeDecodeError as err:
        raise MigrationError(f"Config {path!r} is not UTF-8 text ({err.reason} at byte {err.start}).") from err
    if not isinstance(config, dict):
        raise MigrationError(f"Config {path!r} must be a mapping of sections, got {type(config).__name__}.")
    return _resolve_variables(config)


def is_original_config(values: Any) -> bool:
    """Whether a parsed YAML mapping is in the original trainer's nested format: a section key (`model:`,
    `trainer:`, ...) holding a mapping, or a top-level key that only that format has (`task`, `use_deepspeed`, ...)."""
    if not isinstance(values, dict):
        return False
    return any(
        (key in _ORIGINAL_MARKERS and isinstance(value, dict)) or key in _ORIGINAL_TOP_LEVEL
        for key, value in values.items()
    )


def converted_path(path: str) -> str:
    """Where `neobert-hf convert-config` is told to write the recipe of `path`: `<stem>.recipe.yaml` beside it."""
    import os

    stem, _ = os.path.splitext(path)
    return f"{stem}.recipe.yaml"


def refusal_message(path: str, prog: str) -> str:
    """What `neobert-hf <subcommand> --config OLD.yaml` says about an original-format config: the exact command."""
    import shlex

    output = converted_path(path)
    return (
        f"Recipe {path!r} is a config of the original NeoBERT trainer (nested sections such as model:, trainer:, "
        f"optimizer:), not a flat recipe. Convert it first, which prints what becomes of every key: "
        f"neobert-hf convert-config {shlex.quote(path)} -o {shlex.quote(output)} ; then run: "
        f"{prog} --config {shlex.quote(output)} (see docs/migrating.md)."
    )


def _parse_override_tokens(tokens: Sequence[str]) -> list[tuple[str, str]]:
    """`--section.key value`, `--section.key=value` or `section.key=value`, as the original trainer accepted."""
    pairs: list[tuple[str, str]] = []
    index = 0
    tokens = list(tokens)
    while index < len(tokens):
        token = str(tokens[index]).strip()
        if token.startswith("--"):
            body = token[2:]
            if "=" in body:
                key, value = body.split("=", 1)
                index += 1
            else:
                if index + 1 >= len(tokens) or str(tokens[index + 1]).startswith("--"):
                    raise MigrationError(f"Override {token} has no value (use --section.key value).")
                key, value = body, str(tokens[index + 1])
                index += 2
        elif "=" in token:
            key, value = token.split("=", 1)
            index += 1
        else:
            raise MigrationError(f"Unexpected argument {token!r}: overrides are --section.key value.")
        if not key or key.startswith(".") or key.endswith("."):
            raise MigrationError(f"Override {token!r} needs a dotted key such as --trainer.max_steps.")
        pairs.append((key.strip(), value))
    return pairs


def apply_overrides(config: dict[str, Any], tokens: Sequence[str]) -> dict[str, Any]:
    """Applies dotted overrides (`--trainer.max_steps 10`) to a nested config; values are read as YAML scalars
    (`10` -> 10, `true` -> True, `[0.9, 0.95]` -> a list, `null` -> None)."""
    import yaml

    for key, raw in _parse_override_tokens(tokens):
        node = config
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise MigrationError(f"Override --{key}: {part!r} is not a section in the config.")
            node = child
        try:
            value = yaml.safe_load(raw) if raw.strip() else raw
        except yaml.YAMLError:
            value = raw
        node[parts[-1]] = value
    return config


def _flatten(config: dict[str, Any]) -> dict[str, Any]:
    """Dotted keys of the original config; the legacy `optimizer.hparams` block is read as `optimizer.*`."""
    flat: dict[str, Any] = {}
    unknown: list[str] = []
    table = _rules_by_key()

    optimizer = config.get("optimizer")
    if isinstance(optimizer, dict) and "hparams" in optimizer:
        hparams = optimizer.pop("hparams") or {}
        if not isinstance(hparams, dict):
            raise MigrationError(f"optimizer.hparams must be a mapping, got {hparams!r}.")
        for key, value in hparams.items():
            if key in optimizer and optimizer[key] != value:
                raise MigrationError(
                    f"optimizer.hparams.{key} ({value!r}) and optimizer.{key} ({optimizer[key]!r}) disagree; keep one."
                )
            optimizer.setdefault(key, value)

    def visit(node: dict[str, Any], prefix: str) -> None:
        for key, value in node.items():
            dotted = f"{prefix}{key}"
            if dotted in SECTIONS:
                if value is None:
                    continue
                if not isinstance(value, dict):
                    raise MigrationError(f"{dotted} must be a mapping (a section), got {value!r}.")
                visit(value, dotted + ".")
            elif dotted in table:
                flat[dotted] = value
            else:
                unknown.append(dotted)

    visit(config, "")
    if unknown:
        raise MigrationError(
            f"Unknown key(s) in the original config: {', '.join(sorted(unknown))}. They are not keys of the original "
            "trainer's format (see docs/migrating.md for every key); fix or remove them."
        )
    return flat


# ---------------------------------------------------------------------------------------------------------------------
# Converting
# ---------------------------------------------------------------------------------------------------------------------


@dataclass
class ReportRow:
    """What happened to one key of the input."""

    old: str
    value: Any
    outcome: str  # "mapped", "renamed", "default", "dropped", "refused"
    written: dict[str, Any] = field(default_factory=dict)
    reason: str = ""


@dataclass
class Conversion:
    """The result of [`convert_config`]: the subcommand, its flat recipe and one report row per key."""

    subcommand: str
    recipe: dict[str, Any]
    report: list[ReportRow]

    @property
    def refused(self) -> list[ReportRow]:
        return [row for row in self.report if row.outcome == "refused"]


def _resolve_alias(key: str, subcommand: str) -> tuple[str, Rule | None, Rule | None]:
    """(canonical key, the alias row or None, the canonical row for `subcommand` or None)."""
    rule = _rule_for(key, subcommand)
    alias = None
    seen = set()
    while rule is not None and rule.alias_of is not None:
        if key in seen:
            raise RuntimeError(f"alias cycle at {key}")
        seen.add(key)
        alias = alias or rule
        key = rule.canonical(subcommand) or key
        rule = _rule_for(key, subcommand)
    return key, alias, rule


def _same(a: Any, b: Any) -> bool:
    """Equal values, counting `'1e-4'` (PyYAML's string) and `1.0e-4` as one number."""
    if a == b:
        return True
    try:
        return not isinstance(a, bool) and not isinstance(b, bool) and float(a) == float(b)
    except (TypeError, ValueError):
        return False


def convert_config(config: dict[str, Any], overrides: Sequence[str] = ()) -> Conversion:
    """Converts a nested original config (as read by [`load_original_config`]) into a flat recipe.

    Args:
        config: the nested mapping; dotted `overrides` are applied to it first.
        overrides: `--section.key value` tokens, as the original trainer took them.

    Returns:
        [`Conversion`]: values are still as YAML gave them; [`coerce_to_fields`] types them by their target fields.

    Raises:
        `MigrationError`: an unknown key, an unknown task, two keys that set one value differently.
    """
    import copy

    config = apply_overrides(copy.deepcopy(config), overrides)
    flat = _flatten(config)
    task = str(flat.pop("task", None) or "pretraining").strip().lower()
    if task not in SUBCOMMAND_OF_TASK:
        raise MigrationError(f"task must be one of {', '.join(SUBCOMMAND_OF_TASK)}, got {task!r}.")
    subcommand = SUBCOMMAND_OF_TASK[task]

    # Legacy aliases: read as their canonical key (two spellings with different values are an error).
    canonical_values: dict[str, Any] = {}
    spelled: dict[str, str] = {}
    for key, value in flat.items():
        canonical, _, _ = _resolve_alias(key, subcommand)
        if canonical in canonical_values and value is not None and canonical_values[canonical] is not None:
            if not _same(canonical_values[canonical], value):
                raise MigrationError(
                    f"{spelled[canonical]} ({canonical_values[canonical]!r}) and {key} ({value!r}) set the same "
                    "value differently; keep one."
                )
        if canonical not in canonical_values or canonical_values[canonical] is None:
            canonical_values[canonical] = value
            spelled[canonical] = key
    ctx = Context(values=canonical_values, subcommand=subcommand)

    recipe: dict[str, Any] = {}
    source_of: dict[str, str] = {}
    report: list[ReportRow] = []

    def write(old: str, written: dict[str, Any]) -> None:
        for new_key, new_value in written.items():
            if new_key in recipe and not _same(recipe[new_key], new_value):
                raise MigrationError(
                    f"{source_of[new_key]} and {old} both set {new_key} ({recipe[new_key]!r} vs {new_value!r}); "
                    "keep one."
                )
            recipe[new_key] = new_value
            source_of[new_key] = old

    def run(rule: Rule, old: str, value: Any, alias: Rule | None) -> ReportRow:
        convert = (alias.convert if alias is not None and alias.convert is not None else None) or rule.convert
        if value is None and convert not in _NULL_AWARE:
            return ReportRow(old, value, "dropped", reason="null: neobert-hf's default applies")
        try:
            if convert is None:
                written = {rule.new[0]: value}
            else:
                written = convert(value, ctx)
        except NoEquivalent as reason:
            return ReportRow(old, value, "refused", reason=str(reason))
        except MigrationError as err:
            raise MigrationError(f"{old}: {err}") from None
        stray = set(written) - set(rule.new)
        if stray:
            raise RuntimeError(f"converter of {rule.old} wrote {stray}, not declared in its row")
        if not written:
            return ReportRow(old, value, "dropped", reason=rule.note or "matches neobert-hf's behaviour")
        write(old, written)
        outcome = "mapped" if (rule.status == "mapped" and alias is None) else "renamed"
        return ReportRow(old, value, outcome, written)

    for key, value in flat.items():
        canonical, alias, rule = _resolve_alias(key, subcommand)
        if alias is not None and spelled.get(canonical) != key:
            if value is None:
                report.append(ReportRow(key, value, "dropped", reason=f"null; {spelled[canonical]} gives the value"))
            else:
                report.append(ReportRow(key, value, "dropped", reason=f"same value as {spelled[canonical]}"))
            continue
        if alias is not None and value is None:
            report.append(ReportRow(key, value, "dropped", reason=f"null (legacy alias of {canonical}): no value"))
            continue
        if rule is None:
            report.append(ReportRow(key, value, "refused", reason=_default_reason(canonical, subcommand)))
            continue
        if not rule.new and rule.convert is None:
            report.append(ReportRow(key, value, "refused", reason=rule.note))
            continue
        report.append(run(rule, key, value, alias))

    if subcommand == PRETRAIN:
        # Absent keys meant the original trainer's defaults; write those that differ from neobert-hf's.
        for rule in RULES:
            if rule.carry is ABSENT or subcommand not in rule.where or rule.old in canonical_values:
                continue
            row = run(rule, rule.old, rule.carry, None)
            if row.outcome in ("mapped", "renamed"):
                report.append(ReportRow(rule.old, rule.carry, "default", row.written,
                                        "absent: the original's default"))
    return Conversion(subcommand, recipe, report)


# ---------------------------------------------------------------------------------------------------------------------
# Types of the target fields
# ---------------------------------------------------------------------------------------------------------------------


def subcommand_parser(subcommand: str):
    """The `NeoBERTArgumentParser` of a subcommand, built by its CLI module (imports transformers)."""
    import importlib

    from .cli.main import SUBCOMMANDS as CLI

    return importlib.import_module(CLI[subcommand][0]).build_argument_parser()


def subcommand_fields(subcommand: str) -> set[str]:
    """Every recipe key of a subcommand, read from its parser's dataclasses."""
    return set(subcommand_parser(subcommand).field_names())


def coerce_to_fields(recipe: dict[str, Any], subcommand: str, parser=None) -> dict[str, Any]:
    """Types each value by its target field, with the subcommand's own argparse conversions: `'1e-4'` becomes
    1e-4 for a float field, `'16'` 16 for an int field (`1e6` too), `'true'` True for a bool.

    Raises:
        `MigrationError`: a value that its field does not accept (naming key and value).
    """
    parser = parser or subcommand_parser(subcommand)
    actions = {action.dest: action for action in parser._actions}
    missing = sorted(set(recipe) - set(actions))
    if missing:
        raise RuntimeError(f"recipe keys {missing} are not fields of `neobert-hf {subcommand}`")
    typed: dict[str, Any] = {}
    for key, value in recipe.items():
        action = actions[key]
        typed[key] = _coerce(key, value, action)
    return typed


def _coerce(key: str, value: Any, action) -> Any:
    if value is None:
        return None
    if action.nargs in ("+", "*"):
        items = value if isinstance(value, (list, tuple)) else [value]
        return [_coerce_one(key, item, action) for item in items]
    if isinstance(value, (list, tuple, dict)):
        if action.type is None or action.type is str:
            import json

            return json.dumps(value)
        raise MigrationError(f"{key}: expected one value, got {value!r}")
    return _coerce_one(key, value, action)


def _coerce_one(key: str, value: Any, action) -> Any:
    convert = action.type
    text = str(value).lower() if isinstance(value, bool) else str(value)
    name = getattr(convert, "__name__", "")
    try:
        if convert is int or name == "int":
            number = float(text)
            if not number.is_integer():
                raise ValueError
            result: Any = int(number)
        elif convert is float or name == "float":
            result = value if isinstance(value, int) and not isinstance(value, bool) else float(text)
        elif convert is None:
            result = value
        else:
            result = convert(text)
    except (TypeError, ValueError) as err:
        raise MigrationError(f"{key}: {value!r} is not a valid value ({err or 'wrong type'}).") from None
    if action.choices is not None and result not in action.choices:
        shown = ", ".join(str(getattr(c, "value", c)) for c in action.choices if c is not None)
        raise MigrationError(f"{key}: {value!r} is not one of {shown}.")
    result = getattr(result, "value", result)  # enums (save_strategy, ...) are written by value
    return result


# ---------------------------------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------------------------------


def _show(value: Any) -> str:
    if isinstance(value, str):
        return value if value else "''"
    if isinstance(value, bool) or value is None:
        return str(value).lower() if value is not None else "null"
    return str(value)


def render_report(conversion: Conversion) -> str:
    """The table printed by `neobert-hf convert-config`: every key of the input and what became of it."""
    rows = [("original key", "value", "outcome", "neobert-hf recipe / reason")]
    for row in conversion.report:
        written = ", ".join(f"{k}: {_show(v)}" for k, v in row.written.items())
        detail = written if row.outcome in ("mapped", "renamed", "default") else row.reason
        if row.outcome == "default":
            detail = f"{written} ({row.reason})"
        rows.append((row.old, _show(row.value) if row.outcome != "default" else "(absent)", row.outcome, detail))
    widths = [min(max(len(r[i]) for r in rows), limit) for i, limit in zip(range(3), (44, 24, 8))]
    lines = []
    for index, (old, value, outcome, detail) in enumerate(rows):
        value = value if len(value) <= 24 else value[:21] + "..."
        lines.append(f"{old:<{widths[0]}}  {value:<{widths[1]}}  {outcome:<{widths[2]}}  {detail}")
        if index == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 26)
    counts = {o: sum(r.outcome == o for r in conversion.report) for o in ("mapped", "renamed", "default", "dropped",
                                                                           "refused")}  # fmt: skip
    lines.append(
        f"{len(conversion.report)} keys for `neobert-hf {conversion.subcommand}`: "
        + ", ".join(f"{n} {o}" for o, n in counts.items())
        + " (refused: no equivalent, not in the recipe; dropped: nothing to write)"
    )
    return "\n".join(lines)


def _where(rule: Rule) -> str:
    return "all" if set(rule.where) == set(SUBCOMMANDS) else ", ".join(rule.where)


def counts() -> dict[str, int]:
    """Rows of [`RULES`] by status (a key with rows for several subcommands counts once per row)."""
    result = {"mapped": 0, "renamed": 0, "refused": 0, "structural": 0}
    for rule in RULES:
        result[rule.status] += 1
    return result


_INTRO = """\
# Coming from the original NeoBERT trainer

This page is for users of the original NeoBERT training code (`scripts/pretraining/pretrain.py config.yaml`,
`scripts/contrastive/finetune.py`, its GLUE and MTEB scripts). One command turns one of its configs into a
`neobert-hf` recipe:

```bash
neobert-hf convert-config old.yaml -o recipe.yaml                      # prints what became of every key
neobert-hf convert-config old.yaml -o recipe.yaml --trainer.max_steps 1000   # dotted overrides, as before
neobert-hf pretrain --config recipe.yaml                               # or glue / contrastive / mteb
```

What changes:

- **Flat recipes, one per subcommand.** The original file is nested (`model:`, `trainer:`, `optimizer:`, ...)
  and its `task:` picks the script. A `neobert-hf` recipe is flat: every key is a field of the subcommand's
  argument dataclasses, parsed by transformers' `HfArgumentParser` (`neobert-hf pretrain --help` lists them);
  command-line flags win over the recipe (`--max_steps 10`, not `--trainer.max_steps 10`). `task: pretraining`
  becomes `neobert-hf pretrain`, `glue`, `contrastive` and `mteb` keep their names. Unknown keys are an error,
  as they were.
- **The training loop is transformers' `Trainer`.** Optimizer, schedule, precision, logging and checkpoint keys
  are the usual `TrainingArguments` (`learning_rate`, `warmup_steps`, `bf16`, `max_grad_norm`, `report_to`,
  `save_total_limit`, ...). Distributed training (DDP, FSDP2, DeepSpeed) is chosen by
  `accelerate launch --config_file` (see [distributed.md](distributed.md)), not by `use_deepspeed`.
- **One checkpoint tree.** `<output_dir>/checkpoints/<step>/` holds the model (`config.json`,
  `model.safetensors`), its tokenizer and the training state together; `resume_from_checkpoint: latest`
  continues from the newest (streamed data too). The original's `model_checkpoints/` and `checkpoints/` pair
  is gone (see [checkpoints.md](checkpoints.md)).
- **Absent keys.** In the original, a key you did not write took that trainer's default. For pretraining the
  converter writes those defaults explicitly where `neobert-hf`'s differ (rows marked *carried* below: e.g.
  `learning_rate: 1e-4`, `mlm_probability: 0.15`, `packing: false`, `max_grad_norm: 0.0`), so the converted run
  trains like the original one. GLUE, contrastive and MTEB configs convert only the keys they contain.
- **Types.** PyYAML reads `lr: 1e-4` as a string; the converter types every value by its target field.

`neobert-hf pretrain|glue|contrastive|mteb --config old.yaml` refuses an original-format file and prints the
`convert-config` command to run.

## Every key

*mapped*: same name and meaning; *renamed*: another name or unit (the note says which); *refused*: no
equivalent, with the reason (the converter prints it and leaves the key out); *structural*: read while loading.
A key can have one row per group of subcommands; in a subcommand that none of its rows names, the key is refused
as belonging to another subcommand (e.g. `datacollator.mlm_probability` in a GLUE config). Legacy keys of the original (its "Legacy Key Mapping") are
converted exactly as the key they stand for.
"""


def render_markdown() -> str:
    """`docs/migrating.md`: the introduction and the key-by-key table, generated from [`RULES`]."""
    lines = [_INTRO]
    c = counts()
    lines.append(
        f"{len(RULES)} rows over {len(_rules_by_key())} keys: {c['mapped']} mapped, {c['renamed']} renamed, "
        f"{c['refused']} refused, {c['structural']} structural.\n"
    )
    section = None
    for rule in RULES:
        top = rule.old.split(".", 1)[0] if "." in rule.old else "(top level)"
        if top != section:
            section = top
            lines.append(f"\n### {section}\n")
            lines.append("| original key | subcommands | status | neobert-hf key | note |")
            lines.append("| --- | --- | --- | --- | --- |")
        if rule.alias_of is not None:
            target = f"`{rule.alias_of}`" if isinstance(rule.alias_of, str) else "; ".join(
                f"`{v}` ({'other tasks' if k == '*' else k})" for k, v in rule.alias_of.items()
            )
            new, note = "", f"Legacy alias of {target}. {rule.note}".strip()
        else:
            new = ", ".join(f"`{n}`" for n in rule.new)
            note = rule.note
        if rule.carry is not ABSENT:
            note = f"{note} *Carried* when absent (pretraining): `{_show(rule.carry)}`.".strip()
        where = "" if rule.structural or rule.alias_of is not None else _where(rule)
        note = note.replace("|", "\\|")
        lines.append(f"| `{rule.old}` | {where} | {rule.status} | {new} | {note} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m neobert_hf.migration", description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", action="store_true", help="Print docs/migrating.md.")
    args = parser.parse_args(argv)
    if args.markdown:
        sys.stdout.write(render_markdown())
        return 0
    parser.print_help()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Model cards for NeoBERT folders, rendered from the template shipped in `neobert_hf/model_cards/`.

The facts come from the folder itself, never from memory of the run: `config.json` (architecture, labels), the
safetensors header (parameter count), `trainer_state.json` (steps, tokens seen, logged metrics), a LoRA adapter
folder when there is one and, when present, a JSON record of the run's arguments (`run_args.json` or
`training_args.json`, in the folder or in the run's output folder two levels up from `checkpoints/<step>/`), which
names the data. A Trainer writing a checkpoint passes its state and arguments directly (the state file is written
last). Anything not recorded is said to be unknown rather than guessed. This is the only card renderer: exports,
pretraining, contrastive and GLUE checkpoints all use it.

A card never shows a local absolute path ([`display_path`]): a path under the current folder is shown relative to
it, any other by its name (`<run>/checkpoints/<step>` for a checkpoint).

Example:

```python
>>> from neobert_hf.model_card import render_model_card
>>> card = render_model_card("out/checkpoints/1000")  # doctest: +SKIP
>>> card = render_model_card({"model_name": "tiny", "task": "mlm", "config": {"hidden_size": 64}})
>>> card.startswith("---")
True
```
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import json
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any, Literal


__all__ = [
    "ARCHITECTURE_TO_TASK",
    "RUN_ARGS_FILES",
    "TASKS",
    "ModelCardFacts",
    "Task",
    "TaskInfo",
    "collect_facts",
    "count_parameters",
    "display_path",
    "render_model_card",
    "template_path",
    "write_model_card",
]

Task = Literal["mlm", "base", "sequence-classification", "token-classification", "question-answering"]

#: JSON records of the run's arguments that [`collect_facts`] reads, in this order (first found wins per key).
RUN_ARGS_FILES = ("run_args.json", "training_args.json")

TEMPLATE_PACKAGE = "neobert_hf"
TEMPLATE_DIR = "model_cards"
DEFAULT_TEMPLATE = "neobert.md"

NEOBERT_PAPER = "https://arxiv.org/abs/2502.19587"


@dataclass(frozen=True)
class TaskInfo:
    """How one task is named, loaded and described."""

    class_name: str
    auto_class: str
    pipeline_tag: str
    intended_use: str


TASKS: dict[str, TaskInfo] = {
    "mlm": TaskInfo(
        "NeoBERTForMaskedLM",
        "AutoModelForMaskedLM",
        "fill-mask",
        "A general-purpose encoder pretrained with masked language modelling. Use it to fill `[MASK]` tokens, "
        "as a starting point for fine-tuning (classification, token classification, retrieval and sentence "
        "embeddings), or to score text by pseudo-perplexity (`neobert-hf pppl`).",
    ),
    "base": TaskInfo(
        "NeoBERTModel",
        "AutoModel",
        "feature-extraction",
        "The NeoBERT encoder without a task head: it returns contextual token representations, to be pooled into "
        "sentence embeddings or fine-tuned with a head of your own.",
    ),
    "sequence-classification": TaskInfo(
        "NeoBERTForSequenceClassification",
        "AutoModelForSequenceClassification",
        "text-classification",
        "A NeoBERT encoder with a sequence-classification head, for the labels it was fine-tuned on.",
    ),
    "token-classification": TaskInfo(
        "NeoBERTForTokenClassification",
        "AutoModelForTokenClassification",
        "token-classification",
        "A NeoBERT encoder with a token-classification head, for the labels it was fine-tuned on.",
    ),
    "question-answering": TaskInfo(
        "NeoBERTForQuestionAnswering",
        "AutoModelForQuestionAnswering",
        "question-answering",
        "A NeoBERT encoder with an extractive question-answering head (answer span start and end).",
    ),
}

ARCHITECTURE_TO_TASK = {info.class_name: task for task, info in TASKS.items()}

# (trainer_state log key, name shown in the card), shown first and in this order; the last logged value of each
# metric is reported. Any other numeric `eval_*` key (a fine-tuning task's accuracy, F1, ...) follows, sorted, with
# the train loss last.
_METRICS = (
    ("eval_loss", "eval loss"),
    ("eval_perplexity", "eval perplexity"),
    ("eval_mlm_accuracy", "eval MLM accuracy"),
)
_TRAIN_LOSS = ("loss", "train loss")
# Logged `eval_*` keys that are timings or counters, not metrics.
_NOT_METRICS = ("runtime", "_time", "per_second", "epoch", "step", "steps")


def _metric_label(key: str) -> str | None:
    """The name a logged key is shown under, or `None` when it is not a metric of the card."""
    known = dict((*_METRICS, _TRAIN_LOSS))
    if key in known:
        return known[key]
    if key.startswith("eval_") and not key.endswith(_NOT_METRICS):
        return "eval " + key[len("eval_") :].replace("_", " ")
    return None

_LICENSE_TEXT = {
    "apache-2.0": "Apache License 2.0.",
    "mit": "MIT License.",
}


@dataclass
class ModelCardFacts:
    """What a model card says about one model folder. Every field is optional; unknown facts are left out of the
    card or reported as not recorded.

    Args:
        model_name: title of the card (defaults to the folder name).
        task: one of [`TASKS`]; picks the pipeline tag, the Auto class and the usage snippet.
        model_id: what the snippets pass to `from_pretrained` (a Hub repo id or a path).
        config: the `config.json` content.
        num_parameters: parameter count (stored tensors; a tied weight counts once).
        dataset: the training data (a Hub id, a local path or files).
        global_step, max_steps, epoch, tokens_seen, train_batch_size: from `trainer_state.json`.
        hyperparameters: selected training arguments shown in the card (learning rate, schedule, ...).
        metrics: `{log key: (value, step)}`, the last logged value of each metric (`loss` and `eval_*` keys).
        base_model: the model this one was trained from (a Hub id), if any.
        license: licence identifier for the Hub metadata (`apache-2.0` by default).
        language: language code(s) for the Hub metadata.
        sentence_transformers: `{"pooling": ..., "normalize": ...}` when the folder is a SentenceTransformer.
        finetuned_on: what the model was fine-tuned on (e.g. `"GLUE MRPC"`; defaults to the config's
            `finetuning_task`).
        adapter: the subfolder holding the LoRA adapter that is merged into these weights, if any.
        checkpoint: the folder is a training checkpoint (it also holds optimizer and trainer state).
        tags: extra Hub tags.
    """

    model_name: str = "NeoBERT"
    task: Task = "mlm"
    model_id: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    num_parameters: int | None = None
    dataset: str | None = None
    global_step: int | None = None
    max_steps: int | None = None
    epoch: float | None = None
    tokens_seen: int | None = None
    train_batch_size: int | None = None
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, tuple[float, int | None]] = field(default_factory=dict)
    base_model: str | None = None
    license: str | None = "apache-2.0"
    language: str | list[str] | None = None
    sentence_transformers: dict[str, Any] | None = None
    finetuned_on: str | None = None
    adapter: str | None = None
    checkpoint: bool = False
    tags: list[str] = field(default_factory=list)

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"Unknown task {self.task!r} for a model card; expected one of {sorted(TASKS)}.")


def template_path(name: str = DEFAULT_TEMPLATE):
    """The installed template `neobert_hf/model_cards/<name>` (an `importlib.resources` traversable).

    Raises:
        `FileNotFoundError`: when the package was installed without its templates.
    """
    path = importlib.resources.files(TEMPLATE_PACKAGE).joinpath(TEMPLATE_DIR, name)
    if not path.is_file():
        raise FileNotFoundError(
            f"Model-card template {TEMPLATE_DIR}/{name} is not installed with neobert_hf; reinstall the package "
            "(the templates are package data)."
        )
    return path


# ---------------------------------------------------------------------------------------------------------------------
# Facts from a folder
# ---------------------------------------------------------------------------------------------------------------------


def _read_json(path: str) -> dict[str, Any] | None:
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as handle:
        value = json.load(handle)
    return value if isinstance(value, dict) else None


def _safetensors_numel(path: str) -> dict[str, int]:
    """Tensor name -> element count, read from the safetensors header only (no tensor is loaded)."""
    from safetensors import safe_open

    with safe_open(path, framework="pt") as handle:
        return {name: math.prod(handle.get_slice(name).get_shape()) for name in handle.keys()}


def count_parameters(folder: str | os.PathLike) -> int | None:
    """Number of stored parameters in `model.safetensors` (or its shards); `None` when the folder has no weights."""
    folder = os.fspath(folder)
    single = os.path.join(folder, "model.safetensors")
    index = _read_json(os.path.join(folder, "model.safetensors.index.json"))
    if os.path.isfile(single):
        files = [single]
    elif index is not None:
        files = [os.path.join(folder, name) for name in sorted(set(index.get("weight_map", {}).values()))]
    else:
        return None
    total = 0
    for path in files:
        total += sum(_safetensors_numel(path).values())
    return total


def _run_args(folder: str) -> dict[str, Any]:
    """Merged JSON records of the run's arguments: the folder's own first, then the run folder's
    (`<output_dir>/` for `<output_dir>/checkpoints/<step>/`)."""
    places = [folder]
    parent = os.path.dirname(os.path.abspath(folder))
    if os.path.basename(parent) == "checkpoints":
        places.append(os.path.dirname(parent))
    merged: dict[str, Any] = {}
    for place in places:
        for name in RUN_ARGS_FILES:
            values = _read_json(os.path.join(place, name)) or {}
            for key, value in values.items():
                merged.setdefault(key, value)
    return merged


def _dataset_from_args(args: dict[str, Any]) -> str | None:
    # Local files replace a Hub dataset (GLUE's dataset_name has a default even when files are given).
    files = args.get("data_files") or args.get("train_file")
    if files:
        return ", ".join(map(str, files)) if isinstance(files, (list, tuple)) else str(files)
    name = args.get("dataset_name") or args.get("dataset")
    if name:
        config = args.get("dataset_config_name") or args.get("task_name")
        return f"{name} ({config})" if config else str(name)
    return None


def _hub_dataset(dataset: str | None) -> str | None:
    """The Hub id of a dataset fact (`"nyu-mll/glue (mrpc)"` -> `"nyu-mll/glue"`), or `None` for local data."""
    name = dataset.split(" (")[0] if dataset else None
    return name if _looks_like_hub_id(name) else None


def _adapter_dir(folder: str) -> str | None:
    """The subfolder of `folder` that holds a PEFT adapter (`adapter_config.json`), if any."""
    for name in sorted(os.listdir(folder)):
        if os.path.isfile(os.path.join(folder, name, "adapter_config.json")):
            return name
    return None


def _looks_like_hub_id(value: Any) -> bool:
    return isinstance(value, str) and value.count("/") == 1 and not os.path.exists(value) and " " not in value


_HYPERPARAMETERS = (
    ("learning_rate", "learning rate"),
    ("lr_scheduler_type", "schedule"),
    ("warmup_steps", "warmup steps"),
    ("weight_decay", "weight decay"),
    ("optimizer", "optimizer"),
    ("per_device_train_batch_size", "batch per device"),
    ("gradient_accumulation_steps", "gradient accumulation"),
    ("max_seq_length", "max sequence length"),
    ("mlm_probability", "masking rate"),
    ("seed", "seed"),
)


def collect_facts(
    folder: str | os.PathLike,
    *,
    trainer_state: dict[str, Any] | None = None,
    run_args: dict[str, Any] | None = None,
    **overrides: Any,
) -> ModelCardFacts:
    """Read the facts of a model or checkpoint folder.

    Args:
        folder (`str` or `os.PathLike`):
            A `checkpoints/<step>/` folder (or the `.tmp-*` folder a Trainer is writing it in) or an exported model
            folder (it must hold `config.json`).
        trainer_state (`dict`, *optional*):
            The Trainer state (`dataclasses.asdict(trainer.state)`), used instead of `trainer_state.json`; a folder
            with a trainer state is a checkpoint.
        run_args (`dict`, *optional*):
            The run's arguments (`training_args.to_dict()`); they come before the JSON records found on disk.
        overrides:
            Fields of [`ModelCardFacts`] that replace what was read (`model_name`, `model_id`, `dataset`,
            `license`, `base_model`, `task`, `num_parameters`, `sentence_transformers`, ...).

    Returns:
        [`ModelCardFacts`].

    Raises:
        `FileNotFoundError`: when the folder has no `config.json`.
    """
    folder = os.fspath(folder)
    unknown = set(overrides) - {f.name for f in dataclasses.fields(ModelCardFacts)}
    if unknown:
        raise TypeError(f"Unknown model-card fact(s): {sorted(unknown)}.")
    config = _read_json(os.path.join(folder, "config.json"))
    if config is None:
        raise FileNotFoundError(f"{folder} has no config.json: it is not a model folder.")
    facts: dict[str, Any] = {"config": config}
    state = trainer_state if trainer_state is not None else _read_json(os.path.join(folder, "trainer_state.json"))
    name = os.path.basename(os.path.normpath(os.path.abspath(folder)))
    parent = os.path.dirname(os.path.abspath(folder))
    if os.path.basename(parent) == "checkpoints":  # out/checkpoints/1000 -> "out (step 1000)"
        step = state.get("global_step") if state is not None and state.get("global_step") is not None else name
        name = f"{os.path.basename(os.path.dirname(parent))} (step {step})"
    facts["model_name"] = name
    architectures = config.get("architectures") or []
    if architectures and architectures[0] in ARCHITECTURE_TO_TASK:
        facts["task"] = ARCHITECTURE_TO_TASK[architectures[0]]
    facts["num_parameters"] = count_parameters(folder)
    facts["finetuned_on"] = config.get("finetuning_task") or None
    facts["adapter"] = _adapter_dir(folder)

    if state is not None:
        facts["global_step"] = state.get("global_step")
        facts["max_steps"] = state.get("max_steps")
        facts["epoch"] = state.get("epoch")
        facts["tokens_seen"] = state.get("num_input_tokens_seen") or None
        facts["train_batch_size"] = state.get("train_batch_size")
        metrics = {}
        for entry in state.get("log_history", []):
            for key, value in entry.items():
                if _metric_label(key) and isinstance(value, (int, float)) and not isinstance(value, bool):
                    metrics[key] = (float(value), entry.get("step"))
        facts["metrics"] = metrics
    facts["checkpoint"] = trainer_state is not None or any(
        os.path.exists(os.path.join(folder, n)) for n in ("optimizer.pt", "scheduler.pt", "trainer_state.json")
    )

    args = dict(run_args or {})
    for key, value in _run_args(folder).items():
        args.setdefault(key, value)
    facts["dataset"] = _dataset_from_args(args)
    facts["hyperparameters"] = {
        label: args[key] for key, label in _HYPERPARAMETERS if args.get(key) not in (None, "", [])
    }
    base = args.get("base_model") or args.get("model_name_or_path")
    if _looks_like_hub_id(base):
        facts["base_model"] = base
    elif base:  # a local folder: shown, but not Hub metadata
        facts["hyperparameters"]["initialised from"] = str(base)
    facts.update(overrides)
    return ModelCardFacts(**facts)


# ---------------------------------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------------------------------


def _format_number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.4g}"


def _human_count(value: int) -> str:
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value:,} ({value / scale:.3g}{suffix})"
    return f"{value:,}"


def _architecture_rows(facts: ModelCardFacts) -> dict[str, str]:
    config = facts.config
    rows: dict[str, str] = {}
    if facts.num_parameters is not None:
        rows["parameters"] = _human_count(facts.num_parameters)
    layers = config.get("num_hidden_layers")
    if layers is not None:
        rows["layers"] = str(layers)
    hidden = config.get("hidden_size")
    heads = config.get("num_attention_heads")
    if hidden is not None:
        rows["hidden size"] = str(hidden)
    if heads is not None:
        rows["attention heads"] = f"{heads}" + (f" (head dim {hidden // heads})" if hidden else "")
    act = str(config.get("hidden_act", "swiglu")).lower()
    intermediate = config.get("intermediate_size")
    if intermediate is not None:
        if act == "swiglu":
            width = 8 * math.ceil(int(2 * intermediate / 3) / 8)
            rows["feed-forward"] = f"SwiGLU, {width} (nominal intermediate size {intermediate})"
        else:
            rows["feed-forward"] = f"{act.upper()}, {intermediate}"
    if config.get("vocab_size") is not None:
        rows["vocabulary"] = f"{config['vocab_size']:,}"
    positions = config.get("max_position_embeddings", config.get("max_length"))
    if positions is not None:
        rows["context"] = f"{positions:,} tokens"
    rows["positions"] = "rotary (RoPE)" if config.get("rope", True) else "learned absolute"
    rows["normalisation"] = "RMSNorm (pre-norm)" if config.get("rms_norm", True) else "LayerNorm (pre-norm)"
    dtype = config.get("dtype") or config.get("torch_dtype")
    if dtype:
        rows["weights dtype"] = str(dtype)
    if facts.task in ("sequence-classification", "token-classification"):
        if config.get("problem_type") == "regression":
            rows["output"] = "one score (regression)"
        elif config.get("id2label"):
            labels = sorted(config["id2label"].items(), key=lambda item: int(item[0]))
            rows["labels"] = ", ".join(f"{i} = {name}" for i, name in labels)
    if facts.sentence_transformers:
        st = facts.sentence_transformers
        rows["sentence embedding"] = f"{st.get('pooling', 'mean')} pooling" + (
            ", normalised" if st.get("normalize") else ""
        )
    return rows


def _training_rows(facts: ModelCardFacts) -> dict[str, str]:
    rows: dict[str, str] = {}
    if facts.global_step is None and not facts.hyperparameters and facts.dataset is None:
        return rows
    rows["data"] = facts.dataset or "not recorded with the checkpoint"
    if facts.global_step is not None:
        steps = f"{facts.global_step:,}"
        if facts.max_steps and facts.max_steps > 0:
            steps += f" of {facts.max_steps:,}"
        rows["optimizer steps"] = steps
    if facts.epoch is not None:
        rows["epochs"] = f"{facts.epoch:.3g}"
    if facts.tokens_seen:
        rows["tokens seen"] = _human_count(facts.tokens_seen)
    elif facts.global_step is not None:
        rows["tokens seen"] = "not recorded (train with include_num_input_tokens_seen to count them)"
    if facts.train_batch_size and "batch per device" not in facts.hyperparameters:
        rows["batch per device"] = str(facts.train_batch_size)
    for label, value in facts.hyperparameters.items():
        rows[label] = _format_number(value)
    if facts.base_model:
        rows["initialised from"] = facts.base_model
    return rows


def _metric_rows(facts: ModelCardFacts) -> list[dict[str, str]]:
    known = [key for key, _ in _METRICS]
    others = sorted(key for key in facts.metrics if key not in known and key != _TRAIN_LOSS[0])
    rows = []
    for key in [*known, *others, _TRAIN_LOSS[0]]:
        if key in facts.metrics and _metric_label(key):
            value, step = facts.metrics[key]
            rows.append(
                {"name": _metric_label(key), "value": f"{value:.4f}", "step": "" if step is None else str(step)}
            )
    return rows


# An absolute POSIX path inside a fact: starts a word with "/" (not the "/" of "org/name" or of "https://").
_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/~-])/[^\s,;()\[\]{}<>\"'`|]+")


def display_path(path: str) -> str:
    """How a card shows a local path: as given when relative, relative to the current folder when under it, else by
    its name (the last component; `<run>/checkpoints/<step>` for a checkpoint folder). Never an absolute path."""
    if not os.path.isabs(path):
        return path
    path = os.path.normpath(path)
    cwd = os.path.abspath(os.getcwd())
    if path.startswith(cwd + os.sep):
        return os.path.relpath(path, cwd)
    parts = [p for p in path.split(os.sep) if p]
    if len(parts) >= 3 and parts[-2] == "checkpoints":
        return "/".join(parts[-3:])
    return parts[-1] if parts else path


# The next space-separated piece of a path that holds spaces ("/data/my corpus/train.jsonl").
_ONE_PATH = re.compile(r"^/[^\n,;()\[\]{}<>\"'`|]*$")
_PATH_PIECE = re.compile(r" +[^\s,;()\[\]{}<>\"'`|]+")


def _replace_paths(text: str) -> str:
    """`text` with its absolute paths shown by [`display_path`]. A string that is one path (nothing but the path,
    no list separator) is one path, spaces included; inside longer text a path runs on over a space as long as the
    longer path exists."""
    if _ONE_PATH.match(text):
        return display_path(text)
    out, position = [], 0
    for match in _ABSOLUTE_PATH.finditer(text):
        if match.start() < position:
            continue
        end = match.end()
        while (piece := _PATH_PIECE.match(text, end)) is not None and os.path.exists(text[match.start() : piece.end()]):
            end = piece.end()
        out += [text[position : match.start()], display_path(text[match.start() : end])]
        position = end
    return "".join(out) + text[position:]


def _without_local_paths(value: Any) -> Any:
    """`value` with every absolute path inside its strings replaced by [`display_path`] (dicts and lists too)."""
    if isinstance(value, str):
        return _replace_paths(value)
    if isinstance(value, dict):
        return {k: _without_local_paths(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_without_local_paths(v) for v in value)
    return value


def _card_data(facts: ModelCardFacts):
    from huggingface_hub import ModelCardData

    info = TASKS[facts.task]
    tags = ["neobert", "neobert-hf", info.pipeline_tag]
    pipeline_tag = info.pipeline_tag
    if facts.sentence_transformers:
        tags += ["sentence-transformers", "sentence-similarity"]
        pipeline_tag = "sentence-similarity"
    for tag in facts.tags:
        if tag not in tags:
            tags.append(tag)
    datasets = [_hub_dataset(facts.dataset)] if _hub_dataset(facts.dataset) else None
    return ModelCardData(
        library_name="transformers",
        pipeline_tag=pipeline_tag,
        tags=tags,
        license=facts.license,
        language=facts.language,
        base_model=facts.base_model,
        datasets=datasets,
        model_name=facts.model_name,
    )


def _package_version() -> str:
    try:
        from importlib.metadata import version

        return version("neobert-hf")
    except Exception:  # noqa: BLE001 - the version is decoration only (a source tree that is not installed)
        return "unknown"


def render_model_card(
    folder_or_facts: str | os.PathLike | ModelCardFacts | dict[str, Any],
    template: str = DEFAULT_TEMPLATE,
    **overrides: Any,
) -> str:
    """Render the model card of a folder (or of facts gathered elsewhere) from the packaged template.

    Args:
        folder_or_facts (`str`, `os.PathLike`, [`ModelCardFacts`] or `dict`):
            A model or checkpoint folder (read with [`collect_facts`]), or the facts themselves.
        template (`str`, *optional*, defaults to `"neobert.md"`):
            File name of a template in `neobert_hf/model_cards/`.
        overrides:
            Fields of [`ModelCardFacts`] that replace what was read.

    Returns:
        `str`: the card, YAML front matter (`library_name: transformers`, `pipeline_tag`, `tags`, `license`,
        `base_model` when known) followed by Markdown.
    """
    from huggingface_hub import ModelCard

    if isinstance(folder_or_facts, ModelCardFacts):
        facts = dataclasses.replace(folder_or_facts, **overrides)
    elif isinstance(folder_or_facts, dict):
        facts = ModelCardFacts(**{**folder_or_facts, **overrides})
    else:
        facts = collect_facts(folder_or_facts, **overrides)
    facts = dataclasses.replace(
        facts,
        **{
            name: _without_local_paths(getattr(facts, name))
            for name in ("model_name", "model_id", "dataset", "hyperparameters", "base_model", "finetuned_on", "adapter")
        },
    )

    info = TASKS[facts.task]
    model_id = facts.model_id or "path/to/this/folder"
    if facts.task == "mlm":
        summary = "A NeoBERT encoder pretrained with masked language modelling"
    else:
        summary = f"A NeoBERT encoder ({info.class_name})"
    if facts.finetuned_on:
        summary += f" fine-tuned on {facts.finetuned_on}"
    summary += (
        f" ([NeoBERT: A Next-Generation BERT]({NEOBERT_PAPER})), trained with `neobert-hf`, a HuggingFace-native "
        "implementation of NeoBERT."
    )
    if facts.adapter:
        summary += (
            f" The LoRA adapter it was trained with is merged into these weights; the adapter alone is in "
            f"`{facts.adapter}/`."
        )
    checkpoint_note = None
    if facts.checkpoint:
        step = f" of step **{facts.global_step}**" if facts.global_step is not None else ""
        checkpoint_note = (
            f"This folder is the training checkpoint{step}: besides the model it holds the optimizer, scheduler, "
            "RNG and trainer state needed to resume. Share the clean folder written by `neobert-hf export` instead."
        )
    license_text = _LICENSE_TEXT.get(str(facts.license).lower(), str(facts.license)) if facts.license else (
        "No licence was given for these weights."
    )
    license_text += (
        " The NeoBERT architecture and the `neobert-hf` code are Apache-2.0; the terms of the training data also apply "
        "to the weights."
    )
    positions = facts.config.get("max_position_embeddings", facts.config.get("max_length", "the context"))
    card = ModelCard.from_template(
        _card_data(facts),
        template_str=template_path(template).read_text(encoding="utf-8"),
        model_name=facts.model_name,
        summary=summary,
        checkpoint_note=checkpoint_note,
        sentence_transformers=facts.sentence_transformers,
        model_id=model_id,
        task=facts.task,
        auto_class=info.auto_class,
        class_name=info.class_name,
        architecture=_architecture_rows(facts),
        training=_training_rows(facts),
        metrics=_metric_rows(facts),
        intended_use=info.intended_use,
        dataset=facts.dataset,
        max_positions=_format_number(positions),
        license_text=license_text,
        neobert_hf_version=_package_version(),
    )
    return str(card) if str(card).endswith("\n") else f"{card}\n"


def write_model_card(folder: str | os.PathLike, facts: ModelCardFacts | dict[str, Any] | None = None, **overrides) -> str:
    """Render the card of `folder` (or of `facts`) and write it to `<folder>/README.md`. Returns the path."""
    text = render_model_card(folder if facts is None else facts, **overrides)
    path = os.path.join(os.fspath(folder), "README.md")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    return path

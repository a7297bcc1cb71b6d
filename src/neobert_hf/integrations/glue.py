"""GLUE fine-tuning of NeoBERT on transformers' `Trainer`.

- [`GLUE_TASKS`]: the nine tasks, their text columns, labels, official metrics and evaluation sets.
- [`GlueModelArguments`], [`GlueDataArguments`], [`GlueTrainingArguments`]: the arguments split by concern (model and
  LoRA; task and data; `TrainingArguments` with early stopping), held and cross-checked by [`GlueArguments`].
- [`prepare_glue`]: checks everything and builds the model and datasets; it writes nothing, so bad input (an unknown
  task, missing columns, a label count that disagrees with the data, a checkpoint whose keys do not match) fails
  before the output folder exists.
- [`GlueTrainer`]: `Trainer` writing the `<output_dir>/checkpoints/<step>/` tree of pretraining, with
  best-model selection on the task's official metric and LoRA checkpoints that stay loadable as full models.
- [`build_trainer`], [`run_glue`]: train, select the best checkpoint, evaluate (MNLI on matched and mismatched),
  predict the test sets, and write `glue_results.json`, which `neobert-hf glue-summary` reads.

Metrics come from the `glue` metric module shipped in `neobert_hf/integrations/glue_metrics/` and loaded through
`evaluate` by path, so they work offline.

Scores convention (also used by `neobert-hf glue-summary`): a task's score is the mean of its official metrics
(MRPC and QQP: accuracy and F1; STS-B: Pearson and Spearman; MNLI: matched and mismatched accuracy; CoLA: Matthews
correlation; accuracy elsewhere), and the GLUE score is the mean of the task scores.
"""

from __future__ import annotations

import json
import logging
import math
import os
import secrets
import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import nn
from transformers import AutoTokenizer, DataCollatorWithPadding, TrainingArguments, set_seed
from transformers.trainer_utils import IntervalStrategy, SaveStrategy

from ..import_utils import require
from ..training.argument_checks import check_training_values
from ..training.arguments import FinalLRRatioArguments, WandbArguments
from ..checkpoints import CHECKPOINTS_DIR, checkpoint_dir, list_checkpoints, resolve_checkpoint, step_folder
from ..training.output_dir import TrainingBegan, check_output_dir, failed_start_cleanup
from ..checkpoints import RUN_RESULTS_NAME, load_pretrained_strict, resolve_pretrained_path
from .glue_metrics import GLUE_METRIC_PATH
from .glue_trainer import ADAPTER_DIR, GlueEarlyStoppingCallback, GlueTrainer


logger = logging.getLogger(__name__)

__all__ = [
    "ADAPTER_DIR",
    "GLUE_TASKS",
    "GLUE_FILE_EXTENSIONS",
    "GlueArguments",
    "GlueDataArguments",
    "GlueDataError",
    "GlueModelArguments",
    "GlueSetup",
    "GlueTask",
    "GlueTrainer",
    "GlueTrainingArguments",
    "RUN_ARGS_NAME",
    "RUN_RESULTS_NAME",
    "apply_lora",
    "build_compute_metrics",
    "build_trainer",
    "CUSTOM_TASK",
    "custom_task",
    "get_glue_task",
    "load_glue_data",
    "prepare_glue",
    "run_glue",
    "task_score",
    "tokenize_glue",
]

RUN_ARGS_NAME = "run_args.json"
DEFAULT_LORA_TARGETS = ["qkv", "wo", "w12", "w3"]


class GlueDataError(ValueError):
    """GLUE data that does not fit its task: missing columns, unknown labels, a label count that disagrees."""


# ---------------------------------------------------------------------------------------------------------------------
# Tasks
# ---------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GlueTask:
    """One GLUE task.

    Args:
        name: the task name (`nyu-mll/glue` configuration and `glue` metric configuration).
        text_columns: one or two text columns, in the order they are given to the tokenizer.
        label_names: class names in label-id order (those of the Hub dataset); `None` for regression (STS-B).
        metrics: the official metrics, as reported in `glue_results.json`; the task score is their mean.
        best_metric: the default `metric_for_best_model`.
        eval_splits: evaluation sets as `(name, Hub split)`; one set is reported as `eval_<metric>`, several (MNLI)
            as `eval_<name>_<metric>`.
        test_splits: test sets as `(name, Hub split)` (labels hidden, -1).
        metric_config: the configuration of the shipped `glue` metric that scores the task (default: `name`).
        label_values: for a task read from local files without a GLUE task name ([`custom_task`]), the label values
            of the data in label-id order; a label is mapped to its id by value. `None` for the GLUE tasks.
    """

    name: str
    text_columns: tuple[str, ...]
    label_names: tuple[str, ...] | None
    metrics: tuple[str, ...]
    best_metric: str
    eval_splits: tuple[tuple[str, str], ...] = (("validation", "validation"),)
    test_splits: tuple[tuple[str, str], ...] = (("test", "test"),)
    metric_config: str | None = None
    label_values: tuple[Any, ...] | None = None

    @property
    def is_regression(self) -> bool:
        return self.label_names is None

    @property
    def num_labels(self) -> int:
        return 1 if self.label_names is None else len(self.label_names)

    @property
    def metric_keys(self) -> dict[str, str]:
        """Official metric -> the key the Trainer reports it under (MNLI: `eval_matched_accuracy`, ...)."""
        return {m: f"eval_{m}" for m in self.metrics}

    def selectable_metrics(self) -> list[str]:
        """Values accepted for `metric_for_best_model` (without the `eval_` prefix)."""
        if len(self.eval_splits) == 1:
            return ["loss", *self.metrics]
        names = []
        for split, _ in self.eval_splits:
            names += [f"{split}_loss"] + [m for m in self.metrics if m.startswith(f"{split}_")]
        return names


GLUE_TASKS: dict[str, GlueTask] = {
    "cola": GlueTask(
        "cola", ("sentence",), ("unacceptable", "acceptable"), ("matthews_correlation",), "matthews_correlation"
    ),
    "sst2": GlueTask("sst2", ("sentence",), ("negative", "positive"), ("accuracy",), "accuracy"),
    "mrpc": GlueTask("mrpc", ("sentence1", "sentence2"), ("not_equivalent", "equivalent"), ("accuracy", "f1"), "f1"),
    "stsb": GlueTask("stsb", ("sentence1", "sentence2"), None, ("pearson", "spearmanr"), "pearson"),
    "qqp": GlueTask("qqp", ("question1", "question2"), ("not_duplicate", "duplicate"), ("accuracy", "f1"), "f1"),
    "mnli": GlueTask(
        "mnli",
        ("premise", "hypothesis"),
        ("entailment", "neutral", "contradiction"),
        ("matched_accuracy", "mismatched_accuracy"),
        "matched_accuracy",
        eval_splits=(("matched", "validation_matched"), ("mismatched", "validation_mismatched")),
        test_splits=(("test_matched", "test_matched"), ("test_mismatched", "test_mismatched")),
    ),
    "qnli": GlueTask("qnli", ("question", "sentence"), ("entailment", "not_entailment"), ("accuracy",), "accuracy"),
    "rte": GlueTask("rte", ("sentence1", "sentence2"), ("entailment", "not_entailment"), ("accuracy",), "accuracy"),
    "wnli": GlueTask("wnli", ("sentence1", "sentence2"), ("not_entailment", "entailment"), ("accuracy",), "accuracy"),
}


def get_glue_task(name: str | None) -> GlueTask:
    """The [`GlueTask`] called `name` (case-insensitive); a clear error naming the valid tasks otherwise."""
    key = str(name or "").strip().lower().replace("-", "")
    if key not in GLUE_TASKS:
        given = "no task_name was given" if not name else f"unknown GLUE task {name!r}"
        raise ValueError(
            f"{given}; choose one of: {', '.join(GLUE_TASKS)}"
            + (", or give train_file and validation_file to fine-tune on your own data." if not name else ".")
        )
    return GLUE_TASKS[key]


_STRING_TYPES = ("string", "large_string")
CUSTOM_TASK = "custom"
"""The task name of a run on local files without a GLUE task name (recorded in `glue_results.json`)."""


def custom_task(train, where: str = "train_file") -> GlueTask:
    """The task of local data given without a GLUE task name, inferred from its training split as transformers'
    `run_glue.py` infers it: regression when `label` holds floats, else one class per distinct label value (sorted);
    the text is `sentence1` + `sentence2` when both exist, else the first two other text columns (or the only one;
    unlike `run_glue.py`, columns that hold no strings, such as an `idx`, are never taken as text).

    Classification is scored by accuracy, regression by Pearson and Spearman correlation (as STS-B).

    Raises:
        [`GlueDataError`]: no `label` column, no text column, or a single label value.
    """
    if "label" not in train.column_names:
        raise GlueDataError(f"{where} needs a 'label' column (it has {train.column_names}).")
    columns = [
        c for c in train.column_names if c != "label" and getattr(train.features[c], "dtype", None) in _STRING_TYPES
    ]
    if not columns:
        raise GlueDataError(f"{where} has no text column besides 'label' (it has {train.column_names}).")
    if "sentence1" in columns and "sentence2" in columns:
        text_columns = ("sentence1", "sentence2")
    else:
        text_columns = tuple(columns[:2])
    if getattr(train.features["label"], "dtype", None) in ("float32", "float64"):
        return GlueTask(
            CUSTOM_TASK, text_columns, None, ("pearson", "spearmanr"), "pearson", metric_config="stsb"
        )
    values = sorted({value for value in train["label"] if value is not None})
    if len(values) < 2:
        raise GlueDataError(
            f"{where}: every label is {values[0]!r}; classification needs at least two label values."
            if values
            else f"{where}: the 'label' column is empty."
        )
    return GlueTask(
        CUSTOM_TASK,
        text_columns,
        tuple(str(value) for value in values),
        ("accuracy",),
        "accuracy",
        metric_config="sst2",  # the glue metric's plain accuracy (any number of classes)
        label_values=tuple(values),
    )


def task_score(task: GlueTask | str, scores: dict[str, float]) -> float | None:
    """Mean of the task's official metrics, or `None` when one of them is absent."""
    task = get_glue_task(task) if isinstance(task, str) else task
    values = [scores.get(m) for m in task.metrics]
    if any(v is None or not math.isfinite(float(v)) for v in values):
        return None
    return float(sum(values) / len(values))


# ---------------------------------------------------------------------------------------------------------------------
# Arguments
# ---------------------------------------------------------------------------------------------------------------------
# Split by concern as TRL splits ScriptArguments / ModelConfig / SFTConfig (and run_glue.py its model, data and
# training arguments): each dataclass checks its own fields; [`GlueArguments`] holds the three and checks what spans
# them (the task's label count, its metric for best-model selection). The command line and the recipes stay flat:
# `HfArgumentParser` reads every field of the three as one `--flag` / recipe key.


@dataclass
class GlueModelArguments:
    """Which model to fine-tune and how: the checkpoint, its tokenizer, the classification head and LoRA (the part
    TRL's `ModelConfig` holds)."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Model to fine-tune: a pretraining or GLUE run folder (its best checkpoint when recorded, else "
            "its latest), one checkpoints/<step>/ folder, an exported folder, or a Hub id. Every weight must load: "
            "only a new task head may be missing (see allow_random_weights for a model trained from scratch)."
        },
    )
    checkpoint: str | None = field(
        default=None,
        metadata={"help": "When model_name_or_path is a run folder: 'best', 'latest' or a step number."},
    )
    allow_random_weights: bool = field(
        default=False,
        metadata={
            "help": "Fine-tune a randomly initialised NeoBERT on purpose (a baseline without pretraining): the model "
            "is built from config_name, or from model_name_or_path's config.json whose weights are then not loaded. "
            "Needs a tokenizer (tokenizer_name or the model folder's). Without this flag every weight must load."
        },
    )
    config_name: str | None = field(
        default=None,
        metadata={
            "help": "With allow_random_weights: the NeoBERT config (a folder holding config.json, the file itself or a "
            "Hub id) of the randomly initialised model. Default: model_name_or_path's config."
        },
    )
    tokenizer_name: str | None = field(
        default=None, metadata={"help": "Tokenizer folder or Hub id. Default: the model folder's own tokenizer."}
    )
    transfer_head: bool = field(
        default=False,
        metadata={
            "help": "When model_name_or_path is a fine-tuned classifier (e.g. an MNLI run), also load its task head; "
            "it must have the same number of labels as this task (an error otherwise). False starts a new head on the "
            "transferred encoder."
        },
    )
    num_labels: int | None = field(
        default=None,
        metadata={"help": "Number of labels; must equal the task's (1 for STS-B, 3 for MNLI, 2 otherwise). Checked."},
    )
    classifier_dropout: float | None = field(
        default=None, metadata={"help": "Dropout in the classification head. None: keep the model config's value."}
    )
    classifier_init_range: float | None = field(
        default=None, metadata={"help": "Std of the new head's normal init. None: keep the model config's value."}
    )
    classifier_pooling: str | None = field(
        default=None, metadata={"help": "'cls' or 'mean' pooling for the head. None: keep the model config's value."}
    )
    attn_implementation: str | None = field(
        default=None, metadata={"help": "Attention kernel (sdpa, eager, flash_attention_2, ...). None: the default."}
    )
    use_peft: bool = field(
        default=False,
        metadata={
            "help": "Fine-tune LoRA adapters (peft) instead of all weights; the classification head stays fully "
            "trainable. Checkpoints hold the merged model (loadable as usual) and the adapter in adapter/."
        },
    )
    lora_r: int = field(default=8, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA alpha (the update is scaled by alpha / r)."})
    lora_dropout: float = field(default=0.1, metadata={"help": "Dropout on the LoRA input."})
    lora_target_modules: list[str] = field(
        default_factory=lambda: list(DEFAULT_LORA_TARGETS),
        metadata={"help": "Linear layers that get adapters (NeoBERT: qkv, wo, ffn w12 and w3)."},
    )

    def __post_init__(self):
        if self.config_name and not self.allow_random_weights:
            raise ValueError(
                "config_name builds a randomly initialised model: set allow_random_weights=true to fine-tune one on "
                "purpose, or drop config_name to fine-tune the weights of model_name_or_path."
            )
        if self.allow_random_weights:
            if not (self.model_name_or_path or self.config_name):
                raise ValueError(
                    "allow_random_weights needs the model's shape: config_name (a NeoBERT config.json or its folder) "
                    "or model_name_or_path (its config is used, its weights are not)."
                )
            if not (self.model_name_or_path or self.tokenizer_name):
                raise ValueError("allow_random_weights without model_name_or_path needs tokenizer_name.")
            if self.transfer_head:
                raise ValueError("transfer_head loads a trained head; it cannot go with allow_random_weights.")
        elif not self.model_name_or_path:
            raise ValueError(
                "model_name_or_path is required: the pretrained NeoBERT to fine-tune. To fine-tune a randomly "
                "initialised model on purpose, set allow_random_weights=true with config_name (or model_name_or_path) "
                "and tokenizer_name."
            )
        if self.classifier_pooling not in (None, "cls", "mean"):
            raise ValueError(f"classifier_pooling must be 'cls' or 'mean', got {self.classifier_pooling!r}.")
        if self.use_peft:
            require("peft", "use_peft=True (LoRA fine-tuning)")
            if self.lora_r < 1 or self.lora_alpha <= 0 or not 0.0 <= self.lora_dropout < 1.0:
                raise ValueError(
                    f"LoRA needs lora_r >= 1, lora_alpha > 0 and 0 <= lora_dropout < 1; got r={self.lora_r}, "
                    f"alpha={self.lora_alpha}, dropout={self.lora_dropout}."
                )
            if not self.lora_target_modules:
                raise ValueError("use_peft=True needs at least one lora_target_modules entry.")

    def config_overrides(self) -> dict[str, Any]:
        """The model-config values this run sets (head dropout, init, pooling, attention kernel)."""
        names = ("classifier_dropout", "classifier_init_range", "classifier_pooling", "attn_implementation")
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}


@dataclass
class GlueDataArguments:
    """What to fine-tune on: the task, where its data comes from (Hub dataset or local files), how much of it and how
    it is tokenized (the part TRL's `ScriptArguments` and run_glue's `DataTrainingArguments` hold)."""

    task_name: str | None = field(
        default=None,
        metadata={
            "help": f"GLUE task: {', '.join(GLUE_TASKS)}. Leave it out to fine-tune on your own train_file and "
            "validation_file, as transformers' run_glue.py does: a 'label' column of floats is regression, any other "
            "one class per distinct value; the text is sentence1 (+ sentence2) or the first one or two other columns."
        },
    )
    dataset_name: str = field(
        default="nyu-mll/glue", metadata={"help": "Hub dataset, used when no local file is given."}
    )
    dataset_config_name: str | None = field(
        default=None, metadata={"help": "Configuration of dataset_name. Default: the task name."}
    )
    train_file: str | None = field(
        default=None,
        metadata={
            "help": "Local training data (.csv, .tsv, .json, .jsonl) with the task's GLUE columns and 'label' (without "
            "task_name: any text column(s) and 'label'). Local files replace the Hub dataset; then validation_file is "
            "required."
        },
    )
    validation_file: str | None = field(
        default=None, metadata={"help": "Local validation data (MNLI: the matched set)."}
    )
    validation_mismatched_file: str | None = field(
        default=None, metadata={"help": "MNLI only: local mismatched validation data (required with local MNLI)."}
    )
    test_file: str | None = field(
        default=None,
        metadata={"help": "Local test data (labels optional); predictions go to <output_dir>/predictions_test.tsv."},
    )
    test_mismatched_file: str | None = field(default=None, metadata={"help": "MNLI only: local mismatched test data."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Keep only the first N training rows."})
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Keep only the first N rows of each eval set."}
    )
    max_predict_samples: int | None = field(
        default=None, metadata={"help": "Keep only the first N rows of each test set."}
    )
    preprocessing_num_workers: int | None = field(
        default=None, metadata={"help": "Processes for tokenization (datasets.map num_proc)."}
    )
    max_seq_length: int = field(default=128, metadata={"help": "Sentence (pairs) are truncated to this many tokens."})
    pad_to_multiple_of: int | None = field(
        default=8, metadata={"help": "Pad each batch to a multiple of this length (dynamic padding)."}
    )

    def __post_init__(self):
        if self.task_name is None and self.train_file:
            name = CUSTOM_TASK  # the task is read from train_file when the data is loaded
        else:
            name = self.task_name = get_glue_task(self.task_name).name
        if self.max_seq_length < 8:
            raise ValueError(f"max_seq_length must be >= 8, got {self.max_seq_length}.")
        local = {
            "train_file": self.train_file,
            "validation_file": self.validation_file,
            "validation_mismatched_file": self.validation_mismatched_file,
            "test_file": self.test_file,
            "test_mismatched_file": self.test_mismatched_file,
        }
        if name != "mnli":
            extra = [k for k in ("validation_mismatched_file", "test_mismatched_file") if local[k]]
            if extra:
                raise ValueError(f"{', '.join(extra)} only apply to mnli, not {name}.")
        if any(local.values()):
            if not self.train_file or not self.validation_file:
                raise ValueError(
                    "Local GLUE data needs both train_file and validation_file (the best checkpoint is chosen on the "
                    "validation set)."
                )
            if name == "mnli" and not self.validation_mismatched_file:
                raise ValueError(
                    "Local MNLI data needs validation_mismatched_file too: MNLI is evaluated on the matched and the "
                    "mismatched validation sets."
                )
            if name == "mnli" and self.test_mismatched_file and not self.test_file:
                raise ValueError("test_mismatched_file needs test_file (the matched test set) too.")
        for name in ("max_train_samples", "max_eval_samples", "max_predict_samples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}.")

    @property
    def glue_task(self) -> GlueTask | None:
        """The GLUE task; `None` for local data without a task name (its task is read from the data, see
        [`custom_task`])."""
        return None if self.task_name is None else get_glue_task(self.task_name)

    @property
    def uses_local_files(self) -> bool:
        return bool(self.train_file)


@dataclass
class GlueTrainingArguments(WandbArguments, FinalLRRatioArguments, TrainingArguments):
    r"""[`~transformers.TrainingArguments`] for GLUE fine-tuning with [`run_glue`].

    Every `TrainingArguments` field keeps its meaning; the GLUE defaults differ in three places that best-model
    selection needs: `eval_strategy` and `save_strategy` are `"epoch"`, `load_best_model_at_end` is `True`.
    `metric_for_best_model` defaults to the task's official metric (CoLA Matthews, MRPC/QQP F1, STS-B Pearson, MNLI
    matched accuracy, accuracy elsewhere), set by [`GlueArguments`], which knows the task. Per-task hyperparameters
    live in `recipes/neobert/glue/<task>.yaml`. The `wandb_*` fields ([`~neobert_hf.training.arguments.WandbArguments`])
    reach the W&B run.
    """

    # --- Early stopping ---
    early_stopping_patience: int | None = field(
        default=None,
        metadata={
            "help": "Stop after this many evaluations without improvement of metric_for_best_model "
            "(transformers' EarlyStoppingCallback). None or 0: no early stopping."
        },
    )
    early_stopping_threshold: float = field(
        default=0.0, metadata={"help": "Minimum improvement of metric_for_best_model that resets the patience."}
    )

    # --- TrainingArguments defaults that best-model selection needs ---
    eval_strategy: IntervalStrategy | str = field(
        default="epoch", metadata={"help": "When to evaluate: 'steps' (every eval_steps), 'epoch' or 'no'."}
    )
    save_strategy: SaveStrategy | str = field(
        default="epoch",
        metadata={"help": "When to write checkpoints/<step>/; must match eval_strategy for best-model selection."},
    )
    load_best_model_at_end: bool = field(
        default=True, metadata={"help": "Reload the best checkpoint (metric_for_best_model) when training ends."}
    )

    def __post_init__(self):
        check_training_values(self)
        self.check_wandb()
        # TrainingArguments fills in "loss" when no metric is given; the task's metric replaces that default later.
        self._metric_given = self.metric_for_best_model is not None
        self._direction_given = self.greater_is_better is not None
        if self.early_stopping_patience:
            if self.early_stopping_patience < 0:
                raise ValueError(f"early_stopping_patience must be >= 0, got {self.early_stopping_patience}.")
            if (
                not self.load_best_model_at_end
                or str(getattr(self.eval_strategy, "value", self.eval_strategy)) == "no"
            ):
                raise ValueError(
                    "early_stopping_patience needs evaluations and best-model selection: set eval_strategy to 'steps' "
                    "or 'epoch' and load_best_model_at_end=true (or early_stopping_patience to 0)."
                )
        self.apply_final_lr_ratio()
        super().__post_init__()

    def use_task_metric(self, task: GlueTask) -> None:
        """Select the best model on `task`'s official metric unless `metric_for_best_model` was given; refuse a metric
        the task does not report."""
        if not getattr(self, "_metric_given", True):
            self.metric_for_best_model = task.best_metric
            if not getattr(self, "_direction_given", True):
                self.greater_is_better = not task.best_metric.endswith("loss")
            self._metric_given = True
        metric = (self.metric_for_best_model or "loss").removeprefix("eval_")
        if metric not in task.selectable_metrics():
            raise ValueError(
                f"metric_for_best_model={self.metric_for_best_model!r} is not reported for {task.name}; choose one "
                f"of: {', '.join(task.selectable_metrics())}."
            )


@dataclass
class GlueArguments:
    """The three argument groups of a GLUE run, checked together: the label count the model is given and the metric
    for best-model selection both depend on the task.

    Example:

    ```python
    >>> from neobert_hf.integrations.glue import GlueArguments
    >>> args = GlueArguments.from_flat(output_dir="out/cola", task_name="cola", model_name_or_path="chandar-lab/NeoBERT")
    >>> args.training.metric_for_best_model, args.training.greater_is_better
    ('matthews_correlation', True)
    ```
    """

    model: GlueModelArguments
    data: GlueDataArguments
    training: GlueTrainingArguments

    def __post_init__(self):
        self._task: GlueTask | None = None
        if self.data.glue_task is not None:
            self.use_task(self.data.glue_task)
        require("evaluate", f"GLUE metrics for {self.data.task_name or 'local data'}")

    def use_task(self, task: GlueTask) -> None:
        """Fix the task of the run (a GLUE task, or the one read from local data), check the label count against it
        and select the best model on its metric unless `metric_for_best_model` was given."""
        num_labels = self.model.num_labels
        if num_labels is not None and num_labels != task.num_labels:
            which = f"GLUE task {task.name!r}" if task.label_values is None else "the labels of train_file"
            raise ValueError(
                f"num_labels={num_labels} disagrees with {which}, which has {task.num_labels} "
                f"label{'s' if task.num_labels > 1 else ''}"
                + (f" ({', '.join(task.label_names)})." if task.label_names else " (regression).")
            )
        self.training.use_task_metric(task)
        self._task = task

    @classmethod
    def from_flat(cls, **values: Any) -> GlueArguments:
        """Build the three groups from one flat mapping of field names (the keys of a recipe or the command line).

        Raises:
            `TypeError`: a key that is a field of none of the groups.
        """
        groups = {}
        for name, group in (("model", GlueModelArguments), ("data", GlueDataArguments)):
            names = {f.name for f in dataclasses.fields(group) if f.init}
            groups[name] = group(**{k: values.pop(k) for k in list(values) if k in names})
        return cls(model=groups["model"], data=groups["data"], training=GlueTrainingArguments(**values))

    @property
    def task(self) -> GlueTask:
        """The task; for local data without a task name, known once [`load_glue_data`] has read it."""
        if self._task is None:
            raise ValueError("The task of local data without task_name is read from train_file: load the data first.")
        return self._task

    def to_dict(self) -> dict[str, Any]:
        """Every argument as one flat JSON-ready mapping (what `run_args.json` records and model cards read)."""
        return {**self.training.to_dict(), **dataclasses.asdict(self.model), **dataclasses.asdict(self.data)}


# ---------------------------------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------------------------------

GLUE_FILE_EXTENSIONS = (".csv", ".tsv", ".json", ".jsonl")


def _read_local(path: str, role: str):
    """One local file with [`~neobert_hf.data.loading.load_split`], its errors as [`GlueDataError`]."""
    import csv

    from ..data.loading import file_extension, load_split

    # GLUE's own TSV files hold unbalanced quotes in their sentences: read every field verbatim.
    verbatim = {"quoting": csv.QUOTE_NONE} if file_extension(path) == ".tsv" else {}
    try:
        return load_split(path, what=role, extensions=GLUE_FILE_EXTENSIONS, **verbatim)
    except FileNotFoundError as err:
        raise GlueDataError(f"{role} {path} does not exist.") from err
    except ValueError as err:
        raise GlueDataError(str(err)) from err


def load_glue_data(args: GlueArguments | GlueDataArguments) -> dict[str, Any]:
    """Loads and checks the raw splits of the task, from local files or the Hub.

    Without a task name, the task is read from the training file ([`custom_task`]).

    Returns:
        `dict`: `{"task": GlueTask, "train": Dataset, "eval": {name: Dataset}, "test": {name: Dataset}}`, labels as
        integer ids (`float` for regression) in the task's label order.

    Raises:
        [`GlueDataError`]: a missing file or split, a missing column, a label that the task does not have.
    """
    args = args.data if isinstance(args, GlueArguments) else args
    task = args.glue_task
    if args.uses_local_files:
        train = _read_local(args.train_file, "train_file")
        if task is None:
            task = custom_task(train, f"train_file {args.train_file}")
        evals = {task.eval_splits[0][0]: _read_local(args.validation_file, "validation_file")}
        if task.name == "mnli":
            evals["mismatched"] = _read_local(args.validation_mismatched_file, "validation_mismatched_file")
        tests = {}
        if args.test_file:
            tests[task.test_splits[0][0]] = _read_local(args.test_file, "test_file")
        if args.test_mismatched_file:
            tests["test_mismatched"] = _read_local(args.test_mismatched_file, "test_mismatched_file")
        where = {
            "train": f"train_file {args.train_file}",
            task.eval_splits[0][0]: f"validation_file {args.validation_file}",
            "mismatched": f"validation_mismatched_file {args.validation_mismatched_file}",
            task.test_splits[0][0]: f"test_file {args.test_file}",
            "test_mismatched": f"test_mismatched_file {args.test_mismatched_file}",
        }
    else:
        from ..data.loading import load_splits

        config_name = args.dataset_config_name or task.name
        try:
            raw = load_splits(args.dataset_name, config_name=config_name, what=f"{args.dataset_name} ({config_name})")
        except Exception as err:  # network, missing config, offline cache miss
            raise GlueDataError(f"{err} Offline, pass train_file and validation_file instead.") from err
        needed = ["train"] + [split for _, split in task.eval_splits]
        absent = [s for s in needed if s not in raw]
        if absent:
            raise GlueDataError(f"{args.dataset_name} ({config_name}) has no split(s) {absent}; it has {list(raw)}.")
        train = raw["train"]
        evals = {name: raw[split] for name, split in task.eval_splits}
        tests = {name: raw[split] for name, split in task.test_splits if split in raw}
        where = {name: f"{args.dataset_name} ({config_name}) split {split}" for name, split in task.eval_splits}
        where.update({name: f"{args.dataset_name} ({config_name}) split {split}" for name, split in task.test_splits})
        where["train"] = f"{args.dataset_name} ({config_name}) split train"

    train = _checked(train, task, where["train"], labels="required")
    evals = {name: _checked(ds, task, where[name], labels="required") for name, ds in evals.items()}
    tests = {name: _checked(ds, task, where[name], labels="optional") for name, ds in tests.items()}
    if args.max_train_samples:
        train = train.select(range(min(args.max_train_samples, len(train))))
    if args.max_eval_samples:
        evals = {n: ds.select(range(min(args.max_eval_samples, len(ds)))) for n, ds in evals.items()}
    if args.max_predict_samples:
        tests = {n: ds.select(range(min(args.max_predict_samples, len(ds)))) for n, ds in tests.items()}
    return {"task": task, "train": train, "eval": evals, "test": tests}


def _checked(dataset, task: GlueTask, where: str, labels: str):
    """Checks the columns and converts the labels of one split to the task's ids."""
    from datasets import ClassLabel, Value

    required = list(task.text_columns) + (["label"] if labels == "required" else [])
    missing = [c for c in required if c not in dataset.column_names]
    if missing:
        which = f"GLUE task {task.name!r}" if task.label_values is None and task.name != CUSTOM_TASK else "The task"
        raise GlueDataError(
            f"{which} needs the columns {required} in {where}; missing {missing} "
            f"(it has {dataset.column_names})."
        )
    for column in task.text_columns:
        empty = sum(1 for value in dataset[column] if value is None)
        if empty:
            raise GlueDataError(f"{where}: {empty} row(s) have no text in column {column!r}.")
    if "label" not in dataset.column_names:
        return dataset
    values = dataset["label"]
    if labels == "optional" and all(v is None or v == -1 for v in values):
        return dataset.remove_columns("label")  # GLUE test sets hide their labels (-1)

    if task.is_regression:
        try:
            floats = [float(v) for v in values]
        except (TypeError, ValueError) as err:
            raise GlueDataError(f"{where}: STS-B labels must be similarity scores (numbers): {err}.") from err
        if not all(math.isfinite(v) for v in floats):
            raise GlueDataError(f"{where}: STS-B labels must be finite numbers.")
        return dataset.cast_column("label", Value("float32"))

    if task.label_values is not None:  # local data without a task name: labels are mapped by value
        ids_by_value = {value: i for i, value in enumerate(task.label_values)}
        unknown = sorted({v for v in values if v not in ids_by_value}, key=repr)
        if unknown:
            raise GlueDataError(
                f"{where}: labels {unknown[:10]} do not occur in train_file, whose labels are {list(task.label_values)}."
            )
        dataset = dataset.remove_columns("label").add_column("label", [ids_by_value[v] for v in values])
        return dataset.cast_column("label", Value("int64"))

    feature = dataset.features["label"]
    n = task.num_labels
    if isinstance(feature, ClassLabel):
        if feature.num_classes != n:
            raise GlueDataError(
                f"{where} has {feature.num_classes} label classes {feature.names}, but GLUE task {task.name!r} has "
                f"{n} ({', '.join(task.label_names)}): the label count disagrees with the data."
            )
        ids = list(values)
    else:
        by_name = {name: i for i, name in enumerate(task.label_names)}
        ids = []
        unknown = set()
        for value in values:
            if isinstance(value, bool) or value is None:
                unknown.add(value)
                continue
            if isinstance(value, (int, np.integer)) or (isinstance(value, float) and value.is_integer()):
                ids.append(int(value))
                continue
            text = str(value).strip().lower()
            if text.lstrip("-").isdigit():
                ids.append(int(text))
            elif text in by_name:
                ids.append(by_name[text])
            else:
                unknown.add(value)
        if unknown:
            raise GlueDataError(
                f"{where}: labels {sorted(map(repr, unknown))[:10]} are not labels of GLUE task {task.name!r}; use "
                f"ids 0..{n - 1} or the names {list(task.label_names)}."
            )
    bad = sorted({i for i in ids if not 0 <= i < n})
    if bad:
        raise GlueDataError(
            f"{where} has label ids {bad[:10]} outside 0..{n - 1}: GLUE task {task.name!r} has {n} labels "
            f"({', '.join(task.label_names)}), so the label count disagrees with the data."
        )
    dataset = dataset.remove_columns("label").add_column("label", ids)
    return dataset.cast_column("label", Value("int64"))


def tokenize_glue(dataset, tokenizer, task: GlueTask, max_seq_length: int, num_proc: int | None = None):
    """Tokenizes one split (sentence or sentence pair, truncated to `max_seq_length`, unpadded); keeps `label`."""
    columns = task.text_columns

    def encode(batch):
        return tokenizer(
            *[batch[c] for c in columns], truncation=True, max_length=max_seq_length, return_token_type_ids=False
        )

    drop = [c for c in dataset.column_names if c != "label"]
    return dataset.map(encode, batched=True, remove_columns=drop, num_proc=num_proc, desc="Tokenizing")


def build_compute_metrics(task: GlueTask):
    """`compute_metrics` for the Trainer: argmax (or the regression output) scored by the shipped `glue` metric."""
    import evaluate

    metric = evaluate.load(GLUE_METRIC_PATH, task.metric_config or task.name, keep_in_memory=True)

    def compute_metrics(eval_pred) -> dict[str, float]:
        logits = eval_pred.predictions[0] if isinstance(eval_pred.predictions, tuple) else eval_pred.predictions
        predictions = predictions_from_logits(task, logits)
        return metric.compute(predictions=predictions, references=eval_pred.label_ids)

    return compute_metrics


def predictions_from_logits(task: GlueTask, logits: np.ndarray) -> np.ndarray:
    logits = np.asarray(logits)
    return logits.reshape(-1) if task.is_regression else logits.argmax(-1)


# ---------------------------------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------------------------------


def _load_tokenizer(args: GlueModelArguments, model_source: str):
    name = args.tokenizer_name or model_source
    try:
        return AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as err:
        raise ValueError(
            f"Cannot load a tokenizer from {name}: {err}. Pass tokenizer_name when the model folder has none."
        ) from err


def apply_lora(model: nn.Module, args: GlueModelArguments):
    """Wraps `model` in LoRA adapters on `lora_target_modules`; the `classifier` head stays fully trainable."""
    require("peft", "use_peft=True (LoRA fine-tuning)")
    from peft import LoraConfig, TaskType, get_peft_model

    linear_names = sorted({name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, nn.Linear)})
    unknown = [t for t in args.lora_target_modules if t not in linear_names]
    if unknown:
        raise ValueError(
            f"lora_target_modules {unknown} match no Linear layer of the model; its layers are {linear_names}."
        )
    config = LoraConfig(
        task_type=TaskType.SEQ_CLS,
        r=args.lora_r,
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout,
        target_modules=list(args.lora_target_modules),
        modules_to_save=["classifier"],
    )
    return get_peft_model(model, config)


@dataclass
class GlueSetup:
    """Everything [`run_glue`] needs, built and checked by [`prepare_glue`] without writing anything."""

    args: GlueArguments
    task: GlueTask
    source: str
    source_task: str | None
    tokenizer: Any
    model: nn.Module
    train_dataset: Any
    eval_datasets: dict[str, Any]
    test_datasets: dict[str, Any]
    resume_from_checkpoint: str | None


def prepare_glue(args: GlueArguments) -> GlueSetup:
    """Checks the run and builds tokenizer, model and tokenized datasets. Writes nothing.

    Raises:
        `ValueError` (incl. [`GlueDataError`] and [`~neobert_hf.checkpoints.CheckpointLoadError`]):
            bad input, with a message that says what to change.
    """
    from .. import NeoBERTForSequenceClassification
    from ..training.hub import check_push_arguments

    model_args, data_args, training_args = args.model, args.data, args.training
    check_push_arguments(training_args, needs_tokenizer=False)  # the tokenizer is loaded below
    check_output_dir(training_args.output_dir)
    resume = _check_output_dir(training_args)
    source = (
        resolve_pretrained_path(model_args.model_name_or_path, model_args.checkpoint)
        if model_args.model_name_or_path
        else None
    )
    tokenizer = _load_tokenizer(model_args, source)
    raw = load_glue_data(data_args)
    task = raw["task"]
    args.use_task(task)

    set_seed(training_args.seed)  # the new head's init
    overrides = model_args.config_overrides()
    labels = {}
    if task.label_names is not None:
        labels = {
            "id2label": dict(enumerate(task.label_names)),
            "label2id": {name: i for i, name in enumerate(task.label_names)},
        }
    head = dict(
        num_labels=task.num_labels,
        finetuning_task=task.name,
        problem_type="regression" if task.is_regression else "single_label_classification",
        **labels,
        **overrides,
    )
    if model_args.allow_random_weights:
        model = random_init_model(model_args.config_name or source, **head)
        logger.warning(
            f"allow_random_weights: fine-tuning a randomly initialised NeoBERT (config {model_args.config_name or source}"
            + ("; the weights of model_name_or_path are not loaded" if source else "")
            + ")."
        )
    else:
        model = load_pretrained_strict(
            source, NeoBERTForSequenceClassification, task_head="load" if model_args.transfer_head else "new", **head
        )
    source_task = _source_task(source) if source and not model_args.allow_random_weights else None
    if len(tokenizer) > model.config.vocab_size:
        raise ValueError(
            f"The tokenizer has {len(tokenizer)} tokens but the model's vocabulary has {model.config.vocab_size}: "
            "they do not belong together. Pass the tokenizer the model was pretrained with (tokenizer_name)."
        )
    if data_args.max_seq_length > model.config.max_position_embeddings:
        raise ValueError(
            f"max_seq_length={data_args.max_seq_length} exceeds the model's max_position_embeddings "
            f"({model.config.max_position_embeddings})."
        )
    if model_args.use_peft:
        model = apply_lora(model, model_args)

    def tok(ds):
        return tokenize_glue(ds, tokenizer, task, data_args.max_seq_length, data_args.preprocessing_num_workers)

    return GlueSetup(
        args=args,
        task=task,
        source=source,
        source_task=source_task,
        tokenizer=tokenizer,
        model=model,
        train_dataset=tok(raw["train"]),
        eval_datasets={name: tok(ds) for name, ds in raw["eval"].items()},
        test_datasets={name: tok(ds) for name, ds in raw["test"].items()},
        resume_from_checkpoint=resume,
    )


def random_init_model(config_source: str, **config_values: Any) -> nn.Module:
    """A randomly initialised [`NeoBERTForSequenceClassification`] of the NeoBERT config at `config_source` (a folder
    with `config.json`, the file itself or a Hub id), with `config_values` set (labels, head options, and
    `attn_implementation`). The caller seeds the initialisation.

    Raises:
        `ValueError`: no readable config there, or a config of another model type.
    """
    from .. import NeoBERTConfig, NeoBERTForSequenceClassification

    attn_implementation = config_values.pop("attn_implementation", None)
    try:
        values, _ = NeoBERTConfig.get_config_dict(config_source)
    except (OSError, ValueError) as err:
        raise ValueError(f"Cannot read a NeoBERT config from {config_source}: {err}") from err
    if values.get("model_type") != NeoBERTConfig.model_type:
        raise ValueError(f"{config_source} holds a {values.get('model_type')!r} config, not a NeoBERT one.")
    config = NeoBERTConfig.from_dict(values)
    config.update(config_values)
    if attn_implementation is not None:
        config._attn_implementation = attn_implementation
    return NeoBERTForSequenceClassification(config)


def _source_task(source: str) -> str | None:
    path = os.path.join(source, "config.json")
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f).get("finetuning_task")


def _check_output_dir(args: GlueTrainingArguments) -> str | None:
    """The checkpoint to resume from, if any; refuses to mix a new run into a folder holding another run."""
    spec = args.resume_from_checkpoint
    if spec not in (None, False, "", "false", "False"):
        return resolve_checkpoint(spec, args.output_dir)
    existing = list_checkpoints(args.output_dir)
    if existing or os.path.isfile(os.path.join(args.output_dir, RUN_RESULTS_NAME)):
        raise ValueError(
            f"{args.output_dir} already holds a GLUE run ({len(existing)} checkpoint(s) under {CHECKPOINTS_DIR}/). "
            "Resume it with --resume_from_checkpoint latest, or choose another output_dir."
        )
    return None


# ---------------------------------------------------------------------------------------------------------------------
# Run
# ---------------------------------------------------------------------------------------------------------------------


def _write_json(path: str, payload: dict) -> None:
    tmp = f"{path}.tmp-{secrets.token_hex(4)}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=2, sort_keys=False, default=str)
        f.write("\n")
    os.replace(tmp, path)


class _RunArgsRecorder(TrainingBegan):
    """Writes `run_args.json` (every argument of the run, flat) when training begins (model, data and resume state
    loaded), so that a start that fails leaves the output folder as it was."""

    def __init__(self, run_args: GlueArguments):
        super().__init__()
        self.run_args = run_args

    def on_train_begin(self, args, state, control, **kwargs):
        super().on_train_begin(args, state, control, **kwargs)
        if args.should_save:
            os.makedirs(args.output_dir, exist_ok=True)
            values = json.loads(json.dumps(self.run_args.to_dict(), default=str))
            _write_json(os.path.join(args.output_dir, RUN_ARGS_NAME), values)


def build_trainer(setup: GlueSetup) -> GlueTrainer:
    """The [`GlueTrainer`] of a prepared run: dynamic padding to `pad_to_multiple_of`, the task's metrics, early
    stopping when `early_stopping_patience` is set, and one evaluation set (or MNLI's two). Creates the output folder
    (the Trainer does)."""
    args = setup.args.training
    single = len(setup.eval_datasets) == 1
    eval_dataset = next(iter(setup.eval_datasets.values())) if single else setup.eval_datasets
    callbacks = [_RunArgsRecorder(setup.args)]
    if args.early_stopping_patience:
        callbacks.append(GlueEarlyStoppingCallback(args.early_stopping_patience, args.early_stopping_threshold))
    return GlueTrainer(
        model=setup.model,
        args=args,
        train_dataset=setup.train_dataset,
        eval_dataset=eval_dataset,
        processing_class=setup.tokenizer,
        data_collator=DataCollatorWithPadding(setup.tokenizer, pad_to_multiple_of=setup.args.data.pad_to_multiple_of),
        compute_metrics=build_compute_metrics(setup.task),
        callbacks=callbacks,
    )


def run_glue(setup: GlueSetup) -> dict[str, Any]:
    """Fine-tunes, keeps the best checkpoint, evaluates it on every validation set, predicts the test sets, and
    writes `<output_dir>/glue_results.json` (and `run_args.json`, `predictions_<set>.tsv`).

    Returns:
        `dict`: what `glue_results.json` holds: `task`, `scores` (official metrics of the best model, fractions),
        `task_score`, `best_checkpoint` (relative to the output folder), `eval_metrics`, `test_metrics`, ...
    """
    args, model_args, task = setup.args.training, setup.args.model, setup.task
    trainer = None

    def started() -> bool:
        return trainer is not None and TrainingBegan.seen(trainer)

    with failed_start_cleanup(args.output_dir, started):
        trainer = build_trainer(setup)
        # The step where training stops is saved by the Trainer (the final weights are the result: keep them).
        train_output = trainer.train(resume_from_checkpoint=setup.resume_from_checkpoint)
    best_loaded = bool(args.load_best_model_at_end and trainer.state.best_model_checkpoint)

    eval_metrics = trainer.evaluate()
    scores = {name: float(eval_metrics[key]) for name, key in task.metric_keys.items() if key in eval_metrics}

    test_metrics: dict[str, float] = {}
    predictions_files = {}
    for name, dataset in setup.test_datasets.items():
        output = trainer.predict(dataset, metric_key_prefix=name)
        if "label" in dataset.column_names:
            test_metrics.update({k: float(v) for k, v in output.metrics.items() if isinstance(v, (int, float))})
        if args.should_save:
            path = os.path.join(args.output_dir, f"predictions_{name}.tsv")
            _write_predictions(path, task, output.predictions)
            predictions_files[name] = os.path.basename(path)

    best = step_folder(trainer.state.best_model_checkpoint) if best_loaded else None  # LoRA: not its adapter/
    final = best or checkpoint_dir(args.output_dir, trainer.state.global_step)
    results = {
        "task": task.name,
        "scores": scores,
        "task_score": task_score(task, scores),
        "metric_for_best_model": args.metric_for_best_model,
        "best_metric": trainer.state.best_metric,
        "best_checkpoint": os.path.relpath(final, args.output_dir) if os.path.isdir(final) else None,
        "global_step": trainer.state.global_step,
        "max_steps": trainer.state.max_steps,
        "stopped_early": trainer.state.global_step < trainer.state.max_steps,
        "train_loss": train_output.training_loss,
        "eval_metrics": {k: float(v) for k, v in eval_metrics.items() if isinstance(v, (int, float))},
        "test_metrics": test_metrics,
        "predictions": predictions_files,
        "model_name_or_path": model_args.model_name_or_path,
        "source": setup.source,
        "source_task": setup.source_task,
        "transfer_head": model_args.transfer_head,
        "use_peft": model_args.use_peft,
        "num_train_examples": len(setup.train_dataset),
        "num_eval_examples": {name: len(ds) for name, ds in setup.eval_datasets.items()},
    }
    if args.should_save:
        _write_json(os.path.join(args.output_dir, RUN_RESULTS_NAME), results)
    return results


def _write_predictions(path: str, task: GlueTask, logits) -> None:
    logits = logits[0] if isinstance(logits, tuple) else logits
    predictions = predictions_from_logits(task, logits)
    with open(path, "w", encoding="utf-8") as f:
        f.write("index\tprediction\n")
        for i, value in enumerate(predictions):
            shown = f"{float(value):.4f}" if task.is_regression else task.label_names[int(value)]
            f.write(f"{i}\t{shown}\n")

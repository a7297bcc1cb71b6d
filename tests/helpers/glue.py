"""Shared helpers of the `test_glue_*` files (no tests here): a WordPiece tokenizer over a tiny vocabulary, tiny
NeoBERT folders saved like pretraining checkpoints and exports, and GLUE-shaped csv/jsonl files with a learnable
signal. Everything is offline and built in the test's temporary folder."""

import csv
import json
import os
import random
import subprocess
import sys
from pathlib import Path

from helpers.modeling import tiny_config
from transformers import BertTokenizerFast

from neobert_hf import NeoBERTForMaskedLM, NeoBERTForSequenceClassification


SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
POSITIVE = ["good", "great", "fine", "nice"]
NEGATIVE = ["bad", "awful", "poor", "sad"]
NEUTRAL = ["the", "a", "cat", "dog", "sat", "ran", "on", "mat", "house", "red", "blue", "tree", "it", "was", "and"]
WORDS = POSITIVE + NEGATIVE + NEUTRAL

# The text columns of every GLUE task, as the tests write them (the task specs must agree).
COLUMNS = {
    "cola": ("sentence",),
    "sst2": ("sentence",),
    "mrpc": ("sentence1", "sentence2"),
    "stsb": ("sentence1", "sentence2"),
    "qqp": ("question1", "question2"),
    "mnli": ("premise", "hypothesis"),
    "qnli": ("question", "sentence"),
    "rte": ("sentence1", "sentence2"),
    "wnli": ("sentence1", "sentence2"),
}
NUM_LABELS = {"stsb": 1, "mnli": 3}

REPO = Path(__file__).resolve().parents[2]
RECIPES = REPO / "recipes" / "neobert" / "glue"


def make_tokenizer(folder: Path) -> BertTokenizerFast:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(SPECIAL + WORDS) + "\n")
    return BertTokenizerFast.from_pretrained(folder)


def save_pretrained_model(folder: Path, tokenizer, head: str = "mlm", seed: int = 0, **config) -> Path:
    """A tiny NeoBERT saved with its tokenizer, as `checkpoints/<step>/` or `neobert-hf export` would hold it."""
    import torch

    torch.manual_seed(seed)
    cfg = tiny_config(vocab_size=len(tokenizer), **config)
    model = NeoBERTForMaskedLM(cfg) if head == "mlm" else NeoBERTForSequenceClassification(cfg)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def rows(task: str, n: int, seed: int = 0, label_style: str = "id") -> list[dict]:
    """`n` rows of `task` whose label is readable from the words (a positive word -> label 1, ...)."""
    rng = random.Random(seed)
    out = []
    num_labels = NUM_LABELS.get(task, 2)
    for i in range(n):
        label = i % num_labels if task != "stsb" else round(5 * (i % 6) / 5, 2)
        cue = {0: NEGATIVE, 1: POSITIVE, 2: NEUTRAL}[label if task != "stsb" else int(label >= 2.5)]
        texts = []
        for _ in COLUMNS[task]:
            words = [rng.choice(NEUTRAL) for _ in range(rng.randint(2, 6))] + [rng.choice(cue)]
            rng.shuffle(words)
            texts.append(" ".join(words))
        row = dict(zip(COLUMNS[task], texts, strict=True))
        if task != "stsb" and label_style == "name":
            from neobert_hf.integrations.glue import GLUE_TASKS

            label = GLUE_TASKS[task].label_names[label]
        row["label"] = label
        row["idx"] = i
        out.append(row)
    return out


def write_rows(path: Path, data: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".csv":
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(data[0]))
            writer.writeheader()
            writer.writerows(data)
    else:
        with open(path, "w") as f:
            for row in data:
                f.write(json.dumps(row) + "\n")
    return path


def task_files(folder: Path, task: str, n_train: int = 24, n_eval: int = 12, fmt: str = "csv", **kw) -> dict[str, str]:
    """Local train/validation(/mismatched) files of `task`, as `GlueDataArguments` keywords."""
    files = {
        "train_file": write_rows(folder / f"{task}_train.{fmt}", rows(task, n_train, seed=1, **kw)),
        "validation_file": write_rows(folder / f"{task}_dev.{fmt}", rows(task, n_eval, seed=2, **kw)),
    }
    if task == "mnli":
        files["validation_mismatched_file"] = write_rows(
            folder / f"{task}_dev_mm.{fmt}", rows(task, n_eval + 2, seed=3, **kw)
        )
    return {k: str(v) for k, v in files.items()}


def glue_args(output_dir, task: str, model: Path, files: dict, **overrides):
    """`GlueArguments` for a few CPU steps (`overrides` may name a field of any of its groups)."""
    from neobert_hf.integrations.glue import GlueArguments

    values = dict(
        output_dir=str(output_dir),
        task_name=task,
        model_name_or_path=str(model),
        max_steps=4,
        eval_strategy="steps",
        save_strategy="steps",
        eval_steps=2,
        save_steps=2,
        logging_steps=2,
        per_device_train_batch_size=8,
        per_device_eval_batch_size=8,
        learning_rate=1e-3,
        max_seq_length=32,
        report_to="none",
        disable_tqdm=True,
        dataloader_pin_memory=False,
        seed=0,
    )
    values.update(files)
    values.update(overrides)
    return GlueArguments.from_flat(**values)


def run_cli(*args: str, cwd=None, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run(
        [sys.executable, "-m", "neobert_hf", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=env,
    )

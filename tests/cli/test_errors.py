"""Bad input and faults through the `neobert-hf` entry point: every case exits with its status and one message that
names the cause (option, file, column, row or line), shows no traceback, and leaves the folder it ran in exactly as
it was (every file's size and modification time), unless the run had already begun (disk full, Ctrl-C), where no
damaged checkpoint may be left.

The cases run in process through `neobert_hf.cli.main.main`; two run `python -m neobert_hf` to show that no traceback
reaches the terminal. See `neobert_hf.cli.errors` for the exit statuses.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest
from helpers.cli import ROOT, TINY, TOKENIZER, corpus_lines, without

from neobert_hf.cli.main import main



# One-layer pretraining on a corpus written per test session (about 1,000 tokens: a few steps of 256).
DATA_FLAGS = ("--dataset_name", "--train_split", "--eval_split")
PRETRAIN = [*without(TINY, *DATA_FLAGS), "--eval_strategy", "no"]








@dataclass
class Ctx:
    tmp: Path
    shared: dict

    @property
    def out(self) -> str:
        return str(self.tmp / "out")

    def write(self, name: str, content: str | bytes) -> str:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
        return str(path)


def pretrain(*extra, data: str | None = None) -> Callable[[Ctx], list[str]]:
    def argv(ctx: Ctx) -> list[str]:
        source = ctx.tmp / data if data else ctx.shared["corpus"]
        return ["pretrain", *PRETRAIN, "--dataset_name", str(source), "--output_dir", ctx.out, *extra]

    return argv


def glue(*extra) -> Callable[[Ctx], list[str]]:
    def argv(ctx: Ctx) -> list[str]:
        files = ctx.shared["glue_files"]
        given = {"--train_file": files["train_file"], "--validation_file": files["validation_file"]}
        for flag in given:
            if flag in extra:
                given[flag] = str(ctx.tmp / extra[extra.index(flag) + 1])
        rest = list(extra)
        for flag in given:
            if flag in rest:
                del rest[rest.index(flag) : rest.index(flag) + 2]
        return [
            "glue", "--task_name", "sst2", "--model_name_or_path", ctx.shared["glue_model"],
            *[token for pair in given.items() for token in pair],
            "--output_dir", ctx.out, "--max_steps", "1", "--max_seq_length", "32", "--use_cpu", "true",
            "--report_to", "none", "--disable_tqdm", "true", *rest,
        ]  # fmt: skip

    return argv


def contrastive(*extra, train: str | None = None) -> Callable[[Ctx], list[str]]:
    def argv(ctx: Ctx) -> list[str]:
        return [
            "contrastive", "--model_name_or_path", ctx.shared["st_model"],
            "--train_dataset", str(ctx.tmp / train) if train else ctx.shared["st_train"],
            "--output_dir", ctx.out, "--max_steps", "1", "--per_device_train_batch_size", "2", "--use_cpu", "true",
            "--report_to", "none", "--eval_strategy", "no", *extra,
        ]  # fmt: skip

    return argv


def _read_only(ctx: Ctx, monkeypatch) -> None:
    folder = ctx.tmp / "ro"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return
    real = os.access  # root may write anywhere: the check is what a user without permission meets

    def access(path, mode, *args, **kwargs):
        if os.path.abspath(path) == str(folder) and mode & os.W_OK:
            return False
        return real(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)


def _disk_full(ctx: Ctx, monkeypatch) -> None:
    import torch

    def save(obj, f, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(f))

    monkeypatch.setattr(torch, "save", save)


def _interrupt(ctx: Ctx, monkeypatch) -> None:
    from transformers import Trainer

    def step(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "training_step", step)


def _optimizer_fails(ctx: Ctx, monkeypatch) -> None:
    from transformers import Trainer

    def create_optimizer(*args, **kwargs):
        raise ValueError("optim_args: 'betas' cannot be parsed")

    monkeypatch.setattr(Trainer, "create_optimizer", create_optimizer)


def _no_damaged_checkpoint(ctx: Ctx) -> None:
    """A run stopped after it began shows no checkpoint that it did not complete: `latest` finds none, and no
    `checkpoints/<step>/` folder exists (an unfinished save stays under a temporary name)."""
    from neobert_hf.training.checkpointing import latest_checkpoint

    root = Path(ctx.out) / "checkpoints"
    steps = sorted(p.name for p in root.iterdir() if p.name.isdigit()) if root.is_dir() else []
    assert steps == [] and latest_checkpoint(ctx.out) is None, steps


def _complete_checkpoints(ctx: Ctx) -> None:
    """A run stopped by bad data after it saved: its checkpoints all verify, and `latest` is one of them."""
    from neobert_hf.training.checkpointing import latest_checkpoint, list_checkpoints, verify_checkpoint

    saved = list_checkpoints(ctx.out)
    assert saved, "the run stopped before its first checkpoint: put the bad line further down"
    for _step, path in saved:
        verify_checkpoint(path)
    assert latest_checkpoint(ctx.out) == saved[-1][1]


MID_RUN_BAD_LINE = 1500  # with small read-ahead buffers, far enough for checkpoints to be saved first


def _saved_empty_dataset(ctx: Ctx) -> None:
    from datasets import Dataset

    Dataset.from_dict({"text": []}).save_to_disk(str(ctx.tmp / "saved"))


@dataclass
class Case:
    id: str
    argv: Callable[[Ctx], list[str]]
    messages: tuple[str, ...]
    code: int = 2
    files: dict[str, str | bytes] = field(default_factory=dict)  # input files written before the run
    setup: Callable[[Ctx], None] | None = None
    patch: Callable[[Ctx, object], None] | None = None
    began: Callable[[Ctx], None] | None = None  # the run began: check this instead of "nothing changed"


DOC = '{"text": "the cat sat on the mat"}\n'
RECIPE = pretrain("--config", "{tmp}/r.yaml")  # with the recipe r.yaml of the case's files
NOT_UTF8 = b'{"text": "hello"}\n{"text": "caf\xe9"}\n'

CASES = [
    # --- pretrain: values refused when the recipe is parsed ---
    Case("lr-negative", pretrain("--learning_rate", "-1"), ("learning_rate must be a finite number >= 0",)),
    Case("lr-nan", pretrain("--learning_rate", "nan"), ("learning_rate", "got nan")),
    Case("batch-size-0", pretrain("--per_device_train_batch_size", "0"), ("per_device_train_batch_size",)),
    Case("grad-accum-0", pretrain("--gradient_accumulation_steps", "0"), ("gradient_accumulation_steps",)),
    Case("save-steps-0", pretrain("--save_strategy", "steps", "--save_steps", "0"), ("save_steps", "save_strategy")),
    Case("eval-steps-0", pretrain("--eval_strategy", "steps", "--eval_steps", "0"), ("eval_steps",)),
    Case("logging-steps-0", pretrain("--logging_steps", "0"), ("logging_steps",)),
    Case("save-total-limit-0", pretrain("--save_total_limit", "0"), ("save_total_limit",)),
    Case("max-steps-0", pretrain("--max_steps", "0"), ("max_steps",)),
    Case("weight-decay-negative", pretrain("--weight_decay", "-0.1"), ("weight_decay",)),
    Case("wrong-type", pretrain("--max_steps", "ten"), ("--max_steps", "invalid int value: 'ten'")),
    Case("bad-choice", pretrain("--lr_scheduler_type", "cosinus"), ("--lr_scheduler_type", "invalid choice")),
    Case("unknown-flag", pretrain("--learnig_rate", "1e-3"), ("learnig_rate", "did you mean learning_rate")),
    Case("huge-max-length", pretrain("--max_seq_length", "1000000"), ("max_seq_length (1000000)",)),
    Case(
        "max-length-above-the-model", pretrain("--max_seq_length", "256", "--tokens_per_batch", "256"),
        ("max_seq_length (256)", "max_position_embeddings"),
    ),
    Case("mlm-probability-1", pretrain("--mlm_probability", "1.5"), ("mlm_probability",)),
    Case(
        "sampler-on-a-stream", pretrain("--train_sampling_strategy", "group_by_length"),
        ("train_sampling_strategy=group_by_length has no effect on pretraining", "shuffle_buffer_size"),
    ),
    Case(
        "optim-with-adam", pretrain("--optimizer", "adam", "--optim", "adafactor"),
        ("optim set with optimizer=adam",),
    ),
    # --- pretrain: recipes ---
    Case(
        "unknown-recipe-key", RECIPE, ("r.yaml", "warmup_step", "did you mean warmup_steps"),
        files={"r.yaml": "warmup_step: 3\n"},
    ),
    Case(
        "duplicate-recipe-key", RECIPE, ("r.yaml", "'max_steps' is given twice (lines 1 and 3)"),
        files={"r.yaml": "max_steps: 3\nlearning_rate: 0.001\nmax_steps: 4\n"},
    ),
    Case(
        "yaml-1.1-bool-for-a-flag", RECIPE, ("--packing", "got off"),
        files={"r.yaml": "packing: off\n"},
    ),
    Case("missing-recipe", pretrain("--config", "{tmp}/none.yaml"), ("none.yaml", "does not exist")),
    Case("recipe-not-utf8", RECIPE, ("r.yaml", "not UTF-8"), files={"r.yaml": b"seed: \xff\n"}),
    Case("recipe-not-yaml", RECIPE, ("r.yaml", "not valid YAML"), files={"r.yaml": "a: [\n"}),
    Case("unset-dataset", pretrain("--dataset_name", "none"), ("dataset_name",)),
    # --- pretrain: output folder ---
    Case("output-dir-is-a-file", pretrain(), ("output_dir", "exists and is not a folder"), files={"out": "a file"}),
    Case("output-dir-under-a-file", pretrain("--output_dir", "{tmp}/f/out"), ("f is not a folder",), files={"f": "x"}),
    Case(
        "read-only-output-dir", pretrain("--output_dir", "{tmp}/ro/out"), ("ro", "no write permission"),
        patch=_read_only,
    ),
    # --- pretrain: data ---
    Case("missing-data-file", pretrain(data="nothing.jsonl"), ("nothing.jsonl", "does not exist")),
    Case("empty-file", pretrain(data="d.jsonl"), ("d.jsonl", "empty"), files={"d.jsonl": ""}),
    Case("blank-lines-only", pretrain(data="d.jsonl"), ("d.jsonl", "no records"), files={"d.jsonl": "\n\n"}),
    Case("header-only-csv", pretrain(data="d.csv"), ("d.csv", "no records"), files={"d.csv": "text\n"}),
    Case("empty-saved-dataset", pretrain(data="saved"), ("saved", "empty"), setup=_saved_empty_dataset),
    Case(
        "zero-length-texts", pretrain(data="d.jsonl"), ("no tokens", "'text'"), files={"d.jsonl": '{"text": ""}\n' * 4}
    ),
    Case("not-utf8", pretrain(data="d.jsonl"), ("d.jsonl, line 2", "not UTF-8"), files={"d.jsonl": NOT_UTF8}),
    Case(
        "not-utf8-text-file", pretrain(data="d.txt"), ("d.txt, line 2", "not UTF-8"), files={"d.txt": b"ok\ncaf\xe9\n"}
    ),
    Case(
        "malformed-json-line", pretrain(data="d.jsonl"), ("d.jsonl, line 2", "not valid JSON"),
        files={"d.jsonl": DOC + '{"text": "a b"\n' + DOC},
    ),
    Case(
        "json-line-not-an-object", pretrain(data="d.jsonl"), ("d.jsonl, line 2", "not an object"),
        files={"d.jsonl": DOC + "[1, 2]\n"},
    ),
    Case(
        "text-column-of-integers", pretrain(data="d.jsonl"), ("Text column 'text'", "row 0", "'body'"),
        files={"d.jsonl": "".join(json.dumps({"text": i, "body": "a cat"}) + "\n" for i in range(5))},
    ),
    Case(
        "text-column-all-null", pretrain(data="d.jsonl"), ("Text column 'text'", "null"),
        files={"d.jsonl": '{"text": null, "body": "a cat"}\n' * 5},
    ),
    Case(
        "text-column-mixed-types", pretrain(data="d.jsonl"), ("Text column 'text'", "row 2 holds 5"),
        files={"d.jsonl": DOC + DOC + '{"text": 5}\n'},
    ),
    Case(
        "given-text-column-of-integers", pretrain("--text_column", "n", data="d.jsonl"), ("Text column 'n'", "row 0"),
        files={"d.jsonl": '{"n": 3, "text": "a cat"}\n' * 5},
    ),
    Case(
        "mismatched-columns", pretrain(data="folder"), ("b.jsonl has the columns ['body']", "a.jsonl has ['text']"),
        files={"folder/a.jsonl": DOC * 3, "folder/b.jsonl": '{"body": "a dog"}\n' * 3},
    ),
    Case(
        "one-document-corpus", pretrain(data="d.jsonl"), ("too small for one optimizer step", "8 tokens", "256 tokens"),
        files={"d.jsonl": DOC},
    ),
    # --- pretrain: a streamed corpus, read only as training goes ---
    Case(
        "stream-not-utf8", pretrain("--streaming", "true", data="d.jsonl"), ("d.jsonl, line 2", "not UTF-8"),
        files={"d.jsonl": NOT_UTF8},
    ),
    Case(
        "stream-malformed-json-line", pretrain("--streaming", "true", data="d.jsonl"),
        ("d.jsonl, line 2", "not valid JSON"), files={"d.jsonl": DOC + '{"text": "a b"\n' + DOC},
    ),
    Case(
        "stream-one-document-corpus", pretrain("--streaming", "true", data="d.jsonl"),
        ("training stream is too small for one optimizer step", "8 tokens", "256 tokens"), files={"d.jsonl": DOC},
    ),
    Case(
        "stream-bad-line-mid-run",
        pretrain("--streaming", "true", "--shuffle_buffer_size", "64", "--packing_buffer_size", "16",
                 "--max_steps", "1000", "--save_strategy", "steps", "--save_steps", "10", data="d.jsonl"),
        (f"d.jsonl, line {MID_RUN_BAD_LINE}", "not UTF-8", "checkpoints saved before are complete", "resume"),
        files={"d.jsonl": corpus_lines(MID_RUN_BAD_LINE - 1).encode() + b'{"text": "caf\xe9"}\n'},
        began=_complete_checkpoints,
    ),  # fmt: skip
    # --- pretrain: faults once the run is under way ---
    Case(
        "disk-full-while-saving", pretrain("--max_steps", "1", "--save_strategy", "steps", "--save_steps", "1"),
        ("No space left on device",), code=1, patch=_disk_full, began=_no_damaged_checkpoint,
    ),
    Case(
        "interrupted", pretrain("--max_steps", "2"), ("interrupted",), code=130, patch=_interrupt,
        began=_no_damaged_checkpoint,
    ),
    # --- preprocess ---
    Case(
        "preprocess-no-tokens",
        lambda ctx: ["preprocess", "--dataset_name", str(ctx.tmp / "d.jsonl"), "--tokenizer_name", TOKENIZER,
                     "--output_dir", ctx.out],
        ("no tokens", "'text'"), files={"d.jsonl": '{"text": " "}\n' * 3},
    ),  # fmt: skip
    # --- glue ---
    Case("glue-lr-nan", glue("--learning_rate", "nan"), ("learning_rate", "got nan")),
    Case("glue-batch-size-0", glue("--per_device_train_batch_size", "0"), ("per_device_train_batch_size",)),
    Case("glue-save-steps-0", glue("--save_strategy", "steps", "--save_steps", "0"), ("save_steps",)),
    Case("glue-output-dir-is-a-file", glue(), ("output_dir", "not a folder"), files={"out": "x"}),
    Case("glue-missing-train-file", glue("--train_file", "nope.csv"), ("nope.csv", "does not exist")),
    Case(
        "glue-malformed-json", glue("--train_file", "t.jsonl"), ("t.jsonl, line 2", "not valid JSON"),
        files={"t.jsonl": '{"sentence": "a", "label": 1}\n{"sentence": \n'},
    ),
    Case("glue-fails-in-the-trainer", glue(), ("optim_args",), patch=_optimizer_fails),  # no run_args.json left
    # --- contrastive ---
    Case("contrastive-lr-negative", contrastive("--learning_rate", "-1"), ("learning_rate",)),
    Case("contrastive-grad-accum-0", contrastive("--gradient_accumulation_steps", "0"), ("gradient_accumulation",)),
    Case("contrastive-output-dir-is-a-file", contrastive(), ("output_dir", "not a folder"), files={"out": "x"}),
    Case(
        "contrastive-null-hard-negative", contrastive(train="c.jsonl"), ("column negative at row 2", "null"),
        files={"c.jsonl": "".join(
            json.dumps({"anchor": f"a cat {i}", "positive": f"a dog {i}", "negative": None if i == 2 else f"car {i}"})
            + "\n" for i in range(6)
        )},
    ),  # fmt: skip
    Case(
        "contrastive-malformed-json", contrastive(train="c.jsonl"), ("c.jsonl, line 2", "not valid JSON"),
        files={"c.jsonl": '{"anchor": "a", "positive": "b"}\n{"anchor": \n'},
    ),
    # --- export, push, pppl, glue-summary ---
    Case("export-missing-checkpoint", lambda ctx: ["export", str(ctx.tmp / "none"), ctx.out], ("none",)),
    Case(
        "push-missing-folder", lambda ctx: ["push", str(ctx.tmp / "none"), "--repo-id", "me/m", "--dry-run"],
        ("none",),
    ),
    Case(
        "pppl-missing-data",
        lambda ctx: ["pppl", "--model", ctx.shared["st_model"], "--data", str(ctx.tmp / "none.jsonl"),
                     "--output", str(ctx.tmp / "p.csv")],
        ("none.jsonl",),
    ),  # fmt: skip
    Case(
        "glue-summary-two-runs-of-one-task", lambda ctx: ["glue-summary", str(ctx.tmp / "runs")],
        ("Two runs of sst2",),
        files={f"runs/{n}/glue_results.json": json.dumps({"task": "sst2", "scores": {"accuracy": 0.9}}) for n in "ab"},
    ),
    Case("missing-positional-argument", lambda ctx: ["export"], ("required",)),
]


def snapshot(folder: Path) -> dict[str, tuple]:
    """Every path under `folder` with its kind, size and modification time."""
    return {
        str(p.relative_to(folder)): (p.is_dir(), None if p.is_dir() else p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
    }


def _formatted(argv: list[str], ctx: Ctx) -> list[str]:
    return [token.replace("{tmp}", str(ctx.tmp)) for token in argv]


def test_the_table_is_large_enough():
    assert len(CASES) >= 40 and len({case.id for case in CASES}) == len(CASES)


@pytest.mark.integration
@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_gives_one_clear_message(case: Case, shared, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ctx = Ctx(tmp_path, shared)
    for name, content in case.files.items():
        ctx.write(name, content)
    if case.setup is not None:
        case.setup(ctx)
    if case.patch is not None:
        case.patch(ctx, monkeypatch)
    argv = _formatted(case.argv(ctx), ctx)
    before = snapshot(tmp_path)
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's own usage errors
        code = exit_.code
    err = capsys.readouterr().err
    assert code == case.code, err[-3000:]
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if "error:" in line or "interrupted" in line]
    assert len(lines) == 1, err
    for message in case.messages:
        assert message in lines[0], (message, lines[0])
    if case.began is None:
        assert snapshot(tmp_path) == before  # nothing new, nothing changed
    else:
        case.began(ctx)


def test_recipe_strings_stay_strings_and_none_unsets(shared, tmp_path):
    """`eval_strategy: no` and a string option set to `no` are the string "no", never False; `--eval_split none`
    unsets a recipe's value."""
    from neobert_hf.cli.pretrain import parse_args

    recipe = tmp_path / "r.yaml"
    recipe.write_text("eval_strategy: no\nhub_model_id: no\neval_split: validation\nrun_name: on\n")
    argv = [*PRETRAIN, "--dataset_name", shared["corpus"], "--output_dir", str(tmp_path / "o"), "--config", str(recipe)]
    _, data_args, training_args, _ = parse_args(argv)
    assert training_args.eval_strategy == "no" and training_args.hub_model_id == "no"
    assert training_args.run_name == "on" and data_args.eval_split == "validation"
    _, data_args, _, _ = parse_args([*argv, "--eval_split", "none"])
    assert data_args.eval_split is None


@pytest.mark.integration
@pytest.mark.parametrize(
    "extra, files, message",
    [
        (["--config", "{tmp}/r.yaml"], {"r.yaml": "seed: 1\nseed: 2\n"}, "'seed' is given twice"),
        (["--dataset_name", "{tmp}/d.jsonl"], {"d.jsonl": '{"text": "a"}\n{"text": "b"\n'}, "line 2: not valid JSON"),
    ],
    ids=["duplicate-key", "malformed-json"],
)
def test_no_traceback_reaches_the_terminal(tmp_path, shared, extra, files, message):
    for name, content in files.items():
        (tmp_path / name).write_text(content)
    before = snapshot(tmp_path)
    argv = [*PRETRAIN, "--dataset_name", shared["corpus"], "--output_dir", str(tmp_path / "out")]
    argv += [token.replace("{tmp}", str(tmp_path)) for token in extra]
    completed = subprocess.run(
        [sys.executable, "-m", "neobert_hf", "pretrain", *argv],
        capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"}, cwd=ROOT,
    )  # fmt: skip
    assert completed.returncode == 2, completed.stderr[-3000:]
    assert "Traceback" not in completed.stderr and message in completed.stderr, completed.stderr[-3000:]
    assert snapshot(tmp_path) == before

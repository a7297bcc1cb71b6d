"""A pretraining start that fails writes nothing: bad values are refused before anything is written, and a start that
fails later (a damaged checkpoint being resumed) leaves no new folder and the run's `run_args.json` unchanged."""

import json
from pathlib import Path

import pytest
from helpers.cli import pretrain


def snapshot(folder) -> dict:
    """Every file and folder under `folder` with its bytes (folders: None)."""
    folder = Path(folder)
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--learning_rate", "-1"], "learning_rate must be a finite number >= 0 (got -1.0)"),
        (["--learning_rate", "nan"], "learning_rate must be a finite number >= 0 (got nan)"),
        (["--per_device_train_batch_size", "0"], "per_device_train_batch_size must be a whole number >= 1"),
        (["--per_device_eval_batch_size", "0"], "per_device_eval_batch_size must be a whole number >= 1"),
        (["--gradient_accumulation_steps", "0"], "gradient_accumulation_steps must be a whole number >= 1"),
    ],
)
def test_bad_values_are_refused_before_writing(tmp_path, capsys, extra, message):
    out = tmp_path / "out"
    assert pretrain(out, *extra) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1, err
    assert not out.exists()


def test_output_dir_that_is_a_file(tmp_path, capsys):
    out = tmp_path / "out"
    out.write_text("not a folder")
    assert pretrain(out) == 2
    err = capsys.readouterr().err
    assert "exists and is not a folder" in err and "Traceback" not in err
    assert out.read_text() == "not a folder"


@pytest.mark.integration
def test_a_failed_resume_changes_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    assert pretrain(out, "--max_steps", "2", "--save_strategy", "steps", "--save_steps", "2") == 0
    record = json.loads((out / "run_args.json").read_text())
    assert record["max_steps"] == 2
    optimizer = out / "checkpoints" / "2" / "optimizer.pt"
    optimizer.write_bytes(optimizer.read_bytes()[:100])  # truncated
    before = snapshot(out)
    capsys.readouterr()
    assert pretrain(out, "--max_steps", "4", "--resume_from_checkpoint", "latest") == 2
    err = capsys.readouterr().err
    assert "optimizer.pt has 100 bytes" in err and "Traceback" not in err, err
    assert snapshot(out) == before  # run_args.json still the first run's (max_steps 2), nothing new


@pytest.mark.integration
def test_a_start_that_fails_in_the_trainer_leaves_no_new_folder(tmp_path, monkeypatch):
    from transformers import Trainer

    def fail(self, *args, **kwargs):
        raise RuntimeError("optimizer could not be built")

    monkeypatch.setattr(Trainer, "create_optimizer", fail)
    out = tmp_path / "nested" / "out"
    with pytest.raises(RuntimeError, match="optimizer could not be built"):
        pretrain(out)
    assert list(tmp_path.iterdir()) == []  # neither out/ nor the nested/ folder created for it


@pytest.mark.integration
def test_existing_output_dir_resume_or_overwrite_and_the_run_says_which(tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    assert pretrain(out, "--max_steps", "2", "--save_strategy", "steps", "--save_steps", "2") == 0
    assert "; new run" in capsys.readouterr().out
    assert pretrain(out, "--overwrite_output_dir", "true", "--resume_from_checkpoint", "latest") == 2
    assert "exclude each other" in capsys.readouterr().err

    # A start with overwrite_output_dir that fails before training deletes nothing.
    from transformers import Trainer

    before = snapshot(out)
    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "create_optimizer", lambda self, *a, **k: (_ for _ in ()).throw(RuntimeError("boom")))
        with pytest.raises(RuntimeError, match="boom"):
            pretrain(out, "--max_steps", "1", "--overwrite_output_dir", "true")
    assert snapshot(out) == before
    capsys.readouterr()

    assert pretrain(out, "--max_steps", "1", "--overwrite_output_dir", "true") == 0
    printed = capsys.readouterr().out
    assert "overwrite_output_dir: the earlier run's checkpoints (steps [2]) are deleted when training begins" in printed
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["1"]
    assert json.loads((out / "run_args.json").read_text())["max_steps"] == 1

    assert pretrain(out, "--max_steps", "2", "--resume_from_checkpoint", "latest") == 0
    assert f"resuming from {out / 'checkpoints' / '1'}" in capsys.readouterr().out

"""Checkpoint integrity and one run per output folder: every `checkpoints/<step>/` records its files (sizes and sha256,
written last), resume verifies them and names the damaged file and the newest good step, `latest` never points at a
damaged step, leftovers of interrupted runs are cleaned up or reported, and a second run on a locked output folder is
refused without touching the first run's files."""

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers.training import StatefulStream, make_args, make_trainer, tiny_tokenizer

from neobert_hf.checkpoints import (
    LOCK_NAME,
    MANIFEST_NAME,
    CheckpointError,
    DamagedCheckpointError,
    OutputDirLock,
    OutputDirLockedError,
    clean_leftovers,
    latest_checkpoint,
    list_checkpoints,
    read_manifest,
    resolve_checkpoint,
)
from neobert_hf.checkpoints.lock import _process_start


class TensorStateStream(StatefulStream):
    """A stateful stream whose state is not JSON (a tensor), so its position is saved as `data_state.pt`."""

    def state_dict(self) -> dict:
        return {"index": torch.tensor(self.index)}

    def load_state_dict(self, state: dict) -> None:
        self.index = int(state["index"])


def snapshot(folder) -> dict:
    folder = Path(folder)
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))}


def trainer_for(output_dir, max_steps=6, **overrides):
    args = make_args(output_dir, max_steps=max_steps, save_strategy="steps", save_steps=2, **overrides)
    return make_trainer(args, train_dataset=TensorStateStream())


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A run of 4 steps with checkpoints at steps 2 and 4 (manifest, data_state.pt, tokenizer)."""
    out = tmp_path_factory.mktemp("integrity") / "run"
    args = make_args(out, max_steps=4, save_strategy="steps", save_steps=2)
    make_trainer(args, train_dataset=TensorStateStream(), processing_class=tiny_tokenizer()).train()
    return out


@pytest.fixture
def copy(run, tmp_path) -> Path:
    shutil.copytree(run, tmp_path / "run")
    return tmp_path / "run"


def test_each_checkpoint_records_its_files(run):
    folder = run / "checkpoints" / "4"
    record = read_manifest(folder)
    on_disk = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST_NAME)
    assert sorted(record["files"]) == on_disk and record["step"] == 4 and record["hash"] == "sha256"
    assert {"data_state.pt", "optimizer.pt", "rng_state.pth", "model.safetensors"} <= set(on_disk)
    assert record["files"]["optimizer.pt"]["size"] == (folder / "optimizer.pt").stat().st_size
    assert not (run / LOCK_NAME).exists()  # released when training ended


STATE_FILES = [
    "trainer_state.json", "data_state.pt", "optimizer.pt", "scheduler.pt", "rng_state.pth", "model.safetensors"
]


def damage_file(path, how: str) -> None:
    """Truncate `path` to half its size, or delete it."""
    if how == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        path.unlink()


@pytest.mark.parametrize("damage", ["truncate", "delete"])
@pytest.mark.parametrize("name", STATE_FILES)
def test_a_damaged_file_is_named_with_the_newest_good_step_and_nothing_changes(copy, name, damage):
    path = copy / "checkpoints" / "4" / name
    damage_file(path, damage)
    before = snapshot(copy)
    for spec in ("latest", 4):
        with pytest.raises(DamagedCheckpointError) as caught:
            trainer_for(copy).train(resume_from_checkpoint=spec)
        message = str(caught.value)
        assert name in message and "step 2" in message and "resume_from_checkpoint=2" in message, message
        assert caught.value.files == [name] and caught.value.good_step == 2
    assert latest_checkpoint(copy) == str(copy / "checkpoints" / "2")  # never the damaged step
    assert snapshot(copy) == before  # no lock, no cleanup, no run_args, nothing


def test_damaged_contents_of_the_right_size_are_found_by_the_hash(copy):
    path = copy / "checkpoints" / "4" / "optimizer.pt"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    assert resolve_checkpoint("latest", copy) == str(copy / "checkpoints" / "4")  # sizes match: only hashing tells
    before = snapshot(copy)
    with pytest.raises(DamagedCheckpointError, match=r"optimizer.pt does not match the sha256.*verifies is step 2 "):
        trainer_for(copy).train(resume_from_checkpoint="latest")
    assert snapshot(copy) == before


def test_a_damaged_manifest_is_named(copy):
    (copy / "checkpoints" / "4" / MANIFEST_NAME).write_text('{"files": {')
    with pytest.raises(DamagedCheckpointError, match=f"{MANIFEST_NAME} cannot be read.*resume_from_checkpoint=2"):
        resolve_checkpoint("latest", copy)


def test_a_checkpoint_without_manifest_still_resumes(copy, caplog):
    for step in ("2", "4"):
        os.remove(copy / "checkpoints" / step / MANIFEST_NAME)
    assert [s for s, _ in list_checkpoints(copy)] == [2, 4]
    trainer = trainer_for(copy)
    with caplog.at_level(logging.WARNING, logger="neobert_hf.checkpoints"):
        trainer.train(resume_from_checkpoint="latest")
    assert trainer.state.global_step == 6
    assert any("has no checkpoint_manifest.json" in r.getMessage() for r in caplog.records)
    assert read_manifest(copy / "checkpoints" / "6") is not None  # new checkpoints get one


@pytest.mark.parametrize(
    "name, damage, expected",
    [
        ("optimizer.pt", "truncate", "optimizer.pt cannot be read"),
        ("model.safetensors", "truncate", r"model.safetensors cannot be read \(.*file not fully covered; \d+ bytes: truncated or damaged\)"),
        ("trainer_state.json", "truncate", "trainer_state.json cannot be read"),
        ("rng_state.pth", "truncate", "rng_state.pth cannot be read"),
        ("scheduler.pt", "delete", "has optimizer.pt but no scheduler.pt"),
    ],
)
def test_a_damaged_checkpoint_without_manifest_is_named(copy, name, damage, expected):
    for step in ("2", "4"):
        os.remove(copy / "checkpoints" / step / MANIFEST_NAME)
    path = copy / "checkpoints" / "4" / name
    damage_file(path, damage)
    before = snapshot(copy)
    with pytest.raises(CheckpointError, match=rf"{expected}.*resume_from_checkpoint=2"):
        trainer_for(copy).train(resume_from_checkpoint=4)
    assert snapshot(copy) == before


def test_damage_only_loading_finds_is_named_too(copy):
    """Without manifest, a torch file whose archive is intact but whose pickle is damaged passes the structural check;
    loading it still gives an error naming it, not a raw unpickling traceback."""
    import struct
    import zipfile

    os.remove(copy / "checkpoints" / "4" / MANIFEST_NAME)
    path = copy / "checkpoints" / "4" / "rng_state.pth"
    data = bytearray(path.read_bytes())
    info = next(i for i in zipfile.ZipFile(path).infolist() if i.filename.endswith("data.pkl"))
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26 : info.header_offset + 30])
    start = info.header_offset + 30 + name_len + extra_len
    data[start + 2 : start + 12] = bytes(b ^ 0x5A for b in data[start + 2 : start + 12])
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"checkpoints/4 failed while loading the RNG state \(rng_state"):
        trainer_for(copy).train(resume_from_checkpoint="latest")
    assert not (copy / LOCK_NAME).exists()


def test_leftovers_of_interrupted_runs_are_cleaned_or_reported_on_the_next_start(copy, caplog):
    root = copy / "checkpoints"
    (root / "1").mkdir()  # what an interrupted deletion by earlier versions left: config.json alone
    shutil.copy(root / "2" / "config.json", root / "1" / "config.json")
    (root / "9").mkdir()  # the same, newer than every complete step: it does not block `latest`
    shutil.copy(root / "2" / "config.json", root / "9" / "config.json")
    (root / ".tmp-5-0123abcd").mkdir()  # an interrupted save
    (root / ".tmp-5-0123abcd" / "model.safetensors").write_bytes(b"partial")
    shutil.copytree(root / "2", root / "3")  # damaged but holding weights: reported, kept, never resumed
    os.remove(root / "3" / "optimizer.pt")
    (copy / ".hub-export-3-abc123").mkdir()  # the staged export of a push the killed run never finished
    (copy / ".hub-export-3-abc123" / "model.safetensors").write_bytes(b"staged")
    assert resolve_checkpoint("latest", copy) == str(root / "4")

    trainer = trainer_for(copy)
    with caplog.at_level(logging.WARNING, logger="neobert_hf.checkpoints"):
        trainer.train(resume_from_checkpoint="latest")
    assert trainer.state.global_step == 6
    assert sorted(os.listdir(root)) == ["2", "3", "4", "6"]
    assert not (copy / ".hub-export-3-abc123").exists()
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "Deleted what interrupted runs left" in messages and ".tmp-5-0123abcd" in messages
    assert "checkpoints/3 is incomplete or damaged (it has no optimizer.pt" in messages


def test_an_interrupted_rotation_leaves_no_partial_step_folder(copy, monkeypatch):
    import neobert_hf.checkpoints.tree as checkpointing

    real_rmtree = shutil.rmtree

    def killed_midway(path, ignore_errors=False):
        os.remove(os.path.join(path, "model.safetensors"))  # a few files gone, then the process dies
        raise KeyboardInterrupt("killed while rotating")

    monkeypatch.setattr(checkpointing.shutil, "rmtree", killed_midway)
    with pytest.raises(KeyboardInterrupt):
        trainer_for(copy, save_total_limit=2).train(resume_from_checkpoint="latest")
    monkeypatch.setattr(checkpointing.shutil, "rmtree", real_rmtree)
    names = os.listdir(copy / "checkpoints")
    assert sorted(n for n in names if n.isdigit()) == ["4", "6"]  # step 2 went under a temporary name first
    assert [n for n in names if n.startswith(".tmp-deleting-2-")]
    assert not (copy / LOCK_NAME).exists()  # released on the way out
    assert clean_leftovers(copy) and sorted(os.listdir(copy / "checkpoints")) == ["4", "6"]


# ---------------------------------------------------------------------------------------------------------------------
# One run per output folder
# ---------------------------------------------------------------------------------------------------------------------


def write_lock(output_dir, pid, host=None, **extra):
    record = {"pid": pid, "host": host or socket.gethostname(), "started": "2024-01-01T00:00:00+00:00", **extra}
    (Path(output_dir) / LOCK_NAME).write_text(json.dumps(record))


def test_a_second_run_on_a_locked_output_dir_is_refused_and_touches_nothing(copy):
    # the first run, alive (this process, as another run would appear), in the middle of a save
    write_lock(copy, os.getpid(), process_start=_process_start(os.getpid()), command="neobert-hf pretrain first")
    in_progress = copy / "checkpoints" / ".tmp-6-feedbeef"
    in_progress.mkdir()
    (in_progress / "optimizer.pt").write_bytes(b"being written")
    before = snapshot(copy)
    for spec in (None, "latest"):
        with pytest.raises(OutputDirLockedError, match=rf"in use by another run \(pid {os.getpid()} .*first\)"):
            trainer_for(copy).train(resume_from_checkpoint=spec)
    assert snapshot(copy) == before  # the first run's temporary folder and lock are untouched


def test_a_live_lock_held_by_another_process(copy):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        write_lock(copy, child.pid)
        with pytest.raises(OutputDirLockedError, match=f"pid {child.pid}"):
            trainer_for(copy).train(resume_from_checkpoint="latest")
    finally:
        child.kill()
        child.wait()


def test_a_stale_lock_is_taken_over_with_a_note(copy, caplog):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    write_lock(copy, dead.pid)
    trainer = trainer_for(copy)
    with caplog.at_level(logging.WARNING, logger="neobert_hf.checkpoints"):
        trainer.train(resume_from_checkpoint="latest")
    assert trainer.state.global_step == 6
    assert any("Took over the stale lock" in r.getMessage() for r in caplog.records)
    assert not (copy / LOCK_NAME).exists()


def test_a_lock_from_another_host_is_refused_with_how_to_remove_it(copy):
    write_lock(copy, 1, host="some-other-node")
    with pytest.raises(OutputDirLockedError, match=f"some-other-node.*delete {copy / LOCK_NAME}"):
        trainer_for(copy).train(resume_from_checkpoint="latest")


def test_the_lock_is_reentrant_released_and_holds_no_token(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["neobert-hf", "pretrain", "--hub_token", "hf_secret1", "--x_token=hf_secret2"])
    out = tmp_path / "new" / "run"
    with OutputDirLock(out):
        with OutputDirLock(out):
            pass
        text = (out / LOCK_NAME).read_text()
        assert json.loads(text)["pid"] == os.getpid() and "hf_secret" not in text
    assert os.listdir(out) == []


def test_the_glue_trainer_takes_the_lock_too(copy):
    from neobert_hf.integrations.glue_trainer import GlueTrainer

    write_lock(copy, os.getpid(), process_start=_process_start(os.getpid()))
    trainer = make_trainer(make_args(copy, max_steps=2), trainer_cls=GlueTrainer)
    with pytest.raises(OutputDirLockedError):
        trainer.train()


# ---------------------------------------------------------------------------------------------------------------------
# Loading and export
# ---------------------------------------------------------------------------------------------------------------------


def test_the_manifest_stays_out_of_exports_and_loading_checks_it(copy, tmp_path):
    from transformers import AutoModelForMaskedLM

    from neobert_hf import NeoBERTForMaskedLM
    from neobert_hf.export import export_model
    from neobert_hf.checkpoints import CheckpointLoadError, load_pretrained_strict

    folder = copy / "checkpoints" / "4"
    AutoModelForMaskedLM.from_pretrained(folder)  # the manifest does not disturb loading
    result = export_model(folder, tmp_path / "export")
    assert MANIFEST_NAME not in result.files and not (tmp_path / "export" / MANIFEST_NAME).exists()

    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CheckpointLoadError, match="model.safetensors has 1000 bytes"):
        load_pretrained_strict(folder, NeoBERTForMaskedLM)
    with pytest.raises(CheckpointLoadError, match="step 4 .*model.safetensors.*resume_from_checkpoint=2"):
        load_pretrained_strict(copy, NeoBERTForMaskedLM, checkpoint="latest")
    assert load_pretrained_strict(copy, NeoBERTForMaskedLM, checkpoint=2).loaded_from == str(copy / "checkpoints" / "2")


def test_publish_flushes_every_file_and_folder_before_the_rename_and_the_parent_after(tmp_path, monkeypatch):
    from neobert_hf.checkpoints import tree

    tmp_dir = tmp_path / "checkpoints" / ".tmp-5-abc"
    (tmp_dir / "sub").mkdir(parents=True)
    for name in ("model.safetensors", "trainer_state.json", "sub/optimizer.pt"):
        (tmp_dir / name).write_bytes(b"x" * 10)
    final_dir = tmp_path / "checkpoints" / "5"
    events = []
    real_fsync, real_rename = tree._fsync, os.rename

    def fsync(path, directory=False):
        events.append(("fsync", os.path.relpath(path, tmp_path), directory))
        real_fsync(path, directory)

    def rename(source, target):
        events.append(("rename", os.path.relpath(source, tmp_path), os.path.relpath(target, tmp_path)))
        real_rename(source, target)

    monkeypatch.setattr(tree, "_fsync", fsync)
    monkeypatch.setattr(os, "rename", rename)
    tree.publish(str(tmp_dir), str(final_dir))
    renamed = events.index(("rename", "checkpoints/.tmp-5-abc", "checkpoints/5"))
    before = {event[1:] for event in events[:renamed]}
    for name in ("model.safetensors", "trainer_state.json", "sub/optimizer.pt"):
        assert (f"checkpoints/.tmp-5-abc/{name}", False) in before
    assert {("checkpoints/.tmp-5-abc", True), ("checkpoints/.tmp-5-abc/sub", True)} <= before
    assert events[renamed + 1:] == [("fsync", "checkpoints", True)]
    assert (final_dir / "sub" / "optimizer.pt").read_bytes() == b"x" * 10


def test_fsync_tolerates_only_file_systems_without_fsync(tmp_path, monkeypatch):
    import errno

    from neobert_hf.checkpoints import tree

    path = tmp_path / "f"
    path.write_text("x")
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.EINVAL, "no fsync here")))
    tree._fsync(str(path))  # some FUSE/network mounts: as durable as they make it
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.EIO, "I/O error")))
    with pytest.raises(OSError, match="I/O error"):
        tree._fsync(str(path))

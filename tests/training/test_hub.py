"""`push_to_hub` uploads exactly the clean export, from `neobert-hf push` and from the Trainer. Offline: only the network
calls of `huggingface_hub.HfApi` are replaced (see `HubRecorder`); everything else runs for real."""

import os

import pytest
from helpers.export import CLEAN_FILES, HubRecorder, list_files, tiny_tokenizer, write_checkpoint
from helpers.training import make_args, make_trainer

from neobert_hf.cli.main import main
from neobert_hf.export import ExportError, export_model, push_to_hub


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    return write_checkpoint(tmp_path_factory.mktemp("run") / "run")


@pytest.fixture
def hub(monkeypatch) -> HubRecorder:
    return HubRecorder(monkeypatch)


@pytest.mark.integration
def test_push_an_exported_folder(checkpoint, tmp_path, hub):
    export_model(checkpoint, tmp_path / "export")
    push_to_hub(tmp_path / "export", "org/tiny", private=True, revision="v1")
    assert hub.repos == [{"repo_id": "org/tiny", "private": True, "exist_ok": True}]
    assert hub.branches == [{"repo_id": "org/tiny", "branch": "v1"}]
    (upload,) = hub.uploads
    assert upload["files"] == CLEAN_FILES
    assert upload["revision"] == "v1" and upload["path_in_repo"] is None and upload["delete_patterns"] is None


def test_push_a_checkpoint_exports_it_first(checkpoint, hub, capsys):
    assert {"optimizer.pt", "trainer_state.json"} <= set(os.listdir(checkpoint))
    assert main(["push", checkpoint, "--repo-id", "org/tiny"]) == 0
    (upload,) = hub.uploads
    assert upload["files"] == CLEAN_FILES
    assert upload["folder_path"] != checkpoint and not os.path.exists(upload["folder_path"])  # temporary, removed
    assert 'from_pretrained("org/tiny", trust_remote_code=True)' in upload["readme"]
    assert hub.branches == []
    assert "Pushed" in capsys.readouterr().out


def test_push_with_sentence_transformers_files(checkpoint, hub):
    pytest.importorskip("sentence_transformers")
    push_to_hub(checkpoint, "org/tiny-st", sentence_transformers=True, pooling="cls")
    (upload,) = hub.uploads
    assert upload["files"] == sorted(
        CLEAN_FILES + ["1_Pooling/config.json", "config_sentence_transformers.json", "modules.json",
                       "sentence_bert_config.json"]
    )


def test_push_without_a_repo_id_uploads_nothing(checkpoint, tmp_path, hub, capsys):
    for repo_id in (None, "", "  "):
        with pytest.raises(ExportError, match="needs a repo id"):
            push_to_hub(checkpoint, repo_id)
    with pytest.raises(ExportError, match="Invalid repo id"):
        push_to_hub(checkpoint, "not a/valid/id")
    assert main(["push", checkpoint]) == 2
    assert "needs a repo id" in capsys.readouterr().err
    export_model(checkpoint, tmp_path / "export")
    with pytest.raises(ExportError, match="already an exported folder"):
        push_to_hub(tmp_path / "export", "org/tiny", task="base")
    with pytest.raises(ExportError, match="not a model folder"):
        push_to_hub(tmp_path, "org/tiny")
    assert hub.repos == [] and hub.uploads == []


def _no_staging_left(output_dir) -> bool:
    return not [n for n in os.listdir(output_dir) if n.startswith(".hub-export-") or ".tmp-" in n]


@pytest.mark.integration
def test_trainer_pushes_the_clean_export_of_every_save(tmp_path, hub):
    # save_steps=2, max_steps=3: step 2 is pushed during training, step 3 (the final save, after the training loop)
    # before train() returns.
    args = make_args(tmp_path, max_steps=3, save_strategy="steps", save_steps=2, push_to_hub=True,
                     hub_model_id="org/tiny", hub_private_repo=True)
    trainer = make_trainer(args, processing_class=tiny_tokenizer())
    trainer.train()
    assert hub.repos == [{"repo_id": "org/tiny", "private": True, "exist_ok": True}]
    assert [u["commit_message"] for u in hub.uploads] == ["Training in progress, step 2", "Training in progress, step 3"]
    for upload in hub.uploads:
        assert upload["repo_id"] == "org/tiny"
        assert upload["files"] == CLEAN_FILES  # never checkpoints/, optimizer, scheduler, RNG or trainer state
        assert upload["path_in_repo"] is None
    assert "| optimizer steps | 3 of 3 |" in hub.uploads[-1]["readme"]

    trainer.push_to_hub()  # an explicit push at the end: the current model, exported
    assert hub.uploads[-1]["commit_message"] == "End of training"
    assert hub.uploads[-1]["files"] == CLEAN_FILES
    assert _no_staging_left(tmp_path)
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["2", "3"]  # the checkpoint tree stays local


def test_trainer_push_arguments_are_checked_before_anything_is_written(tmp_path, hub):
    cases = [
        ({"hub_model_id": None}, "needs hub_model_id"),
        ({"hub_model_id": "org/tiny", "hub_strategy": "checkpoint"}, "optimizer"),
        ({"hub_model_id": "org/tiny", "hub_strategy": "all_checkpoints"}, "optimizer"),
    ]
    for overrides, match in cases:
        args = make_args(tmp_path / "run", push_to_hub=True, **overrides)
        with pytest.raises(ValueError, match=match):
            make_trainer(args, processing_class=tiny_tokenizer())
    args = make_args(tmp_path / "run", push_to_hub=True, hub_model_id="org/tiny")
    with pytest.raises(ValueError, match="tokenizer"):
        make_trainer(args)
    assert hub.repos == [] and hub.uploads == []
    assert not os.path.exists(tmp_path / "run") or list_files(tmp_path / "run") == []


# ---------------------------------------------------------------------------------------------------------------------
# The allow-list: only model files leave the machine, whatever else sits in the folder
# ---------------------------------------------------------------------------------------------------------------------


def _litter(folder) -> None:
    """What a user's folder may also hold: nested training state, secrets, records, unrelated files, a link out."""
    folder = str(folder)
    for rel, data in {
        "backup/optimizer.pt": b"state",
        "backup/model.safetensors": b"old weights",
        "notes/README.md": b"notes",
        ".env": b"HF_TOKEN=hf_secret",
        ".git/config": b"[core]",
        "optimizer.pt": b"state",
        "scheduler.pt": b"state",
        "rng_state.pth": b"state",
        "trainer_state.json": b"{}",
        "training_args.bin": b"args",
        "data_state.json": b"{}",
        "run_args.json": b"{}",
        "eval/results.json": b"{}",
        "pytorch_model_fsdp_0.bin": b"state",
    }.items():
        path = os.path.join(folder, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(data)
    outside = os.path.join(os.path.dirname(folder), "outside.safetensors")
    with open(outside, "wb") as handle:
        handle.write(b"not this model's")
    os.symlink(outside, os.path.join(folder, "linked.safetensors"))


def test_push_uploads_only_the_allow_list_of_a_littered_folder(checkpoint, tmp_path, hub, capsys):
    export_model(checkpoint, tmp_path / "export")
    _litter(tmp_path / "export")
    assert main(["push", str(tmp_path / "export"), "--repo-id", "org/tiny"]) == 0
    (upload,) = hub.uploads
    assert upload["files"] == CLEAN_FILES
    out = capsys.readouterr().out
    assert f"Uploading {len(CLEAN_FILES)} files of" in out
    assert all(f"  {name}\n" in out for name in CLEAN_FILES) and "optimizer" not in out

    # A checkpoint folder (optimizer, scheduler, trainer state) is exported first, and the export is uploaded.
    result = push_to_hub(checkpoint, "org/tiny")
    assert result.files == CLEAN_FILES and hub.uploads[-1]["files"] == CLEAN_FILES


def test_dry_run_lists_the_files_and_uploads_nothing(checkpoint, tmp_path, hub, capsys):
    export_model(checkpoint, tmp_path / "export")
    _litter(tmp_path / "export")
    assert main(["push", str(tmp_path / "export"), "--repo-id", "org/tiny", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"Would upload {len(CLEAN_FILES)} files" in out and "nothing was uploaded" in out
    assert all(f"  {name}\n" in out for name in CLEAN_FILES)
    assert main(["push", checkpoint, "--repo-id", "org/tiny", "--dry-run"]) == 0
    assert "model.safetensors" in capsys.readouterr().out
    assert hub.repos == [] and hub.uploads == []


def test_include_adds_named_files_and_refuses_state(checkpoint, tmp_path, hub, capsys):
    export_model(checkpoint, tmp_path / "export")
    _litter(tmp_path / "export")
    folder = str(tmp_path / "export")
    assert main(["push", folder, "--repo-id", "org/tiny", "--include", "eval/results.json"]) == 0
    assert hub.uploads[-1]["files"] == sorted(CLEAN_FILES + ["eval/results.json"])
    capsys.readouterr()
    for name, message in [
        ("missing.json", "no such file"),
        ("backup/optimizer.pt", "never uploaded"),
        (".env", "never uploaded"),
        ("training_args.bin", "never uploaded"),
        ("../outside.safetensors", "inside"),
        ("linked.safetensors", "links outside"),
    ]:
        assert main(["push", folder, "--repo-id", "org/tiny", "--include", name]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err and "Traceback" not in err, (name, err)
    assert len(hub.uploads) == 1

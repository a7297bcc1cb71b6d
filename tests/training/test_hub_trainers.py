"""Every Trainer of the package pushes only a clean export (hub mocked with `HubRecorder`): pretraining (and the plain
`NeoBERTTrainer` API, see test_hub.py), GLUE (LoRA included) and contrastive. Never `checkpoints/`, optimizer,
scheduler, RNG, trainer or data state, `training_args.bin` or `run_args.json`."""

import os
from pathlib import Path

import pytest
from helpers.export import CLEAN_FILES, HubRecorder, list_files
from helpers.glue import glue_args, make_tokenizer, save_pretrained_model, task_files

from neobert_hf.export import PUSH_ALLOW_PATTERNS, PUSH_DENY_PATTERNS


TOKEN = "hf_SECRETxyzTrainerPushToken55555"


@pytest.fixture
def hub(monkeypatch) -> HubRecorder:
    return HubRecorder(monkeypatch)


def assert_clean(upload) -> None:
    import fnmatch

    assert upload["files"], upload
    for rel in upload["files"]:
        name = rel.split("/")[-1]
        assert rel.count("/") <= 1 and not rel.startswith("checkpoints/"), rel
        assert any(fnmatch.fnmatch(name, p) for p in PUSH_ALLOW_PATTERNS), rel
        assert not any(fnmatch.fnmatch(name, p) for p in PUSH_DENY_PATTERNS), rel


def no_staging_left(output_dir) -> bool:
    return not [n for n in os.listdir(output_dir) if n.startswith(".hub-export-")]


@pytest.mark.integration
@pytest.mark.parametrize("use_peft", [False, True])
def test_glue_trainer_pushes_only_the_export(tmp_path, hub, use_peft):
    from neobert_hf.integrations.glue import prepare_glue, run_glue

    if use_peft:
        pytest.importorskip("peft")
    tok = make_tokenizer(tmp_path / "tok")
    pretrained = save_pretrained_model(tmp_path / "pretrained", tok, seed=0)
    files = task_files(tmp_path, "mrpc", n_train=16, n_eval=8)
    args = glue_args(
        tmp_path / "out", "mrpc", pretrained, files, push_to_hub=True, hub_model_id="org/glue", hub_token=TOKEN,
        use_peft=use_peft,
    )
    run_glue(prepare_glue(args))
    assert [u["commit_message"] for u in hub.uploads] == ["Training in progress, step 2", "Training in progress, step 4"]
    for upload in hub.uploads:
        assert upload["repo_id"] == "org/glue"
        assert upload["files"] == sorted(CLEAN_FILES), upload["files"]
        assert "pipeline_tag: text-classification" in upload["readme"]
        assert "model_name: glue\n" in upload["readme"]  # the repo's name, not the staging folder's
    assert no_staging_left(tmp_path / "out")
    assert os.path.isfile(tmp_path / "out" / "run_args.json")  # stays local


def test_glue_push_without_a_repo_id_is_refused_before_writing(tmp_path, hub):
    from neobert_hf.integrations.glue import prepare_glue

    tok = make_tokenizer(tmp_path / "tok")
    pretrained = save_pretrained_model(tmp_path / "pretrained", tok, seed=0)
    files = task_files(tmp_path, "mrpc", n_train=16, n_eval=8)
    with pytest.raises(ValueError, match="needs hub_model_id"):
        prepare_glue(glue_args(tmp_path / "out", "mrpc", pretrained, files, push_to_hub=True))
    assert not os.path.exists(tmp_path / "out")


@pytest.mark.integration
def test_contrastive_trainer_pushes_only_the_model_files(tmp_path, hub):
    pytest.importorskip("sentence_transformers")
    from helpers.modeling import save_tiny_checkpoint

    from neobert_hf.integrations.contrastive import (
        ContrastiveArguments,
        ContrastiveTrainingArguments,
        prepare_contrastive,
    )

    checkpoint = save_tiny_checkpoint(tmp_path / "mlm")
    train = Path(__file__).resolve().parents[1] / "assets" / "contrastive" / "train.jsonl"
    args = ContrastiveArguments(model_name_or_path=checkpoint, train_dataset=str(train))
    training_args = ContrastiveTrainingArguments(
        output_dir=str(tmp_path / "run"), per_device_train_batch_size=4, max_steps=3, save_steps=2, logging_steps=1,
        report_to="none", use_cpu=True, dataloader_pin_memory=False, seed=3, push_to_hub=True,
        hub_model_id="org/st", hub_token=TOKEN,
    )  # fmt: skip
    trainer = prepare_contrastive(args, training_args).build_trainer()
    trainer.train()
    trainer.push_to_hub()
    assert [u["commit_message"] for u in hub.uploads] == [
        "Training in progress, step 2", "Training in progress, step 3", "End of training"
    ]
    checkpoint_files = set(list_files(tmp_path / "run" / "checkpoints" / "3"))
    assert {"optimizer.pt", "training_args.bin", "trainer_state.json"} <= checkpoint_files
    for upload in hub.uploads:
        assert_clean(upload)
        assert {"modules.json", "model.safetensors", "config.json", "tokenizer.json", "README.md",
                "1_Pooling/config.json"} <= set(upload["files"])  # fmt: skip
        assert set(upload["files"]) <= checkpoint_files
    assert no_staging_left(tmp_path / "run")

"""No secret leaves the process or reaches the disk: a Hub token given with `--hub_token` or `HF_TOKEN` appears in no
file that a pretraining run, an export or a push writes (checkpoints' `training_args.bin` included), and model cards
hold no local absolute path. Offline: the Hub is replaced by `HubRecorder`."""

import os

import pytest
from helpers.cli import CORPUS, pretrain
from helpers.export import HubRecorder, list_files

from neobert_hf.cli.main import main
from neobert_hf.model_card import display_path


ARG_TOKEN = "hf_SECRETxyzArgumentToken0123456789"
ENV_TOKEN = "hf_SECRETxyzEnvironmentToken987654321"


def files_holding(root, *needles: str) -> list[str]:
    """Every file under `root` (binary too, any depth, dot-files included) whose bytes contain one of `needles`."""
    found = []
    for path in list_files(root):
        with open(os.path.join(root, path), "rb") as handle:
            data = handle.read()
        if any(needle.encode() in data for needle in needles):
            found.append(path)
    return found


@pytest.fixture
def hub(monkeypatch) -> HubRecorder:
    return HubRecorder(monkeypatch)


@pytest.mark.integration
def test_no_token_in_any_written_file(tmp_path, monkeypatch, hub, capsys):
    monkeypatch.setenv("HF_TOKEN", ENV_TOKEN)
    out = tmp_path / "run"
    uploaded_secrets = []
    status = pretrain(
        out, "--hub_token", ARG_TOKEN, "--push_to_hub", "true", "--hub_model_id", "org/tiny",
        "--save_strategy", "steps", "--save_steps", "2", "--report_to", "tensorboard",
    )  # fmt: skip
    assert status == 0
    assert (out / "checkpoints" / "3" / "training_args.bin").is_file()
    assert hub.uploads and all("training_args.bin" not in u["files"] for u in hub.uploads)

    assert main(["export", str(out), str(tmp_path / "exported")]) == 0
    assert main(["push", str(tmp_path / "exported"), "--repo-id", "org/tiny", "--token", ARG_TOKEN]) == 0
    for upload in hub.uploads:
        if os.path.isdir(upload["folder_path"]):
            uploaded_secrets += files_holding(upload["folder_path"], ARG_TOKEN, ENV_TOKEN)

    assert list_files(tmp_path)  # something was written
    assert files_holding(tmp_path, ARG_TOKEN, ENV_TOKEN) == []
    assert uploaded_secrets == []
    printed = capsys.readouterr()
    assert ARG_TOKEN not in printed.out + printed.err and ENV_TOKEN not in printed.out + printed.err

    # Model cards (checkpoints', the export's) name local data and folders without their absolute path.
    cards = [p for p in list_files(tmp_path) if p.endswith("README.md")]
    assert len(cards) >= 3
    assert [p for p in files_holding(tmp_path, str(tmp_path), CORPUS) if p.endswith("README.md")] == []
    assert f"| data | {display_path(CORPUS)}" in (tmp_path / "exported" / "README.md").read_text()

    import torch

    saved = torch.load(out / "checkpoints" / "3" / "training_args.bin", weights_only=False)
    assert saved.hub_token is None and saved.hub_model_id == "org/tiny"  # the rest of the arguments is kept


def test_the_trainer_keeps_its_token_for_pushing(tmp_path, hub):
    from helpers.export import tiny_tokenizer
    from helpers.training import make_args, make_trainer

    args = make_args(tmp_path, max_steps=2, save_strategy="steps", save_steps=2, hub_token=ARG_TOKEN)
    trainer = make_trainer(args, processing_class=tiny_tokenizer())
    trainer.train()
    assert trainer.args.hub_token == ARG_TOKEN  # only the pickled copy is redacted
    trainer.save_model(tmp_path / "saved")
    assert files_holding(tmp_path, ARG_TOKEN) == []

"""`load_pretrained_strict`: every weight loads or the error names it; only a new task head may be missing; task-head
transfer; resolution of run folders, checkpoint folders, exported folders and Hub ids."""

import json
import os

import pytest
import torch
from safetensors.torch import load_file, save_file
from helpers.glue import make_tokenizer, save_pretrained_model

from neobert_hf import NeoBERTForMaskedLM, NeoBERTForSequenceClassification, NeoBERTModel
from neobert_hf.checkpoints import (
    CheckpointLoadError,
    load_pretrained_strict,
    resolve_pretrained_path,
)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpts")
    tok = make_tokenizer(root / "tok")
    mlm = save_pretrained_model(root / "mlm", tok, head="mlm", seed=1)
    mnli = save_pretrained_model(root / "mnli", tok, head="cls", seed=2, num_labels=3, finetuning_task="mnli")
    return {"root": root, "tok": tok, "mlm": mlm, "mnli": mnli}


def encoder_state(model):
    base = model.model if hasattr(model, "model") else model
    return {k: v.clone() for k, v in base.state_dict().items()}


def copy_with(folder, target, edit):
    """Copies a model folder, editing the safetensors state dict with `edit(dict) -> dict`."""
    target.mkdir(parents=True)
    for name in os.listdir(folder):
        if name != "model.safetensors":
            (target / name).write_bytes((folder / name).read_bytes())
    save_file(edit(load_file(folder / "model.safetensors")), target / "model.safetensors", metadata={"format": "pt"})
    return target


def test_pretraining_checkpoint_loads_into_a_classifier_with_a_new_head(folders):
    mlm = NeoBERTForMaskedLM.from_pretrained(folders["mlm"])
    model = load_pretrained_strict(folders["mlm"], NeoBERTForSequenceClassification, num_labels=3)
    for key, value in encoder_state(mlm).items():
        torch.testing.assert_close(model.model.state_dict()[key], value, rtol=0, atol=0)
    weight = model.classifier.out_proj.weight
    assert weight.shape == (3, 64) and 0.01 < weight.std().item() < 0.03  # normal(0, classifier_init_range)
    assert model.loaded_from == str(folders["mlm"])


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (
            lambda sd: {k: v for k, v in sd.items() if k != "model.transformer_encoder.1.wo.weight"},
            r"missing keys .*model\.transformer_encoder\.1\.wo\.weight",
        ),
        (
            lambda sd: {**sd, "model.transformer_encoder.0.extra.weight": torch.zeros(2)},
            r"unexpected keys .*model\.transformer_encoder\.0\.extra\.weight",
        ),
        # The failure this guards against: a prefixed checkpoint loaded with strict=False trains from random weights.
        (
            lambda sd: {f"encoder_model.{k}": v for k, v in sd.items()},
            r"(?s)missing keys .*unexpected keys .*encoder_model\.",
        ),
        (
            lambda sd: {**sd, "model.layer_norm.weight": torch.ones(32)},
            r"keys of another shape: model\.layer_norm\.weight",
        ),
    ],
    ids=["missing", "unexpected", "prefixed", "shape"],
)
def test_encoder_keys_that_do_not_match_are_errors(folders, tmp_path, edit, match):
    bad = copy_with(folders["mlm"], tmp_path / "bad", edit)
    with pytest.raises(CheckpointLoadError, match=match):
        load_pretrained_strict(bad, NeoBERTForSequenceClassification, num_labels=2)


def test_head_transfer(folders):
    source = NeoBERTForSequenceClassification.from_pretrained(folders["mnli"])
    # Same label count: the head comes along.
    loaded = load_pretrained_strict(folders["mnli"], NeoBERTForSequenceClassification, task_head="load", num_labels=3)
    for key, value in source.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=0)
    # Another label count: a clear error before anything loads.
    with pytest.raises(CheckpointLoadError, match=r"task head of .* \(3 labels, task mnli\) to a model with 2 labels"):
        load_pretrained_strict(folders["mnli"], NeoBERTForSequenceClassification, task_head="load", num_labels=2)
    # "auto" refuses a head of another shape rather than half-loading it.
    with pytest.raises(CheckpointLoadError, match="head has another shape"):
        load_pretrained_strict(folders["mnli"], NeoBERTForSequenceClassification, num_labels=2)
    # "new": the encoder transfers, the head is fresh, even when it has the same shape as the source's.
    for num_labels in (2, 3):
        fresh = load_pretrained_strict(
            folders["mnli"], NeoBERTForSequenceClassification, task_head="new", num_labels=num_labels
        )
        for key, value in encoder_state(source).items():
            torch.testing.assert_close(fresh.model.state_dict()[key], value, rtol=0, atol=0)
        assert not torch.equal(fresh.classifier.dense.weight, source.classifier.dense.weight)
        assert fresh.config.num_labels == num_labels
    # A pretraining checkpoint has no head to transfer.
    with pytest.raises(CheckpointLoadError, match="no task head"):
        load_pretrained_strict(folders["mlm"], NeoBERTForSequenceClassification, task_head="load", num_labels=2)


def test_heads_the_target_does_not_have_are_dropped(folders):
    for source in ("mlm", "mnli"):
        base = load_pretrained_strict(folders[source], NeoBERTModel)
        assert isinstance(base, NeoBERTModel)
    # An MLM needs its decoder: a classifier checkpoint is missing it.
    with pytest.raises(CheckpointLoadError, match=r"missing keys .*decoder\.weight"):
        load_pretrained_strict(folders["mnli"], NeoBERTForMaskedLM)


def test_run_folders_resolve_to_their_best_or_latest_checkpoint(folders, tmp_path):
    run = tmp_path / "run"
    for step in (2, 4):
        folder = run / "checkpoints" / str(step)
        copy_with(folders["mnli"], folder, lambda sd: sd)
        (folder / "trainer_state.json").write_text("{}")
    (run / "checkpoints" / ".tmp-6-abcd").mkdir()  # an interrupted save is never chosen
    assert resolve_pretrained_path(run) == str(run / "checkpoints" / "4")
    assert resolve_pretrained_path(run, checkpoint=2) == str(run / "checkpoints" / "2")
    (run / "glue_results.json").write_text(json.dumps({"task": "mnli", "best_checkpoint": "checkpoints/2"}))
    assert resolve_pretrained_path(run) == str(run / "checkpoints" / "2")
    assert resolve_pretrained_path(run, checkpoint="latest") == str(run / "checkpoints" / "4")
    with pytest.raises(CheckpointLoadError, match="no checkpoint for step 3"):
        resolve_pretrained_path(run, checkpoint=3)
    with pytest.raises(CheckpointLoadError, match="temporary folder"):
        resolve_pretrained_path(_tmp_model(folders, tmp_path))
    with pytest.raises(CheckpointLoadError, match="model folder, not a run folder"):
        resolve_pretrained_path(folders["mlm"], checkpoint="latest")
    with pytest.raises(CheckpointLoadError, match="does not exist"):
        resolve_pretrained_path(str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointLoadError, match="neither a model folder"):
        resolve_pretrained_path(tmp_path / "empty")
    assert resolve_pretrained_path("chandar-lab/NeoBERT") == "chandar-lab/NeoBERT"


def _tmp_model(folders, tmp_path):
    return copy_with(folders["mlm"], tmp_path / ".tmp-8-ffff", lambda sd: sd)


def test_hub_id_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointLoadError, match="looked up as a Hub id"):
        load_pretrained_strict("neobert-hf-tests/does-not-exist", NeoBERTForSequenceClassification)

"""`neobert-hf export`: a clean, self-contained folder from a real `checkpoints/<step>/`, equal to the in-package
model; strict loading, atomic writes and every bad input as a clear error that writes nothing."""

import json
import os
import shutil

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from helpers.export import CLEAN_FILES, FULL_AUTO_MAP, RESUME_FILES, list_files, write_checkpoint
from transformers import AutoTokenizer
from transformers.dynamic_module_utils import get_class_from_dynamic_module

from neobert_hf import NeoBERTForMaskedLM, NeoBERTModel
from neobert_hf.cli.main import main
from neobert_hf.export import ExportError, export_model, find_resume_state


TEXTS = ["w5 w9 [MASK] w17 w30", "w7 w8 w9"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    return write_checkpoint(tmp_path_factory.mktemp("run") / "run")


def copy_checkpoint(checkpoint, destination, edit=None) -> str:
    """A copy of the checkpoint whose state dict goes through `edit(dict) -> dict`."""
    shutil.copytree(checkpoint, destination)
    if edit is not None:
        path = os.path.join(destination, "model.safetensors")
        save_file(edit(load_file(path)), path, metadata={"format": "pt"})
        os.remove(os.path.join(destination, "checkpoint_manifest.json"))  # edited weights no longer match it
    return str(destination)


def nothing_written(output) -> bool:
    parent = os.path.dirname(os.path.abspath(output))
    leftovers = [n for n in os.listdir(parent) if n.startswith(f".{os.path.basename(output)}.tmp-")]
    return not os.path.exists(output) and not leftovers


@pytest.mark.integration
def test_export_writes_exactly_the_clean_files(checkpoint, tmp_path):
    assert RESUME_FILES <= set(os.listdir(checkpoint))  # what must be left behind
    out = tmp_path / "export"
    result = export_model(checkpoint, out)
    assert list_files(out) == CLEAN_FILES == result.files
    assert find_resume_state(out) == []
    assert result.task == "mlm" and result.dropped_keys == []
    config = json.loads((out / "config.json").read_text())
    assert config["auto_map"] == FULL_AUTO_MAP and config["architectures"] == ["NeoBERTForMaskedLM"]
    with open(os.path.join(checkpoint, "modeling_neobert.py"), "rb") as f:
        assert (out / "modeling_neobert.py").read_bytes() == f.read()
    assert [n for n in os.listdir(tmp_path) if n != "export"] == []  # no temporary folder left


def test_exported_remote_code_equals_the_in_package_model(checkpoint, tmp_path):
    out = tmp_path / "export"
    export_model(checkpoint, out)
    # The class defined by the exported modeling_neobert.py (importing neobert_hf registers the in-package class
    # with AutoModelForMaskedLM, which would otherwise win); tests/modeling/test_remote_code.py checks the same without
    # neobert_hf importable at all.
    remote_class = get_class_from_dynamic_module(FULL_AUTO_MAP["AutoModelForMaskedLM"], str(out))
    assert remote_class.__module__.startswith("transformers_modules"), "the exported remote code was not used"
    remote = remote_class.from_pretrained(out).eval()
    reference = NeoBERTForMaskedLM.from_pretrained(checkpoint).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    batch = tokenizer(TEXTS, return_tensors="pt", padding=True)  # everything the tokenizer returns is accepted
    with torch.no_grad():
        expected = reference(**batch).logits
        torch.testing.assert_close(remote(**batch).logits, expected, rtol=0, atol=0)
    assert remote.num_parameters() == reference.num_parameters()


def test_export_dtype(checkpoint, tmp_path):
    out = tmp_path / "bf16"
    export_model(checkpoint, out, dtype="bfloat16")
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()}  # noqa: SIM118 - safe_open is not a dict == {"BF16"}
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"


def test_export_base_drops_only_the_mlm_head(checkpoint, tmp_path):
    out = tmp_path / "base"
    result = export_model(checkpoint, out, task="base")
    assert result.dropped_keys == ["decoder.bias", "decoder.weight"]
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        assert not [k for k in f.keys() if k.startswith(("decoder", "model."))]  # noqa: SIM118
    base = NeoBERTModel.from_pretrained(out)
    full = NeoBERTForMaskedLM.from_pretrained(checkpoint)
    for name, tensor in base.state_dict().items():
        torch.testing.assert_close(tensor, full.model.state_dict()[name], rtol=0, atol=0)
    assert "pipeline_tag: feature-extraction" in (out / "README.md").read_text()


def test_sentence_transformers_export(checkpoint, tmp_path):
    pytest.importorskip("sentence_transformers")
    from sentence_transformers import SentenceTransformer

    out = tmp_path / "st"
    result = export_model(checkpoint, out, sentence_transformers=True, pooling="mean", normalize=True)
    assert result.files == sorted(
        [f for f in CLEAN_FILES]
        + ["1_Pooling/config.json", "2_Normalize/config.json", "config_sentence_transformers.json", "modules.json",
           "sentence_bert_config.json"]
    )
    assert result.task == "base"
    assert json.loads((out / "1_Pooling" / "config.json").read_text())["pooling_mode"] == "mean"
    model = SentenceTransformer(str(out), device="cpu")
    embeddings = model.encode(TEXTS, convert_to_tensor=True)

    encoder = NeoBERTModel.from_pretrained(checkpoint).eval()
    batch = AutoTokenizer.from_pretrained(checkpoint)(TEXTS, return_tensors="pt", padding=True)
    with torch.no_grad():
        hidden = encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    mask = batch["attention_mask"][..., None].float()
    expected = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    torch.testing.assert_close(embeddings, expected, rtol=1e-5, atol=1e-5)


def test_overwrite_rules(checkpoint, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    with pytest.raises(ExportError, match="not empty.*overwrite"):
        export_model(checkpoint, out)
    assert list_files(out) == ["keep.txt"]
    export_model(checkpoint, out, overwrite=True)
    assert list_files(out) == CLEAN_FILES
    empty = tmp_path / "empty"
    empty.mkdir()
    export_model(checkpoint, empty)  # an empty folder is fine
    with pytest.raises(ExportError, match="must not be the source"):
        export_model(checkpoint, os.path.join(checkpoint, "export"))


def _extra_key(state):
    return {**state, "model.transformer_encoder.0.extra.weight": torch.zeros(2)}


def _missing_key(state):
    return {k: v for k, v in state.items() if k != "model.transformer_encoder.1.wo.weight"}


def _prefixed(state):
    return {f"module.{k}": v for k, v in state.items()}


def _reshaped(state):
    return {**state, "model.layer_norm.weight": torch.ones(3)}


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (_extra_key, "extra.weight"),
        (_missing_key, "transformer_encoder.1.wo.weight"),
        (_prefixed, "missing"),
        (_reshaped, "layer_norm.weight"),
    ],
    ids=["unexpected", "missing", "prefixed", "shape"],
)
def test_weights_that_do_not_load_strictly_are_an_error(checkpoint, tmp_path, edit, match):
    broken = copy_checkpoint(checkpoint, tmp_path / "broken", edit)
    out = tmp_path / "out"
    with pytest.raises(ExportError, match=match):
        export_model(broken, out)
    assert nothing_written(out)


def test_bad_options_are_errors_that_write_nothing(checkpoint, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ExportError, match="Unknown pooling 'median'.*mean, cls, max"):
        export_model(checkpoint, out, sentence_transformers=True, pooling="median")
    with pytest.raises(ExportError, match="Unknown task"):
        export_model(checkpoint, out, task="fill-mask")
    with pytest.raises(ExportError, match="Unknown dtype"):
        export_model(checkpoint, out, dtype="fp8")
    # An MLM checkpoint has no classifier: exporting one would ship a randomly initialised head.
    with pytest.raises(ExportError, match="classifier"):
        export_model(checkpoint, out, task="sequence-classification")
    with pytest.raises(ExportError, match="not a model folder"):
        export_model(tmp_path, out)
    no_tokenizer = copy_checkpoint(checkpoint, tmp_path / "no_tok")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        os.remove(os.path.join(no_tokenizer, name))
    with pytest.raises(ExportError, match="tokenizer"):
        export_model(no_tokenizer, out)
    interrupted = copy_checkpoint(checkpoint, tmp_path / ".tmp-2-abcd")
    with pytest.raises(ExportError, match="interrupted"):
        export_model(interrupted, out)
    assert nothing_written(out)
    export_model(no_tokenizer, out, tokenizer=checkpoint)  # the tokenizer can come from elsewhere
    assert list_files(out) == CLEAN_FILES


def test_export_cli_end_to_end(checkpoint, tmp_path, capsys):
    run_dir = os.path.dirname(os.path.dirname(checkpoint))
    out = str(tmp_path / "cli")
    # A run folder resolves to its latest complete checkpoint.
    assert main(["export", run_dir, out, "--model-name", "neobert-tiny", "--language", "en"]) == 0
    printed = capsys.readouterr().out
    assert all(name in printed for name in CLEAN_FILES)
    assert list_files(out) == CLEAN_FILES
    with open(os.path.join(out, "README.md")) as f:
        card = f.read()
    assert "# neobert-tiny" in card and "language: en" in card
    assert main(["export", checkpoint, out]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(["export", checkpoint, str(tmp_path / "st"), "--sentence-transformers", "--pooling", "median"]) == 2
    assert "Unknown pooling" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "st")

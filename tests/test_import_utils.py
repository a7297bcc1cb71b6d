import importlib.metadata
import importlib.util

import pytest

from neobert_hf import import_utils
from neobert_hf.import_utils import OPTIONAL_FEATURES, cuda_available, is_available, package_version, require


# feature -> the neobert-hf extra that installs it; this is the public contract quoted in error messages.
EXPECTED_EXTRAS = {
    "flash_attn": "flash-attn",
    "torchao": "torchao",
    "transformer_engine": "transformer-engine",
    "liger_kernel": "liger",
    "peft": "peft",
    "evaluate": "evaluate",
    "sentence_transformers": "sentence-transformers",
    "mteb": "mteb",
    "wandb": "wandb",
    "tensorboard": "tensorboard",
}


def _hide(monkeypatch, hidden: str) -> None:
    """Make `find_spec` report the top-level module `hidden` as not installed."""
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        if name == hidden:
            return None
        return real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


def test_feature_table_matches_extras():
    assert {name: feature.extra for name, feature in OPTIONAL_FEATURES.items()} == EXPECTED_EXTRAS


def test_every_extra_is_declared_by_the_distribution():
    provided = set(importlib.metadata.metadata("neobert-hf").get_all("Provides-Extra") or [])
    assert set(EXPECTED_EXTRAS.values()) <= provided
    assert "dev" in provided


@pytest.mark.parametrize("feature", sorted(EXPECTED_EXTRAS))
def test_require_missing_feature_names_the_pip_command(monkeypatch, feature):
    _hide(monkeypatch, OPTIONAL_FEATURES[feature].import_name)
    assert not is_available(feature)
    assert package_version(feature) is None
    with pytest.raises(ImportError) as excinfo:
        require(feature, "the frobnicator")
    message = str(excinfo.value)
    assert f'pip install "neobert-hf[{EXPECTED_EXTRAS[feature]}]"' in message
    assert repr(feature) in message
    assert "the frobnicator" in message


def test_require_installed_feature_passes(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a, **k: object())
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "9.9.9")
    assert is_available("flash_attn")
    assert package_version("flash_attn") == "9.9.9"
    assert require("flash_attn", "a test") is None


def test_module_found_without_metadata_reports_unknown_version(monkeypatch):
    def version(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a, **k: object())
    monkeypatch.setattr(importlib.metadata, "version", version)
    assert package_version("mteb") == "unknown"
    assert is_available("mteb")


def test_broken_parent_spec_counts_as_missing(monkeypatch):
    def find_spec(name, *args, **kwargs):
        raise ValueError(f"{name}.__spec__ is None")

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    assert not is_available("wandb")


def test_unknown_feature_is_an_error():
    with pytest.raises(ValueError, match="Unknown optional feature 'nope'"):
        require("nope", "a test")
    with pytest.raises(ValueError, match="known features"):
        is_available("nope")


def test_install_command():
    assert import_utils.install_command("liger_kernel") == 'pip install "neobert-hf[liger]"'


def test_cuda_available_is_a_bool():
    assert isinstance(cuda_available(), bool)

"""Every example in the docstrings of `neobert_hf.data` runs and prints what it shows."""

import doctest
import importlib
from pathlib import Path

import pytest


REPO = Path(__file__).resolve().parents[2]
MODULES = ["loading", "masking", "packing", "tokenization"]


@pytest.mark.parametrize("name", MODULES)
def test_documented_examples_run(name, monkeypatch):
    monkeypatch.chdir(REPO)  # the examples use the shipped data/corpus and data/tokenizer
    module = importlib.import_module(f"neobert_hf.data.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.attempted > 0 and result.failed == 0

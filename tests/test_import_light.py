"""`import neobert_hf` must not import optional heavy packages (STYLE.md: optional backends are imported only where
used). The checks run in one fresh interpreter so that other tests' imports cannot hide or fake a result."""

import json
import subprocess
import sys
import textwrap

import pytest


OPTIONAL_MODULES = [
    "flash_attn",
    "transformer_engine",
    "torchao",
    "liger_kernel",
    "peft",
    "sentence_transformers",
    "mteb",
    "wandb",
    "evaluate",
    "tensorboard",
    "deepspeed",
]

# transformers itself imports some optional packages when they are installed (5.x imports torchao from
# `transformers.modeling_utils` through its torchao quantizer). neobert_hf cannot avoid what transformers does, so
# the contract is: importing neobert_hf adds no optional package beyond what transformers' modeling code imports.
_PROBE = f"""
import json, sys
optional = {OPTIONAL_MODULES!r}
result = {{}}

import transformers.modeling_utils
result["by_transformers"] = [m for m in optional if m in sys.modules]

import neobert_hf
result["added_by_neobert_hf"] = [m for m in optional if m in sys.modules and m not in result["by_transformers"]]

from neobert_hf import import_utils
before = set(sys.modules)
for name in import_utils.OPTIONAL_FEATURES:
    import_utils.is_available(name)
    import_utils.package_version(name)
result["added_by_probes"] = sorted(m for m in set(sys.modules) - before if m.split(".")[0] in optional)

from neobert_hf.cli.main import SUBCOMMANDS, build_parser
build_parser(["--help"])
result["subcommands_loaded_by_help"] = [module for module, _ in SUBCOMMANDS.values() if module in sys.modules]

print(json.dumps(result))
"""


@pytest.fixture(scope="module")
def probe() -> dict:
    completed = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_PROBE)], capture_output=True, text=True, timeout=300
    )
    assert completed.returncode == 0, completed.stderr
    # The last stdout line is the result; libraries may print before it.
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_import_neobert_hf_imports_no_optional_package(probe):
    assert probe["added_by_neobert_hf"] == [], f"import neobert_hf imported {probe['added_by_neobert_hf']}"


def test_probing_optional_features_imports_nothing(probe):
    assert probe["added_by_probes"] == []


def test_cli_help_imports_no_subcommand_module(probe):
    assert probe["subcommands_loaded_by_help"] == []

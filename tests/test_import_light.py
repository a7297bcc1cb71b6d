"""`import neobert_hf` must not import optional heavy packages (optional backends are imported only where
used). The checks run in one fresh interpreter so that other tests' imports cannot hide or fake a result."""

import json
import os
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


@pytest.mark.integration
def test_import_neobert_hf_imports_no_optional_package(probe):
    assert probe["added_by_neobert_hf"] == [], f"import neobert_hf imported {probe['added_by_neobert_hf']}"


def test_probing_optional_features_imports_nothing(probe):
    assert probe["added_by_probes"] == []


def test_cli_help_imports_no_subcommand_module(probe):
    assert probe["subcommands_loaded_by_help"] == []


# ------------------------------------------------------------------------------------------------------------------
# The `neobert-hf` command: help without torch, and a console free of optional packages' import notices
# ------------------------------------------------------------------------------------------------------------------

# Run as a file whose name starts with "neobert-hf", the process is the command (as the console script is): the
# package then defers registering NeoBERT with the Auto classes until a subcommand needs it.
_COMMAND_PROBE = """
import json, os, sys
from neobert_hf.cli.main import main
if os.environ.get("PROBE_WITHOUT_HELP_SNAPSHOT"):  # as when the installed transformers differs from the snapshot's
    import neobert_hf.cli.help_snapshot
    neobert_hf.cli.help_snapshot.shipped_help = lambda command: None
try:
    main(sys.argv[1:])
except SystemExit:
    pass
heavy = ("torch", "transformers", "torchao", "transformer_engine", "flash_attn", "liger_kernel", "datasets")
print(json.dumps([m for m in heavy if m in sys.modules]))
"""

_RECIPE_COMMANDS = ("pretrain", "preprocess", "glue", "contrastive", "mteb")


def _run_as_command(tmp_path, *args: str, without_snapshot: bool = False) -> tuple[list[str], str]:
    script = tmp_path / "neobert-hf-probe"
    script.write_text(textwrap.dedent(_COMMAND_PROBE))
    env = {**os.environ, "NEOBERT_HF_CACHE": str(tmp_path / "cache"), "COLUMNS": "100"}
    if without_snapshot:
        env["PROBE_WITHOUT_HELP_SNAPSHOT"] = "1"
    completed = subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, timeout=300, env=env
    )
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.strip().splitlines()
    return json.loads(lines[-1]), "\n".join(lines[:-1])


def test_command_help_imports_neither_torch_nor_transformers(tmp_path):
    loaded, output = _run_as_command(tmp_path, "--help")
    assert "usage: neobert-hf" in output
    assert loaded == []


@pytest.mark.integration
@pytest.mark.parametrize("name", ["env", "export", "push", "pppl", "glue-summary"])
def test_subcommand_help_imports_neither_torch_nor_transformers(tmp_path, name):
    loaded, output = _run_as_command(tmp_path, name, "--help")
    assert f"neobert-hf {name}" in output
    assert loaded == []


@pytest.mark.parametrize("name", _RECIPE_COMMANDS)
def test_first_recipe_help_needs_neither_torch_nor_transformers(tmp_path, name, monkeypatch):
    # The help shipped with the package (neobert_hf/cli/help/) prints the real parser's text, even on the first call
    # after an install, without building the parser over transformers' TrainingArguments.
    from neobert_hf.cli import help_snapshot

    reason = help_snapshot.stale_reason(help_snapshot.load(name))
    if reason is not None:
        pytest.skip(f"the shipped help snapshot is not used here: {reason}")
    loaded, output = _run_as_command(tmp_path, name, "--help")
    assert loaded == []
    monkeypatch.setenv("COLUMNS", "100")
    parser = __import__("importlib").import_module(f"neobert_hf.cli.{name}").build_argument_parser()
    assert output == parser.format_help().rstrip("\n")
    assert not (tmp_path / "cache" / "help").exists()  # nothing to cache


@pytest.mark.integration
@pytest.mark.parametrize("name", _RECIPE_COMMANDS)
def test_recipe_help_without_snapshot_is_built_once_then_cached(tmp_path, name):
    # Another transformers than the snapshot's: the first --help builds the parser over TrainingArguments (heavy);
    # the second prints the stored text, identical, without importing torch.
    first_loaded, first = _run_as_command(tmp_path, name, "--help", without_snapshot=True)
    assert f"neobert-hf {name}" in first and "--config" in first
    assert "transformers" in first_loaded
    loaded, second = _run_as_command(tmp_path, name, "--help", without_snapshot=True)
    assert second == first
    assert loaded == []


def test_recipe_help_cache_follows_source_changes(tmp_path, monkeypatch):
    from neobert_hf.cli import help_cache

    monkeypatch.setenv("NEOBERT_HF_CACHE", str(tmp_path))
    builds = []

    def build() -> str:
        builds.append(1)
        return f"help #{len(builds)}"

    assert help_cache.cached_help("probe", build) == "help #1"
    assert help_cache.cached_help("probe", build) == "help #1"
    (entry,) = (tmp_path / "help").glob("probe-*.json")
    stored = json.loads(entry.read_text())
    source = next(iter(stored["sources"]))  # a neobert_hf module the "parser" was built with
    stored["sources"][source] = [0, 0]  # as if that file had changed since
    entry.write_text(json.dumps(stored))
    assert help_cache.cached_help("probe", build) == "help #2"


def test_import_notices_are_held_back_and_nothing_else():
    import logging

    from neobert_hf import import_utils

    import_utils.hold_back_import_notices()
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    handler = Keep()
    torchao_logger, pytree_logger = logging.getLogger("torchao"), logging.getLogger("torch.utils._pytree")
    for logger in (torchao_logger, pytree_logger):
        logger.addHandler(handler)
    try:
        torchao_logger.warning("Failed to load /site-packages/torchao/_C_mxfp8.so: Could not load this library")
        torchao_logger.warning("Failed to load the quantization config")  # not an extension: shown
        torchao_logger.error("a real torchao error")

        class TorchaoEnum:
            __module__ = "torchao.quantization.quantize_"

        class OtherEnum:
            __module__ = "mypackage"

        notice = "%s is an Enum subclass and is now natively supported by torch.compile as an opaque value type."
        pytree_logger.warning(notice, TorchaoEnum)
        pytree_logger.warning(notice, OtherEnum)  # another package's call: shown
    finally:
        for logger in (torchao_logger, pytree_logger):
            logger.removeHandler(handler)
    assert records == [
        "Failed to load the quantization config",
        "a real torchao error",
        notice % OtherEnum,
    ]
    held = import_utils.held_back_import_notices()
    assert "torchao: Failed to load /site-packages/torchao/_C_mxfp8.so: Could not load this library" in held
    assert f"torch.utils._pytree: {notice % TorchaoEnum}" in held


@pytest.mark.integration
@pytest.mark.skipif(
    __import__("importlib").util.find_spec("torchao") is None, reason="the notices come from torchao's import"
)
def test_pretrain_output_starts_with_the_run_not_import_notices(tmp_path):
    # transformers' modeling code imports torchao when it is installed; the command's console shows the run only.
    completed = subprocess.run(
        [
            "neobert-hf", "pretrain", "--config", "recipes/tiny/pretrain.yaml", "--max_steps", "1",
            "--save_strategy", "no", "--report_to", "none", "--output_dir", str(tmp_path / "run"),
        ],
        capture_output=True, text=True, timeout=600, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        # wandb, imported by transformers' integrations, prints a line of its own when WANDB_MODE=offline.
        env={key: value for key, value in os.environ.items() if key != "WANDB_MODE"},
    )
    assert completed.returncode == 0, completed.stderr
    output = completed.stdout + completed.stderr
    assert completed.stdout.startswith("model: NeoBERT"), output[:500]
    for noise in ("Failed to load", "_pytree", "register_constant"):
        assert noise not in output, output[:2000]
    # disable_tqdm (the recipe's) holds for the checkpoint save's bar too; the end-of-training summary is one line
    assert "Writing model shards" not in output and "%|" not in output, output[-2000:]
    assert "{'train_runtime'" not in output and "\ntrain: 1 steps in " in completed.stdout, completed.stdout[-2000:]

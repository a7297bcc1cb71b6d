"""The `neobert-hf` command, run end to end as a user would run it."""

import argparse
import importlib
import importlib.metadata
import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from neobert_hf.cli.env import BACKENDS, CORE_PACKAGES
from neobert_hf.cli.main import SUBCOMMANDS, build_parser, main


@pytest.fixture(autouse=True)
def _private_help_cache(tmp_path, monkeypatch):
    # `<command> --help` stores its text in a cache: keep the tests' entries out of the user's cache.
    monkeypatch.setenv("NEOBERT_HF_CACHE", str(tmp_path / "neobert_hf_cache"))


def _cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "neobert_hf", *args], capture_output=True, text=True, timeout=timeout
    )


def test_help_lists_every_subcommand():
    completed = _cli("--help")
    assert completed.returncode == 0, completed.stderr
    output = " ".join(completed.stdout.split()).replace("- ", "-")  # argparse wraps long help lines (at hyphens too)
    for name, (_, help_text) in SUBCOMMANDS.items():
        assert name in output
        assert help_text in output


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_every_subcommand_parses_help(name, capsys):
    with pytest.raises(SystemExit) as excinfo:
        main([name, "--help"])
    assert excinfo.value.code == 0
    assert f"neobert-hf {name}" in capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_registry_help_matches_module_help(name):
    # The registry's help is what `neobert-hf --help` shows without importing the module; the module's own
    # parser must say the same thing.
    parser = build_parser([name])
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    shown = {action.dest: action.help for action in subparsers._choices_actions}
    assert shown[name] == SUBCOMMANDS[name][1]
    module = importlib.import_module(SUBCOMMANDS[name][0])
    assert callable(module.add_parser) and callable(module.run)


@pytest.mark.integration
def test_env_json():
    completed = _cli("env", "--json")
    assert completed.returncode == 0, completed.stderr
    info = json.loads(completed.stdout)
    assert set(info) == {
        "neobert_hf", "python", "platform", "torch", "packages", "backends", "held_back_import_notices"
    }
    assert info["neobert_hf"] == importlib.metadata.version("neobert-hf")
    assert {"version", "cuda_build", "cuda_available", "cudnn_available", "cudnn_version", "devices"} <= set(
        info["torch"]
    )
    assert set(info["packages"]) == set(CORE_PACKAGES)
    assert all(info["packages"][name] for name in CORE_PACKAGES)
    assert list(info["backends"]) == list(BACKENDS)
    for name, status in info["backends"].items():
        assert set(status) == {"installed", "version", "usable", "reason"}, name
        # A backend that cannot be used always says why.
        assert status["usable"] or status["reason"], name
        assert not status["usable"] or status["installed"], name
    if not info["torch"]["cuda_available"]:
        for name in ("flash_attn", "transformer_engine", "liger_kernel", "torch_varlen"):
            assert info["backends"][name]["usable"] is False
    missing = [name for name, status in info["backends"].items() if name != "torch_varlen" and not status["installed"]]
    for name in missing:
        assert 'pip install "neobert-hf[' in info["backends"][name]["reason"]


def test_env_check_imports_in_process(capsys):
    # In-process: the optional packages that are installed are imported once here, not in a new interpreter.
    assert main(["env", "--json", "--check-imports"]) == 0
    info = json.loads(capsys.readouterr().out)
    for name, status in info["backends"].items():
        if status["installed"] and not status["usable"]:
            assert status["reason"], name


def test_unknown_subcommand_fails_with_a_message():
    completed = _cli("no-such-command")
    assert completed.returncode != 0
    assert "invalid choice" in completed.stderr
    assert "no-such-command" in completed.stderr


def test_no_subcommand_prints_usage_and_fails(capsys):
    assert main([]) == 2
    assert "usage: neobert-hf" in capsys.readouterr().err


def test_version(capsys):
    with pytest.raises(SystemExit) as excinfo:
        main(["--version"])
    assert excinfo.value.code == 0
    assert capsys.readouterr().out.strip() == f"neobert-hf {importlib.metadata.version('neobert-hf')}"


@pytest.mark.integration
def test_console_script_is_installed():
    (entry_point,) = importlib.metadata.entry_points(group="console_scripts", name="neobert-hf")
    assert entry_point.value == "neobert_hf.cli.main:main"
    script = Path(sysconfig.get_path("scripts")) / ("neobert-hf.exe" if os.name == "nt" else "neobert-hf")
    assert script.exists(), f"{script} missing: run `pip install -e .`"
    # `neobert-hf env` (text) through the installed script, as a user types it.
    completed = subprocess.run([str(script), "env"], capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr
    out = completed.stdout
    for key in ("neobert-hf", "python", "platform", "torch", "CUDA available", "cuDNN available", *CORE_PACKAGES):
        assert key in out
    assert "optional backends:" in out
    for name in BACKENDS:
        assert name in out

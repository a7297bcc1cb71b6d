"""`neobert-hf env`: versions, hardware and which optional backends are usable here.

Paste its output into bug reports. `--json` prints the same facts as one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.metadata
import json
import platform
import sys
from typing import Any

from neobert_hf.import_utils import OPTIONAL_FEATURES, held_back_import_notices, install_command, package_version


__all__ = ["add_parser", "collect_env", "format_env", "run"]

HELP = "Print versions, hardware and which optional backends are usable."

# Core dependencies whose versions are reported (distribution names).
CORE_PACKAGES = ("transformers", "accelerate", "datasets", "tokenizers", "safetensors")

# Optional backends in report order; "torch_varlen" is torch's own `torch.nn.attention.varlen`, not a package.
BACKENDS = (
    "flash_attn",
    "transformer_engine",
    "torchao",
    "liger_kernel",
    "torch_varlen",
    "peft",
    "sentence_transformers",
    "mteb",
    "wandb",
    "evaluate",
    "tensorboard",
)

# flash-attn 2 kernels exist for Ampere (sm80) and newer.
_FLASH_ATTN_MIN_CAPABILITY = (8, 0)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `env` on the `neobert-hf` subparsers.

    Args:
        subparsers (`argparse._SubParsersAction`):
            The object returned by `ArgumentParser.add_subparsers`.

    Returns:
        `argparse.ArgumentParser`: the `env` parser.
    """
    parser = subparsers.add_parser("env", help=HELP, description=HELP)
    parser.add_argument("--json", action="store_true", help="Print one JSON object instead of text.")
    parser.add_argument(
        "--check-imports",
        action="store_true",
        help="Also import each installed backend and report it as not usable when the import fails "
        "(slower; catches e.g. a flash-attn built against another torch).",
    )
    return parser


def _distribution_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _torch_info() -> dict[str, Any]:
    import torch

    cuda = torch.cuda.is_available()
    devices = []
    if cuda:
        for index in range(torch.cuda.device_count()):
            major, minor = torch.cuda.get_device_capability(index)
            devices.append({"index": index, "name": torch.cuda.get_device_name(index), "capability": [major, minor]})
    cudnn = bool(torch.backends.cudnn.is_available())
    return {
        "version": torch.__version__,
        "cuda_build": torch.version.cuda,
        "cuda_available": cuda,
        "cudnn_available": cudnn,
        "cudnn_version": torch.backends.cudnn.version() if cudnn else None,
        "devices": devices,
    }


def _status(installed: bool, version: str | None, usable: bool, reason: str | None) -> dict[str, Any]:
    return {"installed": installed, "version": version, "usable": usable, "reason": reason}


def _backend(name: str, torch_info: dict[str, Any], check_imports: bool) -> dict[str, Any]:
    cuda = torch_info["cuda_available"]
    if name == "torch_varlen":
        try:
            importlib.import_module("torch.nn.attention.varlen")
        except ImportError as exc:
            reason = f"torch {torch_info['version']} has no torch.nn.attention.varlen ({exc})"
            return _status(False, None, False, reason)
        if not cuda:
            return _status(True, torch_info["version"], False, "needs a CUDA device and torch sees none")
        return _status(True, torch_info["version"], True, None)

    feature = OPTIONAL_FEATURES[name]
    version = package_version(name)
    if version is None:
        return _status(False, None, False, f"not installed; install with: {install_command(name)}")
    if feature.needs_cuda and not cuda:
        return _status(True, version, False, "needs a CUDA device and torch sees none")
    if name == "flash_attn" and not any(
        tuple(device["capability"]) >= _FLASH_ATTN_MIN_CAPABILITY for device in torch_info["devices"]
    ):
        return _status(True, version, False, "flash-attn needs a GPU with compute capability >= 8.0")
    if check_imports:
        try:
            importlib.import_module(feature.import_name)
        except Exception as exc:  # noqa: BLE001 - any failure here means "not usable", and we say why
            return _status(True, version, False, f"import failed: {type(exc).__name__}: {exc}")
    return _status(True, version, True, None)


def collect_env(check_imports: bool = False) -> dict[str, Any]:
    """Collect versions, hardware and optional-backend status.

    Args:
        check_imports (`bool`, *optional*, defaults to `False`):
            Import each installed backend to check that it loads. Without it, "usable" means installed and the
            hardware it needs is present; no optional package is imported.

    Returns:
        `dict[str, Any]`: with keys `neobert_hf`, `python`, `platform`, `torch` (a dict: `version`, `cuda_build`,
        `cuda_available`, `cudnn_available`, `cudnn_version`, `devices`), `packages` (distribution -> version or
        `None`), `backends` (name -> dict with `installed`, `version`, `usable`, `reason`) and
        `held_back_import_notices` (import-time notices the command kept off the console, e.g. a torchao extension
        that did not load).

    Example:

    ```python
    >>> from neobert_hf.cli.env import collect_env
    >>> sorted(collect_env()["backends"])[:2]
    ['evaluate', 'flash_attn']
    ```
    """
    torch_info = _torch_info()
    return {
        "neobert_hf": _distribution_version("neobert-hf") or "unknown (not installed)",
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch_info,
        "packages": {name: _distribution_version(name) for name in CORE_PACKAGES},
        "backends": {name: _backend(name, torch_info, check_imports) for name in BACKENDS},
        # Import-time notices that the `neobert-hf` command keeps off the console (see
        # `neobert_hf.import_utils.hold_back_import_notices`); shown here so that none is lost.
        "held_back_import_notices": held_back_import_notices(),
    }


def _yes_no(value: bool) -> str:
    return "yes" if value else "no"


def format_env(info: dict[str, Any]) -> str:
    """Render the result of [`collect_env`] as aligned text.

    Args:
        info (`dict[str, Any]`): the output of [`collect_env`].

    Returns:
        `str`: one fact per line.
    """
    torch_info = info["torch"]
    rows = [
        ("neobert-hf", info["neobert_hf"]),
        ("python", info["python"]),
        ("platform", info["platform"]),
        ("torch", f"{torch_info['version']} (CUDA build: {torch_info['cuda_build'] or 'none'})"),
        ("  CUDA available", _yes_no(torch_info["cuda_available"])),
        ("  cuDNN available", _yes_no(torch_info["cudnn_available"])
         + (f" ({torch_info['cudnn_version']})" if torch_info["cudnn_version"] else "")),
    ]
    for device in torch_info["devices"]:
        major, minor = device["capability"]
        rows.append((f"  GPU {device['index']}", f"{device['name']} (compute capability {major}.{minor})"))
    rows.extend((name, version or "not installed") for name, version in info["packages"].items())
    lines = [f"{key:<24}{value}" for key, value in rows]
    lines.append("")
    lines.append("optional backends:")
    for name, status in info["backends"].items():
        if status["usable"]:
            text = f"usable ({status['version']})"
        else:
            text = f"not usable: {status['reason']}"
        lines.append(f"  {name:<22}{text}")
    notices = info.get("held_back_import_notices") or []
    if notices:
        lines.append("")
        lines.append("import notices kept off the console by neobert-hf (harmless unless you use that feature):")
        lines.extend(f"  {notice}" for notice in notices)
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Print the environment report.

    Args:
        args (`argparse.Namespace`): parsed `env` arguments (`json`, `check_imports`).

    Returns:
        `int`: 0.
    """
    # Some packages print on import (wandb: "[INFO] Running in WANDB offline mode"); keep stdout for the report so
    # that `--json` output stays parseable.
    with contextlib.redirect_stdout(sys.stderr):
        info = collect_env(check_imports=args.check_imports)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(format_env(info))
    sys.stdout.flush()
    return 0

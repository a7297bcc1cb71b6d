"""The `--help` text of the recipe subcommands, kept on disk so that it prints without importing transformers.

`neobert-hf pretrain --help` lists every field of the argument dataclasses, and those subclass transformers'
`TrainingArguments`, whose import pulls torch, accelerate and transformers' modeling code (5-7 s on a 2-core machine).
The package ships the help of each recipe subcommand ([`neobert_hf.cli.help_snapshot`]); this cache serves a
subcommand whose snapshot does not describe the installed parser (another transformers version, an edited checkout).
The first `--help` of such a subcommand builds the parser and stores its text; later ones print the stored text as
long as nothing it was built from has changed: the Python executable, the versions of neobert-hf, transformers,
accelerate, datasets and torch, the terminal width, and the size and modification time of every `neobert_hf` module
that building the parser imported. Anything else (an unreadable or stale entry) builds the parser again.

The cache lives in `$NEOBERT_HF_CACHE` or `$XDG_CACHE_HOME/neobert_hf` (default `~/.cache/neobert_hf`), under
`help/`. Writing it is best effort: a read-only cache folder only costs the next `--help` its full time.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path


__all__ = ["cache_dir", "cached_help"]

_FORMAT = 1
_DISTRIBUTIONS = ("neobert-hf", "transformers", "accelerate", "datasets", "torch")


def cache_dir() -> Path:
    """The folder of neobert-hf's small caches: `$NEOBERT_HF_CACHE`, else `$XDG_CACHE_HOME/neobert_hf`."""
    if os.environ.get("NEOBERT_HF_CACHE"):
        return Path(os.environ["NEOBERT_HF_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "neobert_hf"


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _environment(command: str) -> dict:
    return {
        "format": _FORMAT,
        "command": command,
        "python": sys.executable,
        "versions": {name: _version(name) for name in _DISTRIBUTIONS},
        # argparse wraps help at the terminal width minus 2 (it reads $COLUMNS first).
        "columns": shutil.get_terminal_size().columns,
    }


def _file_stamp(path: str) -> list[int] | None:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return [status.st_mtime_ns, status.st_size]


def _loaded_sources() -> dict[str, list[int] | None]:
    sources = {}
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if path and (name == "neobert_hf" or name.startswith("neobert_hf.")):
            sources[path] = _file_stamp(path)
    return sources


def cached_help(command: str, build_text: Callable[[], str]) -> str:
    """The help text of `command`: the stored one when still valid, else `build_text()` (then stored).

    Args:
        command (`str`): the subcommand name.
        build_text (`Callable[[], str]`): builds the parser and returns its `format_help()`.

    Returns:
        `str`: the help text.
    """
    environment = _environment(command)
    key = hashlib.sha256(json.dumps(environment, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_dir() / "help" / f"{command}-{key}.json"
    try:
        entry = json.loads(path.read_text(encoding="utf-8"))
        if entry["environment"] == environment and all(
            _file_stamp(source) == stamp for source, stamp in entry["sources"].items()
        ):
            return entry["text"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    text = build_text()
    entry = {"environment": environment, "sources": _loaded_sources(), "text": text}
    temporary = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp", encoding="utf-8") as f:
            temporary = f.name
            json.dump(entry, f)
        os.replace(temporary, path)
    except OSError:
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
    return text

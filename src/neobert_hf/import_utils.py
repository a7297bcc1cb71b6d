"""Probes for optional packages.

This module is the only place in `neobert_hf` that asks whether an optional package is installed. It never
imports the package it probes, so calling it keeps `import neobert_hf` light: a probe looks up the module spec
and the installed distribution's metadata only.

Code that needs an optional package calls [`require`] right before importing it:

```python
>>> from neobert_hf.import_utils import require
>>> require("torchao", "float8 training")  # doctest: +SKIP
>>> import torchao  # doctest: +SKIP
```
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
from dataclasses import dataclass
from typing import Literal


__all__ = [
    "HardwareError",
    "OPTIONAL_FEATURES",
    "SOURCE_FEATURES",
    "Feature",
    "OptionalFeature",
    "SourceFeature",
    "cuda_available",
    "hold_back_import_notices",
    "held_back_import_notices",
    "install_command",
    "is_available",
    "package_version",
    "require",
]


Feature = Literal[
    "flash_attn",
    "torchao",
    "transformer_engine",
    "liger_kernel",
    "peft",
    "evaluate",
    "sentence_transformers",
    "mteb",
    "wandb",
    "tensorboard",
    "quartet2",
    "qutlass",
]


class HardwareError(ValueError, RuntimeError):
    """The device of this run cannot run the requested recipe (a configuration error: `neobert-hf pretrain` reports it
    before anything is written)."""


@dataclass(frozen=True)
class OptionalFeature:
    """One optional package and the pip extra of `neobert-hf` that installs it.

    Args:
        import_name (`str`):
            Top-level module name, as in `import <import_name>`.
        distributions (`tuple[str, ...]`):
            Distribution names whose metadata may carry the installed version, tried in order (some packages
            ship under several names, e.g. `transformer-engine` and `transformer_engine_torch`).
        extra (`str`):
            Name of the `neobert-hf` extra that installs the package.
        needs_cuda (`bool`):
            Whether the package is only usable with a CUDA device.
    """

    import_name: str
    distributions: tuple[str, ...]
    extra: str
    needs_cuda: bool = False


OPTIONAL_FEATURES: dict[str, OptionalFeature] = {
    "flash_attn": OptionalFeature("flash_attn", ("flash-attn", "flash_attn"), "flash-attn", needs_cuda=True),
    "torchao": OptionalFeature("torchao", ("torchao",), "torchao"),
    "transformer_engine": OptionalFeature(
        "transformer_engine",
        ("transformer-engine", "transformer_engine", "transformer-engine-torch", "transformer_engine_torch"),
        "transformer-engine",
        needs_cuda=True,
    ),
    # Liger's kernels are written in Triton, which runs on CUDA (or ROCm) devices only.
    "liger_kernel": OptionalFeature("liger_kernel", ("liger-kernel", "liger_kernel"), "liger", needs_cuda=True),
    "peft": OptionalFeature("peft", ("peft",), "peft"),
    "evaluate": OptionalFeature("evaluate", ("evaluate",), "evaluate"),
    "sentence_transformers": OptionalFeature(
        "sentence_transformers", ("sentence-transformers", "sentence_transformers"), "sentence-transformers"
    ),
    "mteb": OptionalFeature("mteb", ("mteb",), "mteb"),
    "wandb": OptionalFeature("wandb", ("wandb",), "wandb"),
    "tensorboard": OptionalFeature("tensorboard", ("tensorboard",), "tensorboard"),
}


@dataclass(frozen=True)
class SourceFeature:
    """An optional package published only as source on GitHub, so no `neobert-hf` extra can install it.

    Args:
        import_name (`str`): top-level module name.
        distributions (`tuple[str, ...]`): distribution names that may carry the installed version.
        install (`str`): the exact command that installs it.
        needs_cuda (`bool`): whether the package is only usable with a CUDA device.
    """

    import_name: str
    distributions: tuple[str, ...]
    install: str
    needs_cuda: bool = True


# Quartet-II's NVFP4 linear layers and the CUTLASS kernels under them (both Blackwell-only CUDA builds).
SOURCE_FEATURES: dict[str, SourceFeature] = {
    "quartet2": SourceFeature(
        "quartet2",
        ("quartet2",),
        'pip install --no-build-isolation "quartet2 @ git+https://github.com/IST-DASLab/Quartet-II.git#subdirectory=kernels"',
    ),
    "qutlass": SourceFeature(
        "qutlass",
        ("qutlass",),
        'pip install --no-build-isolation "qutlass @ git+https://github.com/IST-DASLab/qutlass.git"',
    ),
}


def _feature(name: str) -> OptionalFeature | SourceFeature:
    if name in OPTIONAL_FEATURES:
        return OPTIONAL_FEATURES[name]
    if name in SOURCE_FEATURES:
        return SOURCE_FEATURES[name]
    known = ", ".join(sorted({*OPTIONAL_FEATURES, *SOURCE_FEATURES}))
    raise ValueError(f"Unknown optional feature {name!r}; known features: {known}.")


def package_version(name: str) -> str | None:
    """Return the installed version of an optional feature's package, without importing it.

    Args:
        name (`str`):
            A key of `OPTIONAL_FEATURES` (e.g. `"flash_attn"`).

    Returns:
        `str | None`: the version from the distribution metadata, `None` when the package is not installed.
        A module found without distribution metadata (e.g. a source checkout on `sys.path`) reports `"unknown"`.
    """
    feature = _feature(name)
    try:
        if importlib.util.find_spec(feature.import_name) is None:
            return None
    except (ImportError, ValueError):
        # A broken parent package or a module whose __spec__ is None: treat as not installed.
        return None
    for distribution in feature.distributions:
        try:
            return importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "unknown"


def is_available(name: str) -> bool:
    """Return whether the package behind an optional feature is installed, without importing it.

    The module must be findable (`importlib.util.find_spec`). This says nothing about hardware: combine it with
    [`cuda_available`] for features whose `needs_cuda` is set.

    Args:
        name (`str`):
            A key of `OPTIONAL_FEATURES` (e.g. `"peft"`).

    Returns:
        `bool`: `True` when the package is installed.

    Example:

    ```python
    >>> from neobert_hf.import_utils import is_available
    >>> isinstance(is_available("peft"), bool)
    True
    ```
    """
    return package_version(name) is not None


def install_command(name: str) -> str:
    """Return the exact pip command that installs an optional feature.

    Args:
        name (`str`):
            A key of `OPTIONAL_FEATURES` or `SOURCE_FEATURES`.

    Returns:
        `str`: e.g. `pip install "neobert-hf[torchao]"`; for a package published only on GitHub
        (`SOURCE_FEATURES`), its `pip install ... @ git+https://...` command.
    """
    feature = _feature(name)
    if isinstance(feature, SourceFeature):
        return feature.install
    return f'pip install "neobert-hf[{feature.extra}]"'


def require(feature: str, purpose: str) -> None:
    """Raise an `ImportError` unless the package behind `feature` is installed.

    Call it right before importing an optional package, so that a missing package fails with a message that says
    what needed it and how to install it, instead of a bare `ModuleNotFoundError`.

    Args:
        feature (`str`):
            A key of `OPTIONAL_FEATURES` (e.g. `"flash_attn"`).
        purpose (`str`):
            What needs the package, in words (e.g. `"attn_implementation='flash_attention_2'"`).

    Raises:
        `ImportError`: when the package is not installed; the message names the feature, the purpose and the
            `pip install "neobert-hf[<extra>]"` command.
        `ValueError`: when `feature` is not a known optional feature.

    Example:

    ```python
    >>> from neobert_hf.import_utils import require
    >>> require("wandb", "report_to='wandb'")  # doctest: +SKIP
    ```
    """
    if is_available(feature):
        return
    raise ImportError(
        f"{purpose} requires the optional feature {feature!r} (Python package {_feature(feature).import_name!r}), "
        f"which is not installed. Install it with: {install_command(feature)}"
    )


def cuda_available() -> bool:
    """Return whether torch sees a CUDA device.

    torch is imported on the first call only, so importing this module stays cheap.

    Returns:
        `bool`: `torch.cuda.is_available()`.
    """
    import torch

    return torch.cuda.is_available()


# Log records that optional packages emit while they are imported, and that say nothing about this run: torchao
# logs a warning for each compiled extension it cannot load (the CUDA-only `_C_cutlass_90a`, an `_C_mxfp8` built for
# another Python), and registers its enums with torch's pytree, which torch 2.13 logs as deprecated. transformers
# imports torchao whenever it is installed (its torchao quantizer), so every command that loads a model would start
# with these lines. Each entry: (logger name, test on the record).
def _torchao_extension_not_loaded(record: logging.LogRecord) -> bool:
    message = record.getMessage()
    return message.startswith("Failed to load ") and "torchao" in message and "_C" in message


def _torchao_enum_registered_with_pytree(record: logging.LogRecord) -> bool:
    subject = record.args[0] if isinstance(record.args, tuple) and record.args else None
    return (
        "is an Enum subclass" in str(record.msg)
        and str(getattr(subject, "__module__", "")).startswith("torchao")
    )


_IMPORT_NOTICES = (
    ("torchao", _torchao_extension_not_loaded),
    ("torch.utils._pytree", _torchao_enum_registered_with_pytree),
)
_held_back: list[str] = []


class _HoldBack(logging.Filter):
    def __init__(self, test):
        super().__init__()
        self.test = test

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            matched = self.test(record)
        except Exception:  # noqa: BLE001 - a record we cannot read is shown, never dropped
            return True
        if matched:
            _held_back.append(f"{record.name}: {record.getMessage()}")
        return not matched


def hold_back_import_notices() -> None:
    """Keep the known, harmless import-time notices of optional packages off the console, and remember them.

    Only the exact notices listed in this module are held back: torchao's "Failed to load .../torchao/_C*.so" for
    an extension it cannot load, and torch's deprecation notice for torchao's enums registered as pytree constants.
    Every other record of those loggers, and every other logger, is untouched. The held-back lines are listed by
    `neobert-hf env` ([`held_back_import_notices`]); a torchao feature whose extension is missing still fails
    with torchao's own error when it is used. The `neobert-hf` command calls this once at start; library code
    never changes logging.
    """
    for name, test in _IMPORT_NOTICES:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _HoldBack) for f in logger.filters):
            logger.addFilter(_HoldBack(test))


def held_back_import_notices() -> list[str]:
    """The notices held back so far by [`hold_back_import_notices`] in this process, in order."""
    return list(_held_back)

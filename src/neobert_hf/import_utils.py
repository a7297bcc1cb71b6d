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
from dataclasses import dataclass
from typing import Literal


__all__ = [
    "OPTIONAL_FEATURES",
    "SOURCE_FEATURES",
    "Feature",
    "OptionalFeature",
    "SourceFeature",
    "cuda_available",
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

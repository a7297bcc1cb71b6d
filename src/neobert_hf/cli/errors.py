"""The error boundary of every `neobert-hf` subcommand.

[`run_command`] runs a subcommand and turns the errors that bad input causes into one line on stderr,
`neobert-hf <command>: error: <message>`, and an exit status, without a traceback:

- 2: bad input, an option, recipe, file, column or checkpoint that cannot be used (`ValueError`, `OSError`,
  `ImportError`, `datasets` and YAML errors);
- 1: a failure once the run is under way, e.g. a full disk while saving ([`RunFailure`], see [`training_phase`]);
- 130: Ctrl-C (`KeyboardInterrupt`).

Anything else (a `TypeError`, an `AttributeError`, ...) is a bug of this package and keeps its traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager


__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "RunFailure",
    "describe",
    "run_command",
    "training_phase",
]

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130

# Messages of foreign wrappers that say nothing about the cause; the cause is in their `__cause__`/`__context__`.
_GENERIC_MESSAGES = ("An error occurred while generating the dataset",)


class RunFailure(Exception):
    """A run that started and then failed for a reason outside the package (disk full, a folder made read-only, a
    non-finite loss): exit status 1. The run's last complete checkpoint is untouched."""


def _expected_types() -> tuple[type[BaseException], ...]:
    types: list[type[BaseException]] = [ValueError, OSError, ImportError]
    # Only when the subcommand imported them: the boundary itself imports nothing heavy.
    datasets_exceptions = sys.modules.get("datasets.exceptions")
    if datasets_exceptions is not None:
        types.append(datasets_exceptions.DatasetsError)
    yaml = sys.modules.get("yaml")
    if yaml is not None:
        types.append(yaml.YAMLError)
    return tuple(types)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _is_ours(error: BaseException) -> bool:
    return type(error).__module__.startswith("neobert_hf")


def _cause(error: BaseException) -> BaseException | None:
    return error.__cause__ if error.__cause__ is not None else error.__context__


def describe(error: BaseException) -> str:
    """The message shown for `error`: this package's own messages as written; a foreign one on one line, with the
    real cause of a wrapper whose own message is generic (e.g. `datasets`' "An error occurred while generating the
    dataset")."""
    if isinstance(error, RunFailure) or _is_ours(error):
        return str(error).strip() or type(error).__name__
    if isinstance(error, KeyError):
        return f"missing key {error.args[0]!r}" if error.args else "KeyError"
    if isinstance(error, OSError) and error.strerror and error.filename:
        return f"{error.strerror}: {error.filename}"
    message = _one_line(str(error))
    if not message or any(message.startswith(generic) for generic in _GENERIC_MESSAGES):
        cause, seen = _cause(error), {id(error)}
        while cause is not None and id(cause) not in seen:
            seen.add(id(cause))
            inner = _one_line(str(cause))
            if inner and not any(inner.startswith(generic) for generic in _GENERIC_MESSAGES):
                return f"{message.rstrip('.') + ': ' if message else ''}{type(cause).__name__}: {inner}"
            cause = _cause(cause)
    return message or type(error).__name__


@contextmanager
def training_phase(*failures: type[BaseException]) -> Iterator[None]:
    """The part of a subcommand where the run is under way: an `OSError` raised there (no space left, permission
    denied on a folder that was writable at the start) or one of `failures` becomes a [`RunFailure`] (exit status
    1). Other bad input found there (a damaged checkpoint being resumed, a data file that breaks mid-stream) stays
    exit status 2."""
    try:
        yield
    except (OSError, *failures) as error:
        raise RunFailure(describe(error)) from error


def run_command(command: str, body: Callable[[], int | None]) -> int:
    """Run `body` (a subcommand's work) inside the error boundary.

    Args:
        command (`str`): the subcommand's name, shown in the message.
        body (`Callable[[], int | None]`): returns the exit status (`None` means 0).

    Returns:
        `int`: the exit status (see the module docstring).
    """
    try:
        status = body()
    except KeyboardInterrupt:
        print(f"neobert-hf {command}: interrupted.", file=sys.stderr)
        return EXIT_INTERRUPTED
    except RunFailure as error:
        print(f"neobert-hf {command}: error: {describe(error)}", file=sys.stderr)
        return EXIT_FAILED
    except _expected_types() as error:
        print(f"neobert-hf {command}: error: {describe(error)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return 0 if status is None else int(status)

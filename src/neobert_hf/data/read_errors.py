"""Why `datasets` could not read a data file, said with the file, the line and the cause.

`datasets` wraps the cause of a failed read in "An error occurred while generating the dataset" and rarely names the
file or the line. [`read_error`] finds them: files whose columns differ, a line that is not UTF-8, a JSON line that
does not parse or is not an object, a field whose JSON type changes from line to line. It reads the files again only
after a read has failed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .formats import builder_for_path


__all__ = ["cause_text", "find_bad_line", "first_bad_line", "read_error"]


def _builder_for(path: str) -> str | None:
    return builder_for_path(path)


def _open_text(path: str):
    """The file as binary lines, decompressed by its extension (`None` for a compression read here only by datasets)."""
    import bz2
    import gzip
    import lzma

    opener = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}.get(Path(path).suffix.lower(), open)
    if Path(path).suffix.lower() in (".zst", ".lz4"):
        return None
    return opener(path, "rb")


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "string", list: "list", dict: "object"}[type(value)]


def find_bad_line(path: str, builder: str) -> str | None:
    """The first line of a data file that `datasets` cannot read, as `"<path>, line <n>: <why>"`, or `None`.

    Looks for what the `datasets` builders report without a file name or line: bytes that are not UTF-8 (every text
    format), and for JSON lines a line that does not parse, is not an object, or gives a field another JSON type than
    an earlier line did (a number among strings)."""
    import json

    if builder == "json" and Path(path).suffix.lower() == ".json" and os.path.getsize(path) < 64 * 2**20:
        try:
            with open(path, encoding="utf-8") as whole:
                json.load(whole)
            return None  # one JSON document (not JSON lines) that parses: not a line problem
        except (ValueError, UnicodeDecodeError):
            pass
    handle = _open_text(path)
    if handle is None:
        return None
    kinds: dict[str, tuple[str, int]] = {}
    with handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                byte = raw[error.start]
                return (
                    f"{path}, line {number}: not UTF-8 text (byte {byte:#04x} at column {error.start + 1}). Convert "
                    "the file to UTF-8, e.g. iconv -f latin1 -t utf-8."
                )
            if builder != "json" or not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                return f"{path}, line {number}: not valid JSON ({error.msg} at column {error.colno})."
            if not isinstance(record, dict):
                return f"{path}, line {number}: a JSON {_json_kind(record)}, not an object with named fields."
            for key, value in record.items():
                kind = _json_kind(value)
                if kind == "null":
                    continue
                first = kinds.setdefault(key, (kind, number))
                if first[0] != kind:
                    return (
                        f"{path}, line {number}: field {key!r} is a {kind} here but a {first[0]} on line {first[1]}; "
                        "every line must give a field the same type."
                    )
    return None


def _first_record_columns(path: str, builder: str) -> list[str] | None:
    """The column names of a JSON-lines file's first record or a CSV file's header, or `None`."""
    import csv
    import json

    if builder not in ("json", "csv"):
        return None
    handle = _open_text(path)
    if handle is None:
        return None
    with handle:
        for raw in handle:
            line = raw.decode("utf-8", errors="replace")
            if not line.strip():
                continue
            if builder == "csv":
                return next(csv.reader([line], delimiter="\t" if path.lower().endswith(".tsv") else ","))
            try:
                record = json.loads(line)
            except ValueError:
                return None
            return sorted(record) if isinstance(record, dict) else None
    return None


def _cast_error(error: BaseException) -> BaseException | None:
    from datasets.table import CastError

    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, CastError):
            return error
        error = error.__cause__ or error.__context__
    return None


def cause_text(error: BaseException) -> str:
    """The first message along the cause chain that says more than datasets' generic wrapper."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        text = " ".join(str(error).split())
        if text and not text.startswith("An error occurred while generating the dataset"):
            return f"{type(error).__name__}: {text}"
        error = error.__cause__ or error.__context__
    return "unknown error"


def first_bad_line(files: Sequence[str], builder: str | None = None) -> str | None:
    """[`find_bad_line`] over `files` (each read with `builder`, else the builder of its extension): the first bad line
    found, or `None`. A file that cannot be opened is skipped."""
    for path in files:
        try:
            found = find_bad_line(path, builder or _builder_for(path) or "")
        except OSError:
            continue
        if found:
            return found
    return None


def read_error(files: Sequence[str], builder: str | None, error: BaseException, what: str = "the data") -> ValueError:
    """A `ValueError` that says which file (and line) `datasets` could not read, and why.

    `datasets` wraps the cause of a failed read in "An error occurred while generating the dataset" and rarely names
    the file or line: this finds them (columns that differ between files, a line that is not UTF-8 or not valid
    JSON), else repeats the real cause.

    Args:
        files (`Sequence[str]`): the data files that were read.
        builder (`str`, *optional*): the `datasets` builder (`json`, `csv`, `text`, ...), `None` when unknown.
        error (`BaseException`): what `datasets` raised.
        what (`str`): how the message names the data (e.g. `"train_file"`).
    """
    cast = _cast_error(error)
    if cast is not None:
        columns = {path: _first_record_columns(path, builder or _builder_for(path) or "") for path in files}
        known = [(path, cols) for path, cols in columns.items() if cols is not None]
        differing = [(path, cols) for path, cols in known if cols != known[0][1]] if known else []
        where = (
            f": {differing[0][0]} has the columns {differing[0][1]} but {known[0][0]} has {known[0][1]}"
            if differing
            else f" ({' '.join(cast.details().split())})"
        )
        return ValueError(
            f"Not all files of {what} have the same columns{where}. Give files with the same columns, or load them "
            "separately."
        )
    found = first_bad_line(files, builder)
    if found:
        return ValueError(f"Cannot read {what}: {found}")
    message = cause_text(error)
    if "corresponds to no data" in message:
        shown = ", ".join(files[:5]) + (" ..." if len(files) > 5 else "")
        return ValueError(f"No rows in {what}: {shown} hold(s) no records (only a header or blank lines?).")
    shown = ", ".join(files[:5]) + (" ..." if len(files) > 5 else "")
    return ValueError(f"Cannot read {what} ({shown}): {message}")

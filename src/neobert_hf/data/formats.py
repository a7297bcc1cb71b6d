"""The one table from a data file's extension to the `datasets` builder that reads it, shared by the loaders
(`data.loading`) and by the messages that name a bad file and line (`data.read_errors`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


__all__ = ["FILE_FORMATS", "builder_for_path", "file_extension"]

FILE_FORMATS: dict[str, tuple[str, dict[str, Any]]] = {
    ".json": ("json", {}),
    ".jsonl": ("json", {}),
    ".ndjson": ("json", {}),
    ".parquet": ("parquet", {}),
    ".txt": ("text", {}),
    ".text": ("text", {}),
    ".csv": ("csv", {}),
    ".tsv": ("csv", {"sep": "\t"}),
    ".arrow": ("arrow", {}),
}
"""Local file extension -> (`datasets` builder, its keyword arguments): the package's one format table, used for
pretraining, GLUE and contrastive data alike."""
_COMPRESSION_EXTENSIONS = (".gz", ".bz2", ".xz", ".zst", ".lz4")


def file_extension(path: str) -> str:
    """The format extension of a data file, without a compression suffix (`"a.jsonl.gz"` -> `".jsonl"`)."""
    name = Path(path).name.lower()
    for compression in _COMPRESSION_EXTENSIONS:
        if name.endswith(compression):
            name = name[: -len(compression)]
            break
    return Path(name).suffix


def builder_for_path(path: str) -> str | None:
    """The `datasets` builder that reads `path` (`json`, `csv`, `text`, ...), or `None` for another extension."""
    entry = FILE_FORMATS.get(file_extension(path))
    return entry[0] if entry is not None else None

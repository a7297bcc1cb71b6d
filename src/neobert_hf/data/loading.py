"""Load data from any `datasets` source: the package's one loading path, for pretraining, GLUE and contrastive data.

- [`load_splits`]: every split of a source; [`load_split`]: one split of it, sliced, checked for rows (what GLUE and
  contrastive training read); [`load_pretraining_data`]: train and eval parts of a pretraining corpus.
- [`FILE_FORMATS`]: the one table from a file extension to the `datasets` builder that reads it.
- A file that a builder cannot read is reported with its name, line and column ([`~neobert_hf.data.read_errors`]).

Sources accepted:

- a Hub dataset name (with an optional `config_name`), e.g. `"wikitext"` + `"wikitext-103-raw-v1"`;
- a folder written by `save_to_disk` (a `Dataset` or a `DatasetDict`, e.g. the output of `neobert-hf preprocess`);
- any other local folder that `datasets.load_dataset` understands (files named `train.*`, `validation.*`, ...
  become splits), such as the shipped `data/corpus/`;
- local files: `.json`, `.jsonl`, `.ndjson`, `.parquet`, `.txt`, `.csv`, `.tsv`, `.arrow`, optionally compressed
  (`.gz`, `.bz2`, `.xz`, `.zst`), given as one path, a glob, a list of paths/globs (one "train" split), or a
  mapping `{"train": ..., "validation": ...}`.

Eval data is resolved in this order (the first that applies wins), see [`load_pretraining_data`]:

1. an explicit `eval_split` (slicing allowed, e.g. `"train[-1000:]"`);
2. the first split named `validation`, `eval`, `test` or `dev` that the source has;
3. `eval_fraction`: a seeded random fraction of the train split (map-style datasets only; a stream cannot be split
   at random, so on a stream it is skipped with a warning and there is no eval data, as in the original trainer);
4. `eval_samples`: the first `eval_samples` documents of the train split, which are then *skipped* for training so
   that nothing leaks (works for streams and map-style datasets);
5. otherwise no eval data.
"""

from __future__ import annotations

import glob
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import datasets
from datasets import Dataset, DatasetDict, IterableDataset, IterableDatasetDict

from .formats import _COMPRESSION_EXTENSIONS, FILE_FORMATS, builder_for_path, file_extension
from .read_errors import cause_text, read_error

__all__ = [
    "EVAL_SPLIT_NAMES",
    "FILE_FORMATS",
    "TEXT_COLUMN_NAMES",
    "PretrainingData",
    "find_text_column",
    "is_tokenized",
    "load_pretraining_data",
    "load_split",
    "load_splits",
    "select_split",
]

TEXT_COLUMN_NAMES: tuple[str, ...] = ("text", "content", "document", "sentence", "body", "passage", "article")
"""Column names tried, in order, when no text column is given."""

EVAL_SPLIT_NAMES: tuple[str, ...] = ("validation", "eval", "test", "dev")
"""Split names tried, in order, when no eval split is given."""

_GLOB_CHARS = re.compile(r"[*?\[]")
_SPLIT_SPEC = re.compile(r"^(?P<name>[\w.\-]+)(?:\[(?P<start>[^:\]]*):(?P<stop>[^:\]]*)\])?$")

AnyDataset = Dataset | IterableDataset
Source = str | os.PathLike | Sequence[str | os.PathLike] | Mapping[str, str | os.PathLike | Sequence[str]]


@dataclass
class PretrainingData:
    """Train and eval data resolved by [`load_pretraining_data`].

    Attributes:
        train (`Dataset` or `IterableDataset`):
            The training documents.
        eval (`Dataset` or `IterableDataset`, *optional*):
            The eval documents, or `None` when none could be resolved.
        text_column (`str`, *optional*):
            The column holding the raw text; `None` when the data is already tokenized (`input_ids`).
        tokenized (`bool`):
            Whether the data already has an `input_ids` column (e.g. the output of `neobert-hf preprocess`).
        eval_origin (`str`):
            Where eval came from: `"split"` (explicit), `"auto_split"` (detected split name), `"fraction"`,
            `"head"` (first `eval_samples` documents, skipped for training) or `"none"`.
        description (`str`):
            One human-readable line describing the resolution, for logs.
    """

    train: AnyDataset
    eval: AnyDataset | None
    text_column: str | None
    tokenized: bool
    eval_origin: Literal["split", "auto_split", "fraction", "head", "none"]
    description: str

    @property
    def streaming(self) -> bool:
        return isinstance(self.train, IterableDataset)


# ----------------------------------------------------------------------------------------------------------------
# Sources
# ----------------------------------------------------------------------------------------------------------------


def _builder_for(path: str) -> tuple[str, dict[str, Any]]:
    extension = file_extension(path)
    if extension not in FILE_FORMATS:
        supported = ", ".join(sorted(FILE_FORMATS))
        raise ValueError(
            f"Cannot tell the format of {path!r} from its extension {extension or '(none)'!r}. Supported: {supported} "
            f"(optionally compressed with {', '.join(_COMPRESSION_EXTENSIONS)}); or save the data with "
            "`Dataset.save_to_disk` and pass that folder."
        )
    builder, kwargs = FILE_FORMATS[extension]
    return builder, dict(kwargs)


def _expand_files(spec: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str]:
    items = [spec] if isinstance(spec, (str, os.PathLike)) else list(spec)
    if not items:
        raise ValueError("An empty list of data files was given.")
    files: list[str] = []
    for item in items:
        item = os.path.expanduser(os.fspath(item))
        if _GLOB_CHARS.search(item):
            matches = sorted(glob.glob(item, recursive=True))
            matches = [m for m in matches if os.path.isfile(m)]
            if not matches:
                raise FileNotFoundError(f"No file matches the pattern {item!r}; check the path and the pattern.")
            files.extend(matches)
        elif os.path.isfile(item):
            files.append(item)
        else:
            raise FileNotFoundError(
                f"Data file {item!r} does not exist"
                + (" (it is a folder: pass the folder itself, not in a list)" if os.path.isdir(item) else "")
                + "."
            )
    return files


def _files_builder(files: list[str]) -> tuple[str, dict[str, Any]]:
    builders = [_builder_for(f) for f in files]
    names = {name for name, _ in builders}
    if len(names) > 1:
        raise ValueError(
            f"The data files mix formats ({', '.join(sorted(names))}); load one format at a time: {files[:5]}"
        )
    return builders[0]


def _is_saved_dataset(path: str) -> bool:
    """A folder written by `save_to_disk` (a `DatasetDict` or a single `Dataset`)."""
    return os.path.isfile(os.path.join(path, "dataset_dict.json")) or os.path.isfile(os.path.join(path, "state.json"))


def _looks_like_path(source: str) -> bool:
    """Hub names are `name` or `owner/name`; anything else that does not exist is a mistyped path."""
    lowered = source.lower()
    return (
        source.startswith(("/", "./", "../", "~", "\\", "."))
        or source.count("/") > 1
        or any(lowered.endswith(ext) for ext in (*FILE_FORMATS, *_COMPRESSION_EXTENSIONS))
    )


def _to_dict(loaded: Any, streaming: bool) -> DatasetDict | IterableDatasetDict:
    if isinstance(loaded, (Dataset, IterableDataset)):
        loaded = (IterableDatasetDict if isinstance(loaded, IterableDataset) else DatasetDict)({"train": loaded})
    if streaming and isinstance(loaded, DatasetDict):
        loaded = IterableDatasetDict({name: split.to_iterable_dataset() for name, split in loaded.items()})
    return loaded


def _data_files_in(folder: str) -> list[str]:
    return sorted(
        os.path.join(root, name)
        for root, _dirs, names in os.walk(folder)
        for name in names
        if builder_for_path(name) is not None
    )


def _load_files(
    data_files: dict[str, list[str]],
    *,
    streaming: bool,
    cache_dir: str | None,
    what: str = "the dataset",
    **load_kwargs: Any,
) -> DatasetDict | IterableDatasetDict:
    files = [f for split_files in data_files.values() for f in split_files]
    empty = [f for f in files if os.path.getsize(f) == 0]
    if empty:
        raise ValueError(
            f"{what[:1].upper() + what[1:] if what.startswith('the ') else what} is empty: the data file(s) {empty} "
            "have no content. Check the path or the export."
        )
    builder, extra = _files_builder(files)
    try:
        loaded = datasets.load_dataset(
            builder, data_files=data_files, streaming=streaming, cache_dir=cache_dir, **{**extra, **load_kwargs}
        )
    except Exception as error:  # datasets' builders fail in many ways on malformed or empty input
        raise read_error(files, builder, error, what=what) from error
    return _to_dict(_checked_utf8(loaded, files, builder, what), streaming)


def _checked_utf8(loaded: Any, files: Sequence[str], builder: str | None, what: str) -> Any:
    """`loaded`, once its string columns are known to be UTF-8. The JSON builder stores bytes that are not UTF-8 as
    they are: reading them back would fail later, in the middle of tokenization, without naming the file."""
    import pyarrow as pa

    splits = loaded.values() if isinstance(loaded, DatasetDict) else [loaded] if isinstance(loaded, Dataset) else []
    for split in splits:
        try:
            split.data.table.validate(full=True)
        except pa.ArrowInvalid as error:
            raise read_error(files, builder, error, what=what) from error
    return loaded


def _saved_without_rows(path: str) -> bool:
    """A `save_to_disk` folder whose Arrow data has no file (datasets cannot load such a folder back)."""
    import json

    states = [os.path.join(path, "state.json")] + [
        os.path.join(path, name, "state.json") for name in os.listdir(path) if os.path.isdir(os.path.join(path, name))
    ]
    for state in states:
        if os.path.isfile(state):
            with open(state, encoding="utf-8") as handle:
                if not json.load(handle).get("_data_files"):
                    return True
    return False


def _load_saved(path: str, streaming: bool) -> DatasetDict | IterableDatasetDict:
    try:
        return _to_dict(datasets.load_from_disk(path), streaming)
    except Exception as error:
        if _saved_without_rows(path):
            raise ValueError(
                f"The dataset saved in {path} is empty (a split with no rows). Check how it was made."
            ) from error
        raise ValueError(f"Cannot load the dataset saved in {path}: {cause_text(error)}") from error


def load_splits(
    source: Source,
    *,
    config_name: str | None = None,
    streaming: bool = False,
    cache_dir: str | None = None,
    what: str = "the dataset",
    **load_kwargs: Any,
) -> DatasetDict | IterableDatasetDict:
    """Load every split of a dataset source.

    Args:
        source (`str`, `os.PathLike`, list of paths or mapping split -> paths):
            A Hub name, a `save_to_disk` folder, a data folder, a file, a glob, a list of files/globs (one "train"
            split) or a mapping from split name to files. See the module docstring.
        config_name (`str`, *optional*):
            The Hub dataset configuration (e.g. `"wikitext-103-raw-v1"`); only for Hub names.
        streaming (`bool`, *optional*, defaults to `False`):
            Return `IterableDataset`s that read lazily. A `save_to_disk` folder is converted with
            `to_iterable_dataset()`.
        cache_dir (`str`, *optional*):
            The `datasets` cache folder.
        what (`str`, *optional*, defaults to `"the dataset"`):
            How error messages name the data (e.g. `"train_file"`).
        load_kwargs:
            Passed to `datasets.load_dataset` (e.g. `sample_by="document"` for text files, `revision`).

    Returns:
        `DatasetDict` or `IterableDatasetDict`.

    Raises:
        `FileNotFoundError`: a local path, file or glob that does not exist or matches nothing.
        `ValueError`: an unknown file format, mixed formats, or a Hub dataset that cannot be loaded.
    """
    if isinstance(source, Mapping):
        data_files = {str(split): _expand_files(spec) for split, spec in source.items()}
        return _load_files(data_files, streaming=streaming, cache_dir=cache_dir, what=what, **load_kwargs)
    if not isinstance(source, (str, os.PathLike)):
        files = {"train": _expand_files(source)}
        return _load_files(files, streaming=streaming, cache_dir=cache_dir, what=what, **load_kwargs)

    path = os.path.expanduser(os.fspath(source))
    if _GLOB_CHARS.search(path):
        return load_splits([path], streaming=streaming, cache_dir=cache_dir, what=what, **load_kwargs)
    if os.path.isdir(path):
        if _is_saved_dataset(path):
            return _load_saved(path, streaming)
        try:
            loaded = datasets.load_dataset(path, config_name, streaming=streaming, cache_dir=cache_dir, **load_kwargs)
        except (FileNotFoundError, ValueError) as error:
            raise ValueError(
                f"Could not load the folder {path!r} as a dataset ({error}). It should either be written by "
                "`save_to_disk` or contain data files (json/jsonl/parquet/txt/csv), ideally named after their "
                "split (train.jsonl.gz, validation.jsonl.gz)."
            ) from error
        except Exception as error:  # a data file in the folder that its builder cannot read
            raise read_error(_data_files_in(path), None, error, what=f"the folder {path}") from error
        if not streaming:
            loaded = _checked_utf8(loaded, _data_files_in(path), None, f"the folder {path}")
        return _to_dict(loaded, streaming)
    if os.path.isfile(path):
        return load_splits([path], streaming=streaming, cache_dir=cache_dir, what=what, **load_kwargs)
    if _looks_like_path(os.fspath(source)):
        raise FileNotFoundError(
            f"{path!r} does not exist. Pass an existing file, folder (e.g. one written by `save_to_disk`) or glob, "
            "or a Hub dataset name such as 'wikitext'."
        )
    try:
        loaded = datasets.load_dataset(path, config_name, streaming=streaming, cache_dir=cache_dir, **load_kwargs)
    except Exception as error:  # the Hub raises many types (offline, gated, missing config, ...)
        offline = os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1"
        hint = " The Hub is disabled (HF_HUB_OFFLINE=1) and the dataset is not cached." if offline else ""
        raise ValueError(
            f"Could not load {path!r} from the Hugging Face Hub"
            + (f" (config {config_name!r})" if config_name else "")
            + f": {type(error).__name__}: {error}.{hint} For local data pass a path that exists."
        ) from error
    return _to_dict(loaded, streaming)


def _is_files(source: Source) -> bool:
    """Whether `source` names data files (one file, a glob or a list), whose rows form a single split."""
    if isinstance(source, Mapping):
        return False
    if not isinstance(source, (str, os.PathLike)):
        return True
    path = os.path.expanduser(os.fspath(source))
    return bool(_GLOB_CHARS.search(path)) or os.path.isfile(path)


def load_split(
    source: Source,
    split: str = "train",
    *,
    config_name: str | None = None,
    streaming: bool = False,
    cache_dir: str | None = None,
    what: str | None = None,
    extensions: Sequence[str] | None = None,
    **load_kwargs: Any,
) -> AnyDataset:
    """Load one split of a dataset source: the one path from a name to rows for pretraining, GLUE and contrastive data.

    A file, a glob or a list of files is a single split: its rows are the data whatever `split` names (a slice such as
    `"validation[:100]"` still applies). A `save_to_disk` folder, a data folder and a Hub dataset must have the split.

    Args:
        source:
            See [`load_splits`].
        split (`str`, *optional*, defaults to `"train"`):
            Split name with an optional slice (see [`select_split`]).
        config_name (`str`, *optional*):
            Hub dataset configuration.
        streaming (`bool`, *optional*, defaults to `False`):
            Return an `IterableDataset`.
        cache_dir (`str`, *optional*):
            The `datasets` cache folder.
        what (`str`, *optional*):
            How error messages name the data (e.g. `"train_file"`); defaults to the source itself.
        extensions (`Sequence[str]`, *optional*):
            Accept only data files with these extensions (e.g. `(".csv", ".json")`); by default every format of
            [`FILE_FORMATS`].
        load_kwargs:
            Passed to `datasets.load_dataset`.

    Returns:
        `Dataset` or `IterableDataset`.

    Raises:
        `FileNotFoundError`: a local path that does not exist.
        `ValueError`: an unsupported format, a file that `datasets` cannot read (naming the file, line and column where
            it can), a missing split (naming those that exist) or no rows.

    Example:

    ```python
    >>> from neobert_hf.data.loading import load_split
    >>> load_split("data/corpus", "validation").num_rows > 0
    True

    ```
    """
    what = what or repr(os.fspath(source) if isinstance(source, (str, os.PathLike)) else source)
    if extensions is not None and _is_files(source):
        files = _expand_files([source] if isinstance(source, (str, os.PathLike)) else source)
        allowed = tuple(ext.lower() for ext in extensions)
        refused = [f for f in files if file_extension(f) not in allowed]
        if refused:
            shown = ", ".join(allowed[:-1]) + f" or {allowed[-1]}" if len(allowed) > 1 else allowed[0]
            raise ValueError(f"{what} {refused[0]}: use a {shown} file.")
    splits = load_splits(
        source, config_name=config_name, streaming=streaming, cache_dir=cache_dir, what=what, **load_kwargs
    )
    match = _SPLIT_SPEC.match(split.strip())
    if match is None:
        raise ValueError(f"Cannot parse the split {split!r}; expected e.g. 'train', 'train[:1%]' or 'train[100:2000]'.")
    spec = split.strip()
    if _is_files(source):
        spec = "train" + spec[len(match.group("name")) :]  # files are one split, named "train" by load_splits
    elif match.group("name") not in splits:
        raise ValueError(f"{what} has no split {match.group('name')!r}; its splits: {sorted(splits)}.")
    dataset = select_split(splits, spec)
    _check_not_empty(dataset, f"data of {what}" + ("" if _is_files(source) else f" (split {split!r})"))
    return dataset


# ----------------------------------------------------------------------------------------------------------------
# Splits and columns
# ----------------------------------------------------------------------------------------------------------------


def _resolve_bound(value: str, n: int | None, what: str, spec: str) -> int | None:
    value = value.strip()
    if value == "":
        return None
    if value.endswith("%"):
        if n is None:
            raise ValueError(
                f"Split {spec!r}: percent slices need the dataset length, which a stream does not have. Use absolute "
                "counts, e.g. 'train[:10000]'."
            )
        return round(float(value[:-1]) * n / 100)
    try:
        bound = int(value)
    except ValueError:
        raise ValueError(f"Split {spec!r}: the {what} bound {value!r} is not an integer or a percentage.") from None
    if bound < 0:
        if n is None:
            raise ValueError(f"Split {spec!r}: negative bounds need the dataset length, which a stream does not have.")
        bound += n
    return bound


def select_split(splits: DatasetDict | IterableDatasetDict, spec: str) -> AnyDataset:
    """Pick one split by name, with optional slicing (`"train"`, `"train[:1%]"`, `"train[1000:]"`, `"test[-500:]"`).

    Percent and negative bounds need a map-style dataset; streams take absolute non-negative bounds (done with
    `skip`/`take`).

    Args:
        splits (`DatasetDict` or `IterableDatasetDict`):
            As returned by [`load_splits`].
        spec (`str`):
            Split name with an optional `[start:stop]` slice.

    Returns:
        `Dataset` or `IterableDataset`.
    """
    match = _SPLIT_SPEC.match(spec.strip())
    if match is None:
        raise ValueError(f"Cannot parse the split {spec!r}; expected e.g. 'train', 'train[:1%]' or 'train[100:2000]'.")
    name = match.group("name")
    if name not in splits:
        raise ValueError(f"Split {name!r} not found; the dataset has the splits {sorted(splits)}.")
    dataset = splits[name]
    if match.group("start") is None:
        return dataset
    n = len(dataset) if isinstance(dataset, Dataset) else None
    start = _resolve_bound(match.group("start"), n, "start", spec) or 0
    stop = _resolve_bound(match.group("stop"), n, "stop", spec)
    if isinstance(dataset, Dataset):
        start, stop = min(max(start, 0), n), n if stop is None else min(max(stop, 0), n)
        return dataset.select(range(start, stop)) if start < stop else dataset.select([])
    if start:
        dataset = dataset.skip(start)
    return dataset if stop is None else dataset.take(max(stop - start, 0))


def _first_example(dataset: AnyDataset) -> dict[str, Any] | None:
    if isinstance(dataset, Dataset):
        return dataset[0] if len(dataset) else None
    return next(iter(dataset.take(1)), None)


def _column_types(dataset: AnyDataset) -> dict[str, str]:
    """Column name -> "string" / "tokens" / "other", from features when known, else from the first example."""
    features = dataset.features
    if features is not None:
        kinds = {}
        for name, feature in features.items():
            dtype = getattr(feature, "dtype", None)
            inner = getattr(feature, "feature", None)
            if dtype in ("string", "large_string"):
                kinds[name] = "string"
            elif dtype == "null":
                kinds[name] = "null"
            elif inner is not None and getattr(inner, "dtype", "").startswith(("int", "uint")):
                kinds[name] = "tokens"
            else:
                kinds[name] = "other"
        return kinds
    first = _first_example(dataset)
    if first is None:
        return {}
    kinds = {}
    for name, value in first.items():
        if isinstance(value, str):
            kinds[name] = "string"
        elif value is None:
            kinds[name] = "null"
        elif isinstance(value, list) and (not value or isinstance(value[0], int)):
            kinds[name] = "tokens"
        else:
            kinds[name] = "other"
    return kinds


def find_text_column(dataset: AnyDataset, text_column: str | None = None) -> str:
    """Return the column holding the text: `text_column` if given (checked), else auto-detected.

    Auto-detection takes the first of [`TEXT_COLUMN_NAMES`] that the dataset has, else the only string column. The
    chosen column must hold text: one of numbers or only nulls is an error naming it and a row, never a reason to
    take another column.

    Raises:
        `ValueError`: the given column is missing or holds no text, or no/several candidate string columns (the
        message lists the columns and says to pass `text_column`).
    """
    kinds = _column_types(dataset)
    if text_column is not None:
        if text_column not in kinds:
            raise ValueError(
                f"Text column {text_column!r} not found; the dataset has the columns {sorted(kinds)}. "
                "Pass one of them as `text_column`."
            )
        _check_holds_text(dataset, text_column, kinds)
        return text_column
    strings = [name for name, kind in kinds.items() if kind == "string"]
    named = next((name for name in TEXT_COLUMN_NAMES if name in kinds), None)
    if named is not None:
        # The first column named like a text column is the text: if it holds none, that is an error, never a reason
        # to train on another column.
        _check_holds_text(dataset, named, kinds)
        return named
    if len(strings) == 1:
        return strings[0]
    if not strings:
        raise ValueError(
            f"No text column found: the dataset has no string column (columns: {sorted(kinds)}). Pass `text_column`, "
            "or, for pre-tokenized data, make sure it has an `input_ids` column."
        )
    raise ValueError(
        f"Cannot tell which column holds the text among the string columns {strings}; pass `text_column` "
        "(e.g. `text_column='" + strings[0] + "'`)."
    )


def _first_value(dataset: AnyDataset, column: str) -> tuple[int, Any] | None:
    """`(row, value)` of the first non-null value of `column` among the first rows, or `None`."""
    rows = dataset.select(range(min(len(dataset), 1000))) if isinstance(dataset, Dataset) else dataset.take(1000)
    for row, example in enumerate(rows):
        if example[column] is not None:
            return row, example[column]
    return None


def _first_non_text(dataset: AnyDataset, column: str) -> tuple[int, Any] | None:
    """`(row, value)` of the first value of `column` that is neither a string nor null, or `None`."""
    rows = dataset.select_columns([column]) if isinstance(dataset, Dataset) else dataset.take(100_000)
    for row, example in enumerate(rows):
        value = example[column]
        if value is not None and not isinstance(value, str):
            return row, value
    return None


def _check_holds_text(dataset: AnyDataset, column: str, kinds: dict[str, str]) -> None:
    """Refuse a text column that holds no strings (numbers, lists, only nulls), naming the column and a row."""
    kind = kinds[column]
    if kind == "string":
        return
    first = _first_value(dataset, column)
    if dataset.features is None and first is not None and isinstance(first[1], str):
        return  # a stream whose first row had no text in this column
    others = [name for name, k in kinds.items() if k == "string" and name != column]
    hint = f" The string columns are {others}: pass the one with the text as `text_column`." if others else ""
    if kind == "null":
        raise ValueError(f"Text column {column!r} holds no text: every value in it is null (from row 0 on).{hint}")
    feature = dataset.features.get(column) if dataset.features is not None else None
    dtype = getattr(feature, "dtype", None) or type(feature).__name__ if feature is not None else None
    if first is not None and isinstance(first[1], str):
        first = _first_non_text(dataset, column) or first  # a column of mixed types
        dtype = "mixed"
    shown = f"row {first[0]} holds {first[1]!r}" if first is not None else "every value in it is null"
    what = " (it mixes text with other values)" if dtype == "mixed" else f" (its type is {dtype})" if dtype else ""
    raise ValueError(f"Text column {column!r} does not hold text{what}: {shown}.{hint}")


def is_tokenized(dataset: AnyDataset, input_column: str = "input_ids") -> bool:
    """Whether the dataset already holds token ids in `input_column` (a list-of-integers column)."""
    return _column_types(dataset).get(input_column) == "tokens"


def _check_not_empty(dataset: AnyDataset, what: str) -> None:
    empty = len(dataset) == 0 if isinstance(dataset, Dataset) else _first_example(dataset) is None
    if empty:
        raise ValueError(
            f"The {what} is empty (no rows). Check the source, the split slice and any filter; a split slice such as "
            "'train[:0.001%]' can round to zero rows."
        )


# ----------------------------------------------------------------------------------------------------------------
# Train / eval resolution
# ----------------------------------------------------------------------------------------------------------------


def load_pretraining_data(
    source: Source,
    *,
    config_name: str | None = None,
    train_split: str = "train",
    eval_split: str | None = None,
    eval_fraction: float | None = None,
    eval_samples: int | None = None,
    streaming: bool = False,
    text_column: str | None = None,
    seed: int = 0,
    cache_dir: str | None = None,
    **load_kwargs: Any,
) -> PretrainingData:
    """Load a pretraining source and resolve its train and eval data.

    Args:
        source:
            See [`load_splits`].
        config_name (`str`, *optional*):
            Hub dataset configuration.
        train_split (`str`, *optional*, defaults to `"train"`):
            Train split, slicing allowed (`"train[:1%]"`).
        eval_split (`str`, *optional*):
            Explicit eval split (slicing allowed). Without it, the first of [`EVAL_SPLIT_NAMES`] present is used.
        eval_fraction (`float`, *optional*):
            Without an eval split: hold out this random fraction of train (seeded by `seed`). Map-style only.
        eval_samples (`int`, *optional*):
            Without an eval split: use the first `eval_samples` train documents for eval and skip them for training
            (no leakage). Works for streams.
        streaming (`bool`, *optional*, defaults to `False`):
            Stream the data (`IterableDataset`).
        text_column (`str`, *optional*):
            Column with the text; auto-detected when not given (see [`find_text_column`]). Pre-tokenized data
            (an `input_ids` column) needs none.
        seed (`int`, *optional*, defaults to 0):
            Seed of the `eval_fraction` split.
        cache_dir (`str`, *optional*):
            The `datasets` cache folder.
        load_kwargs:
            Passed to `datasets.load_dataset`.

    Returns:
        [`PretrainingData`].

    Example:

    ```python
    >>> from neobert_hf.data import load_pretraining_data
    >>> data = load_pretraining_data("data/corpus")
    >>> data.eval_origin, data.text_column
    ('auto_split', 'text')

    ```
    """
    if eval_fraction is not None and eval_samples is not None:
        raise ValueError("Pass either eval_fraction or eval_samples, not both.")
    if eval_fraction is not None and not 0.0 < eval_fraction < 1.0:
        raise ValueError(f"eval_fraction must be in (0, 1), got {eval_fraction}.")
    if eval_samples is not None and eval_samples <= 0:
        raise ValueError(f"eval_samples must be a positive integer, got {eval_samples}.")

    splits = load_splits(source, config_name=config_name, streaming=streaming, cache_dir=cache_dir, **load_kwargs)
    train = select_split(splits, train_split)
    _check_not_empty(train, f"train split {train_split!r} of {source!r}")
    train_name = _SPLIT_SPEC.match(train_split.strip()).group("name")

    evaluation: AnyDataset | None = None
    origin: Literal["split", "auto_split", "fraction", "head", "none"] = "none"
    if eval_split is not None:
        evaluation, origin = select_split(splits, eval_split), "split"
        description = f"eval: split {eval_split!r}"
    else:
        detected = next((name for name in EVAL_SPLIT_NAMES if name in splits and name != train_name), None)
        if detected is not None:
            evaluation, origin = splits[detected], "auto_split"
            description = f"eval: detected split {detected!r}"
        elif eval_fraction is not None:
            if isinstance(train, Dataset):
                parts = train.train_test_split(test_size=eval_fraction, seed=seed, shuffle=True)
                train, evaluation, origin = parts["train"], parts["test"], "fraction"
                description = f"eval: random {eval_fraction:.2%} of {train_split!r} (seed {seed}), removed from train"
            else:
                reason = (
                    f"eval_fraction={eval_fraction} needs map-style data and the data is streamed (a stream has no "
                    "length to split); use eval_samples for the head of the stream"
                )
                description = f"eval: none ({reason})"
                logging.getLogger(__name__).warning(f"No eval data: {reason}.")
        elif eval_samples is not None:
            if isinstance(train, Dataset):
                if eval_samples >= len(train):
                    raise ValueError(f"eval_samples={eval_samples} leaves no training data (train has {len(train)}).")
                evaluation = train.select(range(eval_samples))
                train = train.select(range(eval_samples, len(train)))
            else:
                evaluation, train = train.take(eval_samples), train.skip(eval_samples)
            origin = "head"
            description = f"eval: first {eval_samples} documents of {train_split!r}, skipped for training"
        else:
            description = f"eval: none (no split among {list(EVAL_SPLIT_NAMES)}, no eval_fraction/eval_samples)"
    if evaluation is not None:
        _check_not_empty(evaluation, f"eval data ({description})")

    tokenized = text_column is None and is_tokenized(train)
    column = None if tokenized else find_text_column(train, text_column)
    if evaluation is not None and column is not None:
        find_text_column(evaluation, column)
    kind = "stream" if isinstance(train, IterableDataset) else f"{len(train)} documents"
    content = "pre-tokenized input_ids" if tokenized else f"text column {column!r}"
    return PretrainingData(
        train=train,
        eval=evaluation,
        text_column=column,
        tokenized=tokenized,
        eval_origin=origin,
        description=f"train: {train_split!r} ({kind}, {content}); {description}",
    )

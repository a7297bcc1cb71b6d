"""The checkpoint tree: `<output_dir>/checkpoints/<step>/`, one folder per saved step.

Each folder is both a resumable training state and a loadable model:

```
checkpoints/<step>/
  model.safetensors  config.json  modeling_neobert.py  configuration_neobert.py   # AutoModel*.from_pretrained
  tokenizer.json  tokenizer_config.json  ...                                       # the tokenizer, when given
  README.md                                                                        # model card
  optimizer.pt  scheduler.pt  rng_state.pth  trainer_state.json  training_args.bin # resume (no token: see below)
  data_state.json (or .pt)                                                         # stream position, when stateful
  checkpoint_manifest.json                                                         # size and sha256 of each file
```

A folder is written as `checkpoints/.tmp-<step>-<random>/` and renamed to its final name once complete and flushed
to the storage device (fsync of every file and folder, then of `checkpoints/` after the rename: [`publish`]), so
neither a crash nor a power loss leaves a half-written folder under a step name. The last file written inside the temporary folder is
`checkpoint_manifest.json`, the size and sha256 of every other file ([`write_manifest`]); a folder whose files do not
match it is not complete, and resuming verifies every hash first ([`verify_checkpoint`]). Folders written before the
manifest existed are complete when they hold `trainer_state.json` and the weights. Old checkpoints are renamed to a
`.tmp-` name before they are deleted, so an interrupted deletion leaves no partial folder under a step name.
[`~neobert_hf.checkpoints.CheckpointTreeCallback`] writes this tree for any `Trainer`.

No secret is written: `training_args.bin` (pickled by every `save_model`) holds a copy of the arguments whose
`*_token` fields (`hub_token`) are `None` ([`redacted_training_args`]); JSON records use transformers'
`TrainingArguments.to_dict()`, which already replaces them with `<HUB_TOKEN>`.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import copy
import dataclasses
import errno
import hashlib
import json
import logging
import os
import pickle
import re
import secrets
import shutil
import zipfile
from collections.abc import Iterable, Iterator

import torch


logger = logging.getLogger(__name__)

CHECKPOINTS_DIR = "checkpoints"
TMP_PREFIX = ".tmp-"
HUB_STAGING_PREFIX = ".hub-export-"  # exports staged for a Hub upload (`training.hub`)
TRAINER_STATE_NAME = "trainer_state.json"
DATA_STATE_JSON = "data_state.json"
DATA_STATE_PT = "data_state.pt"
MANIFEST_NAME = "checkpoint_manifest.json"
LOCK_NAME = "run.lock"
# LoRA checkpoints keep the adapter here; the folder itself holds the merged model, so it loads like any other.
ADAPTER_DIR = "adapter"
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
_STEP_RE = re.compile(r"^\d+$")
# transformers' own checkpoint folders (`Trainer._save_checkpoint` writes `<output_dir>/checkpoint-<step>/`, which
# CheckpointTreeCallback moves into the tree at once).
_STOCK_RE = re.compile(r"^checkpoint-\d+$")
_HASH = "sha256"
_CHUNK = 8 << 20


class CheckpointError(ValueError):
    """A checkpoint that was asked for does not exist, is not complete or is damaged, or the output folder cannot be
    used (see [`~neobert_hf.checkpoints.OutputDirLockedError`])."""


class DamagedCheckpointError(CheckpointError):
    """A checkpoint folder whose files are missing, truncated or do not match their recorded hash.

    Attributes:
        path: the folder.
        files: the damaged or missing files, relative to `path`.
        good_step: the newest other step of the run that is usable, or `None`.
    """

    def __init__(self, message: str, path: str = "", files: list[str] | None = None, good_step: int | None = None):
        super().__init__(message)
        self.path, self.files, self.good_step = path, files or [], good_step


class OutputDirLockedError(CheckpointError):
    """Another run holds the output folder's `run.lock`."""


def redacted_training_args(args):
    """A shallow copy of `args` (a `TrainingArguments`) with every `*_token` field set to `None`: the same fields that
    transformers' `TrainingArguments.to_dict()` redacts, so that pickling the copy writes no Hub token. `args` itself
    is unchanged (the Trainer still pushes with its token)."""
    clean = copy.copy(args)
    for name in list(vars(args)):
        if name.endswith("_token") and getattr(args, name) is not None:
            setattr(clean, name, None)
    return clean


def checkpoints_root(output_dir: str | os.PathLike) -> str:
    return os.path.join(os.fspath(output_dir), CHECKPOINTS_DIR)


def checkpoint_dir(output_dir: str | os.PathLike, step: int) -> str:
    return os.path.join(checkpoints_root(output_dir), str(int(step)))


def step_folder(path: str | os.PathLike) -> str:
    """The checkpoint folder that `path` names: `path` itself, or the folder holding it when `path` is its
    `adapter/` subfolder (what `best_model_checkpoint` names for a LoRA run)."""
    path = os.path.normpath(os.fspath(path))
    return os.path.dirname(path) if os.path.basename(path) == ADAPTER_DIR else path


# ---------------------------------------------------------------------------------------------------------------------
# Manifest
# ---------------------------------------------------------------------------------------------------------------------


def _files_under(folder: str) -> list[str]:
    """Every file under `folder` but the manifest, as sorted relative paths with `/`."""
    found = []
    for root, _, files in os.walk(folder):
        for name in files:
            rel = os.path.relpath(os.path.join(root, name), folder).replace(os.sep, "/")
            if rel != MANIFEST_NAME:
                found.append(rel)
    return sorted(found)


def _hash_file(path: str) -> str:
    digest = hashlib.new(_HASH)
    buffer = bytearray(_CHUNK)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as handle:
        while n := handle.readinto(buffer):
            digest.update(view[:n])
    return digest.hexdigest()


def _hash_files(folder: str, names: list[str]) -> dict[str, str]:
    """sha256 of each file, several files at once (hashlib releases the GIL while it hashes)."""
    if not names:
        return {}
    workers = max(1, min(len(names), os.cpu_count() or 1, 8))
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        digests = pool.map(lambda name: _hash_file(os.path.join(folder, name)), names)
        return dict(zip(names, digests))


def write_manifest(folder: str, step: int | None = None) -> str:
    """Writes `<folder>/checkpoint_manifest.json`: the size and sha256 of every other file under `folder`. Called
    last, once every process has written its files, just before the folder is published.

    sha256 (hashlib, about 1 GB/s per core, files hashed in parallel) rather than a faster non-cryptographic hash: it
    needs nothing outside the standard library, `sha256sum` can check it by hand, and the files were just written,
    so hashing reads them from the page cache; it adds about a second per GB to a save. Sizes alone are checked
    wherever a folder is only looked at (`latest`, retention); the hashes when a run resumes from it.

    Returns:
        `str`: the path of the manifest.
    """
    names = _files_under(folder)
    sizes = {name: os.path.getsize(os.path.join(folder, name)) for name in names}
    digests = _hash_files(folder, names)
    record = {
        "format": 1,
        "step": step,
        "hash": _HASH,
        "files": {name: {"size": sizes[name], _HASH: digests[name]} for name in names},
    }
    path = os.path.join(folder, MANIFEST_NAME)
    with open(f"{path}.tmp", "w", encoding="utf-8") as handle:
        json.dump(record, handle, indent=1, sort_keys=True)
        handle.write("\n")
    os.replace(f"{path}.tmp", path)
    return path


def read_manifest(folder: str | os.PathLike) -> dict | None:
    """The manifest of `folder` (`{"files": {name: {"size", "sha256"}}, ...}`), or `None` when it has none (a
    checkpoint written before manifests existed).

    Raises:
        [`DamagedCheckpointError`]: the manifest exists but cannot be read.
    """
    path = os.path.join(os.fspath(folder), MANIFEST_NAME)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            record = json.load(handle)
        files = record["files"]
        if not all(isinstance(entry.get("size"), int) and _HASH in entry for entry in files.values()):
            raise ValueError(f"an entry lacks its size or {_HASH}")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise DamagedCheckpointError(
            f"its {MANIFEST_NAME} cannot be read ({err})", os.fspath(folder), [MANIFEST_NAME]
        ) from err
    return record


def _manifest_problems(folder: str, record: dict, hashes: bool) -> list[tuple[str, str]]:
    """`(file, what is wrong)` for each file of `folder` that is missing or does not match `record`."""
    problems, present = [], []
    for name, entry in sorted(record["files"].items()):
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            problems.append((name, f"it has no {name} (listed in its {MANIFEST_NAME})"))
            continue
        size = os.path.getsize(path)
        if size != entry["size"]:
            problems.append(
                (name, f"{name} has {size} bytes where its {MANIFEST_NAME} records {entry['size']} (truncated or "
                       "damaged)")
            )
        else:
            present.append(name)
    if hashes:
        digests = _hash_files(folder, present)
        problems += [
            (name, f"{name} does not match the {_HASH} recorded in its {MANIFEST_NAME} (damaged)")
            for name in present
            if digests[name] != record["files"][name][_HASH]
        ]
    return problems


def model_file_problems(folder: str | os.PathLike) -> list[str]:
    """What keeps a checkpoint folder from loading as a model, judged against its manifest: a listed file whose size
    differs, or a missing config or weights file (a missing tokenizer or training state does not prevent loading).
    Empty for a folder without manifest.

    Raises:
        [`DamagedCheckpointError`]: the manifest exists but cannot be read.
    """
    folder = os.fspath(folder)
    record = read_manifest(folder)
    if record is None:
        return []
    needed = {"config.json", *_WEIGHT_FILES}
    return [
        reason
        for name, reason in _manifest_problems(folder, record, hashes=False)
        if os.path.isfile(os.path.join(folder, name)) or name in needed or name.endswith(".safetensors")
    ]


def _structure_problem(path: str) -> str | None:
    """What makes a file of a checkpoint without manifest unreadable, judged from its structure without loading it:
    JSON that does not parse, a safetensors file whose header safetensors refuses (one shorter than its tensors), a torch zip archive without its
    central directory (what truncation does). `None` when nothing is found."""
    name = os.path.basename(path)
    size = os.path.getsize(path)
    if size == 0:
        return f"{name} is empty"
    try:
        if name.endswith(".json"):
            with open(path, encoding="utf-8") as handle:
                json.load(handle)
        elif name.endswith(".safetensors"):
            from safetensors import SafetensorError, safe_open

            try:  # safetensors checks the header and that the tensors it lists cover the file exactly
                with safe_open(path, framework="pt"):
                    pass
            except SafetensorError as err:
                return f"{name} cannot be read ({err}; {size} bytes: truncated or damaged)"
        elif name.endswith((".pt", ".pth", ".bin")):
            with open(path, "rb") as handle:
                is_zip = handle.read(4) == b"PK\x03\x04"
            if is_zip:  # torch.save's format; older pickles cannot be checked without loading them
                with zipfile.ZipFile(path) as archive:
                    archive.infolist()
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as err:
        return f"{name} cannot be read ({type(err).__name__}: {err}; truncated or damaged)"
    return None


def _legacy_reason(path: str) -> str | None:
    if not os.path.isfile(os.path.join(path, TRAINER_STATE_NAME)):
        return f"it has no {TRAINER_STATE_NAME}"
    if not any(os.path.isfile(os.path.join(path, f)) for f in _WEIGHT_FILES):
        return "it has no model.safetensors"
    return None


def incomplete_reason(path: str | os.PathLike) -> str | None:
    """Why `path` is not a complete checkpoint folder, or `None` when it is one. Cheap: with a manifest, every listed
    file must be there with its recorded size (hashes are checked by [`verify_checkpoint`]); without one (written
    before manifests existed), `trainer_state.json` and the weights must be there."""
    path = os.fspath(path)
    name = os.path.basename(os.path.normpath(path))
    if name.startswith(TMP_PREFIX):
        return "it is a temporary folder left by an interrupted save (its name starts with '.tmp-')"
    if not os.path.isdir(path):
        return "it does not exist" if not os.path.exists(path) else "it is not a folder"
    try:
        record = read_manifest(path)
    except DamagedCheckpointError as err:
        return str(err)
    if record is None:
        return _legacy_reason(path)
    problems = _manifest_problems(path, record, hashes=False)
    return "; ".join(reason for _, reason in problems) or None


def _is_leftover(path: str) -> bool:
    """A step folder that holds no manifest, trainer state or weights: neither resumable nor loadable, what an
    interrupted deletion by earlier versions left (often `config.json` alone)."""
    return not any(os.path.exists(os.path.join(path, n)) for n in (MANIFEST_NAME, TRAINER_STATE_NAME, *_WEIGHT_FILES))


def _step_folders(output_dir: str | os.PathLike) -> list[tuple[int, str]]:
    root = checkpoints_root(output_dir)
    if not os.path.isdir(root):
        return []
    return sorted(
        (int(name), os.path.join(root, name))
        for name in os.listdir(root)
        if _STEP_RE.match(name) and os.path.isdir(os.path.join(root, name))
    )


def list_checkpoints(output_dir: str | os.PathLike) -> list[tuple[int, str]]:
    """Complete checkpoints under `<output_dir>/checkpoints/`, as `(step, path)` sorted by step."""
    return [(step, path) for step, path in _step_folders(output_dir) if incomplete_reason(path) is None]


def latest_checkpoint(output_dir: str | os.PathLike) -> str | None:
    """Path of the complete checkpoint with the highest step (never a damaged or incomplete one), or `None`."""
    found = list_checkpoints(output_dir)
    return found[-1][1] if found else None


def damaged_checkpoints(output_dir: str | os.PathLike) -> list[tuple[int, str, str]]:
    """Step folders under `<output_dir>/checkpoints/` that are not complete, as `(step, path, reason)`; leftovers
    that [`clean_leftovers`] deletes are not listed."""
    found = []
    for step, path in _step_folders(output_dir):
        reason = incomplete_reason(path)
        if reason is not None and not _is_leftover(path):
            found.append((step, path, reason))
    return found


def _problems(path: str, hashes: bool) -> list[tuple[str, str]]:
    """`(file, what is wrong)` for a checkpoint folder: against its manifest (hashes too when `hashes`), else, for a
    folder written before manifests existed, the completeness rule and the structure of each file."""
    try:
        record = read_manifest(path)
    except DamagedCheckpointError as err:
        return [(MANIFEST_NAME, str(err))]
    if record is not None:
        return _manifest_problems(path, record, hashes)
    reason = _legacy_reason(path)
    if reason is not None:
        return [(reason.rsplit(" ", 1)[-1], reason)]
    problems = []
    names = os.listdir(path)
    optimizer = next((n for n in names if n.startswith("optimizer")), None)
    if optimizer is not None:  # transformers silently skips the optimizer when scheduler.pt is missing
        if "scheduler.pt" not in names:
            problems.append(("scheduler.pt", f"it has {optimizer} but no scheduler.pt"))
        if not any(n.startswith("rng_state") for n in names):
            problems.append(("rng_state.pth", f"it has {optimizer} but no rng_state.pth"))
    for rel in _files_under(path):
        problem = _structure_problem(os.path.join(path, rel))
        if problem is not None:
            problems.append((rel, problem))
    return problems


def _newest_good_step(path: str, hashes: bool) -> tuple[int, str] | None:
    """The newest other step of the run `path` belongs to (`<output_dir>/checkpoints/<step>`) that passes the same
    checks, or `None`."""
    root = os.path.dirname(os.path.normpath(path))
    if os.path.basename(root) != CHECKPOINTS_DIR:
        return None
    for step, other in reversed(_step_folders(os.path.dirname(root))):
        if os.path.abspath(other) == os.path.abspath(path) or incomplete_reason(other) is not None:
            continue
        if not hashes or not _problems(other, hashes=True):
            return step, other
    return None


def _damaged(path: str, problems: list[tuple[str, str]], what: str, hashes: bool) -> DamagedCheckpointError:
    good = _newest_good_step(path, hashes)
    shown = "; ".join(reason for _, reason in problems[:3])
    if len(problems) > 3:
        shown += f"; ... ({len(problems)} files)"
    check = "verifies" if hashes else "is complete"
    if good is None:
        hint = "No other checkpoint of this run " + check + "."
    else:
        hint = (
            f"The newest checkpoint of this run that {check} is step {good[0]} ({good[1]}): resume from it with "
            f"resume_from_checkpoint={good[0]}, or delete {path}. It is not chosen for you, since that repeats "
            "training."
        )
    return DamagedCheckpointError(f"{what}: {shown}. {hint}", path, [f for f, _ in problems], good and good[0])


def verify_checkpoint(path: str | os.PathLike, *, hashes: bool = True) -> None:
    """Checks a checkpoint folder before a run resumes from it: every file listed in its manifest is there with its
    size and (with `hashes`) its sha256. A folder written before manifests existed is checked for `trainer_state.json`
    and the weights and for files whose structure shows truncation (JSON, safetensors, torch archives), with a note.

    Raises:
        [`DamagedCheckpointError`]: naming the damaged or missing files and the newest other step that verifies.
    """
    path = os.fspath(path)
    problems = _problems(path, hashes)
    if problems:
        raise _damaged(path, problems, f"Cannot resume from {path}", hashes)
    if not os.path.isfile(os.path.join(path, MANIFEST_NAME)):
        logger.warning(
            f"{path} has no {MANIFEST_NAME} (written before checkpoints recorded their files): it was checked for "
            "missing and truncated files, and its training state is read once, not checked against hashes."
        )
        if hashes:
            _read_training_state(path)


# What each torch file of the training state holds, as the messages of [`reading_checkpoint_file`] name it.
_TRAINING_STATE_FILES = (
    ("optimizer", "optimizer.pt / scheduler.pt"),
    ("scheduler", "optimizer.pt / scheduler.pt"),
    ("scaler", "scaler.pt"),
    ("rng_state", "the RNG state (rng_state*.pth)"),
)


def _read_training_state(path: str) -> None:
    """Reads every torch file of the training state of a checkpoint without manifest, so that damage that only
    loading finds (an intact archive around a damaged pickle) is named before training starts, as transformers'
    loaders read them (`weights_only=True`, numpy's RNG types allowed)."""
    from transformers.trainer_pt_utils import safe_globals

    for name in sorted(os.listdir(path)):
        what = next((w for prefix, w in _TRAINING_STATE_FILES if name.startswith(prefix)), None)
        if what is None or not name.endswith((".pt", ".pth", ".bin")) or not os.path.isfile(os.path.join(path, name)):
            continue
        with reading_checkpoint_file(path, what), safe_globals():
            torch.load(os.path.join(path, name), map_location="cpu", weights_only=True)


def _is_stateful(dataset) -> bool:
    return callable(getattr(dataset, "state_dict", None)) and callable(getattr(dataset, "load_state_dict", None))


def check_resumable(path: str | os.PathLike, args, train_dataset=None, *, stream: bool | None = None) -> None:
    """Checks, before anything is written, that training can continue from the checkpoint folder `path` (resolved and
    verified): it holds the optimizer state (unless DeepSpeed saves its own), the run is not already at
    `args.max_steps`, and a training stream can be put back where it was.

    Args:
        path: the checkpoint folder.
        args: the run's `TrainingArguments` (`max_steps`, `ignore_data_skip`, `deepspeed`).
        train_dataset: the training dataset, when already built: a stream (`IterableDataset`) must be stateful.
        stream: whether training reads a stream whose position the checkpoint must hold; by default, whether
            `train_dataset` is an `IterableDataset`.

    Raises:
        [`CheckpointError`]: naming what is missing and what to do instead.
    """
    from torch.utils.data import IterableDataset

    path = os.fspath(path)
    if not getattr(args, "deepspeed", None) and not any(name.startswith("optimizer") for name in os.listdir(path)):
        raise CheckpointError(
            f"{path} holds no optimizer state (saved with save_only_model=True?), so training cannot resume from it. "
            f"Start a new run from its weights instead (model_name_or_path={path}, or load it with from_pretrained)."
        )
    check_run_not_finished(path, args.max_steps)
    if stream is None:
        stream = isinstance(train_dataset, IterableDataset)
    if not stream or args.ignore_data_skip:
        return
    if train_dataset is not None and not _is_stateful(train_dataset):
        raise CheckpointError(
            f"Cannot resume the training stream: {type(train_dataset).__name__} has no state_dict()/load_state_dict(), "
            "so its position cannot be restored (replaying it would not be guaranteed to give the same data). Use a "
            "stateful dataset (datasets.IterableDataset, the packing dataset of neobert_hf.data), a map-style dataset, "
            "or pass ignore_data_skip=True to restart the stream from its beginning."
        )
    if load_data_state(path) is None:
        raise CheckpointError(
            f"{path} holds no data_state.json/.pt, so the position in the training data cannot be restored (was it "
            "saved with dataloader_num_workers > 0?). Pass ignore_data_skip=True to restart the data from its "
            "beginning."
        )


def _stored_weight_names(path: str) -> list[str] | None:
    """The tensor names of a checkpoint's safetensors weights (read from the headers), or `None` when it has none."""
    from safetensors import safe_open

    index = os.path.join(path, "model.safetensors.index.json")
    if os.path.isfile(index):
        with reading_checkpoint_file(path, "model.safetensors.index.json"), open(index, encoding="utf-8") as handle:
            return sorted(json.load(handle)["weight_map"])
    single = os.path.join(path, "model.safetensors")
    if not os.path.isfile(single):
        return None
    with reading_checkpoint_file(path, "the model weights"), safe_open(single, framework="pt") as handle:
        return sorted(handle.keys())


def check_weights_match(path: str | os.PathLike, model) -> None:
    """Fails unless the weights of the checkpoint folder `path` cover exactly the parameters and buffers of `model`
    (a tied weight that shares storage with a stored one needs no copy of its own). transformers' resume loads the
    weights with `strict=False` and only warns; this check runs before training starts, so nothing is trained from
    partly random weights. Folders without `model.safetensors` (adapters, sharded FSDP states) are not checked.

    Raises:
        [`CheckpointError`]: naming the missing and unexpected keys.
    """
    stored = _stored_weight_names(os.fspath(path))
    if stored is None:
        return
    state = model.state_dict()
    stored_set = set(stored)
    missing = set(state) - stored_set
    loaded_ptrs = {t.data_ptr() for k, t in state.items() if k in stored_set}
    really_missing = sorted(k for k in missing if state[k].data_ptr() not in loaded_ptrs)
    unexpected = sorted(stored_set - set(state))
    if really_missing or unexpected:
        raise CheckpointError(
            f"The checkpoint does not match the model: missing keys {really_missing}, unexpected keys {unexpected}. "
            "Resume with the model configuration the checkpoint was trained with."
        )


def resolve_checkpoint(spec: str | int | bool | os.PathLike, output_dir: str | os.PathLike) -> str:
    """Turns `--resume_from_checkpoint` into the path of a complete checkpoint folder.

    Args:
        spec: `"latest"` (or `True`): the highest step under `<output_dir>/checkpoints/`, which must be complete (a
            damaged newest step is an error naming the newest complete one, never skipped silently); an integer or a
            string of digits: that step under `<output_dir>/checkpoints/`; anything else: a path to a checkpoint
            folder.
        output_dir: the run's output folder.

    Returns:
        `str`: the checkpoint folder.

    Raises:
        [`CheckpointError`]: when no such checkpoint exists; [`DamagedCheckpointError`] when it is incomplete or
        damaged.
    """
    root = checkpoints_root(output_dir)
    if spec is True or (isinstance(spec, str) and spec.strip().lower() == "latest"):
        path = latest_checkpoint(output_dir)
        newer = [d for d in damaged_checkpoints(output_dir) if path is None or d[0] > int(os.path.basename(path))]
        if newer:
            step, damaged, _ = newer[-1]
            raise _damaged(
                damaged, _problems(damaged, hashes=False), f"resume_from_checkpoint=latest: the newest checkpoint, "
                f"step {step} ({damaged}), is not usable", hashes=False,
            )
        if path is None:
            raise CheckpointError(
                f"resume_from_checkpoint=latest but there is no complete checkpoint under {root}."
                + _leftovers_note(root)
            )
        return path
    if isinstance(spec, int) or (isinstance(spec, str) and _STEP_RE.match(spec.strip())):
        path = checkpoint_dir(output_dir, int(spec))
        available = [step for step, _ in list_checkpoints(output_dir)]
        if not os.path.exists(path):
            raise CheckpointError(
                f"resume_from_checkpoint={spec}: there is no checkpoint for step {int(spec)} under {root} "
                f"(complete steps: {available or 'none'})." + _leftovers_note(root)
            )
    else:
        path = os.fspath(spec)
    reason = incomplete_reason(path)
    if reason is not None:
        if os.path.isdir(path) and not os.path.basename(os.path.normpath(path)).startswith(TMP_PREFIX):
            raise _damaged(path, _problems(path, hashes=False) or [("", reason)], f"Cannot resume from {path}", False)
        raise CheckpointError(
            f"Cannot resume from {path}: {reason}. Resume from a complete checkpoint folder "
            f"(checkpoints/<step>/ with {TRAINER_STATE_NAME} and model.safetensors), a step number, or 'latest'."
        )
    return path


def check_run_not_finished(path: str, max_steps: int) -> None:
    """Refuses to resume from a checkpoint already at `max_steps` (transformers' loop checks `max_steps` only after a
    step, so it would train one step past the end). `max_steps <= 0` (epoch-based runs) is not checked."""
    state_file = os.path.join(path, TRAINER_STATE_NAME)
    if max_steps <= 0 or not os.path.isfile(state_file):
        return
    try:
        with open(state_file, encoding="utf-8") as handle:
            step = json.load(handle).get("global_step", 0)
    except (OSError, ValueError, AttributeError) as err:
        raise CheckpointError(f"Cannot read {state_file} ({err}): the file is truncated or damaged.") from err
    if step >= max_steps:
        raise CheckpointError(
            f"{path} is at step {step} and max_steps is {max_steps}: that run is complete. Pass a larger max_steps to "
            "train further (the learning-rate schedule then follows the new max_steps)."
        )


def _interrupted_stock_saves(output_dir: str) -> list[str]:
    """`checkpoint-<step>/` folders of `output_dir` without `trainer_state.json`: a save by transformers' `Trainer`
    that was interrupted before [`~neobert_hf.checkpoints.CheckpointTreeCallback`] could move it into the tree (the
    Trainer writes `trainer_state.json` last). A complete one may be another run's and is left alone."""
    if not os.path.isdir(output_dir):
        return []
    return sorted(
        os.path.join(output_dir, name)
        for name in os.listdir(output_dir)
        if _STOCK_RE.match(name)
        and os.path.isdir(os.path.join(output_dir, name))
        and not os.path.isfile(os.path.join(output_dir, name, TRAINER_STATE_NAME))
    )


def _leftovers_note(root: str) -> str:
    leftovers = sorted(n for n in os.listdir(root) if n.startswith(TMP_PREFIX)) if os.path.isdir(root) else []
    leftovers += [os.path.basename(p) for p in _interrupted_stock_saves(os.path.dirname(root))]
    if not leftovers:
        return ""
    return f" Interrupted saves (not resumable): {', '.join(leftovers)}."


def new_tmp_dir(output_dir: str | os.PathLike, step: int, token: str) -> str:
    return os.path.join(checkpoints_root(output_dir), f"{TMP_PREFIX}{int(step)}-{token}")


def _discard(path: str) -> None:
    """Deletes a checkpoint folder after renaming it to a `.tmp-` name (atomic), so that an interrupted deletion
    leaves a temporary folder, never a partial folder under a step name."""
    trash = os.path.join(os.path.dirname(path), f"{TMP_PREFIX}deleting-{os.path.basename(path)}-{secrets.token_hex(4)}")
    os.rename(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def _fsync(path: str, directory: bool = False) -> None:
    if directory and os.name != "posix":  # a directory cannot be opened for fsync elsewhere (Windows)
        return
    flags = (os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)) if directory else os.O_RDONLY
    descriptor = os.open(path, flags)
    try:
        os.fsync(descriptor)
    except OSError as error:
        # A few file systems (some FUSE and network mounts) have no fsync: the data is as durable as they make it.
        if error.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
    finally:
        os.close(descriptor)


def sync_folder(folder: str) -> None:
    """Flushes every file under `folder`, then each folder's entries, to the storage device (fsync), so that a folder
    published after this holds its data even if the machine loses power right after: a rename is atomic, but without
    this the renamed folder could hold empty or partial files after a crash. Files are flushed several at once."""
    files, folders = [], []
    for root, _, names in os.walk(folder):
        folders.append(root)
        files.extend(os.path.join(root, name) for name in names)
    if files:
        workers = max(1, min(len(files), os.cpu_count() or 1, 8))
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(_fsync, files))
    for path in reversed(folders):  # deepest first
        _fsync(path, directory=True)


def publish(tmp_dir: str, final_dir: str) -> None:
    """Renames the finished `tmp_dir` to `final_dir` (atomic on POSIX) after flushing its files to the device
    ([`sync_folder`]); the parent folder is flushed after the rename, so the new name survives a power loss too. An
    existing `final_dir` of the same step is moved aside first and removed after the rename, so a complete folder is
    always present under the final name."""
    sync_folder(tmp_dir)
    old = None
    if os.path.exists(final_dir):
        old = f"{tmp_dir}.replaced"
        os.rename(final_dir, old)
    os.rename(tmp_dir, final_dir)
    _fsync(os.path.dirname(os.path.abspath(final_dir)), directory=True)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def rotate(output_dir: str | os.PathLike, save_total_limit: int | None, keep: Iterable[str | None] = ()) -> list[str]:
    """Deletes the oldest complete checkpoints beyond `save_total_limit` (never those in `keep`, e.g. the best
    model), each renamed to a `.tmp-` name first. Temporary folders are left alone: while a run saves, they may be
    its own; [`clean_leftovers`] removes those of interrupted runs when the next run starts. Returns what it
    deleted."""
    if save_total_limit is None or save_total_limit <= 0:
        return []
    keep_paths = {os.path.abspath(p) for p in keep if p}
    found = list_checkpoints(output_dir)
    removable = [path for _, path in found if os.path.abspath(path) not in keep_paths]
    excess = len(found) - save_total_limit
    deleted = []
    for path in removable[: max(excess, 0)]:
        _discard(path)
        deleted.append(path)
    return deleted


def clean_leftovers(output_dir: str | os.PathLike) -> list[str]:
    """What interrupted runs left under `<output_dir>/checkpoints/`, dealt with when a run starts (holding the
    output folder's lock, so no other run is writing there): temporary folders (`.tmp-*`: interrupted saves and
    deletions), step folders that hold neither weights, trainer state nor manifest (an interrupted deletion by
    earlier versions, often `config.json` alone) and `<output_dir>/checkpoint-<step>/` folders of a save interrupted
    before it reached the tree, and `<output_dir>/.hub-export-*` staging folders of a push that never finished, are
    deleted; other incomplete or damaged step folders are reported (they may hold
    something worth keeping) and never resumed from. Returns the deleted paths."""
    root = checkpoints_root(output_dir)
    deleted = []
    for path in _interrupted_stock_saves(os.fspath(output_dir)):
        shutil.rmtree(path, ignore_errors=True)
        deleted.append(path)
    if os.path.isdir(output_dir):  # Hub staging folders of a push that a killed run never finished
        for name in sorted(os.listdir(output_dir)):
            path = os.path.join(output_dir, name)
            if name.startswith(HUB_STAGING_PREFIX) and os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
                deleted.append(path)
    if not os.path.isdir(root):
        if deleted:
            logger.warning(f"Deleted what interrupted runs left in {output_dir}: {', '.join(deleted)}.")
        return deleted
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name)
        if name.startswith(TMP_PREFIX) or (_STEP_RE.match(name) and os.path.isdir(path) and _is_leftover(path)):
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.remove(path)
            deleted.append(path)
    if deleted:
        logger.warning(f"Deleted what interrupted runs left in {root}: {', '.join(map(os.path.basename, deleted))}.")
    for step, path, reason in damaged_checkpoints(output_dir):
        logger.warning(
            f"Checkpoint {path} is incomplete or damaged ({reason}); it is never resumed from. Delete it once you "
            "have checked that nothing in it is needed."
        )
    return deleted


# ---------------------------------------------------------------------------------------------------------------------
# Data position
# ---------------------------------------------------------------------------------------------------------------------


def save_data_state(folder: str, state) -> str:
    """Writes a dataset's `state_dict()` as JSON when it is JSON-serialisable, else with `torch.save`."""
    try:
        text = json.dumps(state)
    except (TypeError, ValueError):
        path = os.path.join(folder, DATA_STATE_PT)
        torch.save(state, path)
        return path
    path = os.path.join(folder, DATA_STATE_JSON)
    with open(path, "w") as f:
        f.write(text)
    return path


def load_data_state(folder: str):
    """Reads what [`save_data_state`] wrote; `None` when the checkpoint holds no data position."""
    json_path, pt_path = os.path.join(folder, DATA_STATE_JSON), os.path.join(folder, DATA_STATE_PT)
    if os.path.isfile(json_path):
        with reading_checkpoint_file(folder, DATA_STATE_JSON), open(json_path) as f:
            return json.load(f)
    if os.path.isfile(pt_path):
        with reading_checkpoint_file(folder, DATA_STATE_PT):
            return torch.load(pt_path, weights_only=True)
    return None


def _read_errors() -> tuple[type[BaseException], ...]:
    errors: tuple[type[BaseException], ...] = (
        RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, UnicodeDecodeError, json.JSONDecodeError,
    )
    with contextlib.suppress(ImportError):
        from safetensors import SafetensorError

        errors += (SafetensorError,)
    return errors


@contextlib.contextmanager
def reading_checkpoint_file(folder: str, what: str) -> Iterator[None]:
    """Turns the low-level error of reading a damaged checkpoint file (a truncated torch archive, JSON or safetensors
    file) into a [`CheckpointError`] naming the file, for checkpoints that a manifest does not protect. Errors that
    mean something else (a model that does not match, [`CheckpointError`]) pass through."""
    try:
        yield
    except CheckpointError:
        raise
    except _read_errors() as err:
        raise CheckpointError(
            f"Resuming from {folder} failed while loading {what}: {type(err).__name__}: {err}. Unless the model or "
            "optimizer differ from the checkpoint's, the file is truncated or damaged: resume from another checkpoint "
            "of the run."
        ) from err


# ---------------------------------------------------------------------------------------------------------------------
# Model card
# ---------------------------------------------------------------------------------------------------------------------


def write_checkpoint_card(folder: str, final_dir: str, state, args, **facts) -> str:
    """Writes `<folder>/README.md`, the model card of a checkpoint being saved, with [`~neobert_hf.model_card`] (the
    package's only card renderer).

    Args:
        folder: the folder being written (`checkpoints/.tmp-<step>-<random>/`); it already holds `config.json` and the
            weights, not yet `trainer_state.json`.
        final_dir: the folder's final name, which the card's loading snippets use.
        state: the Trainer's `TrainerState`.
        args: the Trainer's `TrainingArguments` (learning rate, schedule, batch size, ... shown in the card).
        facts: overrides of [`~neobert_hf.model_card.ModelCardFacts`] (e.g. `finetuned_on`).

    Returns:
        `str`: the path of the card.
    """
    from ..model_card import collect_facts, write_model_card

    gathered = collect_facts(
        folder, trainer_state=dataclasses.asdict(state), run_args=args.to_dict(), model_id=final_dir, **facts
    )
    return write_model_card(folder, gathered)


__all__ = [
    "ADAPTER_DIR",
    "CHECKPOINTS_DIR",
    "LOCK_NAME",
    "MANIFEST_NAME",
    "TMP_PREFIX",
    "CheckpointError",
    "DamagedCheckpointError",
    "OutputDirLockedError",
    "check_resumable",
    "check_run_not_finished",
    "check_weights_match",
    "checkpoint_dir",
    "checkpoints_root",
    "clean_leftovers",
    "damaged_checkpoints",
    "incomplete_reason",
    "latest_checkpoint",
    "list_checkpoints",
    "load_data_state",
    "model_file_problems",
    "new_tmp_dir",
    "publish",
    "read_manifest",
    "reading_checkpoint_file",
    "redacted_training_args",
    "resolve_checkpoint",
    "rotate",
    "save_data_state",
    "step_folder",
    "verify_checkpoint",
    "write_checkpoint_card",
    "write_manifest",
]

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

A folder is written as `checkpoints/.tmp-<step>-<random>/` and renamed to its final name once complete, so a crash
never leaves a half-written folder under a step name. The last file written inside the temporary folder is
`checkpoint_manifest.json`, the size and sha256 of every other file ([`write_manifest`]); a folder whose files do not
match it is not complete, and resuming verifies every hash first ([`verify_checkpoint`]). Folders written before the
manifest existed are complete when they hold `trainer_state.json` and the weights. Old checkpoints are renamed to a
`.tmp-` name before they are deleted, so an interrupted deletion leaves no partial folder under a step name.
[`CheckpointTreeMixin`] writes this tree for every Trainer of the package (pretraining, GLUE, contrastive).

One run at a time uses an output folder: training holds `<output_dir>/run.lock` ([`OutputDirLock`]), and cleans up
what interrupted runs left behind only once it holds it ([`clean_leftovers`]).

No secret is written: `training_args.bin` (pickled by every `save_model`) holds a copy of the arguments whose
`*_token` fields (`hub_token`) are `None` ([`redacted_training_args`]); JSON records use transformers'
`TrainingArguments.to_dict()`, which already replaces them with `<HUB_TOKEN>`.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import copy
import dataclasses
import datetime
import hashlib
import json
import logging
import os
import pickle
import re
import secrets
import shutil
import socket
import sys
import zipfile
from collections.abc import Iterable, Iterator

import torch


logger = logging.getLogger(__name__)

CHECKPOINTS_DIR = "checkpoints"
TMP_PREFIX = ".tmp-"
TRAINER_STATE_NAME = "trainer_state.json"
DATA_STATE_JSON = "data_state.json"
DATA_STATE_PT = "data_state.pt"
MANIFEST_NAME = "checkpoint_manifest.json"
LOCK_NAME = "run.lock"
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
_STEP_RE = re.compile(r"^\d+$")
_HASH = "sha256"
_CHUNK = 8 << 20


class CheckpointError(ValueError):
    """A checkpoint that was asked for does not exist, is not complete or is damaged, or the output folder cannot be
    used (see [`OutputDirLockedError`])."""


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
    JSON that does not parse, a safetensors file shorter than its header says, a torch zip archive without its
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
            with open(path, "rb") as handle:
                header_len = int.from_bytes(handle.read(8), "little")
                if 8 + header_len > size:
                    return f"{name} is truncated ({size} bytes, its header alone needs {8 + header_len})"
                header = json.loads(handle.read(header_len))
            end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
            if 8 + header_len + end != size:
                return f"{name} has {size} bytes where its header says {8 + header_len + end} (truncated or damaged)"
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
            "missing and truncated files, not for damaged contents."
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


def _leftovers_note(root: str) -> str:
    if not os.path.isdir(root):
        return ""
    leftovers = sorted(n for n in os.listdir(root) if n.startswith(TMP_PREFIX))
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


def publish(tmp_dir: str, final_dir: str) -> None:
    """Renames the finished `tmp_dir` to `final_dir` (atomic on POSIX). An existing `final_dir` of the same step is
    moved aside first and removed after the rename, so a complete folder is always present under the final name."""
    old = None
    if os.path.exists(final_dir):
        old = f"{tmp_dir}.replaced"
        os.rename(final_dir, old)
    os.rename(tmp_dir, final_dir)
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
    deletions) and step folders that hold neither weights, trainer state nor manifest (an interrupted deletion by
    earlier versions, often `config.json` alone) are deleted; other incomplete or damaged step folders are reported
    (they may hold something worth keeping) and never resumed from. Returns the deleted paths."""
    root = checkpoints_root(output_dir)
    if not os.path.isdir(root):
        return []
    deleted = []
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



# ---------------------------------------------------------------------------------------------------------------------
# Output folder lock
# ---------------------------------------------------------------------------------------------------------------------

# Locks this process holds: real path of the lock file -> [depth, token].
_HELD: dict[str, list] = {}


def _read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip()
    except OSError:
        return None


def _boot_id() -> str | None:
    return _read_text("/proc/sys/kernel/random/boot_id")


def _process_start(pid: int) -> str | None:
    """Start time of `pid` in clock ticks since boot (Linux), which tells a reused pid from the one that locked."""
    stat = _read_text(f"/proc/{pid}/stat")
    if stat is None:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


def _redacted_command() -> str:
    """The command line, with the value of any `*token*` option replaced (no secret is written to disk)."""
    words, hide = [], False
    for word in sys.argv:
        name, eq, _ = word.partition("=")
        if hide:
            word, hide = "<redacted>", False
        elif "token" in name.lower() and name.startswith("-"):
            word, hide = (f"{name}=<redacted>", False) if eq else (word, True)
        words.append(word)
    return " ".join(words)[:300]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    except OSError:
        return False
    return True


class OutputDirLock:
    """`<output_dir>/run.lock`: one run at a time per output folder.

    The file (JSON) names the process that holds it: `pid`, `host`, `started` (UTC), the command line, and on Linux
    the boot id and the process start time. It is created atomically (a hard link of a fully written file), so a
    reader never sees half of it. Another run that finds it refuses to start, unless the holder is gone: on the same
    host, a pid that is no longer running (or runs another process, or a reboot happened since) is a stale lock from a
    killed run, taken over with a warning. A lock from another host cannot be checked: the message says how to remove
    it by hand. Reentrant within a process (a Trainer that locks around `Trainer.train`, which locks again); the file
    is removed when the outermost holder releases it.

    Example:

    ```python
    >>> with OutputDirLock("runs/tiny"):  # doctest: +SKIP
    ...     trainer.train()
    ```
    """

    def __init__(self, output_dir: str | os.PathLike):
        self.output_dir = os.fspath(output_dir)
        self.path = os.path.join(self.output_dir, LOCK_NAME)

    @property
    def _key(self) -> str:
        return os.path.realpath(self.path)

    @property
    def held(self) -> bool:
        """Whether this process holds the lock."""
        return self._key in _HELD

    def _record(self, token: str) -> dict:
        return {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": _redacted_command(),
            "boot_id": _boot_id(),
            "process_start": _process_start(os.getpid()),
            "token": token,
        }

    def _create(self, record: dict) -> bool:
        """Creates the lock file holding `record`; `False` when it already exists."""
        staged = f"{self.path}.{record['token']}"
        with open(staged, "w", encoding="utf-8") as handle:
            json.dump(record, handle, indent=1)
            handle.write("\n")
        try:
            os.link(staged, self.path)
            return True
        except FileExistsError:
            return False
        except OSError:  # a file system without hard links
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(record, handle, indent=1)
                handle.write("\n")
            return True
        finally:
            with contextlib.suppress(OSError):
                os.remove(staged)

    def _holder(self) -> tuple[dict | None, str | None]:
        """`(record, raw text)` of the current lock file; `(None, None)` when there is none."""
        text = _read_text(self.path)
        if text is None:
            return None, None
        try:
            record = json.loads(text)
            int(record["pid"])
            str(record["host"])
        except (ValueError, KeyError, TypeError):
            return None, text
        return record, text

    def _stale(self, holder: dict) -> bool:
        """Whether the holder, a process of this host, is gone."""
        pid = int(holder["pid"])
        boot = _boot_id()
        if holder.get("boot_id") and boot and holder["boot_id"] != boot:
            return True
        if not _pid_alive(pid):
            return True
        started = holder.get("process_start")
        return bool(started) and _process_start(pid) not in (None, started)

    def _describe(self, holder: dict) -> str:
        command = f", command: {holder['command']}" if holder.get("command") else ""
        return f"pid {holder['pid']} on host {holder['host']}, started {holder.get('started', '?')}{command}"

    def _take_over(self, text: str) -> bool:
        """Removes the stale lock whose content is `text`, unless another run replaced it meanwhile."""
        moved = f"{self.path}.stale-{secrets.token_hex(4)}"
        try:
            os.rename(self.path, moved)
        except FileNotFoundError:
            return True
        if _read_text(moved) == text:
            os.remove(moved)
            return True
        with contextlib.suppress(OSError):  # someone else's fresh lock: put it back
            os.link(moved, self.path)
        os.remove(moved)
        return False

    def acquire(self) -> OutputDirLock:
        """Takes the lock (creating `output_dir`), or raises [`OutputDirLockedError`] having written nothing."""
        key = self._key
        if key in _HELD:
            _HELD[key][0] += 1
            return self
        host = socket.gethostname()
        for _ in range(3):
            holder, text = self._holder()
            if text is None:
                os.makedirs(self.output_dir, exist_ok=True)
                record = self._record(secrets.token_hex(8))
                if self._create(record):
                    _HELD[key] = [1, record["token"]]
                    return self
                continue
            if holder is None:
                raise OutputDirLockedError(
                    f"{self.output_dir} is locked by {self.path}, which cannot be read. If no other run uses this "
                    f"output_dir, delete {self.path} and start again."
                )
            if holder["host"] != host:
                raise OutputDirLockedError(
                    f"{self.output_dir} is in use by another run ({self._describe(holder)}). That host is not this one "
                    f"({host}), so whether the run is still going cannot be checked from here: if it is not (its "
                    f"machine stopped, the job was killed), delete {self.path} and start again; otherwise wait for it "
                    "or use another output_dir."
                )
            if not self._stale(holder):
                raise OutputDirLockedError(
                    f"{self.output_dir} is in use by another run ({self._describe(holder)}), which is still running. "
                    "Two runs on one output_dir would overwrite each other's checkpoints: wait for it to finish, stop "
                    "it, or use another output_dir."
                )
            if self._take_over(text):
                logger.warning(
                    f"Took over the stale lock {self.path} of a run that is no longer running "
                    f"({self._describe(holder)})."
                )
        raise OutputDirLockedError(
            f"{self.output_dir} is being locked by another run starting at the same time; use another output_dir."
        )

    def release(self) -> None:
        """Releases one hold; the outermost release removes the file (if it is still this process's lock)."""
        key = self._key
        entry = _HELD.get(key)
        if entry is None:
            return
        entry[0] -= 1
        if entry[0] > 0:
            return
        del _HELD[key]
        holder, _ = self._holder()
        if holder is not None and holder.get("token") == entry[1]:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.path)

    def __enter__(self) -> OutputDirLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


# ---------------------------------------------------------------------------------------------------------------------
# Trainer mixin
# ---------------------------------------------------------------------------------------------------------------------


class CheckpointTreeMixin:
    """`Trainer._save_checkpoint` writing the `<output_dir>/checkpoints/<step>/` tree instead of transformers'
    `checkpoint-<step>/` folders; shared by the pretraining, GLUE and contrastive Trainers. List it before the
    `Trainer` class in the bases.

    The folder is written as `checkpoints/.tmp-<step>-<random>/` (the random part is the same on every rank): the
    model, the optimizer, scheduler, scaler and RNG state (unless `save_only_model`), the subclass's files, the state
    of the stateful callbacks, `trainer_state.json` and, once every process is done, the manifest
    ([`write_manifest`]); then it is renamed to `checkpoints/<step>/`, pushed when `push_to_hub`, and
    `save_total_limit` is applied, never deleting the best checkpoint (with `load_best_model_at_end`, a limit of 1
    keeps 2, as transformers does, so the run can still resume).

    `train` holds the output folder's lock ([`OutputDirLock`], on the processes that save) from before anything is
    written until it returns or fails; then it resolves `resume_from_checkpoint` (`latest`, a step or a folder of the
    tree), verifies that checkpoint ([`verify_checkpoint`]) and deals with what interrupted runs left
    ([`clean_leftovers`]). A checkpoint saved outside `train` (a final save) takes the lock for the save.

    Hooks for subclasses:

    - `_save_checkpoint_model(tmp_dir)`: weights, config and tokenizer (default: `save_model`);
    - `_save_checkpoint_files(tmp_dir, final_dir)`: files written by the main process before the trainer state
      (default: the model card, [`write_checkpoint_card`]).
    """

    _verified_resume: str | None = None

    # -- the run: lock, resume, leftovers --------------------------------------------------------------------------

    def _any_process(self, flag: bool) -> bool:
        """`flag` of any process (a collective call in distributed runs, so every process gets the same answer)."""
        if self.args.world_size <= 1 or not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return flag
        value = torch.tensor([int(flag)], device=self.args.device)
        torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
        return bool(value.item())

    @contextlib.contextmanager
    def output_dir_lock(self) -> Iterator[None]:
        """Holds `<output_dir>/run.lock` on the processes that save; every process fails if one of them cannot."""
        lock = OutputDirLock(self.args.output_dir) if self.args.should_save else None
        error = None
        if lock is not None:
            try:
                lock.acquire()
            except OutputDirLockedError as err:
                error = err
        if self._any_process(error is not None):
            raise error or OutputDirLockedError(f"The main process could not lock {self.args.output_dir}.")
        try:
            yield
        finally:
            self._verified_resume = None
            if lock is not None:
                lock.release()

    def _resume_path(self, spec, trial=None) -> str | None:
        """The verified checkpoint folder that `spec` (`resume_from_checkpoint`) names, or `None`. Hashes are checked
        once per folder and run, by the processes that save; every process fails if the check does."""
        if spec is None or spec is False:
            return None
        path = resolve_checkpoint(spec, self._get_output_dir(trial))
        if path == self._verified_resume:
            return path
        error = None
        if self.args.should_save:
            try:
                verify_checkpoint(path)
            except CheckpointError as err:
                error = err
        if self._any_process(error is not None):
            raise error or CheckpointError(f"{path} did not verify on the main process.")
        self._verified_resume = path
        return path

    def train(self, resume_from_checkpoint=None, trial=None, **kwargs):
        """`Trainer.train` holding the output folder's lock, from a verified checkpoint of the tree
        (`resume_from_checkpoint`: `latest`/`True`, a step or a folder), after cleaning up what interrupted runs left.
        """
        with self.output_dir_lock():
            path = self._resume_path(resume_from_checkpoint, trial)
            if self.args.should_save:
                clean_leftovers(self._get_output_dir(trial))
            return super().train(resume_from_checkpoint=path, trial=trial, **kwargs)

    # -- loading: a damaged file named, not a raw traceback -------------------------------------------------------

    # (Signatures left open: sentence-transformers' trainer defines its own `_load_from_checkpoint`.)

    def _load_from_checkpoint(self, checkpoint, *args, **kwargs):
        with reading_checkpoint_file(checkpoint, "the model weights"):
            return super()._load_from_checkpoint(checkpoint, *args, **kwargs)

    def _load_optimizer_and_scheduler(self, checkpoint, *args, **kwargs):
        with reading_checkpoint_file(checkpoint, "optimizer.pt / scheduler.pt"):
            return super()._load_optimizer_and_scheduler(checkpoint, *args, **kwargs)

    def _load_scaler(self, checkpoint, *args, **kwargs):
        with reading_checkpoint_file(checkpoint, "scaler.pt"):
            return super()._load_scaler(checkpoint, *args, **kwargs)

    def _load_rng_state(self, checkpoint, *args, **kwargs):
        with reading_checkpoint_file(checkpoint, "the RNG state (rng_state*.pth)"):
            return super()._load_rng_state(checkpoint, *args, **kwargs)

    # -- saving ---------------------------------------------------------------------------------------------------

    def _shared_token(self) -> str:
        token = [secrets.token_hex(4)]
        if self.args.world_size > 1:
            from accelerate.utils import broadcast_object_list

            broadcast_object_list(token)
        return token[0]

    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        """`Trainer._save` (weights, tokenizer, `training_args.bin`) with the `*_token` fields of the pickled
        arguments set to `None` ([`redacted_training_args`]): no Hub token is ever written to disk."""
        args = self.args
        self.args = redacted_training_args(args)
        try:
            super()._save(output_dir, state_dict=state_dict)
        finally:
            self.args = args

    def _save_checkpoint_model(self, tmp_dir: str) -> None:
        self.save_model(tmp_dir, _internal_call=True)

    def _save_checkpoint_files(self, tmp_dir: str, final_dir: str) -> None:
        write_checkpoint_card(tmp_dir, final_dir, self.state, self.args)

    def _save_checkpoint(self, model, trial) -> None:
        # Held already inside `train`; a save after it (the final step) takes the lock for itself.
        lock = OutputDirLock(self.args.output_dir) if self.args.should_save else None
        if lock is not None:
            lock.acquire()
        try:
            self._write_checkpoint(trial)
        finally:
            if lock is not None:
                lock.release()

    def _write_checkpoint(self, trial) -> None:
        from transformers.trainer_callback import ExportableState
        from transformers.trainer_utils import SaveStrategy

        if self.hp_search_backend is None and trial is None:
            self.store_flos()
        run_dir = self._get_output_dir(trial=trial)
        step = self.state.global_step
        final_dir = checkpoint_dir(run_dir, step)
        tmp_dir = new_tmp_dir(run_dir, step, self._shared_token())
        os.makedirs(tmp_dir, exist_ok=True)

        self._save_checkpoint_model(tmp_dir)

        if self.args.save_strategy in (SaveStrategy.STEPS, SaveStrategy.EPOCH, SaveStrategy.BEST) and (
            self.state.best_global_step
        ):
            best_dir = checkpoint_dir(run_dir, self.state.best_global_step)
            if self.state.best_global_step == step or os.path.isdir(best_dir):
                self.state.best_model_checkpoint = best_dir

        if not self.args.save_only_model:
            self._save_optimizer_and_scheduler(tmp_dir)
            self._save_scaler(tmp_dir)
            self._save_rng_state(tmp_dir)

        if self.args.should_save:
            self._save_checkpoint_files(tmp_dir, final_dir)
            for cb in [c for c in self.callback_handler.callbacks + [self.control] if isinstance(c, ExportableState)]:
                name, cb_state = cb.__class__.__name__, cb.state()
                if isinstance(self.state.stateful_callbacks.get(name), list):
                    self.state.stateful_callbacks[name].append(cb_state)
                else:
                    self.state.stateful_callbacks[name] = cb_state
            self.state.save_to_json(os.path.join(tmp_dir, TRAINER_STATE_NAME))

        self.accelerator.wait_for_everyone()  # every process's files (rng_state_<rank>.pth, shards) are written
        if self.args.should_save:
            write_manifest(tmp_dir, step)  # last: what the folder holds
            publish(tmp_dir, final_dir)
            if self.args.push_to_hub:
                self._push_from_checkpoint(final_dir)
            limit = self.args.save_total_limit
            if limit == 1 and self.args.load_best_model_at_end:
                limit = 2
            for path in rotate(run_dir, limit, keep=[self.state.best_model_checkpoint]):
                logger.info(f"Deleted {path} (save_total_limit={self.args.save_total_limit})")
        self.accelerator.wait_for_everyone()


__all__ = [
    "CHECKPOINTS_DIR",
    "LOCK_NAME",
    "MANIFEST_NAME",
    "CheckpointError",
    "CheckpointTreeMixin",
    "DamagedCheckpointError",
    "OutputDirLock",
    "OutputDirLockedError",
    "checkpoint_dir",
    "checkpoints_root",
    "clean_leftovers",
    "damaged_checkpoints",
    "incomplete_reason",
    "latest_checkpoint",
    "list_checkpoints",
    "load_data_state",
    "model_file_problems",
    "publish",
    "read_manifest",
    "reading_checkpoint_file",
    "redacted_training_args",
    "resolve_checkpoint",
    "rotate",
    "save_data_state",
    "verify_checkpoint",
    "write_checkpoint_card",
    "write_manifest",
]

"""One run at a time per output folder: `<output_dir>/run.lock` ([`OutputDirLock`])."""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import secrets
import socket
import sys

from .tree import LOCK_NAME, OutputDirLockedError


logger = logging.getLogger(__name__)

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


__all__ = ["OutputDirLock"]

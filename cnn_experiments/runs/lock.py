"""One writer per results folder: filelock's lock, which the kernel drops when its holder dies, so none goes stale;
beside it a note of who holds it, for the one-line refusal a second writer gets."""
from __future__ import annotations

import contextlib
import datetime
import os
from pathlib import Path

from filelock import FileLock, Timeout

from ..errors import StoreError


def acquire(folder: Path, command: str) -> FileLock:
    "Lock `folder` for this process, or raise StoreError naming the holder."
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock = FileLock(folder / ".lock", timeout=0)
        lock.acquire()
    except Timeout:
        holder = _read(folder / ".lock.holder") or "another process"
        raise StoreError(f"{folder}: in use by {holder}; wait for it to finish or stop it, then run again") from None
    except OSError as e:
        raise StoreError(f"{folder}: cannot be made a results folder ({e.strerror or e})") from None
    stamp = datetime.datetime.now().isoformat(timespec="seconds")
    (folder / ".lock.holder").write_text(f"pid {os.getpid()} ({command or 'cnn-exp'}) since {stamp}")
    return lock


def release(lock: FileLock) -> None:
    with contextlib.suppress(OSError):
        (Path(lock.lock_file).parent / ".lock.holder").unlink()
    lock.release()


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""

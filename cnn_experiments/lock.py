"""One writer per results folder: an advisory lock the kernel drops when its holder dies, so none goes stale."""
from __future__ import annotations

import contextlib
import datetime
import os
from pathlib import Path

from .files import StoreError

try:
    import fcntl

    def _try_lock(f) -> bool:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False
except ImportError:  # Windows
    import msvcrt

    def _try_lock(f) -> bool:
        try:
            msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False


def acquire(folder: Path, command: str):
    "Lock `folder` for this process, or raise StoreError naming the holder."
    try:
        folder.mkdir(parents=True, exist_ok=True)
        f = open(folder / ".lock", "a+")
    except OSError as e:
        raise StoreError(f"{folder}: cannot be made a results folder ({e.strerror or e})") from None
    if not _try_lock(f):
        f.seek(0)
        holder = f.read().strip() or "another process"
        f.close()
        raise StoreError(f"{folder}: in use by {holder}; wait for it to finish or stop it, then run again")
    f.seek(0)
    f.truncate()
    stamp = datetime.datetime.now().isoformat(timespec="seconds")
    f.write(f"pid {os.getpid()} ({command or 'cnn-exp'}) since {stamp}")
    f.flush()
    return f


def release(f) -> None:
    with contextlib.suppress(OSError):
        f.seek(0)
        f.truncate()
    f.close()  # closing drops the lock

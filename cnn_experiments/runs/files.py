"""Files written whole: a reader, or a full disk, never sees half of one."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

from ..errors import StoreError


def append_bytes(path: Path, data: bytes) -> None:
    "Append `data` whole or not at all: on an error the file is cut back to its old length."
    path.parent.mkdir(parents=True, exist_ok=True)
    size = path.stat().st_size if path.exists() else 0
    try:
        with open(path, "ab") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        with contextlib.suppress(OSError):
            os.truncate(path, size)
        raise StoreError(f"{path}: could not be written ({e.strerror or e}); nothing half-written is left, "
                         "fix it and run the same command again") from None


def write_atomic(path: Path, data: bytes | str) -> None:
    "Write `path` whole: a temporary file then a rename, so a reader sees the old file or the new one."
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise StoreError(f"{path}: could not be written ({e.strerror or e}); the old file, if any, is unchanged")\
            from None

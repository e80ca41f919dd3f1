"""A results folder: `runs.csv` (one checked row per finished run), `curves.csv`, `items.csv`, `weights/`, one writer
at a time.

    from cnn_experiments.runs.store import Store; runs = Store("results/pooling/runs.csv").read()

Each row carries a checksum of its fields and is appended whole (one write, fsync), so a sweep stopped at any
moment loses at most the runs in flight. Reading checks the columns, every row's checksum, types and ranges,
and that its run id is its config's; a bad row is named with its file and line. The writer (a sweep, which
holds the folder's lock) sets bad rows aside in `runs.rejected.txt` and runs them again.

`items.csv` holds each run's held-out predictions, one checked row a run: run_id, n (held-out items), correct (each
item right or wrong, in the held-out set's fixed order: numpy.packbits, base64), checksum.
"""
from __future__ import annotations

import base64
import binascii
import contextlib
import csv
import datetime
import hashlib
import io
import math
import os
import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import StoreError
from . import config as C
from .files import append_bytes, write_atomic
from .lock import acquire, release
from .machine import MACHINE

META = ("run_id", "cell_id", "profile")
# fused: how many models trained together in the run's group (1: alone); seconds are its share of their time
# the config's `device` column holds the device's name (cpu (x86_64, 1 thread), NVIDIA H100 ...): where it ran
PROBES = tuple(f"probe_{name}" for name in C.POOLS)  # each head-only probe's accuracy (probes.py fits them)
METRICS = ("train_loss", "valid_loss", "accuracy", "auc", "diverged", "seconds", "epochs_run", "fused", *PROBES)
PROVENANCE = ("date", "python", "torch", "fastai", "git_rev")
CHECKSUM = "checksum"
HEADER = (*META, *C.FIELDS, *METRICS, *PROVENANCE, *MACHINE)
# columns a file may gain after its rows were written: they follow the checksum, and a row written before its file
# had them stops short at it, its checksum over the fields it had (the machine that picked a run's kernels)
LATE = MACHINE
REQUIRED = ("run_id", "cell_id", "profile", "seed", "accuracy", "train_loss", "valid_loss", "device", CHECKSUM)
RANGES = {  # column -> (lowest, highest, may be empty or NaN)
    "accuracy": (0, 1, True), "auc": (0, 1, True), "train_loss": (0, math.inf, True),
    "valid_loss": (0, math.inf, True), "seconds": (0, math.inf, True), "epochs_run": (0, math.inf, True),
    "seed": (0, math.inf, False), "fused": (1, math.inf, True), **{p: (0, 1, True) for p in PROBES}}
INTEGERS = ("seed", "epochs_run", "fused")
CURVE = ("run_id", "step", "epoch", "train_loss", "object_grad_share", "object_cell_share")
ITEMS = ("run_id", "n", "correct", CHECKSUM)
MIN_FREE = 50 * 2**20  # bytes of free disk a sweep needs before it trains: rows, curves, weights, figures


@dataclass
class BadRow:
    line: int  # 1-based line of the file
    why: str
    raw: bytes


@dataclass
class Runs:
    "The good rows of a runs file (ids as this version computes them) and the bad ones, named by line."
    rows: pd.DataFrame
    bad: list[BadRow] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # required columns the file lacks: every row is bad
    legacy: bool = False  # written before the config gained fields: rewritten with every column on write


def checksum(cells: list[str]) -> str:
    return hashlib.sha1("\x1f".join(cells).encode()).hexdigest()[:12]


def cell(v) -> str:
    "A value as its CSV cell: floats round-trip, bools as True/False, None empty (numpy scalars as Python's)."
    if v is None:
        return ""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float):
        return repr(v)
    return str(v)


class Store:
    "The runs file `path` (results/<experiment>/runs.csv) and what lives beside it."

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.folder = self.path.parent
        self.curves_path = self.path.with_name(self.path.stem.replace("runs", "curves") + ".csv") \
            if "runs" in self.path.stem else self.path.with_name(self.path.stem + ".curves.csv")
        self.items_path = self.path.with_name(self.path.stem.replace("runs", "items") + ".csv") \
            if "runs" in self.path.stem else self.path.with_name(self.path.stem + ".items.csv")
        self.weights_dir = self.folder / "weights"
        self.models_dir = self.folder / "models"
        self.rejected_path = self.path.with_suffix(".rejected.txt")
        self._lock, self._depth = None, 0

    # ---- reading ----
    def read(self) -> Runs:
        if not self.path.exists():
            return Runs(pd.DataFrame(columns=list(HEADER)))
        try:
            data = self.path.read_bytes()
        except OSError as e:
            raise StoreError(f"{self.path}: cannot be read ({e.strerror or e})") from None
        if not data.strip():
            return Runs(pd.DataFrame(columns=list(HEADER)))
        lines = data.split(b"\n")
        torn_tail = not data.endswith(b"\n")
        header = _fields(lines[0])
        missing = [c for c in REQUIRED if c not in (header or [])]
        if header is None or missing:
            why = f"no column {', '.join(missing)}" if header else "the header is not text"
            return Runs(pd.DataFrame(columns=list(HEADER)), [BadRow(1, why, data)], missing or ["(header)"])
        good, bad, seen = [], [], {}
        for n, raw in enumerate(lines[1:], start=2):
            if not raw and n == len(lines):
                continue  # the empty string after the last newline
            cells = _fields(raw)
            why = self._why_bad(header, cells)
            if why is None:
                row = dict(zip(header, cells))
                cfg = C.from_row(row)
                if row["run_id"] != cfg.run_id:
                    why = f"run_id {row['run_id']} is not its config's ({cfg.run_id})"
                else:
                    row["cell_id"] = cfg.cell_id
                    key = (row["run_id"], row["device"])
                    if key in seen:
                        why = f"the same run on the same device as line {seen[key]}"
                    seen.setdefault(key, n)
            if why is not None:
                bad.append(BadRow(n, why + (" (the last line, cut short)" if torn_tail and n == len(lines) else ""),
                                  raw))
            else:
                good.append([row.get(h, "") for h in header])
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(header)
        w.writerows(good)
        df = pd.read_csv(io.StringIO(buf.getvalue()), dtype={"run_id": str, "cell_id": str, "profile": str,
                                                             **dict.fromkeys(LATE, str)})
        rows = df.drop(columns=CHECKSUM)
        rows = rows.reindex(columns=[*rows.columns, *(c for c in LATE if c not in rows)])  # empty: not recorded
        return Runs(rows, bad, [], any(c not in header for c in HEADER if c not in LATE))

    def _why_bad(self, header: list[str], cells: list[str] | None) -> str | None:
        if cells is None:
            return "not a line of text"
        if len(cells) > len(header) or any(h not in LATE for h in header[len(cells):]):
            return f"{len(cells)} fields where the header has {len(header)}"
        row = dict(zip(header, cells))
        if checksum([c for h, c in zip(header, cells) if h != CHECKSUM]) != row[CHECKSUM]:
            return "its checksum does not match its fields (changed or torn)"
        if not re.fullmatch(r"[0-9a-f]{12}", row["run_id"]):
            return f"run_id {row['run_id']!r} is not a run id"
        for col, (lo, hi, may_be_empty) in RANGES.items():
            if col not in row:
                continue
            text = row[col].strip()
            if text in ("", "nan", "NaN"):
                if not may_be_empty:
                    return f"{col} is empty"
                continue
            try:
                v = float(text)
            except ValueError:
                return f"{col} {text[:20]!r} is not a number"
            if not lo <= v <= hi or (col in INTEGERS and v != int(v)):
                return f"{col} {text} is out of range ({'an integer ' if col in INTEGERS else ''}{lo} to {hi})"
        if row.get("diverged", "False") not in ("True", "False", ""):
            return f"diverged {row['diverged'][:20]!r} is not True or False"
        try:
            C.from_row(row)
        except (ValueError, TypeError) as e:
            return f"a config field does not parse ({e})"
        return None

    def curves(self, run_ids=None) -> pd.DataFrame:
        "The training curves, one row per recorded step; of `run_ids` only when given (a re-run's rows last)."
        if not self.curves_path.exists():
            return pd.DataFrame(columns=list(CURVE))
        df = pd.read_csv(self.curves_path, dtype={"run_id": str}, on_bad_lines="skip")
        if run_ids is not None:
            df = df[df["run_id"].isin(set(run_ids))]
        return df.drop_duplicates(["run_id", "step"], keep="last").reset_index(drop=True)

    def items(self, run_ids: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        """Each run's held-out predictions, right (True) or wrong, in the held-out set's fixed order; of `run_ids` only
        when given. A torn or changed row is left out (its run has none); a re-run's row wins."""
        if not self.items_path.exists():
            return {}
        wanted = None if run_ids is None else set(run_ids)
        out = {}
        for line in self.items_path.read_text(encoding="utf-8", errors="replace").splitlines()[1:]:
            got = _item_row(line)
            if got is not None and (wanted is None or got[0] in wanted):
                out[got[0]] = got[1]
        return out

    def weights(self, run_id: str) -> dict:
        "The tensors a run saved for its report (safetensors: no code runs on loading)."
        from safetensors.torch import load_file
        path = self.weights_dir / f"{run_id}.safetensors"
        if not path.exists():
            raise StoreError(f"{path}: the weights of run {run_id} are not saved; run the sweep again to make them")
        return load_file(str(path))

    # ---- writing: only inside `writer()` ----
    @contextlib.contextmanager
    def writer(self, command: str = ""):
        "Hold the folder's lock: a second writer stops at once with the holder's pid and command."
        if self._depth:
            self._depth += 1
            try:
                yield self
            finally:
                self._depth -= 1
            return
        self._lock = acquire(self.folder, command)
        self._depth = 1
        try:
            yield self
        finally:
            self._depth = 0
            release(self._lock)
            self._lock = None

    def check_writable(self, need: int = MIN_FREE) -> None:
        "Before any training: the folder exists or can be made, takes a file, and has room."
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"{self.folder}: cannot be made a results folder ({e.strerror or e})") from None
        if not self.folder.is_dir():
            raise StoreError(f"{self.folder}: not a folder; give --results a folder")
        probe = self.folder / f".write-test-{os.getpid()}"
        try:
            probe.write_bytes(b"x")
            probe.unlink()
        except OSError as e:
            raise StoreError(f"{self.folder}: not writable ({e.strerror or e})") from None
        free = shutil.disk_usage(self.folder).free
        if free < need:
            raise StoreError(f"{self.folder}: {free / 2**20:.0f} MB free on its disk; a sweep needs "
                             f"{need / 2**20:.0f} MB")

    def prepare(self, echo=print) -> Runs:
        """Read the runs file for writing: set bad rows aside (their runs are redone) and upgrade a file of an
        older version (new columns, checksums, this version's run ids). Returns the good rows."""
        assert self._depth, "prepare() needs writer()"
        runs = self.read()
        for b in runs.bad:
            echo(f"{self.path}:{b.line}: {b.why}; set aside in {self.rejected_path.name}, its run is redone")
        if runs.bad:
            stamp = datetime.datetime.now().isoformat(timespec="seconds")
            text = b"".join(f"# {stamp} {self.path.name}:{b.line}: {b.why}\n".encode() + b.raw + b"\n"
                            for b in runs.bad)
            append_bytes(self.rejected_path, text)
        if runs.bad or runs.legacy:
            self.rewrite(runs.rows)
        return self.read() if runs.bad or runs.legacy else runs

    def rewrite(self, rows: pd.DataFrame) -> None:
        "The file anew with this version's header and checksums (the old one or the new one, never half)."
        extra = [c for c in rows.columns if c not in HEADER and c != CHECKSUM]
        header = layout([*HEADER, *extra])
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(header)
        defaults = C.to_row(C.Config())
        for r in rows.to_dict("records"):
            w.writerow(_checked(header, {h: _cell_of(r, h, defaults) for h in header if h != CHECKSUM}))
        write_atomic(self.path, buf.getvalue().encode())

    def append(self, row: dict, curve: list[dict] = (), weights: dict | None = None, model: dict | None = None,
               items: np.ndarray | None = None):
        """One finished run: what its report draws (weights/), its whole model if it has one (models/, not
        committed), its curve, its held-out predictions (`items`: bool, the held-out set's order), then its row: the
        row is what marks the run done."""
        assert self._depth, "append() needs writer()"
        from safetensors.torch import save
        for folder, tensors in ((self.weights_dir, weights), (self.models_dir, model)):
            if tensors:
                blob = save({k: v.contiguous() for k, v in tensors.items()})
                write_atomic(folder / f"{row['run_id']}.safetensors", blob)
        if curve:
            buf = io.StringIO()
            w = csv.writer(buf, lineterminator="\n")
            if not self.curves_path.exists() or not self.curves_path.stat().st_size:
                w.writerow(CURVE)
            w.writerows([[row["run_id"], *[cell(c.get(k, "")) for k in CURVE[1:]]] for c in curve])
            append_bytes(self.curves_path, buf.getvalue().encode())
        if items is not None:
            self._append_items(row["run_id"], items)
        header = self._header()
        if header is None or CHECKSUM not in header or any(k not in header and k not in LATE for k in row):
            self.rewrite(self.read().rows)  # a new file or one of an older version: this version's header first
            header = self._header()
        elif any(k not in header for k in row):
            header = self._widen(header)
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(_checked(header, {h: cell(row.get(h)) for h in header
                                                                         if h != CHECKSUM}))
        append_bytes(self.path, buf.getvalue().encode())

    def _append_items(self, run_id: str, correct: np.ndarray) -> None:
        "One run's row of items.csv, appended whole (a header first in a new file)."
        cells = [run_id, str(len(correct)), base64.b64encode(np.packbits(np.asarray(correct, bool))).decode()]
        text = ",".join([*cells, checksum(cells)]) + "\n"
        path = self.items_path
        if not path.exists() or not path.stat().st_size:
            text = ",".join(ITEMS) + "\n" + text
        else:
            with open(path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":  # a row torn by a kill stays a bad line of its own, not glued to this one
                    text = "\n" + text
        append_bytes(path, text.encode())

    def _widen(self, header: list[str]) -> list[str]:
        "Name the late columns the file lacks at the end of its header; every row stays as written, byte for byte."
        wider = [*header, *(c for c in LATE if c not in header)]
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(wider)
        write_atomic(self.path, buf.getvalue().encode() + self.path.read_bytes().partition(b"\n")[2])
        return wider

    def _header(self) -> list[str] | None:
        if not self.path.exists() or not self.path.stat().st_size:
            return None
        with open(self.path, "rb") as f:
            return _fields(f.readline().rstrip(b"\n"))


def layout(columns) -> list[str]:
    "A runs file's header: its columns, the checksum, then the late ones."
    return [*(c for c in columns if c not in LATE), CHECKSUM, *(c for c in LATE if c in columns)]


def _checked(header: list[str], cells: dict[str, str]) -> list[str]:
    "A row's cells in the header's order, its checksum (of the others, in order) in the checksum column."
    return [checksum(list(cells.values())) if h == CHECKSUM else cells[h] for h in header]


def _fields(raw: bytes) -> list[str] | None:
    "A line's CSV fields, or None when it is not a line of text."
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if "\x00" in text or "\r" in text:
        return None
    try:
        return next(csv.reader([text]), [])
    except csv.Error:
        return None


def _item_row(line: str) -> tuple[str, np.ndarray] | None:
    "A row of items.csv as (run_id, correct), or None when it is torn, changed or not one."
    cells = line.split(",")
    if len(cells) != len(ITEMS) or checksum(cells[:-1]) != cells[-1] or not cells[1].isdigit():
        return None
    n = int(cells[1])
    try:
        packed = np.frombuffer(base64.b64decode(cells[2], validate=True), np.uint8)
    except (binascii.Error, ValueError):
        return None
    if len(packed) != (n + 7) // 8:
        return None
    return cells[0], np.unpackbits(packed, count=n).astype(bool)


def _cell_of(r: dict, h: str, defaults: dict) -> str:
    "A row's cell for column `h`; a config field added since the row was written gets its default."
    v = r.get(h)
    if v is None or (isinstance(v, (float, np.floating)) and math.isnan(v)):
        if h in defaults:
            return cell(defaults[h])
        return "nan" if h in RANGES and RANGES[h][2] and h not in INTEGERS else ""
    if h in INTEGERS or (h in defaults and isinstance(defaults[h], int) and not isinstance(defaults[h], bool)):
        v = int(v)
    return cell(v)


def provenance() -> dict:
    "Where a row was made: date, library versions and the code's git revision."
    import platform
    import subprocess

    import fastai
    import torch
    rev = os.environ.get("CNN_EXP_GIT_REV", "")  # set where the code runs from a copy without its history
    try:
        rev = rev or subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                    cwd=Path(__file__).parent, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        rev = ""
    return dict(date=datetime.datetime.now().isoformat(timespec="seconds"), python=platform.python_version(),
                torch=torch.__version__, fastai=fastai.__version__, git_rev=rev or "none")

"""A grid of runs into `results/<experiment>/runs.csv`: one row per finished run, resumable.

A sweep run again skips every config whose `run_id` is already in the file. Each row is appended
whole (one write, flush, fsync), so a sweep stopped at any moment loses at most the runs in flight.
With `jobs` > 1 the runs go to worker processes (torch threads split between them) and this process,
the only writer, appends their rows as they finish; with `executor="ray"` the runs are tasks on a Ray
cluster (`address`, or a local instance), the rows again written here. With `fuse` > 1, runs of one cell
that differ only by seed train up to `fuse` at a time as one fused model (fused.py), a row per member.
"""
from __future__ import annotations

import csv
import ctypes
import dataclasses
import datetime
import gc
import multiprocessing
import os
import platform
import signal
import subprocess
import threading
from pathlib import Path

import pandas as pd

from . import fused, train
from .train import Config

META = ("run_id", "cell_id", "profile")  # before the config's fields


def provenance() -> dict:
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


def config_row(cfg: Config) -> dict:
    row = dataclasses.asdict(cfg)
    row["channels"] = "-".join(map(str, cfg.channels))  # a tuple as one CSV cell
    return row


def read_runs(path: Path) -> pd.DataFrame:
    "The runs file, without a last line cut short by a kill; an empty frame when there is none."
    if not path.exists():
        return pd.DataFrame(columns=list(META))
    text = path.read_text()
    if text and not text.endswith("\n"):
        text = text[:text.rfind("\n") + 1]
    from io import StringIO
    df = pd.read_csv(StringIO(text), float_precision="round_trip") if text.strip() else pd.DataFrame(columns=list(META))
    missing = [c for c in META if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: not a runs file of this version (no column {', '.join(missing)}); "
                         "move it away and run the sweep again")
    return df


def drop_partial_line(path: Path) -> None:
    "Cut a last line that a kill left without its newline, so the next row starts on a line of its own."
    with open(path, "rb+") as f:
        data = f.read()
        if data and not data.endswith(b"\n"):
            f.truncate(data.rfind(b"\n") + 1)


def upgrade(path: Path, columns: list[str]) -> list[str]:
    """Rewrite a runs file of an older version with this version's columns: a config field added since gets
    its default (ids hash only non-default fields, so old ids still match); columns it has and we lack stay."""
    df = read_runs(path)
    defaults = config_row(Config())
    for c in columns:
        if c not in df:
            df[c] = defaults.get(c, float("nan"))
    header = list(columns) + [c for c in df.columns if c not in columns]
    tmp = path.with_suffix(".upgrade")
    df[header].to_csv(tmp, index=False)
    os.replace(tmp, path)  # the old file or the new one, never half of each
    return header


def append_row(path: Path, row: dict) -> None:
    "Append one whole row (one write, flush, fsync); write the header first when the file is new."
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        drop_partial_line(path)
    new = not path.exists() or path.stat().st_size == 0
    header = list(row)
    if not new:
        with open(path, newline="") as f:
            header = next(csv.reader(f))
        if set(row) - set(header):
            header = upgrade(path, list(row))
    from io import StringIO
    buf = StringIO()
    w = csv.DictWriter(buf, fieldnames=header, restval="", lineterminator="\n")
    if new:
        w.writeheader()
    w.writerow(row)
    with open(path, "a", newline="") as f:
        f.write(buf.getvalue())
        f.flush()
        os.fsync(f.fileno())


def varying_fields(configs: list[Config]) -> list[str]:
    "The config fields that differ across the grid: the columns of the progress table."
    rows = [config_row(c) for c in configs]
    return [k for k in rows[0] if len({r[k] for r in rows}) > 1] if rows else []


EXECUTORS = ("local", "ray")


def run_sweep(configs: list[Config], path: Path, profile: str = "quick", echo=print, jobs: int = 1,
              fuse: int = 1, executor: str = "local", address: str | None = None,
              any_device: bool = False) -> pd.DataFrame:
    """Run every config not yet in `path`, appending a row each; return the file's rows for these configs.
    With `any_device`, a run of the same cell and seed made on another device counts as done."""
    if jobs < 1:
        raise ValueError(f"jobs: at least 1 worker process, got {jobs}")
    if fuse < 1:
        raise ValueError(f"fuse: at least 1 model per group, got {fuse}")
    if executor not in EXECUTORS:
        raise ValueError(f"executor: unknown {executor!r}; choose one of {', '.join(EXECUTORS)}")
    for c in configs:
        c.check()  # every config is checked before any work starts
    have = {key(r, any_device) for r in read_runs(path).itertuples()}
    todo = [c for c in configs if key(c, any_device) not in have]
    echo(f"{len(configs)} runs in the grid, {len(configs) - len(todo)} already in {path}, {len(todo)} to run"
         + (f", {min(jobs, len(todo))} at a time" if jobs > 1 and todo else "")
         + (f", seeds of a cell fused up to {fuse} per model" if fuse > 1 and todo else ""))
    table = ProgressTable(varying_fields(configs) or ["seed"], echo)
    prov, finished = provenance(), 0
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if main else None  # a polite kill stops like Ctrl-C
    gc.collect()
    gc.freeze()  # what lives now (torch, fastai, the data) outlives the sweep: each run's collection skips it
    try:
        work = units(todo, fuse)
        done_runs = (on_ray(work, address) if executor == "ray" else in_processes(work, jobs) if jobs > 1
                     else one_at_a_time(work))
        for cfg, metrics in done_runs:
            append_row(path, {"run_id": cfg.run_id, "cell_id": cfg.cell_id, "profile": profile, **config_row(cfg),
                              **{k: metrics.get(k, float("nan")) for k in METRICS}, **prov})
            finished += 1
            table.line(finished, cfg, metrics)
    except KeyboardInterrupt:
        echo(f"stopped: {finished} of {len(todo)} runs finished and saved in {path}; run again to resume")
        raise
    finally:
        gc.unfreeze()
        if main:
            signal.signal(signal.SIGTERM, previous)
    df = read_runs(path)
    keys = {key(c, any_device) for c in configs}
    return df[[key(r, any_device) in keys for r in df.itertuples()]].reset_index(drop=True)


def key(run, any_device: bool = False):
    "What makes a run the same run: its id, or with `any_device` its cell and seed on whatever device."
    return (run.cell_id, int(run.seed)) if any_device else run.run_id


def units(todo: list[Config], fuse: int) -> list[list[Config]]:
    "The work, in grid order: runs alone, or up to `fuse` seeds of one cell together where the arch fuses."
    if fuse <= 1:
        return [[c] for c in todo]
    cells: dict[tuple, list[Config]] = {}
    for c in todo:
        cells.setdefault((c.cell_id, c.device), []).append(c)
    out = []
    for group in cells.values():
        size = fuse if group[0].arch in fused.ARCHS else 1
        out += [group[i:i + size] for i in range(0, len(group), size)]
    return out


def run_unit(cfgs: list[Config]) -> list[dict]:
    "Metrics per config: one run alone, or a fused group."
    return [dict(train.run(cfgs[0]), fused=1)] if len(cfgs) == 1 else fused.run(cfgs)


def one_at_a_time(work: list[list[Config]]):
    for cfgs in work:
        yield from zip(cfgs, run_unit(cfgs))
        release_memory()


def release_memory() -> None:
    "Free a finished run's memory: its Learner's reference cycles, then the heap pages glibc would keep."
    gc.collect()
    if platform.system() == "Linux":
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):  # not glibc (musl): nothing to trim
            pass


def in_processes(work: list[list[Config]], jobs: int):
    """(config, metrics) as worker processes finish them, in any order. Workers are spawned (CUDA cannot
    be forked) and ignore Ctrl-C: the parent stops them, so only whole rows ever reach the file."""
    jobs = min(jobs, len(work))
    if not jobs:
        return
    threads = max(1, (os.cpu_count() or 1) // jobs)
    pool = multiprocessing.get_context("spawn").Pool(jobs, _worker_init, (threads,))
    try:
        for i, metrics in pool.imap_unordered(_run_indexed, list(enumerate(work)), chunksize=1):
            yield from zip(work[i], metrics)
    finally:
        pool.terminate()  # after the last result, or on Ctrl-C / SIGTERM: the runs in flight are dropped
        pool.join()


def on_ray(work: list[list[Config]], address: str | None):
    """(config, metrics) as Ray tasks finish them: one task per unit of work, one CPU each (and a fifth of a
    GPU for CUDA runs); a local Ray instance when `address` is None. Stopping cancels the tasks in flight."""
    try:
        import ray
    except ImportError:
        raise ValueError("executor: ray is not installed; pip install 'cnn-experiments[ray]'") from None
    if not ray.is_initialized():
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        except (ConnectionError, RuntimeError) as e:
            raise ValueError(f"--address: no Ray cluster at {address!r} ({e})") from None
    task = ray.remote(run_unit)
    pending = {task.options(num_cpus=1, num_gpus=0.2 if cfgs[0].device == "cuda" else 0).remote(cfgs): i
               for i, cfgs in enumerate(work)}
    try:
        while pending:
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            yield from zip(work[pending.pop(ref)], ray.get(ref))
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)


def _worker_init(threads: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import torch
    torch.set_num_threads(threads)
    gc.freeze()  # the imports outlive every run: each run's collection skips them


def _run_indexed(item: tuple[int, list[Config]]) -> tuple[int, list[dict]]:
    i, cfgs = item
    metrics = run_unit(cfgs)
    release_memory()
    return i, metrics


def _interrupt(signum, frame):
    raise KeyboardInterrupt


class ProgressTable:
    "A fixed-width line per finished run: the fields the grid varies, then the metrics."
    def __init__(self, cols: list[str], echo):
        self.cols, self.echo, self.started = cols, echo, False
        self.widths = [max(len(k), 8) for k in cols]

    def line(self, i: int, cfg: Config, m: dict) -> None:
        if not self.started:
            self.echo("  ".join(["  run"] + [k.rjust(w) for k, w in zip(self.cols, self.widths)]
                                + [f"{'accuracy':>8}", f"{'train':>7}", f"{'valid':>7}", f"{'s':>6}"]))
            self.started = True
        row = config_row(cfg)
        self.echo("  ".join([f"{i:>5}"] + [str(row[k]).rjust(w) for k, w in zip(self.cols, self.widths)]
                            + [f"{m['accuracy']:8.4f}", f"{m['train_loss']:7.4f}", f"{m['valid_loss']:7.4f}",
                               f"{m['seconds']:6.1f}"]))


# fused: how many models trained together in the run's group (1: alone); seconds are its share of their time
METRICS = ("train_loss", "valid_loss", "accuracy", "auc", "diverged", "seconds", "epochs", "device", "fused")

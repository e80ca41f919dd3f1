"""A grid of runs -> the runs not yet in the store -> an executor -> one row per finished run.

    from cnn_experiments.sweeps.sweep import run_sweep
    run_sweep([Config(seed=s) for s in range(3)], "results/x/runs.csv")

A sweep run again skips every config whose `run_id` is already in the runs file (whatever device made it).
With `fuse` > 1, runs of one body and data that differ by seed, pooling head or learning rate train up to
`fuse` at a time as one fused model.
"""
from __future__ import annotations

import gc
import signal
import threading
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from ..errors import UserError
from ..runs.config import Config, fusable, group_key, to_row
from ..runs.progress import ProgressTable
from ..runs.store import MACHINE, METRICS, Store, provenance
from . import executors

Keep = Callable[[Config], tuple[str, ...]]  # which state-dict entries a run saves for its report


def run_sweep(configs: list[Config], store: Store | Path | str, profile: str = "quick", echo=print, jobs: int = 1,
              fuse: int = 1, executor: str = "local", address: str | None = None, keep: Keep | None = None,
              command: str = "") -> pd.DataFrame:
    "Run every config not yet in the store, appending a row each; return the store's rows for these configs."
    store = store if isinstance(store, Store) else Store(store)
    if jobs < 1:
        raise UserError(f"--jobs: at least 1 worker process, got {jobs}")
    if fuse < 1:
        raise UserError(f"--fuse: at least 1 model per group, got {fuse}")
    execute = executors.executor(executor, jobs, address)
    for c in configs:
        c.check()  # every config is checked before any work starts
    with store.writer(command):
        store.check_writable()
        have = set(store.prepare(echo).rows["run_id"])
        todo = [c for c in dict.fromkeys(configs) if c.run_id not in have]
        echo(f"{len(configs)} runs in the grid, {len(configs) - len(todo)} already in {store.path}, {len(todo)} to run"
             + (f", {min(jobs, len(todo))} at a time" if jobs > 1 and todo else "")
             + (f", seeds of a cell fused up to {fuse} per model" if fuse > 1 and todo else ""))
        table = ProgressTable(varying_fields(configs) or ["seed"], echo, todo)
        prov, finished = provenance(), 0
        main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, _interrupt) if main else None  # a polite kill stops like Ctrl-C
        gc.collect()
        gc.freeze()  # what lives now (torch, fastai, the data) outlives the sweep: each run's collection skips it
        try:
            work = units(todo, fuse, keep)
            for i, results in execute(work):
                for cfg, r in zip(work[i][0], results):
                    store.append({"run_id": cfg.run_id, "cell_id": cfg.cell_id, "profile": profile, **to_row(cfg),
                                  **{k: r.metrics.get(k, float("nan")) for k in METRICS},
                                  "device": r.metrics["device"], **prov, **{k: r.metrics.get(k, "") for k in MACHINE}},
                                 r.curve, r.weights, r.model, r.items)
                    finished += 1
                    table.line(finished, cfg, r.metrics)
        except KeyboardInterrupt:
            echo(f"stopped: {finished} of {len(todo)} runs finished and saved in {store.path}; run again to resume")
            raise
        finally:
            gc.unfreeze()
            if main:
                signal.signal(signal.SIGTERM, previous)
    df = store.read().rows
    wanted = {c.run_id for c in configs}
    return df[df["run_id"].isin(wanted)].drop_duplicates("run_id").reset_index(drop=True)


def units(todo: list[Config], fuse: int, keep: Keep | None = None) -> list[executors.Unit]:
    """The work, in grid order: runs alone, or up to `fuse` runs together where the arch fuses: runs of one body,
    data and schedule, which may differ by seed, pooling head and learning rate (config.group_key)."""
    kept = (lambda c: keep(c) or ()) if keep else (lambda c: ())
    if fuse <= 1:
        return [([c], kept(c)) for c in todo]
    cells: dict[str, list[Config]] = {}
    for c in todo:
        cells.setdefault(group_key(c), []).append(c)
    out = []
    for group in cells.values():
        size = fuse if fusable(group[0]) else 1
        for i in range(0, len(group), size):
            part = group[i:i + size]
            out.append((part, tuple(dict.fromkeys(p for c in part for p in kept(c)))))
    return out


def varying_fields(configs: list[Config]) -> list[str]:
    "The config fields that differ across the grid: the columns of the progress table."
    rows = [to_row(c) for c in configs]
    skip = ("device",)
    return [k for k in rows[0] if k not in skip and len({r[k] for r in rows}) > 1] if rows else []


def _interrupt(signum, frame):
    raise KeyboardInterrupt

"""A study's pipeline: an experiment's search and grid for a profile run through the sweep, then its report.

    from cnn_experiments.studies.study import do_run, do_report, verdict_table
    do_report("pooling", "medium")      # rewrites results/pooling/summary_medium.md from its runs; trains nothing
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..errors import UserError
from ..reports import report as R
from ..reports.publish import best_summary, fared, write_index, write_table
from ..runs.store import REQUIRED, Store
from ..statistics import stats
from .registry import get


def command(name: str, profile: str, seeds: int, default_seeds: int, device: str, fuse: int = 1) -> str:
    return " ".join(["cnn-exp run", name, "--profile", profile]
                    + (["--seeds", str(seeds)] if seeds != default_seeds else [])
                    + (["--device", device] if device != "cpu" else [])
                    + (["--fuse", str(fuse)] if fuse > 1 else []))


def do_run(name: str, profile: str, device: str = "cpu", seeds: int | None = None, results: Path = Path("results"),
           jobs: int | None = None, fuse: int = 1, executor: str = "local", address: str | None = None) -> Path:
    "Run an experiment's search and grid for `profile` (resuming), then write its report."
    from ..sweeps.executors import default_jobs  # training (torch, fastai) is imported by what trains, not by a report
    from ..sweeps.sweep import run_sweep
    exp = get(name)
    exp.check_profile(profile)
    if device == "cuda":
        import torch
        if not torch.cuda.is_available():
            raise UserError("--device: cuda asked for but no CUDA GPU is visible; choose cpu")
    n = seeds or exp.seeds(profile)
    cmd = command(name, profile, n, exp.seeds(profile), device, fuse)
    store = Store(results / name / "runs.csv")
    how = dict(jobs=jobs or default_jobs(device), fuse=fuse, executor=executor, address=address,
               keep=lambda c: exp.keep(c, profile), command=cmd)
    with store.writer(cmd):
        search, searched = [], None
        # round by round: a grid declared to grow asks for its next rate once the last round has run
        while (more := [c.replace(device=device) for c in exp.search(profile, searched)]) != search:
            search, searched = more, run_sweep(more, store, profile, **how)
        cfgs = [c.replace(seed=s, device=device) for c in exp.grid(profile, searched)
                for s in exp.seed_list(profile, n)]
        if cfgs:
            run_sweep(cfgs, store, profile, **how)
    return do_report(name, profile, results)


@dataclass
class Loaded:
    "A profile's runs as its report reads them: each cell's seed once, labelled, with the declared verdict table."
    runs: pd.DataFrame
    labelled: pd.DataFrame
    table: pd.DataFrame | None
    status: list[str]
    store: Store
    profile: str


def load(name: str, profile: str | None, results: Path = Path("results")) -> Loaded:
    "A profile's runs from its runs file and the verdict table of its declared comparisons."
    exp = get(name)
    store = Store(results / name / "runs.csv")
    read = store.read()
    if read.missing:
        raise UserError(f"{store.path}: {read.bad[0].why}; a runs file has the columns " + ", ".join(REQUIRED))
    for b in read.bad:
        print(f"{store.path}:{b.line}: {b.why}; left out of the report (the next sweep redoes its run)",
              file=sys.stderr)
    runs = read.rows
    if profile is None:  # the profile of the last run written
        profile = str(runs["profile"].iloc[-1]) if len(runs) else next(iter(exp.profiles))
    exp.check_profile(profile)
    grid, search = exp.grid(profile, runs), exp.search(profile, runs)
    # a profile's runs are its grid's cells at its seeds (more if it was run with --seeds), whichever profile
    # first made them: profiles that share a cell share its runs
    first = exp.seed_list(profile).start
    seeds = max([exp.seeds(profile), *(runs.loc[runs["profile"] == profile, "seed"].astype(int) + 1 - first)])
    seed = runs["seed"].astype(int)
    in_grid = runs["cell_id"].isin({c.cell_id for c in grid}) & (seed >= first) & (seed < first + seeds)
    # the search's own runs: another profile may have searched the same cell with a seed of its own
    runs = R.one_per_seed(runs[in_grid | runs["run_id"].isin({c.run_id for c in search})])
    if exp.needs_runs and runs.empty:
        raise UserError(f"report: no {profile} runs of {name} in {store.path}; "
                        f"run `cnn-exp run {name} --profile {profile}` first")
    expected = ({(c.cell_id, s) for c in grid for s in exp.seed_list(profile, seeds)}
                | {(c.cell_id, c.seed) for c in search})
    status = R.status(name, profile, expected, set(zip(runs["cell_id"], runs["seed"].astype(int))))
    labelled = exp.label(runs, profile)
    comparisons = exp.comparisons(profile)
    table = stats.compare(labelled, comparisons, partial=bool(status), items=store.items) if comparisons else None
    return Loaded(runs, labelled, table, status, store, profile)


def written(name: str, profile: str | None, results: Path = Path("results")) -> tuple[R.Context, str, str, Loaded]:
    "The report of a profile: its context (with every verdict table it decided), body and finding."
    exp = get(name)
    got = load(name, profile, results)
    ctx = R.Context(got.labelled, got.store, results / name, got.profile, got.table, results,
                    partial=bool(got.status), tables=[] if got.table is None else [got.table],
                    load=lambda pilot: load(name, pilot, results))
    from ..training.train import pinned_threads
    with pinned_threads("cpu"):  # what a report computes (class activation maps) rounds alike on every machine
        body, finding = exp.report(ctx)
    return ctx, body, finding, got


def do_report(name: str, profile: str | None, results: Path = Path("results")) -> Path:
    """Write results/<name>/summary_<profile>.md from the runs file alone (nothing is trained), and summary.md: the
    most thorough profile's report, the one the index quotes."""
    exp = get(name)
    ctx, body, finding, got = written(name, profile, results)
    runs, profile, status = got.runs, got.profile, got.status
    out = results / name
    # the command that makes these runs, read from them, so the report stays a function of the results folder
    main = runs[runs["split"] != "search"] if "split" in runs else runs
    n = int(main.groupby("cell_id")["seed"].nunique().max()) if len(main) else exp.seeds(profile)
    on_gpu = not runs["device"].astype(str).str.startswith("cpu").all() if len(runs) else False
    fuse = int(runs["fused"].max()) if "fused" in runs and runs["fused"].notna().any() else 1
    cmd = command(name, profile, n, exp.seeds(profile), "cuda" if on_gpu else "cpu", fuse)
    table = ctx.tables[0] if ctx.tables else None  # the claim's own: the first the report decided
    decided = table is not None and not status and exp.claim[:1] == "C" and "indicative" not in set(table["outcome"])
    plain = (f"**In plain words:** the lesson was {fared(table['outcome'].value_counts().to_dict())} "
             f"({stats.tally(table)}).\n\n" if decided else "")
    text = (R.header(exp.title, exp.claim, runs, cmd, profile) + plain + f"{R.FINDING} {finding}\n\n"
            + ("\n".join(status) + "\n" if status else "") + f"{body}\n")
    # summary_<profile>.md per profile; summary.md the one the index quotes, whichever profile ran last
    R.write_summary(out / f"summary_{profile}.md", text)
    quoted = best_summary(out) or out / f"summary_{profile}.md"  # a pilot alone in its folder quotes itself
    R.write_summary(out / "summary.md", quoted.read_text())
    write_table(results, name, profile, runs)
    write_index(results)
    print(f"wrote {out / f'summary_{profile}.md'}\n{R.FINDING} {finding}")
    return out / f"summary_{profile}.md"

"""The pooling study's grid trained fused: how fast, and does it reach the one-at-a-time study's numbers?

    python benchmarks/fused_grid.py --profile quick                          # CPU
    python benchmarks/fused_grid.py --profile full --device cuda --fuse 10 --jobs 3

Trains the profile's grid (the rates its committed search chose) with each cell's seeds fused, into a runs
file of its own beside the report (made afresh each call, so the wall time is the whole grid's), and compares
it with the study's own runs in
results/pooling/runs.csv: per cell, fused minus one-at-a-time held-out accuracy, paired by seed, equivalent
within a declared margin by TOST (Holm over the cells); and the study's verdict on C6 computed from each.
A fused member starts from its own run's init and batch order but rounds differently, which a high learning
rate grows into another draw of the same run: equivalence holds per cell where seeds agree on learning.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cnn_experiments.errors import UserError
from cnn_experiments.reports import benchmark as B
from cnn_experiments.runs.store import Store
from cnn_experiments.statistics import stats
from cnn_experiments.sweeps.sweep import run_sweep
from cnn_experiments.training.train import device_name
from experiments import pooling

MARGIN = 0.02  # declared: fused within 2 points of held-out accuracy of the same runs made alone
MEASURES = ("cnn_experiments/training/fused.py", "cnn_experiments/training/train.py",
            "cnn_experiments/training/callbacks.py")


def parser() -> B.Parser:
    p = B.Parser(prog="fused_grid.py", description="the pooling grid fused, against the study's own runs")
    p.add_argument("--profile", default="quick", choices=tuple(pooling.PROFILES))
    p.add_argument("--device", default="cpu", choices=B.DEVICES)
    p.add_argument("--fuse", type=B.positive_int, default=None, help="members per fused model (default: all seeds)")
    p.add_argument("--jobs", type=B.positive_int, default=1, help="fused models trained at once, in processes")
    p.add_argument("--results", default="results", help="where the study's runs are")
    B.output_options(p)
    return p


def main(a) -> None:
    study = Store(Path(a.results) / "pooling" / "runs.csv").read().rows
    study = study[study["profile"] == a.profile]
    seeds = pooling.PROFILES[a.profile]["seeds"]
    cells = pooling.grid(a.profile, study)
    alone = study[study["cell_id"].isin({c.cell_id for c in cells})]
    if alone.groupby("cell_id")["seed"].nunique().reindex([c.cell_id for c in cells]).fillna(0).min() < seeds:
        raise UserError(f"--profile {a.profile}: the study's grid is not complete in {a.results}/pooling/runs.csv; "
                        f"run `cnn-exp run pooling --profile {a.profile}` first")
    out = B.benchmark_file(f"fused_grid_{a.profile}", a)
    cfgs = [c.replace(seed=s, device=a.device) for c in cells for s in range(seeds)]
    store = Store(out.with_suffix(".runs.csv"))
    for old in (store.path, store.curves_path):  # a benchmark times the whole grid: never a resumed part of it
        old.unlink(missing_ok=True)
    t = time.perf_counter()
    fused = run_sweep(cfgs, store, a.profile, fuse=a.fuse or seeds, jobs=a.jobs)
    wall = time.perf_counter() - t
    both = pd.concat([alone.assign(way="alone"), fused.assign(way="fused")], ignore_index=True)
    per_cell = [stats.Comparison(f"{r.obj_size} px in {r.canvas} px, {r.pool}", dict(cell_id=r.cell_id, way="fused"),
                                 dict(cell_id=r.cell_id, way="alone"), expect="equivalent", margin=MARGIN)
                for r in fused.drop_duplicates("cell_id").itertuples()]
    table = stats.compare(both, per_cell)
    counts = table["outcome"].value_counts()
    verdicts = {w: stats.verdict(stats.compare(pooling.label(runs, a.profile), pooling.comparisons(a.profile)))
                for w, runs in (("alone", alone), ("fused", fused))}
    secs = both.groupby("way")["seconds"].mean()
    text = "\n".join([
        f"# Benchmark: the {a.profile} pooling grid fused against the same runs one at a time", "",
        f"**Result:** on {device_name(a.device)}, {len(fused)} fused runs in {wall / 60:.1f} min "
        f"({60 * len(fused) / wall:.1f} runs per minute; a member's share of fit time {secs['fused']:.1f} s, alone "
        f"{secs['alone']:.1f} s); fused equivalent to alone within ±{MARGIN} in {counts.get('equivalent', 0)} of "
        f"{len(table)} cells ({', '.join(f'{k} {v}' for k, v in counts.items())}); C6 alone: {verdicts['alone']}, "
        f"fused: {verdicts['fused']}.", "",
        *B.benchmark_provenance(f"python benchmarks/fused_grid.py --profile {a.profile} --device {a.device} --fuse "
                              f"{a.fuse or seeds} --jobs {a.jobs}", MEASURES),
        f"- work: every cell of the {a.profile} grid, {seeds} seeds fused per model; the one-at-a-time runs are "
        "the study's own; wall time is the whole fused grid's, trained afresh", "",
        stats.markdown(table), ""])
    B.write_benchmark(text, out)


if __name__ == "__main__":
    sys.exit(B.script(parser(), main))

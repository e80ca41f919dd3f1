"""The pooling study's grid trained fused: its wall time, and does it reach the one-at-a-time conclusions?

    python benchmarks/fused_grid.py --profile medium                 # CPU
    python benchmarks/fused_grid.py --profile full --device cuda     # a GPU

Runs the profile's grid (the learning rates its committed search chose) with each cell's seeds fused
into one model, into a throwaway runs file, timing the whole sweep. Then, cell by cell, compares the
fused accuracy with the committed one-at-a-time runs in results/pooling/runs.csv: the 95% intervals
overlap or not, and the verdict on C6 computed from each.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from fastcore.script import call_parse

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cnn_experiments import report as R
from cnn_experiments.cli import configs
from cnn_experiments.sweep import read_runs, run_sweep
from cnn_experiments.train import device_name
from experiments import pooling


@call_parse
def main(profile: str = "medium",  # a pooling profile whose one-at-a-time grid is committed
         device: str = "cpu",  # cpu or cuda
         results: str = "results",  # where the committed runs are
         out: str = ""):  # markdown file; default results/benchmarks/fused_grid_<profile>_<device>.md
    committed = read_runs(Path(results) / "pooling" / "runs.csv")
    committed = committed[committed["profile"] == profile]
    seeds = pooling.PROFILES[profile]["seeds"]
    cfgs = configs(pooling.grid(profile, committed), seeds, device)
    serial = committed[committed["run_id"].isin({c.replace(device="cpu").run_id for c in cfgs}
                                                | {c.run_id for c in cfgs})]
    if serial["cell_id"].nunique() < len({c.cell_id for c in cfgs}):
        sys.exit(f"fused_grid: the {profile} grid is not complete in {results}/pooling/runs.csv; run it first")
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        fused = run_sweep(cfgs, Path(tmp) / "runs.csv", profile, fuse=seeds)
        wall = time.perf_counter() - t
    cell = pooling.cell_px(profile)
    s = {name: R.summarize(d.assign(cells=d["obj_size"] / cell), ["cells", "pool"]).set_index(["cells", "pool"])
         for name, d in (("serial", serial), ("fused", fused))}
    both = s["serial"].join(s["fused"], lsuffix="_serial", rsuffix="_fused")
    overlap = (both["lo_serial"] <= both["hi_fused"]) & (both["lo_fused"] <= both["hi_serial"])
    verdicts = {name: pooling.verdict(v.reset_index())[0] for name, v in s.items()}
    rows = [f"| {c:g} | {h} | {R.fmt(r['mean_serial'], r['ci_serial'], 3)} | {R.fmt(r['mean_fused'], r['ci_fused'], 3)}"
            f" | {'yes' if overlap[(c, h)] else 'NO'} |" for (c, h), r in both.iterrows()]
    text = "\n".join([
        f"# Benchmark: the pooling study's {profile} grid, fused", "",
        f"**Result:** on {device_name(device)}, the {len(cfgs)} runs took {wall / 60:.1f} min fused "
        f"({60 * len(cfgs) / wall:.1f} runs per minute); fused and one-at-a-time 95% intervals overlap in "
        f"{int(overlap.sum())} of {len(overlap)} cells; verdict on C6 fused: {verdicts['fused'].split(':')[0]}, "
        f"one at a time: {verdicts['serial'].split(':')[0]}.", "",
        *R.benchmark_provenance(f"python benchmarks/fused_grid.py --profile {profile} --device {device}"),
        f"- work: the pooling {profile} grid ({len(cfgs)} runs, learning rates from its committed search), each "
        f"cell's {seeds} seeds fused into one model; one-at-a-time runs: results/pooling/runs.csv "
        f"({serial['device'].iloc[0]})", "",
        "| cells | head | one at a time | fused | intervals overlap |", "|---|---|---|---|---|", *rows, ""])
    R.write_benchmark(text, Path(out or f"results/benchmarks/fused_grid_{profile}_{device}.md"))

"""The pooling study's grid trained fused: its wall time, and does it reach the one-at-a-time conclusions?

    python benchmarks/fused_grid.py --profile medium                 # CPU
    python benchmarks/fused_grid.py --profile full --device cuda --jobs 3            # a GPU
    python benchmarks/fused_grid.py --profile full --device cuda --complete-only --jobs 3   # the cells run both ways
    python benchmarks/fused_grid.py --profile full --alone-only --out results/benchmarks/fused_grid_full.md
                                    # the one-at-a-time runs it lacks, on this CPU, for the GPU call to use
    python benchmarks/fused_grid.py --profile full --any-device --out results/benchmarks/fused_grid_full.md
                                    # the fused runs no device has made yet, here; the rest count as made
    python benchmarks/fused_grid.py --profile full --report-only --out results/benchmarks/fused_grid_full.md
                                    # train nothing: the report of the cells made both ways so far

Runs the profile's grid (the learning rates its committed search chose) with each cell's seeds fused
into one model, timing the sweep, then compares, cell by cell, the fused accuracy with the committed
one-at-a-time runs in results/pooling/runs.csv: the 95% intervals overlap or not, and the verdict on C6
computed from each. A run of the grid that was never made alone (the study fused it) is made here, alone,
and timed too. Fused and one-at-a-time runs made here go to their own runs files beside the report, which
a second call resumes (a GPU session may end first; the header then says which runs each call made).
A one-at-a-time run is the same run on any device (the committed ones mix devices too), so those made by
an `--alone-only` call on a CPU count for a later GPU call writing to the same `--out`. With --any-device
the fused runs count from any device too: the comparison is of accuracies, and each call times only the
runs it makes (the header names the devices of both sides). With --report-only nothing is trained: the
report compares the cells whose seeds have all run both ways so far, as a grid stopped part-way leaves them.
With --complete-only, only the cells whose seeds all ran one at a time are trained and compared (the
verdict needs every size, so it is then not computed).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import pandas as pd
from fastcore.script import call_parse, store_true

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cnn_experiments import report as R
from cnn_experiments.cli import configs
from cnn_experiments.sweep import key, read_runs, run_sweep
from cnn_experiments.train import device_name
from experiments import pooling


def fail(message: str):
    "A user's mistake: one line naming it, exit code 2, nothing written."
    print(f"fused_grid: {message}", file=sys.stderr)
    sys.exit(2)


@call_parse
def main(profile: str = "medium",  # a pooling profile whose one-at-a-time grid is committed
         device: str = "cpu",  # cpu or cuda
         results: str = "results",  # where the committed runs are
         complete_only: store_true = False,  # fuse and compare only the cells complete one at a time
         jobs: int = 1,  # worker processes for the sweeps (fused, and the one-at-a-time runs it lacks)
         alone_only: store_true = False,  # make only the one-at-a-time runs the grid lacks, then stop
         any_device: store_true = False,  # a fused run made on another device counts as made
         report_only: store_true = False,  # train nothing; compare the cells made both ways so far
         out: str = ""):  # markdown file; default results/benchmarks/fused_grid_<profile>_<device>.md
    if profile not in pooling.PROFILES or jobs < 1:
        fail(f"--profile must be one of {', '.join(pooling.PROFILES)} and --jobs at least 1, got {profile!r}, {jobs}")
    committed = read_runs(Path(results) / "pooling" / "runs.csv")
    committed = committed[committed["profile"] == profile]
    if committed.empty:  # its learning rates and one-at-a-time runs come from the committed study
        fail(f"no {profile} runs in {results}/pooling/runs.csv; run `cnn-exp run pooling --profile {profile}` first")
    seeds = pooling.PROFILES[profile]["seeds"]
    cfgs = configs(pooling.grid(profile, committed), seeds, device)
    alone = committed["fused"].fillna(1) == 1 if "fused" in committed else True  # rows before fusion ran alone
    grid = {key(c, any_device=True) for c in cfgs}
    in_grid = pd.Series([key(r, any_device=True) in grid for r in committed.itertuples()], committed.index, bool)
    serial = R.one_per_seed(committed[alone & in_grid])  # a run made alone, on whichever device made it
    n_cells = len({c.cell_id for c in cfgs})
    if complete_only:
        whole = serial.groupby("cell_id")["seed"].nunique()
        whole = set(whole[whole == seeds].index)
        cfgs, serial = [c for c in cfgs if c.cell_id in whole], serial[serial["cell_id"].isin(whole)]
    if not cfgs:
        fail(f"--complete-only: no cell of the {profile} grid ran all its seeds one at a time in "
             f"{results}/pooling/runs.csv")
    base = Path(out or f"results/benchmarks/fused_grid_{profile}_{device}.md").with_suffix("")
    have = {(r.cell_id, int(r.seed)) for r in serial.itertuples()}
    lacking = [c for c in cfgs if (c.cell_id, c.seed) not in have]  # the grid's runs never made alone
    took = []
    try:
        for kind, todo, fuse in (("fused", cfgs, seeds), ("one-at-a-time", lacking, 1)):
            if not todo or (alone_only and fuse > 1):
                continue
            path = base.with_suffix(".runs.csv" if fuse > 1 else ".serial.runs.csv")
            anywhere = fuse == 1 or any_device or report_only  # a run made alone is the same run on any device
            wanted, prior = {key(c, anywhere) for c in todo}, read_runs(path)
            prior = prior.loc[[key(r, anywhere) in wanted for r in prior.itertuples()]]  # this grid's, made before
            if report_only:
                done = prior
                which = f"{kind} runs" if fuse > 1 else f"{kind} runs the study only fused"
                took.append(f"{len(prior)} of the {len(todo)} {which} are made"
                            + (f" ({R.devices(prior)})" if len(prior) else ""))
            else:
                t = time.perf_counter()
                done = run_sweep(todo, path, profile, fuse=fuse, jobs=jobs, any_device=anywhere)
                wall, made = time.perf_counter() - t, len(todo) - len(prior)
                took.append((f"{made} runs took {wall / 60:.1f} min {kind} ({60 * made / wall:.1f} runs per minute)"
                             if made else f"no {kind} runs were made by this call")
                            + (f", {len(prior)} came from an earlier call ({R.devices(prior)})" if len(prior) else ""))
            if fuse > 1:
                fused = done
            else:  # one-at-a-time runs made here complete the committed ones
                serial = pd.concat([serial, done], ignore_index=True)
    except KeyboardInterrupt:
        sys.exit(f"fused_grid: stopped; {base}.*runs.csv keep the finished runs, run the same command to resume")
    if alone_only:
        print(f"fused_grid: the {len(lacking)} one-at-a-time runs the grid lacked are in {base}.serial.runs.csv; "
              "no report written (--alone-only)")
        return
    if report_only:  # compare only the cells whose seeds have all run both ways
        def complete(d):
            if d.empty:  # no runs file yet
                return set()
            n = d.groupby("cell_id")["seed"].nunique()
            return set(n[n == seeds].index)
        made = complete(serial) & complete(fused)
        if not made:
            fail(f"--report-only: no cell of the {profile} grid has all {seeds} seeds both fused and one at a time "
                 f"yet in {base}.runs.csv and the one-at-a-time runs; run without --report-only first")
        cfgs = [c for c in cfgs if c.cell_id in made]
        serial, fused = serial[serial["cell_id"].isin(made)], fused[fused["cell_id"].isin(made)]
    cell = pooling.cell_px(profile)
    s = {name: R.summarize(d.assign(cells=d["obj_size"] / cell), ["cells", "pool"]).set_index(["cells", "pool"])
         for name, d in (("serial", serial), ("fused", fused))}
    both = s["serial"].add_suffix("_serial").join(s["fused"].add_suffix("_fused"))
    both = both.reindex(list(dict.fromkeys((c.obj_size / cell, c.pool) for c in cfgs)))  # the grid's order
    overlap = (both["lo_serial"] <= both["hi_fused"]) & (both["lo_fused"] <= both["hi_serial"])
    whole_grid = len({c.cell_id for c in cfgs}) == n_cells
    verdicts = {name: pooling.verdict(v.reset_index())[0] if whole_grid else "not computed (not every size)"
                for name, v in s.items()}
    speed = [f"| {way} | {dev} | {len(d)} | {d['seconds'].mean():.1f} |"
             for way, runs in (("one at a time", serial), ("fused", fused))
             for dev, d in runs.groupby(runs["device"].astype(str))]
    rows = [f"| {c:g} | {h} | {R.fmt(r['mean_serial'], r['ci_serial'], 3)} | {R.fmt(r['mean_fused'], r['ci_fused'], 3)}"
            f" | {'yes' if overlap[(c, h)] else 'NO'} |" for (c, h), r in both.iterrows()]
    where = "" if report_only else f"on {device_name(device)}, "  # a report-only call names the runs' devices
    text = "\n".join([
        f"# Benchmark: the pooling study's {profile} grid, fused", "",
        f"**Result:** {where}{'; '.join(took)}; fused and one-at-a-time 95% intervals overlap in "
        f"{int(overlap.sum())} of {len(overlap)} cells; verdict on C6 fused: {verdicts['fused'].split(':')[0]}, "
        f"one at a time: {verdicts['serial'].split(':')[0]}.", "",
        *R.benchmark_provenance(f"python benchmarks/fused_grid.py --profile {profile} --device {device}"
                                + (" --complete-only" if complete_only else "")
                                + (" --any-device" if any_device else "") + (" --report-only" if report_only else "")
                                + (f" --jobs {jobs}" if jobs > 1 else "") + (f" --out {out}" if out else "")),
        f"- work: {'the' if whole_grid else f'{len(cfgs) // seeds} of {n_cells} cells of the'} "
        f"pooling {profile} grid ({len(cfgs)} runs, learning rates from its committed search), each "
        f"cell's {seeds} seeds fused into one model; one-at-a-time runs: {results}/pooling/runs.csv "
        f"({R.devices(serial)})"
        + (f" and {base}.serial.runs.csv for the {len(lacking)} the study only fused" if lacking else "")
        + f"; fused runs: {base}.runs.csv ({R.devices(fused)})", "",
        "| cells | head | one at a time | fused | intervals overlap |", "|---|---|---|---|---|", *rows, "",
        "Fit time per run (`seconds`: a fused member's share of its model's), by the device that made it:", "",
        "| way | device | runs | seconds per run |", "|---|---|---|---|", *speed, ""])
    R.write_benchmark(text, base.with_suffix(".md"))

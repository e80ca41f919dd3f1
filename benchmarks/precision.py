"""bf16 autocast and channels_last against fp32: their speed and whether they keep accuracy, from one run.

    python benchmarks/precision.py                                   # CPU, the pooling study's quick geometry
    python benchmarks/precision.py --device cuda --profile medium    # a GPU, the lesson's 7x7 map at 112 px

Every setting trains the same pooling cells (sizes x heads), each cell's seeds fused into one model as the
sweep's --fuse trains them, at the learning rates the committed search chose. The report gives each
setting's training time relative to fp32 and, per cell, whether its 95% interval of held-out accuracy
overlaps fp32's (with few seeds the intervals are wide, so overlap is weak evidence of equal accuracy).
"""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
from fastcore.script import call_parse

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cnn_experiments import fused
from cnn_experiments import report as R
from cnn_experiments.sweep import read_runs
from cnn_experiments.train import device_name, tensors
from experiments import pooling

SETTINGS = {"fp32": {}, "bf16": dict(precision="bf16"), "channels_last": dict(channels_last=True),
            "bf16 + channels_last": dict(precision="bf16", channels_last=True)}


@call_parse
def main(device: str = "cpu",  # cpu or cuda
         profile: str = "quick",  # the pooling profile whose geometry, epochs and seeds are used
         sizes: str = "16,28",  # object sizes in px, comma-separated
         heads: str = "avg,max",  # pooling heads, comma-separated
         results: str = "results",  # where the committed search runs are (for the learning rates)
         out: str = ""):  # markdown file; default results/benchmarks/precision_<device>.md
    lr = pooling.chosen_lrs(profile, read_runs(Path(results) / "pooling" / "runs.csv"))
    seeds = pooling.PROFILES[profile]["seeds"]
    cells = [pooling.base(profile).replace(obj_size=int(s), pool=h, lr=lr[h], device=device)
             for s in sizes.split(",") for h in heads.split(",")]
    for c in cells:
        tensors(c)  # the scenes are generated (and cached) before any clock starts
    fused.run([cells[0].replace(seed=s, epochs=1) for s in range(seeds)])  # warm-up: first-call allocations
    rows = []
    for name, kw in SETTINGS.items():
        for c in cells:
            cfgs = [c.replace(seed=s, **kw) for s in range(seeds)]
            rows += [dict(setting=name, size=c.obj_size, pool=c.pool, **m) for m in fused.run(cfgs)]
    runs = pd.DataFrame(rows)
    seconds = runs.groupby("setting")["seconds"].sum()  # training time: each member's row holds its share
    s = R.summarize(runs, ["setting", "size", "pool"]).set_index(["setting", "size", "pool"])
    base = s.loc["fp32"]
    lines, verdicts = [], {}
    for name in SETTINGS:
        v = s.loc[name]
        overlap = (v["lo"] <= base["hi"]) & (base["lo"] <= v["hi"])
        verdicts[name] = (seconds[name] / seconds["fp32"], int(overlap.sum()), len(overlap))
        lines.append(f"| {name} | {seconds[name]:.1f} | {seconds[name] / seconds['fp32']:.2f}x | "
                     + " | ".join(R.fmt(r["mean"], r["ci"], 3) for _, r in v.iterrows())
                     + f" | {int(overlap.sum())} of {len(overlap)} |")
    keep = [n for n, (ratio, ok, n_cells) in verdicts.items() if n != "fp32" and ratio < 1 and ok == n_cells]
    best = min(keep, key=lambda n: verdicts[n][0]) if keep else "fp32"
    cols = [f"{size} px {pool}" for size, pool in base.index]
    text = "\n".join([
        "# Benchmark: bf16 autocast and channels_last against fp32", "",
        f"**Result:** on {device_name(device)}, training time relative to fp32: "
        + ", ".join(f"{n} {verdicts[n][0]:.2f}x" for n in SETTINGS if n != "fp32")
        + "; held-out accuracy intervals overlap fp32's in "
        + ", ".join(f"{verdicts[n][1]} of {verdicts[n][2]} cells ({n})" for n in SETTINGS if n != "fp32")
        + "; faster than fp32 with overlapping intervals in every cell: " + (", ".join(keep) or "none")
        + (f" (fastest: {best})" if keep else "") + ".", "",
        *R.benchmark_provenance(f"python benchmarks/precision.py --device {device} --profile {profile} "
                                f"--sizes {sizes} --heads {heads}"),
        f"- work: the pooling {profile} geometry ({pooling.PROFILES[profile]['canvas']} px scenes, "
        f"{pooling.PROFILES[profile]['epochs']} epochs), {len(cells)} cells of {seeds} seeds each fused into one "
        "model, per setting; seconds are training time (fit), summed over the cells; scoring is fp32 in every setting",
        "", "| setting | seconds | time vs fp32 | " + " | ".join(cols) + " | intervals overlap fp32's |",
        "|---" * (len(cols) + 4) + "|", *lines, ""])
    R.write_benchmark(text, Path(out or f"results/benchmarks/precision_{device}.md"))

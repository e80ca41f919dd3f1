"""Claim C5: stride-2 convolution, max pool and average pool all shrink the activations; which one matters?

    python -m experiments.downsampling --profile full      # = cnn-exp run downsampling --profile full
"""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from cnn_experiments import models
from cnn_experiments import report as R
from cnn_experiments.train import Config, build_model

TITLE = "downsampling: the body's way down"
CLAIM = ("C5: a stride-2 convolution, a stride-1 convolution + 2x2 max pool and a stride-1 convolution + 2x2 "
         "average pool all halve the map; which one is used changes accuracy and cost.")
PROFILES = {"quick": {"seeds": 2}, "full": {"seeds": 5}}
TASKS = {  # name -> the run both ways down share; the way down is the only scientific parameter
    "MNIST digits": Config(data="mnist", arch="simple_cnn", epochs=5, lr=0.1, bs=64),
    "scenes, 16 px object in 64 px": Config(data="scenes", arch="pooled_cnn", canvas=64, channels=(8, 16, 32, 64),
                                            obj_size=16, n_scenes=3000, epochs=5, lr=1e-2, pool="avg"),
}


def grid(profile: str, runs=None) -> list[Config]:
    return [cfg.replace(down=d) for cfg in TASKS.values() for d in models.DOWNS]


def task_of(row) -> str:
    return "MNIST digits" if row["data"] == "mnist" else "scenes, 16 px object in 64 px"


def cost(cfg: Config) -> tuple[int, int]:
    "Parameters and multiply-accumulates per image of the config's model."
    n_out = 10 if cfg.data == "mnist" else 2
    side = 28 if cfg.data == "mnist" else cfg.canvas
    m = build_model(cfg, n_out)
    return models.n_params(m), models.macs(m, (1, side, side))


def verdict(s: pd.DataFrame) -> list[str]:
    "Per task: which ways down are resolved apart by their 95% intervals."
    lines = []
    for task, g in s.groupby("task", sort=False):
        g = g.sort_values("mean", ascending=False)
        best, rest = g.iloc[0], g.iloc[1:]
        apart = [r["down"] for _, r in rest.iterrows() if best["lo"] > r["hi"]]
        lines.append(f"{task}: best {best['down']} {R.fmt(best['mean'], best['ci'], 3)}; "
                     + (f"resolved above {', '.join(apart)}" if apart else "not resolved from the others")
                     + " (non-overlapping 95% intervals)")
    return lines


def report(runs: pd.DataFrame, out: Path, profile: str) -> tuple[str, str]:
    runs = runs.assign(task=[task_of(r) for _, r in runs.iterrows()],
                       s_per_epoch=runs["seconds"] / runs["epochs"])
    s = R.summarize(runs, ["task", "down"])
    secs = R.summarize(runs, ["task", "down"], "s_per_epoch")
    costs = {(t, d): cost(TASKS[t].replace(down=d)) for t in TASKS for d in models.DOWNS}
    table = pd.DataFrame({
        "task": s["task"], "way down": s["down"],
        "held-out accuracy": [R.fmt(a, b, 3) for a, b in zip(s["mean"], s["ci"])],
        "parameters": [f"{costs[(t, d)][0]:,}" for t, d in zip(s["task"], s["down"])],
        "MACs per image": [f"{costs[(t, d)][1]:,}" for t, d in zip(s["task"], s["down"])],
        "s per epoch (2 threads)": [f"{a:.2f}" for a in secs["mean"]], "n": s["n"]})
    lines = verdict(s)
    body = "\n".join([
        "Same channels and final map size for all three; the pooled ways run each conv at stride 1, so they "
        "cost more arithmetic for the same parameters. Scenes: the pooling study's quick geometry, avg head.", "",
        table.to_markdown(index=False), "", "## Verdict", "", *[f"- {x}" for x in lines], "",
        "Seconds per epoch are from this run's machine, shared with other work: read them as rough ratios."])
    return body, "; ".join(lines) + "."


if __name__ == "__main__":
    from cnn_experiments.cli import main
    sys.exit(main(["run", "downsampling", *sys.argv[1:]]))

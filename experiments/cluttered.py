"""Cluttered MNIST beside the RAM paper (Mnih et al. 2014, Table 2): ten-way, a 28 px digit among distractors.

    cnn-exp run cluttered --profile medium      # = python -m experiments.cluttered --profile medium

A benchmark for the pooling study's heads: which digit is in a 60x60 scene with 4 distractors, or a 100x100 one
with 8. The body's four stride-2 stages see 33 px from each cell of the final map: a whole digit at both sizes.
The scenes come from the 5,000 embedded digits (4,000 to train), not the paper's 60,000: the comparison with the
paper is of orders of magnitude, not a replication.
"""
from __future__ import annotations

import sys

import pandas as pd

from cnn_experiments.models.cnns import receptive_field
from cnn_experiments.reports import report as R
from cnn_experiments.runs.config import Config
from cnn_experiments.statistics.stats import Comparison
from cnn_experiments.studies.experiment import Experiment
from cnn_experiments.sweeps import search as S

TITLE = "cluttered: ten-way cluttered MNIST beside the RAM paper"
CLAIM = ("Benchmark: the pooling heads on the RAM paper's cluttered MNIST (60x60 with 4 distractors, 100x100 with "
         "8), test error beside the paper's 2-layer CNN and RAM.")
BENCHMARKS = {  # name -> canvas, distractors, the paper's test error in %
    "60x60, 4 distractors": dict(canvas=60, num_dist=4, paper={"CNN, 2 layers": 7.83, "RAM": 5.23}),
    "100x100, 8 distractors": dict(canvas=100, num_dist=8, paper={"CNN, 2 layers": 16.51, "RAM": 10.83}),
}
CHANNELS = (16, 32, 64, 64)  # four stride-2 stages: each cell of the final map sees 33 px
HEADS = ("avg", "max", "concat")
PROFILES = {
    "quick": dict(seeds=2, n_scenes=8000, epochs=5, lrs=(1e-2,)),
    "medium": dict(seeds=5, n_scenes=16000, epochs=8, lrs=(3e-3, 1e-2, 3e-2)),
    "full": dict(seeds=5, n_scenes=40000, epochs=15, lrs=(3e-3, 1e-2, 3e-2)),
}
CAVEAT = "scenes from the embedded 5,000 digits, not the paper's 60,000"


def cells(profile: str) -> list[Config]:
    p = PROFILES[profile]
    return [Config(data="scenes", mode="tenway", arch="pooled_cnn", canvas=b["canvas"], num_dist=b["num_dist"],
                   obj_size=28, channels=CHANNELS, pool=h, n_scenes=p["n_scenes"], epochs=p["epochs"], bs=64)
            for b in BENCHMARKS.values() for h in HEADS]


def search(profile: str, runs: pd.DataFrame | None = None) -> list[Config]:
    return S.search_runs(cells(profile), PROFILES[profile]["lrs"])


def grid(profile: str, runs=None) -> list[Config]:
    return S.choose(cells(profile), PROFILES[profile]["lrs"], runs)


def label(runs: pd.DataFrame, profile: str) -> pd.DataFrame:
    runs = runs[runs["split"] == "heldout"]
    name = {b["canvas"]: n for n, b in BENCHMARKS.items()}
    return runs.assign(benchmark=runs["canvas"].map(name), error=100 * (1 - runs["accuracy"]))


def comparisons(profile: str) -> list[Comparison]:
    "Does max (or concat) pooling find the digit among distractors better than average pooling? By seed."
    return [Comparison(f"{h} - avg, accuracy, {b}", {"benchmark": b, "pool": h}, {"benchmark": b, "pool": "avg"},
                       margin=0.005) for b in BENCHMARKS for h in ("max", "concat")]


def report(ctx) -> tuple[str, str]:
    p, runs = PROFILES[ctx.profile], ctx.runs
    s = R.summarize(runs, ["benchmark", "pool"], "error")
    word, verdict = R.verdict_section(ctx.table, "max and concat above avg")
    rows = []
    for b, spec in BENCHMARKS.items():
        rows += [{"benchmark": b, "model": f"{m} (Mnih et al. 2014, Table 2)", "test error %": f"{e}"}
                 for m, e in spec["paper"].items()]
        g = s[s["benchmark"] == b]
        rows += [{"benchmark": b, "model": f"ours: pooled_cnn + {r.pool} head (n={r.n})",
                  "test error %": R.fmt(r.mean, r.ci, 2, int(r.diverged), r.lo, r.hi)} for r in g.itertuples()]
    body = "\n".join([
        f"Data: ten-way scenes, a 28 px digit among 8x8 fragments of other digits; {p['n_scenes']} training scenes "
        f"from the 4,000 training digits, {p['n_scenes'] // 4} test scenes from the 1,000 held-out digits: {CAVEAT} "
        f"(15x fewer training digits). Body: stride-2 Conv-BN-ReLU stages {CHANNELS}; each cell of the final map "
        f"sees {receptive_field(len(CHANNELS))} px. fit_one_cycle({p['epochs']}), bs 64.", "",
        f"{R.CAVEAT} {CAVEAT}: the comparison with the paper is of orders of magnitude, not a replication.", "",
        pd.DataFrame(rows).to_markdown(index=False), "", ctx.figure(figure(s, word), f"{ctx.profile}_errors.png"), "",
        *verdict, "", "## Learning rate", "",
        S.section(cells(ctx.profile), p["lrs"], ctx.store.read().rows, lambda c: f"{c.canvas} px, {c.pool}",
                  "Searched per benchmark and head on the search split (seed 0):")])
    best = {b: s[s["benchmark"] == b].sort_values("mean").iloc[0] for b in BENCHMARKS}
    finding = "; ".join(f"{b}: best {r['pool']} head {R.cells(r.to_frame().T, 2)[0]}% test error (n={r['n']}; "
                        f"paper: CNN {BENCHMARKS[b]['paper']['CNN, 2 layers']}%, RAM {BENCHMARKS[b]['paper']['RAM']}%)"
                        for b, r in best.items()) + f"; {CAVEAT}; max and concat above avg: {word}."
    return body, finding


def against(g: pd.DataFrame, err: float) -> str:
    "Where every head's 95% interval lies against one of the paper's errors, in words."
    return ("every head below" if (g["hi"] < err).all() else "every head above" if (g["lo"] > err).all()
            else "the heads not all clear of")


def figure(s: pd.DataFrame, word: str = ""):
    """Test error per head and benchmark beside the paper's CNN and RAM; the title says where the heads lie against
    the paper's models, and the declared comparisons' verdict (`word`)."""
    import matplotlib.pyplot as plt
    fig, axs = plt.subplots(1, len(BENCHMARKS), figsize=(5 * len(BENCHMARKS), 4.6), squeeze=False,
                            layout="constrained")
    said = []
    for ax, (b, spec) in zip(axs[0], BENCHMARKS.items()):
        g = s[s["benchmark"] == b]
        ax.errorbar(g["pool"], g["mean"], yerr=[(g["mean"] - g["lo"]).fillna(0), (g["hi"] - g["mean"]).fillna(0)],
                    fmt="o", capsize=4, label="ours (mean over seeds, 95% t-interval)")
        for (model, err), ls in zip(spec["paper"].items(), ("--", ":")):
            ax.axhline(err, color="grey", ls=ls, label=f"{model}, the paper")
        ax.set_ylim(0, 1.1 * max([*spec["paper"].values(), *g["hi"].fillna(0)]))
        ax.set_title(b), ax.set_xlabel("pooling head"), ax.set_ylabel("test error (% of test scenes)")
        if len(g):
            said.append(f"{b}: " + ", ".join(f"{against(g, err)} the paper's {model.split(',')[0]}"
                                             for model, err in spec["paper"].items()))
    handles, labels = axs[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(labels), fontsize=8, frameon=False)
    fig.suptitle("\n".join(said) + (f"\nmax and concat against avg: {word}" if word else "")
                 + f" ({CAVEAT})", fontsize=10)
    return fig


EXPERIMENT = Experiment(name="cluttered", title=TITLE, claim=CLAIM, profiles=PROFILES, grid=grid, report=report,
                        comparisons=comparisons, search=search, label=label)

if __name__ == "__main__":
    from cnn_experiments.cli import main
    sys.exit(main(["run", "cluttered", *sys.argv[1:]]))

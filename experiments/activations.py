"""Claim C8: the choice of non-linearity matters little, as long as there is one.

    cnn-exp run activations --profile full      # = python -m experiments.activations --profile full

Two series of fastbook's simple_cnn (5 epochs of 1cycle): with batchnorm, which rescues a poor non-linearity
(the lenient test), and without, where the choice may matter. Each activation gets its own learning rate from
the same declared search. "Matters little" is an equivalence test (TOST) against ReLU within a declared margin.

The `confirm` profile is the full pilot's confirmatory study, declared before its runs: the same family (each
non-linearity equivalent to ReLU within ±0.01 by a two-sided TOST, an equivalence test rather than
non-inferiority, since "works fine" also says a non-linearity is no better to the point of mattering; identity
below ReLU), in both series, at 25 fresh seeds (1000 on: the power rule's count, at least 90% for every row
with the pilot's per-seed spread at Holm's first-step level over the 12), and a rate grid wider at both ends
(0.003 to 1), since without batchnorm sigmoid stayed at chance at every rate the pilot searched. The seeds vary
initialisation and batch order; every run trains on all 4,000 embedded training digits, so there is no
subset for a seed to draw.
"""
from __future__ import annotations

import sys

import pandas as pd

from cnn_experiments import report as R
from cnn_experiments import search as S
from cnn_experiments.config import ACTIVATIONS, Config
from cnn_experiments.experiment import Experiment
from cnn_experiments.stats import Comparison

TITLE = "activations: does the non-linearity matter?"
CLAIM = "C8: the activation function is not so important; any non-linearity works fine, but there must be one."
PROFILES = {"quick": dict(seeds=2, lrs=(0.1,)), "full": dict(seeds=5, lrs=(0.01, 0.03, 0.1, 0.3)),
            # the full pilot's confirmatory study (module docstring): minutes on 2 CPU cores
            # amended before any run at 0.001: identity without batchnorm chose 0.003, the declared grid's bottom
            "confirm": dict(seeds=25, first_seed=1000, lrs=(0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0))}
MARGIN = 0.01  # declared: within 1 point of held-out accuracy of ReLU is "about as well"
SERIES = {"with batchnorm": True, "without batchnorm": False}
BASE = Config(data="mnist", arch="simple_cnn", schedule="one_cycle", epochs=5, bs=64)


def cells() -> list[Config]:
    return [BASE.replace(bn=bn, act=a) for bn in SERIES.values() for a in ACTIVATIONS]


def search(profile: str, runs: pd.DataFrame | None = None) -> list[Config]:
    return S.search_runs(cells(), PROFILES[profile]["lrs"], EXPERIMENT.seed_list(profile).start)


def grid(profile: str, runs=None) -> list[Config]:
    return S.choose(cells(), PROFILES[profile]["lrs"], runs, seed=EXPERIMENT.seed_list(profile).start)


def label(runs: pd.DataFrame, profile: str) -> pd.DataFrame:
    bn = runs["bn"].astype(str).str.lower() == "true"
    return runs.assign(series=[name for b in bn for name, v in SERIES.items() if v == b],
                       arm=runs["split"].map({"search": "search", "heldout": "main"}))


def comparisons(profile: str) -> list[Comparison]:
    "Every non-linearity equivalent to ReLU within the margin; none (identity) below ReLU; in both series."
    out = []
    for series in SERIES:
        at = lambda act, s=series: {"arm": "main", "series": s, "act": act}
        out += [Comparison(f"{a} - relu, {series}", at(a), at("relu"), expect="equivalent", margin=MARGIN,
                           heldout_items=True) for a in ACTIVATIONS if a not in ("relu", "identity")]
        out.append(Comparison(f"identity - relu, {series}", at("identity"), at("relu"), expect="less", margin=MARGIN,
                              heldout_items=True))
    return out


def report(ctx) -> tuple[str, str]:
    import matplotlib.pyplot as plt
    runs = ctx.runs[ctx.runs["arm"] == "main"]
    s = R.summarize(runs, ["series", "act"])
    word, verdict = R.verdict_section(ctx.table, "C8")
    fig, axs = plt.subplots(1, 2, figsize=(11, 3.8), sharey=False)
    for ax, (series, g) in zip(axs, s.groupby("series", sort=False)):
        g = g.sort_values("mean", ascending=False)
        err = [(g["mean"] - g["lo"]).fillna(0), (g["hi"] - g["mean"]).fillna(0)]
        ax.errorbar(g["act"], g["mean"], yerr=err, fmt="o", capsize=4)
        relu = float(g.loc[g["act"] == "relu", "mean"].iloc[0]) if (g["act"] == "relu").any() else None
        if relu is not None:
            ax.axhspan(relu - MARGIN, relu + MARGIN, color="grey", alpha=0.25, label=f"relu ± {MARGIN:g} (the margin)")
            ax.legend(fontsize=8, loc="lower left")
        low = max(0.0, float(g["lo"].min()) - 0.02)
        ax.set_ylim(low, 1.0)
        ax.set_title(series), ax.tick_params(axis="x", rotation=30)
        ax.set_ylabel(f"held-out accuracy (mean, 95% CI)\naxis from {low:.2f}")
    fig.suptitle(f"simple_cnn, each activation at its searched rate, against relu's margin: C8 {word}", y=1.03)
    t = s.assign(cell=R.cells(s, 4)).pivot(
        index="act", columns="series", values="cell").reindex(list(ACTIVATIONS))[list(SERIES)]
    body = "\n".join([
        "Data: embedded MNIST (4,000 training / 1,000 held-out). Model: fastbook's simple_cnn, the activation in "
        "every conv stage; fit_one_cycle(5), bs 64. With batchnorm, a poor non-linearity is rescued by the "
        "normalisation: the lenient test; without it, the choice may matter.", "",
        "## Held-out accuracy (mean ± 95% CI)", "", t.to_markdown(), "",
        ctx.figure(fig, f"{ctx.profile}_activations.png"), "", *verdict, "",
        "## Learning rate, searched per activation and series", "",
        S.section(cells(), PROFILES[ctx.profile]["lrs"], ctx.runs,
                  lambda c: f"{c.act}, {'with' if c.bn else 'without'} batchnorm",
                  "Search-split accuracy (four fifths of the training digits trained on, one fifth scored; seed "
                  f"{EXPERIMENT.seed_list(ctx.profile).start}):", seed=EXPERIMENT.seed_list(ctx.profile).start)])
    table = ctx.table
    if ctx.profile == "confirm" and not ctx.partial:
        answers, rec = found(table)
        body = "\n".join(["## What it found", "", *[f"- {x}" for x in answers], "", f"**Recommendation:** {rec}.",
                          "", body, "", "## Power", "",
                          ctx.power_section(table, "full", comparisons("confirm"), PROFILES["confirm"]["seeds"])])
    eq = table[table["expect"] == "equivalent"]
    finding = (f"non-linearities equivalent to ReLU within ±{MARGIN}: {int((eq['outcome'] == 'equivalent').sum())} "
               f"of {len(eq)}; identity below ReLU: "
               + ", ".join(f"{r.comparison.split(', ')[1]} {r.outcome}"
                           for r in table[table["expect"] == "less"].itertuples())
               + f" (n={int(runs.groupby('cell_id')['seed'].nunique().min())}): C8 {word}.")
    return body, finding


def found(table: pd.DataFrame) -> tuple[list[str], str]:
    "Per series, which non-linearities are equivalent to ReLU and whether none (identity) is worse; the advice."
    out, fine = [], {}
    for series in SERIES:
        rows = table[table["comparison"].str.endswith(f", {series}")]
        eq = [r.comparison.split(" - ")[0] for r in rows.itertuples() if r.outcome == "equivalent"]
        other = [f"{r.comparison.split(' - ')[0]} {r.effect:+.3f} ({r.outcome})" for r in rows.itertuples()
                 if r.expect == "equivalent" and r.outcome != "equivalent"]
        ident = rows[rows["expect"] == "less"].iloc[0]
        fine[series] = eq
        out.append(f"**{series}**: equivalent to ReLU within ±{MARGIN:g}: {', '.join(eq) or 'none'}"
                   + (f"; not shown equivalent: {', '.join(other)}" if other else "")
                   + f"; no non-linearity (identity) - ReLU {ident.effect:+.3f} [{ident.ci_lo:+.3f}, "
                     f"{ident.ci_hi:+.3f}] ({ident.outcome}).")
    both = [a for a in fine["with batchnorm"] if a in fine["without batchnorm"]]
    rec = ("choose the non-linearity on cost or habit among relu" + "".join(f", {a}" for a in both)
           + " (each equivalent to ReLU with and without batchnorm)" if both else
           "keep ReLU: no other non-linearity was shown equivalent to it in both series")
    dropped = [a for a in fine["with batchnorm"] if a not in both]
    if dropped:
        rec += f"; {', '.join(dropped)} only with batchnorm"
    return out, rec


EXPERIMENT = Experiment(name="activations", title=TITLE, claim=CLAIM, profiles=PROFILES, grid=grid, report=report,
                        comparisons=comparisons, search=search, label=label)

if __name__ == "__main__":
    from cnn_experiments.cli import main
    sys.exit(main(["run", "activations", *sys.argv[1:]]))

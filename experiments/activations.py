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

from cnn_experiments.reports import report as R
from cnn_experiments.runs.config import ACTIVATIONS, Config
from cnn_experiments.statistics.stats import Comparison
from cnn_experiments.studies.experiment import Experiment
from cnn_experiments.sweeps import search as S

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


FAR = 5  # a difference from ReLU beyond this many margins is drawn off the scale, its value beside it


def figure(table: pd.DataFrame, word: str):
    """Per series, each non-linearity minus ReLU in held-out accuracy with the verdict table's 95% interval, the
    margin as a band and a zero line, each point's outcome under its name; a difference far beyond the margin is
    drawn off the scale (censored), its value beside it. The title says what each series found."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    fig, axs = plt.subplots(1, len(SERIES), figsize=(12, 4.4))
    said, far = [], False
    for ax, series in zip(axs, SERIES):
        rows = table[table["comparison"].str.endswith(f", {series}")]
        acts = [r.split(" - ")[0] for r in rows["comparison"]]
        x = range(len(rows))
        far |= bool((rows["effect"].abs() > FAR * MARGIN).any())
        ax.axhspan(-MARGIN, MARGIN, color="grey", alpha=0.25)
        ax.axhline(0, color="black", lw=1)
        R.zoomed_errorbar(ax, x, rows["effect"], rows["ci_lo"], rows["ci_hi"], rows["effect"].abs() <= FAR * MARGIN,
                          "C0", keep=(-MARGIN, MARGIN), digits=3, ls="none")
        ax.set_xticks(list(x), [f"{a}\n{o}" for a, o in zip(acts, rows["outcome"])], fontsize=8)
        ax.set_title(series)
        ax.set_ylabel("held-out accuracy, minus ReLU\n(fraction of 1,000 digits; 95% CI)")
        eq = rows[(rows["expect"] == "equivalent") & (rows["outcome"] == "equivalent")]
        ident = rows[rows["expect"] == "less"]
        said.append(f"{series}: {len(eq)} of {int((rows['expect'] == 'equivalent').sum())} equivalent"
                    + "".join(f"; identity below ReLU: {r.outcome}" for r in ident.itertuples()))
    handles = [Line2D([], [], color="grey", alpha=0.5, lw=8, label=f"ReLU ± {MARGIN:g} (the margin)")] + (
        [Line2D([], [], color="C0", marker="v", mfc="none", ls="none",
                label=f"off the scale: beyond ±{FAR * MARGIN:g} (its value beside it)")] if far else [])
    fig.legend(handles=handles, loc="lower center", ncol=2, fontsize=8, frameon=False, bbox_to_anchor=(0.5, -0.06))
    fig.suptitle(f"Which non-linearities match ReLU within ±{MARGIN:g}? " + "\n".join(said) + f"\n(simple_cnn, each "
                 f"activation at its searched rate: C8 {word})", y=1.04)
    fig.tight_layout()
    return fig


def report(ctx) -> tuple[str, str]:
    runs = ctx.runs[ctx.runs["arm"] == "main"]
    s = R.summarize(runs, ["series", "act"])
    word, verdict = R.verdict_section(ctx.table, "C8")
    fig = figure(ctx.table, word)
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

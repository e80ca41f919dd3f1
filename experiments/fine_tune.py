"""Claim C4: a pretrained network fine-tuned with `Learner.fine_tune` beats training from scratch, most with few labels.

    cnn-exp run fine_tune --profile medium       # = python -m experiments.fine_tune --profile medium
    cnn-exp run fine_tune --data bears           # fastbook's bear classifier on your own photos (own_images/)

Tested on grey digits, transfer from ImageNet: EfficientNet-Lite0 with real ImageNet weights, from 1 to 50
labelled digits per class. Methods: fastai's `fine_tune` as it is; the same with the body's batchnorm statistics
kept as pretrained (tiny batches re-estimate them badly); the head alone on the frozen body; the same architecture
from random init; fastbook's simple_cnn from scratch. Every method gets its own learning rate from the declared
search (the search split of the training digits), and every run takes about 80 optimiser steps, of which
fine_tune spends at least 8 on the head alone.

The `confirm` profile is the medium pilot's confirmatory study, declared before its runs, on the protocol the
pilot recommends: fine_tune with the body's ImageNet batchnorm statistics kept, against both scratch baselines,
at the label counts where the pilot's differences were within a few points (1, 5 and 20 per class), at 128 px.
20 fresh seeds (1000 on), each drawing its own labelled digits, paired by seed (both methods see one seed's
digits); margin 0.05, the power rule's count with the pilot's per-seed spread. Each method and size keeps the
rate chosen on the search split (seed 0's fixed digits, as in the pilot), from grids a step higher than the
pilot's, where its choices sat at the top; a choice at either edge of its grid grows that grid a step past it
(up to two steps) until the choice is interior.
"""
from __future__ import annotations

import math
import sys

import pandas as pd

from cnn_experiments.models.pretrained import OFFLINE
from cnn_experiments.reports import report as R
from cnn_experiments.runs.config import Config
from cnn_experiments.statistics import stats
from cnn_experiments.statistics.stats import Comparison
from cnn_experiments.studies.experiment import Experiment
from cnn_experiments.sweeps import search as S

TITLE = "fine_tune: does fine-tuning a pretrained body beat training from scratch, most with few labels?"
CLAIM = ("C4: a pretrained network fine-tuned with `Learner.fine_tune` beats training from scratch, most with "
         "few labels.")
PROFILES = {
    # minutes on a CPU: 64 px inputs (a 2x2 final map), one declared rate per method
    "quick": dict(seeds=2, per_class=(1, 5, 20, 50), px=64, search=False),
    # the study on a CPU: 128 px (EfficientNet's 32x downsampling leaves a 4x4 map), every method's rate searched
    "medium": dict(seeds=5, per_class=(1, 5, 20, 50), px=128, search=True),
    # fastbook's 224 px (a GPU's work)
    "full": dict(seeds=5, per_class=(1, 5, 20, 50), px=224, search=True),
    # the medium pilot's confirmatory study (module docstring): hours on 2 CPU cores (120 EfficientNet runs)
    "confirm": dict(seeds=20, first_seed=1000, per_class=(1, 5, 20), px=128, search=True, vary_data=True,
                    methods=("fine_tune, BN statistics kept", "same arch, random init", "simple_cnn from scratch"),
                    wider=True, grow=2),
}
STEPS, BS, FROZEN_STEPS = 80, 32, 8  # optimiser steps a run aims for; batch size; fine_tune's head-alone steps
FT, KEPT, PROBE, RANDOM, SCRATCH = ("fine_tune", "fine_tune, BN statistics kept", "head only, body frozen",
                                    "same arch, random init", "simple_cnn from scratch")
METHODS = {  # label -> (the config fields that make the method, its searched rates; the middle one if not searched)
    FT: (dict(arch=OFFLINE, pretrained=True, schedule="fine_tune", p=0.5), (1e-3, 3e-3, 1e-2)),
    KEPT: (dict(arch=OFFLINE, pretrained=True, schedule="fine_tune_bn_kept", p=0.5), (1e-3, 3e-3, 1e-2)),
    PROBE: (dict(arch=OFFLINE, pretrained=True, schedule="frozen", p=0.5), (3e-3, 1e-2, 3e-2)),
    RANDOM: (dict(arch=OFFLINE, pretrained=False, schedule="one_cycle", p=0.5), (3e-3, 1e-2, 3e-2)),
    SCRATCH: (dict(arch="simple_cnn", schedule="one_cycle"), (3e-3, 1e-2, 3e-2)),
}
BASELINES = (RANDOM, SCRATCH)
WIDER = {KEPT: (1e-3, 3e-3, 1e-2, 3e-2), RANDOM: (3e-3, 1e-2, 3e-2, 0.1), SCRATCH: (3e-3, 1e-2, 3e-2, 0.1)}


def methods(profile: str) -> tuple[str, ...]:
    return PROFILES[profile].get("methods", tuple(METHODS))


def schedule(n: int) -> tuple[int, int, int]:
    "Batch size, epochs and fine_tune's frozen epochs for `n` labelled digits: about STEPS steps in all."
    bs = min(BS, n)
    per_epoch = n // bs
    epochs = max(3, math.ceil(STEPS / per_epoch))
    return bs, epochs, min(epochs - 1, max(1, math.ceil(FROZEN_STEPS / per_epoch)))


def method_cells(profile: str, method: str) -> list[Config]:
    p = PROFILES[profile]
    fields = METHODS[method][0]
    out = []
    for k in p["per_class"]:
        bs, epochs, frozen = schedule(10 * k)
        size = p["px"] if fields["arch"] == OFFLINE else 0  # simple_cnn is built for 28 px, 1 channel
        freeze = dict(freeze_epochs=frozen) if fields["schedule"].startswith("fine_tune") else {}
        out.append(Config(data="mnist", n_train=10 * k, bs=bs, epochs=epochs, size=size, **freeze, **fields))
    return out


def rates(profile: str, method: str) -> tuple[float, ...]:
    lrs = WIDER[method] if PROFILES[profile].get("wider") else METHODS[method][1]
    return lrs if PROFILES[profile]["search"] else (lrs[1],)


def grow(profile: str) -> int:
    "Steps a grid grows past an edge choice (cnn_experiments/sweeps/search.py)."
    return PROFILES[profile].get("grow", 0)


def search(profile: str, runs: pd.DataFrame | None = None) -> list[Config]:
    "Seed 0's fixed labelled digits on the search split, as in the pilot (its runs are shared where they match)."
    return [c for m in methods(profile)
            for c in S.search_runs(method_cells(profile, m), rates(profile, m), runs=runs, grow=grow(profile))]


def grid(profile: str, runs=None) -> list[Config]:
    "Each method and size at its chosen rate; (vary_data) each seed then draws its own labelled digits."
    draw = PROFILES[profile].get("vary_data", False)
    return [c.replace(vary_data=draw) for m in methods(profile)
            for c in S.choose(method_cells(profile, m), rates(profile, m), runs, grow=grow(profile))]


def label(runs: pd.DataFrame, profile: str) -> pd.DataFrame:
    "`method` and `per_class` (labelled digits per class) per run; the search runs left out."
    runs = runs[runs["split"] == "heldout"]
    ids = {}
    for m in METHODS:
        for c in method_cells(profile, m):
            for lr in {float(x) for x in runs["lr"].unique()}:  # whichever rate its grid (grown or not) chose
                for draw in (False, True):
                    ids[c.replace(lr=lr, vary_data=draw).cell_id] = m
    return runs.assign(method=runs["cell_id"].map(ids), per_class=runs["n_train"] // 10)


def comparisons(profile: str) -> list[Comparison]:
    return confirmed() if profile == "confirm" else pilot(profile)


def confirmed() -> list[Comparison]:
    """The confirmatory family (module docstring): at 1, 5 and 20 per class, BN-kept fine_tune against each scratch
    baseline, paired by seed; and 'most with few labels' against the same architecture, 1 per class minus 20."""
    ks, at = PROFILES["confirm"]["per_class"], lambda m, k: {"method": m, "per_class": k}
    out = [Comparison(f"{KEPT} - {b}, {k} per class", at(KEPT, k), at(b, k), margin=0.05)
           for k in ks for b in BASELINES]
    out.append(Comparison(f"most with few labels: ({KEPT} - {RANDOM}) at {ks[0]} per class minus at {ks[-1]}",
                          at(KEPT, ks[0]), at(RANDOM, ks[0]), c=at(KEPT, ks[-1]), d=at(RANDOM, ks[-1]), margin=0.05))
    return out


def pilot(profile: str) -> list[Comparison]:
    """At every size, fine_tune against each scratch baseline (different models: unpaired); and 'most with few
    labels': fine_tune's margin over the same architecture at the fewest labels minus at the most (by seed)."""
    ks = PROFILES[profile]["per_class"]
    at = lambda m, k: {"method": m, "per_class": k}
    out = [Comparison(f"{FT} - {b}, {k} per class", at(FT, k), at(b, k), paired=False, margin=0.01)
           for k in ks for b in BASELINES]
    out.append(Comparison(f"most with few labels: ({FT} - {RANDOM}) at {ks[0]} per class minus at {ks[-1]}",
                          at(FT, ks[0]), at(RANDOM, ks[0]), c=at(FT, ks[-1]), d=at(RANDOM, ks[-1]), margin=0.01))
    return out


def diagnostics(profile: str) -> list[Comparison]:
    "The batchnorm fix against fastai's default at every size (the same weights, init and batches: by seed)."
    return [Comparison(f"{KEPT} - {FT}, {k} per class", {"method": KEPT, "per_class": k},
                       {"method": FT, "per_class": k}, margin=0.01) for k in PROFILES[profile]["per_class"]]


COLOURS = dict(zip(METHODS, ("C0", "C1", "C2", "C3", "C4")))  # one colour per method, in every figure of the study


def message(table: pd.DataFrame | None) -> str:
    "What the declared rows say of the tested method against both scratch baselines, per label count, in words."
    rows = table[~table["comparison"].str.contains("minus")] if table is not None else None
    if rows is None or rows.empty:
        return "No declared comparisons yet"
    method = rows["comparison"].iloc[0].split(" - ")[0]
    if (rows["outcome"] == "indicative").all():
        return f"{method} against the scratch baselines: too few seeds to say (numbers only)"
    k = rows["comparison"].str.extract(r", (\d+) per class$")[0].astype(int)
    by = rows.assign(k=k.values).groupby("k", sort=True)["outcome"]
    wins = [str(x) for x, o in by if (o == "supported").all()]
    losses = [str(x) for x, o in by if (o == "contradicted").any()]
    said = ([f"beats both scratch baselines at {', '.join(wins)} labels per class"] if wins else []) + (
        [f"loses to a scratch baseline at {', '.join(losses)} labels per class"] if losses else [])
    return f"{method} " + ("; ".join(said) if said else "differs from no scratch baseline resolvably")


def figure(s: pd.DataFrame, word: str, px: int, table: pd.DataFrame | None = None):
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    for method, g in s.groupby("method", sort=False):
        err = [(g["mean"] - g["lo"]).fillna(0), (g["hi"] - g["mean"]).fillna(0)]
        ax.errorbar(g["per_class"], g["mean"], yerr=err, marker="o", capsize=3, label=method, color=COLOURS[method],
                    lw=2 if method in (FT, KEPT) else 1)
    ks = sorted(s["per_class"].unique())
    ax.set_xscale("log"), ax.set_xticks(ks, [str(k) for k in ks]), ax.minorticks_off()
    ax.set_xlabel("labelled training digits per class (log scale)")
    ax.set_ylabel("held-out accuracy (fraction of 1,000 digits;\nmean over seeds, 95% t-interval)")
    ax.set_title(f"{message(table)}\n(EfficientNet-Lite0 at {px} px, ImageNet weights vs from scratch: C4 {word})",
                 fontsize=9)
    ax.legend(fontsize=8)
    return fig


def batchnorm_advice(diag: pd.DataFrame, per_class) -> str:
    "What the declared BN-kept vs default comparisons recommend, and at which label counts."
    def at(outcome):
        return ", ".join(str(k) for k, o in zip(per_class, diag["outcome"]) if o == outcome)
    if (diag["outcome"] == "indicative").all():
        return "none, from fewer than 5 seeds (numbers only)"
    if at("supported"):
        return (f"keep the pretrained batchnorm statistics (better than fastai's default at {at('supported')} labels "
                "per class)")
    if at("contradicted"):
        return f"fastai's default (better at {at('contradicted')} labels per class)"
    return "either: neither is shown better"


def report(ctx) -> tuple[str, str]:
    p = PROFILES[ctx.profile]
    runs = ctx.runs
    s = R.summarize(runs, ["per_class", "method"])
    ms = methods(ctx.profile)
    order = {m: i for i, m in enumerate(ms)}
    s = s.sort_values(["per_class", "method"], key=lambda c: c.map(order) if c.name == "method" else c)
    word, verdict = R.verdict_section(ctx.table, "C4")
    diag = ctx.compare(runs, diagnostics(ctx.profile)) if FT in ms else None
    t = R.pivot(s, "per_class", "method", columns=ms)
    t.index.name = "labels per class"
    searched = ctx.store.read().rows
    lr_tables = [S.table(method_cells(ctx.profile, m), rates(ctx.profile, m), searched,
                         lambda c, m=m: f"{m}, {c.n_train // 10} per class", grow=grow(ctx.profile)) for m in ms]
    grown = f", each grid grown a step past an edge choice (at most {grow(ctx.profile)})" if grow(ctx.profile) else ""
    sched = ", ".join(f"{k} per class: bs {schedule(10 * k)[0]} x {schedule(10 * k)[1]} epochs "
                      f"({schedule(10 * k)[2]} frozen)" for k in p["per_class"])
    advice = batchnorm_advice(diag, p["per_class"]) if diag is not None else ""
    drawn = "each seed's own draw" if p.get("vary_data") else "a fixed subset"
    body = "\n".join([
        f"Data: {drawn} of the embedded MNIST training digits with every class equally often; 1,000 "
        f"held-out digits. EfficientNet-Lite0 (timm, fastai's `create_head(ps=0.5)`) sees the digits at {p['px']} "
        f"px, grey repeated to 3 channels, ImageNet-normalised (a {p['px'] // 32}x{p['px'] // 32} final map); "
        "simple_cnn sees its native 28 px. The verdict is about this transfer: ImageNet features on grey "
        "digits.", "",
        "Methods: `fine_tune(epochs - f, base_lr, freeze_epochs=f)`: the head alone for f epochs (at least 8 steps), "
        "then every layer with discriminative rates (body base_lr/100), fastai's `train_bn` re-estimating the "
        "body's batchnorm statistics on the digits; the same with the body in eval mode, so its batchnorm "
        "statistics stay ImageNet's (its batchnorm weights still train); the head alone on the frozen body "
        "(`freeze()`, ImageNet statistics kept), `fit_one_cycle`; the same architecture from random init and "
        f"simple_cnn, `fit_one_cycle`. Schedule: {sched}.", "",
        "## Held-out accuracy (mean ± 95% CI)", "", t.to_markdown(), "",
        ctx.figure(figure(s, word, p["px"], ctx.table), f"{ctx.profile}_accuracy_vs_labels.png"), "", *verdict, "",
        *(["## The batchnorm fix: BN statistics kept against fastai's default", "", stats.markdown(diag), "",
           f"Recommended from these numbers: {advice}.", ""] if diag is not None else []),
        "## Learning rate per method and size", "",
        ("Searched on the search split (the labelled digits drawn from four fifths of the training digits, "
         f"scored on the other fifth; seed 0){grown}: search-split accuracy at each rate, and the rate chosen.\n\n"
         + "\n\n".join(t.to_markdown(index=False) for t in lr_tables)) if p["search"] else
        "One declared rate per method (the middle of its search grid), not searched: "
        + "; ".join(f"{m}: {rates(ctx.profile, m)[0]:g}" for m in ms) + "."])
    if ctx.profile == "confirm":
        if not ctx.partial:
            answers, rec = found(ctx.table)
            body = "\n".join(["## What it found", "", *[f"- {x}" for x in answers], "",
                              f"**Recommendation:** {rec}.", "", body, "", "## Power", "",
                              ctx.power_section(ctx.table, "medium", confirmed(), p["seeds"])])
            return body, f"C4 {word}: " + " ".join(a.replace("**", "") for a in answers) + f" Recommendation: {rec}."
        return body, f"C4 {word}: the confirmatory grid is not complete (numbers only)."
    finding = (f"grey digits, transfer from ImageNet at {p['px']} px: C4 {word} ("
               + "; ".join(f"{r.comparison.replace(FT + ' - ', 'vs ')} {R.signed(r.effect)}: {r.outcome}"
                           for r in ctx.table.itertuples() if "minus" not in r.comparison
                           and r.comparison.endswith((f" {p['per_class'][0]} per class",
                                                      f" {p['per_class'][-1]} per class")))
               + f"; most with few labels: {ctx.table['outcome'].iloc[-1]}).")
    return body, finding


def found(table: pd.DataFrame) -> tuple[list[str], str]:
    "Per label count, BN-kept fine_tune against each scratch baseline in words; the advice the tests support."
    out, wins = [], []
    for k in PROFILES["confirm"]["per_class"]:
        rows = table[table["comparison"].str.endswith(f", {k} per class") & ~table["comparison"].str.contains("minus")]
        out.append(f"**{k} per class**: " + "; ".join(
            f"vs {r.comparison.split(' - ')[1].rsplit(',', 1)[0]} {r.effect:+.3f} [{r.ci_lo:+.3f}, {r.ci_hi:+.3f}] "
            f"({r.outcome})" for r in rows.itertuples()) + ".")
        if (rows["outcome"] == "supported").all():
            wins.append(str(k))
    rec = (f"with {', '.join(wins)} labelled grey images per class, fine-tune the pretrained body and keep its "
           "ImageNet batchnorm statistics, rather than train from scratch" if wins else
           "no label count where BN-kept fine-tuning beat both scratch baselines: try a small CNN from scratch too")
    return out, rec


EXPERIMENT = Experiment(name="fine_tune", title=TITLE, claim=CLAIM, profiles=PROFILES, grid=grid, report=report,
                        comparisons=comparisons, search=search, label=label)

if __name__ == "__main__":
    from cnn_experiments.cli import main
    sys.exit(main(["run", "fine_tune", *sys.argv[1:]]))

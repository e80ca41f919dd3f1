"""Claim C7: more dropout, better generalisation but a worse fit to the training data.

    cnn-exp run dropout --profile full      # = python -m experiments.dropout --profile full

Overfitting must exist to be fought: 500 training digits, 30 epochs. Two series: head dropout (fastai's
`create_head(ps=p)`, p/2 on the hidden layer and p on the last) and spatial dropout (Dropout2d) after every body
stage. Each cell gets its own learning rate from the declared search. The trend over p is tested over the whole
series (per seed, Spearman's rank correlation of p with the loss, among the runs that learn), not at the best p.
Train loss is measured in eval mode on the whole training set, so dropout's noise is not in it.

The `confirm` profile is the full pilot's confirmatory study, declared before its runs. The pilot's rates were
searched per cell, and every p > 0 chose 0.03 where p = 0 chose 0.01: rate and dropout were confounded. Here one
rate serves every cell, chosen on the search split over all of them, from a grid a step wider at the top. The
seeds are fresh (1000 on) and each draws its own 500 training digits. The lesson's two halves, read so that a
U-shaped series can answer them:
1. "a larger dropout improves generalisation": some p > 0 beats none. The p is declared from the pilot: the body's
   lowest held-out loss (Dropout2d p = 0.25); for the head, whose pilot series had no p below none in held-out
   loss, fastai's default (create_head ps = 0.5). Held-out loss (< 0, margin 0.05) and accuracy (> 0, margin
   0.01), paired by seed.
2. "a smaller dropout fits the training data better": the largest p at which the pilot's runs learned fits worse
   than none: train loss (eval mode) at head p = 0.9 and body p = 0.5 above none's (margin 0.05).
Seeds: 30, the power rule's count (80% at each margin, Holm's first-step level over the six, with the pilot's
per-seed spread; the report states the planned and the achieved power).
"""
from __future__ import annotations

import sys

import pandas as pd
import torch
from scipy.stats import spearmanr

from cnn_experiments.reports import report as R
from cnn_experiments.runs.config import Config
from cnn_experiments.statistics import stats
from cnn_experiments.statistics.stats import Comparison
from cnn_experiments.studies.experiment import Experiment
from cnn_experiments.sweeps import search as S

TITLE = "dropout: does more dropout trade fit to the training data for generalisation?"
CLAIM = ("C7: a larger dropout will improve generalisation, but a smaller dropout will improve performance "
         "on the training data.")
PROFILES = {"quick": dict(seeds=2, lrs=(1e-2,)), "full": dict(seeds=5, lrs=(3e-3, 1e-2, 3e-2)),
            # the full pilot's confirmatory study (module docstring): minutes on 2 CPU cores
            # amended before any run at 0.3: the search chose 0.1, the declared grid's top; the grid goes a step on
            "confirm": dict(seeds=30, first_seed=1000, vary_data=True, lrs=(1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 0.3),
                            one_rate=True)}
HEAD_P, BODY_P = 0.5, 0.25  # declared: the p > 0 each series puts against none (module docstring)
HEAD_TOP, BODY_TOP = 0.9, 0.5  # declared: the largest p at which the pilot's runs learned, per series
PS = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9)
MODERATE = 0.5  # declared: the p compared with none (fastai's create_head default)
LEARNED = 0.5  # declared: a run learns when its held-out accuracy is above this (chance is 0.1)
BASE = Config(data="mnist", n_train=500, arch="fastai_head", channels=(8, 16, 32, 64), epochs=30, bs=64)
SERIES = {"head (create_head ps)": "p", "body (Dropout2d)": "p_body"}


def cells(profile: str = "full") -> list[Config]:
    base = BASE.replace(vary_data=PROFILES[profile].get("vary_data", False))
    return list(dict.fromkeys(base.replace(**{field: p}) for field in SERIES.values() for p in PS))


def search(profile: str, runs: pd.DataFrame | None = None) -> list[Config]:
    return S.search_runs(cells(profile), PROFILES[profile]["lrs"], EXPERIMENT.seed_list(profile).start)


def rate_group(profile: str):
    "Which cells share a rate: each its own, or (one_rate) all of them, so that the rate does not vary with p."
    return (lambda c: "every cell") if PROFILES[profile].get("one_rate") else None


def grid(profile: str, runs=None) -> list[Config]:
    return S.choose(cells(profile), PROFILES[profile]["lrs"], runs, rate_group(profile),
                    EXPERIMENT.seed_list(profile).start)


def label(runs: pd.DataFrame, profile: str) -> pd.DataFrame:
    "Each run once per series it belongs to (the no-dropout run belongs to both), with its p, gap and `learned`."
    runs = runs[runs["split"] == "heldout"]
    parts = []
    for name, field in SERIES.items():
        other = "p_body" if field == "p" else "p"
        parts.append(runs[runs[other] == 0].assign(series=name, dropout=lambda d, f=field: d[f]))
    out = pd.concat(parts, ignore_index=True)
    return out.assign(gap=out["valid_loss"] - out["train_loss"], learned=out["accuracy"] > LEARNED)


def trends(runs: pd.DataFrame) -> pd.DataFrame:
    "Per series, loss and seed: Spearman's correlation of p with the loss over the runs that learn (NaN below 3)."
    rows = []
    for (series, seed), g in runs.groupby(["series", "seed"]):
        g = g[g["learned"]]
        for metric in ("valid_loss", "train_loss"):
            rho = spearmanr(g["dropout"], g[metric]).statistic if g["dropout"].nunique() >= 3 else float("nan")
            rows.append(dict(series=series, seed=seed, trend=metric, rho=rho, points=len(g)))
    return pd.DataFrame(rows)


def comparisons(profile: str) -> list[Comparison]:
    return confirmed() if profile == "confirm" else pilot()


def confirmed() -> list[Comparison]:
    """The confirmatory family, declared before its runs (module docstring): per series, the declared p against
    none in held-out loss and accuracy, and the largest p against none in train loss; paired by seed."""
    out = []
    for s, p, top in zip(SERIES, (HEAD_P, BODY_P), (HEAD_TOP, BODY_TOP)):
        at, top_arm, none = dict(series=s, dropout=p), dict(series=s, dropout=top), dict(series=s, dropout=0.0)
        out += [Comparison(f"{s}: generalisation, p={p:g} - none, held-out loss", at, none, metric="valid_loss",
                           expect="less", margin=0.05),
                Comparison(f"{s}: generalisation, p={p:g} - none, held-out accuracy", at, none, margin=0.01,
                           heldout_items=True),
                Comparison(f"{s}: fit, p={top:g} - none, train loss (eval mode)", top_arm, none,
                           metric="train_loss", margin=0.05)]
    return out


def pilot() -> list[Comparison]:
    """Per series: held-out loss falls with p and train loss rises with p (the per-seed trend's rank correlation
    against 0, among runs that learn), and held-out loss at the declared moderate p below none (paired by seed)."""
    out = []
    for s in SERIES:
        out += [Comparison(f"{s}: held-out loss trend over p (Spearman rho)", dict(series=s, trend="valid_loss"), 0.0,
                           metric="rho", expect="less", margin=0.2, test="rank-trend"),
                Comparison(f"{s}: train loss trend over p (Spearman rho)", dict(series=s, trend="train_loss"), 0.0,
                           metric="rho", expect="greater", margin=0.2, test="rank-trend"),
                Comparison(f"{s}: held-out loss, p={MODERATE:g} - no dropout", dict(series=s, dropout=MODERATE),
                           dict(series=s, dropout=0.0), metric="valid_loss", expect="less", margin=0.02)]
    return out


def plainly(table: pd.DataFrame) -> list[str]:
    "What the data show, per series, in words computed from the outcomes."
    out = []
    for s in SERIES:
        rows = table[table["comparison"].str.startswith(s)].set_index("comparison")
        gen, fit, moderate = (rows.iloc[i] for i in range(3))
        words = {"supported": "yes", "contradicted": "the opposite", "equivalent": "no (within the margin)",
                 "inconclusive": "not resolved", "indicative": "too few seeds to say"}
        out.append(f"{s}: held-out loss falls as p grows: {words[gen['outcome']]} (rho {gen['effect']:+.2f}); "
                   f"train loss rises as p grows: {words[fit['outcome']]} (rho {fit['effect']:+.2f}); p="
                   f"{MODERATE:g} against none, held-out loss {moderate['effect']:+.3f} [{moderate['ci_lo']:+.3f}, "
                   f"{moderate['ci_hi']:+.3f}]: {moderate['outcome']}")
    return out


def described(by: dict, runs: pd.DataFrame) -> list[str]:
    "Per series, where the mean held-out loss is lowest and from which p no run learns: a description, not a test."
    out = []
    for s, m in by.items():
        loss = m["valid_loss"].set_index("dropout")["mean"]
        learns = runs[runs["series"] == s].groupby("dropout")["learned"].any()
        dead = [p for p in learns.index if not learns[p:].any()]
        out.append(f"{s}: the lowest mean held-out loss is at p={loss.idxmin():g} ({loss.min():.3f}, against "
                   f"{loss[0.0]:.3f} without dropout)"
                   + (f"; from p={dead[0]:g} no run learns" if dead else "; runs learn at every p"))
    return out


METRICS = {"train_loss": ("train loss (eval mode)", "nats"), "valid_loss": ("held-out loss", "nats"),
           "accuracy": ("held-out accuracy", "fraction of held-out digits")}
COLOURS = dict(zip(SERIES, ("C0", "C1")))  # one colour per series, in every figure of the study


def differences(runs: pd.DataFrame, series: str, metric: str) -> pd.DataFrame:
    """Per p > 0 of a series: `metric` at p minus without dropout, paired by seed (mean, 95% t-interval), and
    whether any of its runs learns."""
    g = runs[runs["series"] == series]
    wide = g.pivot_table(index="seed", columns="dropout", values=metric)
    learns = g.groupby("dropout")["learned"].any()
    rows = []
    for p in [p for p in wide.columns if p != 0.0 and 0.0 in wide.columns]:
        mean, lo, hi, n, _ = stats.interval((wide[p] - wide[0.0]).dropna())
        rows.append(dict(dropout=p, mean=mean, lo=lo, hi=hi, n=n, learns=bool(learns.get(p, False))))
    return pd.DataFrame(rows)


def moved(name: str, r) -> str:
    "A declared row's measure and direction in words (higher or lower where resolved), its outcome beside it."
    if r["outcome"] in ("supported", "contradicted"):
        return f"{name} {'higher' if r['effect'] > 0 else 'lower'} ({r['outcome']})"
    if r["outcome"] in ("equivalent", stats.BELOW):
        return f"{name} the same within the margin ({r['outcome']})"
    return f"{name}: {'not resolved' if r['outcome'] == 'inconclusive' else 'too few seeds to say'}"


def messages(table: pd.DataFrame, confirm: bool) -> tuple[dict, dict]:
    """Per series, what its declared rows found, in words; and the points they test ((metric, p) -> row)."""
    rows = table.set_index("comparison")
    said, marked = {}, {}
    for s, p, top in zip(SERIES, (HEAD_P, BODY_P), (HEAD_TOP, BODY_TOP)):
        if confirm:
            loss, acc, fit = (rows.loc[f"{s}: {k}"] for k in (f"generalisation, p={p:g} - none, held-out loss",
                                                                f"generalisation, p={p:g} - none, held-out accuracy",
                                                                f"fit, p={top:g} - none, train loss (eval mode)"))
            said[s] = (f"{s}: at p={p:g}, {moved('held-out loss', loss)} and {moved('held-out accuracy', acc)}; "
                       f"at p={top:g}, {moved('train loss', fit)}")
            marked[s] = {("valid_loss", p): loss, ("accuracy", p): acc, ("train_loss", top): fit}
        else:
            words = {"supported": "yes", "contradicted": "the opposite", "equivalent": "no (within the margin)",
                     "inconclusive": "not resolved", "indicative": "too few seeds to say"}
            gen, fit, mod = (rows.loc[f"{s}: {k}"] for k in ("held-out loss trend over p (Spearman rho)",
                                                               "train loss trend over p (Spearman rho)",
                                                               f"held-out loss, p={MODERATE:g} - no dropout"))
            said[s] = (f"{s}: held-out loss falls as p grows: {words.get(gen['outcome'], gen['outcome'])}; train "
                       f"loss rises as p grows: {words.get(fit['outcome'], fit['outcome'])}; at p={MODERATE:g}, "
                       f"{moved('held-out loss', mod)}")
            marked[s] = {("valid_loss", MODERATE): mod}
    return said, marked


def figure(runs: pd.DataFrame, table: pd.DataFrame, word: str, confirm: bool):
    """Per series (a row) and measure (a column): each p minus no dropout, paired by seed, with its 95% interval and
    a zero line, each panel zoomed to the p at which runs learn (the others drawn as censored, their value
    beside them); the declared comparisons' points ringed. A row's title says what its declared rows found."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    said, marked = messages(table, confirm)
    fig = plt.figure(figsize=(14, 7.6), layout="constrained")
    rows = fig.subfigures(len(SERIES), 1, hspace=0.04)
    for sub, series in zip(rows, SERIES):
        axs = sub.subplots(1, len(METRICS))
        for ax, (metric, (name, unit)) in zip(axs, METRICS.items()):
            d = differences(runs, series, metric)
            ax.axhline(0, color="black", lw=1)
            if len(d):
                R.zoomed_errorbar(ax, d["dropout"], d["mean"], d["lo"], d["hi"], d["learns"], COLOURS[series],
                                  digits=2 if metric != "accuracy" else 3, lw=1.5)
            for m, p in marked.get(series, {}):
                hit = d[d["dropout"] == p] if len(d) and m == metric else d.iloc[:0]
                if len(hit) and hit["learns"].iloc[0]:
                    ax.plot(hit["dropout"], hit["mean"], marker="o", ms=13, mfc="none", mec="black", ls="none")
            ax.set_xlim(-0.02, max(PS) + 0.04)
            ax.set_xlabel("dropout probability p")
            ax.set_ylabel(f"{name}, p minus none\n({unit})")
        sub.suptitle(said.get(series, series), fontsize=10)
    handles = [Line2D([], [], color="grey", marker="o", label="p minus no dropout: mean over seeds, paired, "
                      "95% t-interval"),
               Line2D([], [], color="black", marker="o", ms=11, mfc="none", ls="none", label="a declared comparison"),
               Line2D([], [], color="grey", marker="v", mfc="none", ls="none",
                      label="off the scale: no run learns at that p (its value beside it)"),
               Line2D([], [], color="black", lw=1, label="zero: no difference from no dropout")]
    fig.legend(handles=handles, loc="outside lower center", ncol=2, fontsize=8, frameon=False)
    fig.suptitle(f"Dropout on 500 training digits, 30 epochs, against none: C7 {word}", fontsize=12)
    return fig


def dropout_mask(shape: tuple[int, ...], p: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    "The lesson's recipe: a uniform random map, and the mask that keeps the values at or above p."
    rand = torch.rand(shape, generator=torch.Generator().manual_seed(seed))
    return rand, (rand >= p).float()


def mask_figure(p: float = 0.5):
    "The lesson's picture: an activation map, a uniform random map, the mask (values under p dropped), the product."
    import matplotlib.pyplot as plt

    from cnn_experiments.data.mnist import mnist_embedded
    from experiments.edge_filter import edge_maps
    act = edge_maps(mnist_embedded().x_valid[:1])[1][0, 0]
    rand, mask = dropout_mask(act.shape, p)
    panels = [(act, "activations"), (rand, "uniform random"), (mask, f"mask: random >= p = {p}"),
              (act * mask / (1 - p), "activations x mask / (1 - p)")]
    fig, axs = plt.subplots(1, 4, figsize=(12, 3.3))
    for ax, (img, title) in zip(axs, panels):
        ax.imshow(img.numpy(), cmap="viridis")
        ax.set_title(title), ax.set_xticks([]), ax.set_yticks([])
    fig.suptitle(f"Dropout at p = {p}: {float(1 - mask.mean()):.0%} of values dropped; the rest scaled by 1/(1-p)")
    return fig


def found(table: pd.DataFrame) -> tuple[list[str], str]:
    "The confirmatory study's answers in words, per series, and the recommendation the tests support."
    rows = table.set_index("comparison")
    out, use = [], []
    for s, p, top in zip(SERIES, (HEAD_P, BODY_P), (HEAD_TOP, BODY_TOP)):
        loss, acc, fit = (rows.loc[f"{s}: {k}"] for k in (f"generalisation, p={p:g} - none, held-out loss",
                                                            f"generalisation, p={p:g} - none, held-out accuracy",
                                                            f"fit, p={top:g} - none, train loss (eval mode)"))
        iv = lambda r, d=3: f"{r['effect']:+.{d}f} [{r['ci_lo']:+.{d}f}, {r['ci_hi']:+.{d}f}]"
        out.append(f"**{s}**: at p={p:g} against none, held-out loss {iv(loss)} ({loss['outcome']}) and accuracy "
                   f"{iv(acc)} ({acc['outcome']}); at p={top:g} the train loss is {iv(fit, 4)} higher "
                   f"({fit['outcome']}).")
        if loss["outcome"] == "supported" and acc["outcome"] == "supported":
            use.append(f"{s.split(' (')[0]} dropout at p={p:g} (lower held-out loss and higher accuracy)")
        elif loss["outcome"] == "supported":
            use.append(f"{s.split(' (')[0]} dropout at p={p:g} where the probabilities matter (lower held-out "
                       "loss; no accuracy gain resolved)")
        elif acc["outcome"] == "supported":
            use.append(f"{s.split(' (')[0]} dropout at p={p:g} for accuracy (its held-out loss is "
                       f"{'higher' if loss['effect'] > 0 else 'not lower'}: its probabilities are not better)")
    rec = ("on 500 training digits, use " + " and ".join(use) if use
           else "none of the declared dropouts resolved better than none on held-out data")
    return out, rec


def report_confirm(ctx) -> tuple[str, str]:
    "The confirmatory study: its answers and recommendation, the figure, the verdict, the power, then the details."
    runs = ctx.runs
    table = ctx.compare(runs, confirmed())
    word, verdict = R.verdict_section(table, "C7")
    answers, rec = found(table) if table is not None and not ctx.partial else (["(the grid is not complete)"], "")
    by = {series: {m: R.summarize(g.sort_values("dropout"), ["dropout"], m)
                   for m in ("train_loss", "valid_loss", "gap", "accuracy")}
          for series, g in runs.groupby("series", sort=False)}
    rate = runs.loc[runs["split"] == "heldout", "lr"].unique()
    body = "\n".join([
        "## What it found", "", *[f"- {a}" for a in answers], "",
        f"**Recommendation:** {rec}." if rec else "", "",
        "Why head dropout can raise held-out loss while it raises accuracy (a reading, not a test): held-out loss "
        "is the mean of -log p(true class), so a few confident mistakes weigh more than many images moved from "
        "wrong to right; a network fitted to zero train loss is confident wherever it is wrong.", "",
        ctx.figure(figure(runs, table, word, True), f"{ctx.profile}_dropout.png"), "", *verdict, "",
        "## Power", "", ctx.power_section(table, "full", confirmed(), PROFILES["confirm"]["seeds"]), "",
        "## Details", "",
        f"Data: each seed draws its own 500 of the embedded MNIST training digits (every class equally), 1,000 "
        f"held-out. Model: 4 stride-2 Conv-BN-ReLU stages (8, 16, 32, 64) + fastai's create_head; "
        f"fit_one_cycle(30), bs 64, one learning rate for every cell ({', '.join(f'{r:g}' for r in rate)}).", "",
        *tables_of(by, runs),
        "## Appendix: the learning rate, one for every cell", "",
        S.section(cells(ctx.profile), PROFILES[ctx.profile]["lrs"], ctx.store.read().rows,
                  lambda c: f"head p={c.p:g}, body p={c.p_body:g}", "Search-split accuracy (seed 1000's 500 digits "
                  "from four fifths of the training digits, scored on the other fifth); the chosen rate is the best "
                  "over all cells together:", rate_group(ctx.profile), EXPERIMENT.seed_list(ctx.profile).start)])
    return body, f"C7 {word}: " + " ".join(a.replace("**", "") for a in answers) + (f" Recommendation: {rec}." if rec
                                                                                      else "")


def tables_of(by: dict, runs: pd.DataFrame) -> list[str]:
    "Per series, a row per p: train and held-out loss, their gap, accuracy and how many runs learn."
    tables = []
    for series, s in by.items():
        learned = runs[runs["series"] == series].groupby("dropout")["learned"].agg(["sum", "count"])
        t = pd.DataFrame({"p": s["gap"]["dropout"],
                          **{name: R.cells(s[m], 3)
                             for name, m in (("train loss (eval)", "train_loss"), ("held-out loss", "valid_loss"),
                                             ("gap", "gap"), ("held-out accuracy", "accuracy"))},
                          "runs that learn": [f"{int(learned.loc[p, 'sum'])}/{int(learned.loc[p, 'count'])}"
                                              for p in s["gap"]["dropout"]]})
        tables += [f"### {series}", "", t.to_markdown(index=False), ""]
    return tables


def report(ctx) -> tuple[str, str]:
    if ctx.profile == "confirm":
        return report_confirm(ctx)
    runs = ctx.runs
    table = ctx.compare(pd.concat([runs, trends(runs)], ignore_index=True), comparisons(ctx.profile))
    word, verdict = R.verdict_section(table, "C7")
    by = {series: {m: R.summarize(g.sort_values("dropout"), ["dropout"], m)
                   for m in ("train_loss", "valid_loss", "gap", "accuracy")}
          for series, g in runs.groupby("series", sort=False)}
    tables = tables_of(by, runs)
    body = "\n".join([
        "Data: 500 of the embedded MNIST training digits (a fixed subset), 1,000 held-out. Model: 4 stride-2 "
        "Conv-BN-ReLU stages (8, 16, 32, 64) + fastai's create_head; fit_one_cycle(30), bs 64. A run learns when "
        f"its held-out accuracy is above {LEARNED} (declared; chance is 0.1): the trends are over those runs.", "",
        *tables, ctx.figure(figure(runs, table, word, False), f"{ctx.profile}_dropout.png"), "", *verdict, "",
        "In words:", "", *[f"- {x}" for x in plainly(table)], "",
        "Described, not tested (the p read off after looking at the table):", "",
        *[f"- {x}" for x in described(by, runs)], "",
        "## Learning rate, searched per cell", "",
        S.section(cells(ctx.profile), PROFILES[ctx.profile]["lrs"], ctx.store.read().rows,
                  lambda c: f"head p={c.p:g}, body p={c.p_body:g}",
                  "Search-split accuracy (the 500 digits drawn from four fifths of the training digits, scored on "
                  "the other fifth; seed 0):"), "",
        "## What dropout does", "", ctx.figure(mask_figure(), f"{ctx.profile}_dropout_mask.png"), "",
        "In training mode dropout zeroes about a fraction p of the values and multiplies the rest by 1/(1-p), so the "
        "expected activation is unchanged; in eval mode it does nothing."])
    return body, f"C7 {word} ({'; '.join(plainly(table))})."


EXPERIMENT = Experiment(name="dropout", title=TITLE, claim=CLAIM, profiles=PROFILES, grid=grid, report=report,
                        search=search, label=label)

if __name__ == "__main__":
    from cnn_experiments.cli import main
    sys.exit(main(["run", "dropout", *sys.argv[1:]]))

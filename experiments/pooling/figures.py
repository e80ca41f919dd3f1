"""The pooling study's figures: share of seeds that learn by size, accuracy by map size, training curves."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from cnn_experiments.statistics import stats

from .design import DILUTION_HEADS, HEADS, cell_px, map_side

BOLD = ("avg", "max", "concat")


def colour(head: str) -> str:
    "One colour per head, the same in every figure of the study."
    return f"C{HEADS.index(head)}"


def paired_by_seed(thr: pd.DataFrame, profile: str):
    "One object size: each seed's held-out accuracy with avg and with max, joined; the title states who wins."
    acc = thr.pivot_table(index="seed", columns="pool", values="accuracy")[["avg", "max"]]
    size = int(thr["obj_size"].iloc[0])
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for _, (a, m) in acc.iterrows():
        ax.plot([0, 1], [a, m], color="grey", lw=0.8, alpha=0.7)
    for i, h in enumerate(("avg", "max")):
        ax.scatter(np.full(len(acc), i), acc[h], color=f"C{i}", zorder=3, label=h)
    ax.axhline(0.5, color="grey", ls=":", lw=1)
    ax.axhline(0.6, color="grey", ls="--", lw=1)
    ax.text(1.38, 0.6, "learns", va="bottom", ha="right", fontsize=8, color="grey")
    ax.set_xticks([0, 1], ["avg pooling", "max pooling"])
    ax.set_xlim(-0.4, 1.4)
    ax.set_ylabel("held-out accuracy (chance 0.5)")
    better = int((acc["avg"] > acc["max"]).sum())
    ax.set_title(f"A bear of {size / cell_px(profile):g} cells ({size} px): avg beats max in {better} of "
                 f"{len(acc)} seeds\n(a line joins one seed's two runs)")
    return fig


def share_by_size(thr: pd.DataFrame, profile: str):
    "Share of seeds that learn by object size per head, each head's threshold marked; the title states them."
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    sizes = sorted(thr["cells"].unique())
    colours = dict(zip(HEADS, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    found = {}
    for i, h in enumerate(h for h in HEADS if (thr["pool"] == h).any()):
        g = thr[thr["pool"] == h].groupby("cells")["learned"].agg(["sum", "count"]).reindex(sizes).fillna(0)
        est = [stats.share_interval(int(k), int(n)) for k, n in zip(g["sum"], g["count"])]
        share, lo, hi = (np.array(v) for v in zip(*est))
        x = np.array(sizes) * (1 + 0.012 * (i - 2.5))  # side by side, not on top of each other
        ax.errorbar(x, share, yerr=[share - lo, hi - share], marker="o", capsize=2, label=h, color=colours[h],
                    lw=2.2 if h in BOLD else 1, alpha=1 if h in BOLD else 0.6)
        t = stats.threshold(thr.loc[thr["pool"] == h, "cells"], thr.loc[thr["pool"] == h, "learned"])
        if t["kind"] == "logit" and h in BOLD:
            found[h] = f"{t['threshold']:.2f} cells ({h})"
            ax.errorbar([t["threshold"]], [0.5], xerr=[[t["threshold"] - t["lo"]], [t["hi"] - t["threshold"]]],
                        marker="|", ms=14, color=colours[h], capsize=4, lw=1.5)
        elif t["kind"] == "censored below" and h in BOLD:  # open to the left: an arrow, not a clipped bar
            found[h] = f"below {t['hi']:.2f} cells ({h})"
            ax.annotate("", xy=(min(sizes) * 0.9, 0.5), xytext=(t["hi"], 0.5), annotation_clip=False,
                        arrowprops=dict(arrowstyle="->", color=colours[h], lw=2.2))
            ax.set_xlim(left=min(sizes) * 0.88)  # room for the arrow left of the smallest size tried
    ax.axhline(0.5, color="grey", ls=":", lw=1)
    ax.set_xscale("log")
    ax.xaxis.set_minor_locator(plt.NullLocator())
    ax.set_xticks(sizes, [f"{c:g}" for c in sizes])
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel(f"object size, cells of the final {map_side(profile)}x{map_side(profile)} map "
                  f"({cell_px(profile)} px each), log scale")
    ax.set_ylabel("share of seeds that learn (exact 95% CI)")
    order = list(found)
    ax.set_title("Half the seeds learn from " + ", ".join(found[h] for h in order)
                 + "\n(at 0.5: each head's threshold, 95% interval; an arrow: censored below)" if order
                 else "Share of seeds that learn, by object size")
    ax.legend(title="head", loc="upper left", bbox_to_anchor=(1.01, 1))  # outside: the shares fill the axes
    return fig


GROWTH = {"supported": "{h} gains on avg as the map grows", "contradicted": "{h} loses ground to avg as the map grows",
          "equivalent": "{h} keeps level with avg as the map grows",
          stats.BELOW: "{h} changes against avg by less than the margin as the map grows",
          "inconclusive": "{h}: no change against avg with the map's size resolved",
          "indicative": "{h}: too few seeds to say how it changes against avg"}


def level(lo: float, hi: float) -> str:
    "Where a paired difference from avg lies, in words, from its 95% interval."
    return "ahead of avg" if lo > 0 else "behind avg" if hi < 0 else "level with avg"


def difference_by_map(dil: pd.DataFrame, profile: str, table: pd.DataFrame | None = None):
    """Paired by seed, each head minus avg by map size, with 95% intervals and a zero line. The title says, per head,
    what the declared test of its growth with the map found (`table`, where given) and where it stands on the
    smallest and the largest map."""
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    maps = sorted(int(m) for m in dil["map"].unique())
    dil = dil.assign(map=dil["map"].astype(int))
    avg = dil[dil["pool"] == "avg"].set_index(["map", "seed"])["accuracy"]
    said = []
    for i, h in enumerate(h for h in DILUTION_HEADS if h != "avg" and (dil["pool"] == h).any()):
        d = dil[dil["pool"] == h].set_index(["map", "seed"])["accuracy"] - avg
        est = [stats.interval(d.xs(m, level="map").dropna()) if m in d.index.get_level_values(0) else (np.nan,) * 5
               for m in maps]
        mean, lo, hi = (np.array([e[j] for e in est], float) for j in range(3))
        x = np.array(maps) * (1 + 0.02 * (i - 0.5))
        ax.errorbar(x, mean, yerr=[mean - lo, hi - mean], marker="o", capsize=3, lw=2, label=f"{h} - avg",
                    color=colour(h))
        rows = table[table["comparison"].str.startswith("dilution") & table["comparison"].str.contains(f"{h} - avg")] \
            if table is not None else []
        growth = GROWTH.get(rows.iloc[0]["outcome"], "{h}").format(h=h) + ": " if len(rows) else f"{h}: "
        said.append(f"{growth}{level(lo[0], hi[0])} on the {maps[0]}x{maps[0]} map, {level(lo[-1], hi[-1])} on "
                    f"the {maps[-1]}x{maps[-1]} ({mean[0]:+.3f}, {mean[-1]:+.3f})")
    ax.axhline(0, color="black", lw=1)
    ax.set_xscale("log")
    ax.xaxis.set_minor_locator(plt.NullLocator())
    ax.set_xticks(maps, [f"{m}x{m}" for m in maps])
    ax.set_xlabel(f"final map, cells a side (log scale; {cell_px(profile)} px cells: the 28 px bear covers less "
                  "of it to the right)")
    ax.set_ylabel("held-out accuracy, head minus avg\n(fraction of scenes; paired by seed, 95% t-interval)")
    ax.set_title("\n".join(said) or "No paired runs yet", fontsize=10)
    ax.legend()
    return fig


EARLY = 8  # the first optimiser steps, where a head's gradient has not yet shaped the body


def spread(c: pd.DataFrame) -> pd.DataFrame:
    """Training curves with `ratio`: the share of the map's gradient in the object's cells over the share an even
    spread puts there (the object's share of the map's cells), per run and step; 1 is an even spread."""
    c = c[c["step"] > 0]
    return c.assign(ratio=c["object_grad_share"] / c["object_cell_share"])


def early_spread(c: pd.DataFrame) -> tuple[pd.Series, pd.DataFrame]:
    """In the first EARLY steps, the median ratio to an even spread per head, and per head and `learned` (columns
    True, False where a head has runs of both)."""
    e = spread(c)
    e = e[e["step"] <= EARLY]
    per = e.groupby("pool")["ratio"].median()
    return per.reindex([h for h in HEADS if h in per.index]), e.groupby(["pool", "learned"])["ratio"].median().unstack()


def listed(names: list[str]) -> str:
    "a, b and c"
    return ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else names[0]


def spread_words(per: pd.Series) -> tuple[str, str]:
    """Which heads put more (or less) of the early gradient on the object's cells than an even spread, in words; and
    each head's multiple of an even spread."""
    even = [h for h in per.index if np.isclose(per[h], 1.0, atol=0.01)]
    more = [h for h in per.index if h not in even and per[h] > 1]
    less = [h for h in per.index if h not in even and per[h] < 1]
    parts = [f"{listed(hs)} put{'s' * (len(hs) == 1)} {word} of the gradient on the object's cells than an even spread"
             for hs, word in ((more, "more"), (less, "less")) if hs]
    if even:
        parts.append(f"{listed(even)} an even spread")
    return "; ".join(parts), ", ".join(f"{h} {per[h]:.2f}" for h in per.index)


def curves(c: pd.DataFrame, size: int, profile: str):
    """The runs that learn (top) and those that do not (bottom), apart: median training loss, and the share of the
    map's gradient that reaches the object's cells as a multiple of an even spread's, per head, over training."""
    fig, axs = plt.subplots(2, 2, figsize=(12, 7.5), sharex=True, sharey="col")
    c = spread(c)
    for row, (learned, words) in enumerate(((True, "runs that learn"), (False, "runs that do not learn"))):
        part = c[c["learned"] == learned]
        loss, grad = axs[row]
        for h in [h for h in HEADS if (part["pool"] == h).any()]:
            g = part[part["pool"] == h]
            n = g["run_id"].nunique()
            med = g.groupby("step")[["train_loss", "ratio"]].median()
            style = dict(color=colour(h), lw=2.2 if h in BOLD else 1.2, label=f"{h} ({n} run{'s' * (n != 1)})")
            loss.plot(med.index, med["train_loss"], **style)
            grad.plot(med.index, med["ratio"], **style)
        loss.axhline(0.6931, color="grey", ls=":", lw=1, label="chance (ln 2)")
        grad.axhline(1.0, color="black", ls="--", lw=1, label="an even spread")
        grad.axvspan(1, EARLY, color="grey", alpha=0.12, lw=0)
        loss.set_ylabel(f"{words}:\nmedian training loss (nats)")
        grad.set_ylabel("gradient in the object's cells,\nx an even spread's share (median)")
        for ax in (loss, grad):
            ax.set_xscale("log")
            ax.legend(fontsize=8, ncol=2)
            if part.empty:
                ax.text(0.5, 0.5, "none", transform=ax.transAxes, ha="center")
    for ax in axs[1]:
        ax.set_xlabel("optimiser step (log scale)")
    said, times = spread_words(early_spread(c)[0])
    fig.suptitle(f"In the first {EARLY} steps (shaded), {said}\n(times an even spread: {times})\nObjects of {size} px, "
                 f"{size / cell_px(profile):g} cells; an even spread gives the object's cells their share of the "
                 f"map's cells, median {c['object_cell_share'].median():.3f}")
    fig.tight_layout()
    return fig

"""The pooling study's figures: share of seeds that learn by size, accuracy by map size, training curves."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from cnn_experiments import stats

from .design import DILUTION_HEADS, HEADS, cell_px, map_side

BOLD = ("avg", "max", "concat")


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


def difference_by_map(dil: pd.DataFrame, profile: str):
    "Paired by seed, each head minus avg by map size, with 95% intervals and a zero line; the title states it."
    fig, ax = plt.subplots(figsize=(7, 4.3))
    maps = sorted(dil["map"].unique())
    avg = dil[dil["pool"] == "avg"].set_index(["map", "seed"])["accuracy"]
    ends = {}
    for i, h in enumerate(h for h in DILUTION_HEADS if h != "avg" and (dil["pool"] == h).any()):
        d = dil[dil["pool"] == h].set_index(["map", "seed"])["accuracy"] - avg
        est = [stats.interval(d.xs(m, level="map").dropna()) if m in d.index.get_level_values(0) else (np.nan,) * 5
               for m in maps]
        mean, lo, hi = (np.array([e[j] for e in est], float) for j in range(3))
        x = np.array(maps) * (1 + 0.02 * (i - 0.5))
        ax.errorbar(x, mean, yerr=[mean - lo, hi - mean], marker="o", capsize=3, lw=2, label=f"{h} - avg")
        ends[h] = (mean[0], mean[-1])
    ax.axhline(0, color="black", lw=1)
    ax.set_xscale("log")
    ax.xaxis.set_minor_locator(plt.NullLocator())
    ax.set_xticks(maps, [f"{m}x{m}" for m in maps])
    ax.set_xlabel(f"final map ({cell_px(profile)} px cells; the 28 px bear covers less of it to the right)")
    ax.set_ylabel("held-out accuracy, head - avg\n(paired by seed, 95% CI)")
    ax.set_title("\n".join(f"{h} - avg: {a:+.3f} on the {maps[0]}x{maps[0]} map, {b:+.3f} on the {maps[-1]}x"
                            f"{maps[-1]}" for h, (a, b) in ends.items()) or "No paired runs yet", fontsize=10)
    ax.legend()
    return fig


def curves(c: pd.DataFrame, size: int, profile: str):
    """The runs that learn (top) and those that do not (bottom), apart: median training loss and the share of the
    map's gradient that reaches the object's cells, per head, over training."""
    fig, axs = plt.subplots(2, 2, figsize=(12, 7.5), sharex=True, sharey="col")
    colours = dict(zip(HEADS, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    c = c[c["step"] > 0]
    for row, (learned, words) in enumerate(((True, "runs that learn"), (False, "runs that do not learn"))):
        part = c[c["learned"] == learned]
        loss, grad = axs[row]
        for h in [h for h in HEADS if (part["pool"] == h).any()]:
            g = part[part["pool"] == h]
            n = g["run_id"].nunique()
            med = g.groupby("step")[["train_loss", "object_grad_share"]].median()
            style = dict(color=colours[h], lw=2.2 if h in BOLD else 1.2, label=f"{h} ({n} runs)")
            loss.plot(med.index, med["train_loss"], **style)
            grad.plot(med.index, med["object_grad_share"], **style)
        loss.axhline(0.6931, color="grey", ls=":", lw=1, label="chance (ln 2)")
        grad.axhline(c["object_cell_share"].median(), color="grey", ls=":", lw=1, label="an even spread")
        loss.set_ylabel(f"{words}:\nmedian training loss")
        grad.set_ylabel("share of the map's gradient\nin the object's cells (median)")
        for ax in (loss, grad):
            ax.set_xscale("log")
            ax.legend(fontsize=8, ncol=2)
            if part.empty:
                ax.text(0.5, 0.5, "none", transform=ax.transAxes, ha="center")
    for ax in axs[1]:
        ax.set_xlabel("optimiser step (log)")
    early = c[c["step"] <= 8].groupby("learned")["object_grad_share"].median()
    said = (f": in the first 8 steps the runs that learn put {early[True]:.3f} of the map's gradient on the object, "
            f"those that do not {early[False]:.3f}" if {True, False} <= set(early.index) else "")
    fig.suptitle(f"Objects of {size} px ({size / cell_px(profile):g} cells){said}")
    fig.tight_layout()
    return fig

"""The confirmatory pooling study's report: what it found in three lines, which head to use, the figures, the two
verdict tables, then the arms in detail; the learning-rate search last, as an appendix."""
from __future__ import annotations

import math

import pandas as pd

from cnn_experiments.reports import report as R
from cnn_experiments.statistics import stats
from cnn_experiments.sweeps import search as S

from . import figures
from . import report as pilot
from .design import PROFILES, cell_px, cells, first_seed, map_side, mechanism, rate_group

PROFILE = "confirm"
# the answer the README quotes: this study's setting, then its recommendation
IN_A_LINE = "**In a line** (a body trained from scratch on grey digit scenes, a pool -> linear head):"
ANSWER = {"supported": "yes", "contradicted": "no, the opposite", "inconclusive": "not resolved",
          "equivalent": "the same within the margin", "indicative": "too few runs yet to say",
          stats.BELOW: "resolved, but smaller than the margin"}


def report(ctx: R.Context) -> tuple[str, str]:
    runs = ctx.runs
    thr, dil = runs[runs["arm"] == "threshold"], runs[runs["arm"] == "dilution"]
    why_table = ctx.compare(runs, mechanism())
    c6 = ctx.table
    word = stats.verdict(c6) if c6 is not None else "not tested yet"
    thresholds = {h: stats.threshold(g["cells"], g["learned"]) for h, g in thr.groupby("pool", sort=False)}
    per = figures.early_spread(pilot.why_curves(ctx, thr)[1])[0] if len(thr) else pd.Series(dtype=float)
    body = ["This is the confirmatory study of the [medium pilot](summary_medium.md): its questions, tests, seeds "
            "and predictions were committed before its runs, on fresh seeds that each draw their own scenes.", "",
            "## What it found", "", *[f"- {x}" for x in found(c6, why_table, thresholds, runs, per)], "",
            "## Which head to use", "", *recommend(c6, thresholds, dil), *rate_caveat(runs), "",
            "## Figures", "", *show(ctx, thr, dil), "",
            "## Verdict", "", f"**C6 is {word}.**", "", "Each row tests the lesson's prediction, two-sided.", "",
            stats.markdown(c6) if c6 is not None else "No runs yet.", "",
            f"**Why max fails to train, a proposed mechanism: its declared predictions are "
            f"{stats.verdict(why_table)}.**", "",
            mechanism_text(why_table, per), "", stats.markdown(why_table), "",
            *pilot.design(PROFILE), "", *threshold_detail(ctx, thr), "", *dilution_detail(dil), "",
            *pilot.head_only(thr, PROFILE), "", *readout_detail(runs), "",
            "## Appendix: learning rates (a nuisance parameter)", "", *appendix(runs)]
    return "\n".join(body), finding(c6, thresholds, word)


def mechanism_text(why_table: pd.DataFrame | None, per: pd.Series) -> str:
    """The proposed mechanism, what its two declared tests can and cannot say of it, and what the gradient measured
    in training (`per`: each head's early share on the object's cells, times an even spread) shows beside it."""
    same, gem = row(why_table, "read-out"), row(why_table, "intervention")
    tests = ("Both held: they are consistent with this explanation but do not single it out, since any cause that "
             "lies in how max trains the body rather than in how it reads the features (for instance, that its "
             "gradient reaches few cells at all, wherever they lie) predicts them too." if held(same, gem) else
             f"The read-out: {answer(same)}; GeM against max: {answer(gem)}.")
    return ("The explanation these two tests were declared for: max sends the loss's gradient to one cell per "
            "channel, and if that cell is mostly clutter the body is never pushed to make the object's cells stand "
            "out, while avg spreads the gradient over every cell, the object's included. It predicts that the same "
            "features are read alike by max and avg, and that GeM, a softer max whose gradient reaches every cell in "
            f"proportion to its activation, learns where max does not. {tests} {gradient_words(per)}The cause of "
            "max's failure to train is not settled.")


def gradient_clause(per: pd.Series) -> str:
    "Max against avg in the early gradient on the object's cells, as a clause; empty without both heads."
    if not {"max", "avg"} <= set(per.index):
        return ""
    return (f"; in training max put {'more' if per['max'] > per['avg'] else 'less'} of the gradient on the object's "
            f"cells than avg ({per['max']:.2f} against {per['avg']:.2f} times an even spread)")


def held(same: pd.Series | None, gem: pd.Series | None) -> bool:
    "Whether both declared predictions of the mechanism held: the read-out equivalent, GeM learning where max fails."
    return same is not None and gem is not None and same["outcome"] == "equivalent" and gem["outcome"] == "supported"


def gradient_words(per: pd.Series) -> str:
    "What the gradient measured in training says of the explanation's first step, from the numbers."
    if not {"max", "avg"} <= set(per.index):
        return ""
    more = per["max"] > per["avg"]
    return (f"The gradient measured in training {'does not show' if more else 'agrees with'} the explanation's "
            f"first step: in the first {figures.EARLY} steps max put {per['max']:.2f} times an even spread's share "
            f"of the gradient on the object's cells, avg {per['avg']:.2f} (the figure in the Figures section): "
            f"{'more' if more else 'less'} on the object than avg, not {'less' if more else 'more'}. ")


def row(table: pd.DataFrame | None, start: str) -> pd.Series | None:
    if table is None:
        return None
    hit = table[table["comparison"].str.startswith(start)]
    return hit.iloc[0] if len(hit) else None


def effect(r: pd.Series | None, digits: int = 3) -> str:
    if r is None or not r["n_a"] or r["effect"] != r["effect"]:
        return "not run yet"
    return f"{r['effect']:+.{digits}f} [{r['ci_lo']:+.{digits}f}, {r['ci_hi']:+.{digits}f}]"


def answer(r: pd.Series | None) -> str:
    return ANSWER.get(r["outcome"], r["outcome"]) if r is not None else "not run yet"


def threshold_words(thresholds: dict, h: str) -> str:
    t = thresholds.get(h)
    return f"{h} {stats.threshold_text(t, ' cells')}" if t is not None else f"{h} not run yet"


def found(c6, why_table, thresholds: dict, runs: pd.DataFrame, per: pd.Series) -> list[str]:
    "The three questions' answers, then the mechanism's, each with its effect, interval and outcome."
    tr_max, tr_concat = row(c6, "trainability: max"), row(c6, "trainability: concat")
    slope, read = row(c6, "dilution"), row(c6, "read-out")
    same, gem = row(why_table, "read-out"), row(why_table, "intervention")
    n = runs.loc[runs["arm"] == "threshold", "seed"].nunique()
    return [
        "**Does max learn at smaller objects than avg?** " + answer(tr_max).capitalize() + ". Half the seeds "
        "learn from " + ", ".join(threshold_words(thresholds, h) for h in ("avg", "max", "concat"))
        + f" of the {map_side(PROFILE)}x{map_side(PROFILE)} map; the share of seeds that learn over 0.75 to 1 cell, "
        f"max - avg {effect(tr_max)}, concat - avg {effect(tr_concat)} ({n} seeds, exact sign-flip over seeds).",
        "**Does max - avg grow as the map grows?** " + answer(slope).capitalize() + f": {effect(slope, 4)} held-out "
        "accuracy per doubling of the map's side, from 2x2 to 14x14, with the 28 px digit (per-seed slopes).",
        "**Given the same features, does max read the object better than avg?** " + answer(read).capitalize()
        + f": max - avg {effect(read)} on the bodies avg trained ({within(same)}).",
        "**Why does max fail to train?** Not settled. The two declared tests of a proposed mechanism (below): the "
        f"same bodies read alike, {within(same)}; GeM, a softer max, learns where max does not: {answer(gem)} (gem "
        f"- max in the share that learns {effect(gem)})" + ("; both consistent with it, neither singles it out"
                                                             if held(same, gem) else "") + gradient_clause(per) + ".",
    ]


def within(r: pd.Series | None) -> str:
    "An equivalence row in words."
    words = {"equivalent": "equivalent within ±{m:g}", "contradicted": "a difference beyond ±{m:g}"}
    return words.get(r["outcome"], "equivalence within ±{m:g} not resolved").format(m=r["margin"]) \
        if r is not None else "not run yet"


def recommend(c6, thresholds: dict, dil: pd.DataFrame) -> list[str]:
    """Which head, in a line and then by the object's size in cells of the final map and by the map's size, from the
    tests: a head is recommended only where a declared test resolved a difference; elsewhere fastai's default,
    concat."""
    tr = row(c6, "trainability: max")
    slope = row(c6, "dilution")
    t = {h: thresholds[h] for h in ("avg", "max", "concat") if h in thresholds}
    out, line = [], []
    if tr is not None and tr["outcome"] == "contradicted" and {"avg", "max", "concat"} <= set(t):
        big = min(_upper(t["max"]), _upper(t["concat"]))
        if t["avg"]["kind"] == "logit":
            small = t["avg"]["threshold"]
            out.append(f"- **Objects under about {small:.2f} cells** of the final map: no head learns them reliably "
                       "at this training budget; use a finer final map (one stride-2 stage fewer doubles an "
                       "object's size in cells).")
            below = f"no head learns objects under about {small:.2f} cells reliably"
        else:  # avg's threshold lies below the sizes tried: nothing is known of smaller objects
            small = _upper(t["avg"])
            out.append(f"- **Objects under {t['avg']['edge']:.2f} cells** of the final map were not tried: the "
                       "study cannot say which head learns them.")
            below = f"objects under {t['avg']['edge']:.2f} cells were not tried"
        out += [f"- **Objects of about {small:.2f} to {big:.2f} cells**: **avg**. Max and concat fail to train here "
                f"in seeds where avg learns (share max - avg {effect(tr)}).",
                f"- **Objects over {big:.2f} cells**: every head learns; then the map's size decides (next line)."]
        line += [f"**avg** for objects of about {small:.2f} to {big:.2f} cells of the final map, where max and "
                 f"concat fail to train", "every head learns larger ones", below]
    elif tr is not None and tr["outcome"] == "supported":
        out.append(f"- **Small objects**: **max**, which learns at smaller objects than avg ({effect(tr)}).")
        line.append("**max** for small objects")
    else:
        out.append("- **By object size**: no difference in trainability resolved" + (f" ({effect(tr)})" if tr is
                                                                                       not None else "") + ".")
        line.append("no head trains small objects better than another")
    maps = sorted(int(m) for m in dil["map"].unique()) if len(dil) else []
    if slope is not None and slope["outcome"] == "supported" and maps:
        out.append(f"- **By map size** (objects every head learns): max gains {effect(slope, 4)} per doubling of "
                   f"the map's side over avg: **max** on maps of {maps[-1]}x{maps[-1]} and larger.")
        line.append(f"**max** for objects every head learns on maps of {maps[-1]}x{maps[-1]} and larger")
    elif slope is not None and slope["outcome"] == "contradicted":
        out.append(f"- **By map size**: avg gains on max as the map grows ({effect(slope, 4)} per doubling): "
                   "**avg**.")
        line.append("**avg** as the map grows")
    else:
        det = slope["detectable"] if slope is not None else math.nan
        out.append("- **By map size** (objects every head learns): no growth of max - avg resolved "
                   + (f"({effect(slope, 4)} per doubling; this design sees ±{det:.4f} with 80% power)"
                      if det == det else "") + ": **concat**, fastai's default, loses nothing measured here.")
        line.append("**concat**, fastai's default, where the map's size resolved nothing")
    return [f"{IN_A_LINE} " + "; ".join(line) + ".", "", *out]


def rate_caveat(runs: pd.DataFrame) -> list[str]:
    "The dilution cells whose searched rate sits at the grid's edge: their best rate may lie beyond it."
    lrs = PROFILES[PROFILE]["lrs"]
    searched = runs[runs["arm"] == "search"]
    first = first_seed(PROFILE)
    chosen = S.choose(cells(PROFILE)["dilution"], lrs, searched, rate_group(PROFILE), first)
    edge = [f"{c.pool} {c.canvas // cell_px(PROFILE)}x{c.canvas // cell_px(PROFILE)} at {c.lr:g}" for c in chosen
            if c.lr in (min(lrs), max(lrs))]
    if searched.empty or not edge:
        return []
    return [f"- **A caveat on the map-size line**: {len(edge)} of {len(chosen)} dilution cells chose a rate at the "
            f"edge of the searched grid ({', '.join(edge)}), from one search seed, so a head's best rate may lie "
            "beyond it; a head tuned short of its best would lose accuracy, and the slope of max - avg rests on these "
            "cells."]


def _upper(t: dict) -> float:
    "A threshold's estimate, or the end of its interval the data close (censored below: its upper end)."
    return t["threshold"] if t["kind"] == "logit" else t["hi"] if "below" in t["kind"] else t["lo"]


def show(ctx: R.Context, thr: pd.DataFrame, dil: pd.DataFrame) -> list[str]:
    out = []
    if len(thr):
        out += [ctx.figure(figures.share_by_size(thr, PROFILE), f"{PROFILE}_share_vs_size.png")]
    if len(dil):
        out += ["", ctx.figure(figures.difference_by_map(dil, PROFILE, ctx.table), f"{PROFILE}_dilution.png")]
    cams = pilot.cams(ctx)
    why = pilot.why(ctx, thr)
    return out + ["", *cams[2:], "", *why[2:]]


def threshold_detail(ctx: R.Context, thr: pd.DataFrame) -> list[str]:
    lines = pilot.threshold(ctx, thr)
    return [x for x in lines if not x.startswith("![")]  # the figure is shown above


def dilution_detail(dil: pd.DataFrame) -> list[str]:
    if dil.empty:
        return ["## Dilution arm", "", "No runs yet."]
    s = R.summarize(dil, ["map", "pool"])
    t = s.assign(cell=R.cells(s, 3)).pivot(index="map", columns="pool", values="cell")
    avg = dil[dil["pool"] == "avg"].set_index(["map", "seed"])["accuracy"]
    for h in [h for h in t.columns if h != "avg"]:
        d = (dil[dil["pool"] == h].set_index(["map", "seed"])["accuracy"] - avg).dropna()
        t[f"{h} - avg (paired)"] = [effect_of(d.xs(m, level="map")) if m in d.index.get_level_values(0) else "-"
                                    for m in t.index]
    t.index = [f"{m}x{m} ({m * cell_px(PROFILE)} px; the bear covers {pilot.share_of_map(m, PROFILE):.1%})"
               for m in t.index]
    return ["## Dilution arm: the 28 px bear, the map growing", "",
            f"Same {cell_px(PROFILE)} px cells and clutter density on every map. Seeds per cell: "
            f"{pilot.seed_counts(dil)}. Held-out accuracy:", "", t.to_markdown()]


def effect_of(d) -> str:
    m, lo, hi, n, _ = stats.interval(d)
    return f"{m:+.3f} [{lo:+.3f}, {hi:+.3f}]" if n > 1 else "-"


def readout_detail(runs: pd.DataFrame) -> list[str]:
    r = runs[runs["arm"] == "read-out"]
    if r.empty:
        return ["## Read-out arm", "", "No probed bodies that learned yet."]
    t = R.summarize(r, ["reader"])
    t = t.assign(accuracy=R.cells(t, 3))[["reader", "accuracy", "n"]]
    bodies = r.drop_duplicates("seed")["bodies"]
    return ["## Read-out arm: the same bodies, read by each head", "",
            f"Per seed, the bodies avg trained at the sizes where its run learned ({int(bodies.sum())} bodies, "
            f"{int(bodies.min())} to {int(bodies.max())} a seed), frozen, each read by a head fitted afresh; the "
            "mean over a seed's bodies. Held-out accuracy:", "", t.to_markdown(index=False)]


def appendix(runs: pd.DataFrame) -> list[str]:
    p = PROFILES[PROFILE]
    lrs, group = p["lrs"], rate_group(PROFILE)
    searched = runs[runs["arm"] == "search"]
    parts, chosen = [], []
    for arm, cs in cells(PROFILE).items():
        def name(c, arm=arm):
            return f"{c.pool}, sizes {min(p['sizes'])}-{max(p['sizes'])} px" if arm == "threshold" else \
                f"{c.pool}, {c.canvas // cell_px(PROFILE)}x{c.canvas // cell_px(PROFILE)} map"
        t = pooled_table(cs, lrs, searched, name, group)
        parts += [f"**{arm}** (search-split accuracy at each rate; a threshold head's rate is scored over its "
                  f"{len(p['sizes'])} sizes):", "", t.to_markdown(index=False), ""]
        chosen += list(t["chosen"])
    edges = sum(str(c).endswith("(edge)") for c in chosen)
    return [f"Each rate of {', '.join(f'{x:g}' for x in lrs)} trained once per cell, seed "
            f"{min(searched['seed']) if len(searched) else '-'}, on scenes of four fifths of the training digits "
            "and scored on scenes of the other fifth (never the held-out digits); the rate with the best "
            f"search-split accuracy is chosen ({len(searched)} search runs). Chosen rates at an edge of the grid: "
            f"{edges} of {len(chosen)}.", "", *parts]


def pooled_table(cs, lrs, searched: pd.DataFrame, name, group) -> pd.DataFrame:
    "Per rate group: mean search-split accuracy at each rate over its cells, and the chosen rate."
    pick = {name(c): c.lr for c in S.choose(cs, lrs, searched, group, first_seed(PROFILE))}
    rows = {}
    for c in cs:
        r = rows.setdefault(name(c), {"cells": name(c), **{f"{lr:g}": [] for lr in lrs}})
        for lr in lrs:
            g = searched[searched["cell_id"] == S.searched(c, lr).cell_id]
            r[f"{lr:g}"] += list(g["accuracy"])
    out = []
    for key, r in rows.items():
        out.append({**{k: (f"{sum(v) / len(v):.3f}" if isinstance(v, list) and v else "-" if isinstance(v, list)
                           else v) for k, v in r.items()},
                    "chosen": f"{pick[key]:g}" + (" (edge)" if pick[key] in (min(lrs), max(lrs)) else "")})
    return pd.DataFrame(out)


def finding(c6, thresholds: dict, word: str) -> str:
    "One sentence: the decisive answer with its numbers, then the claim's verdict."
    tr = row(c6, "trainability: max")
    if tr is None or not tr["n_a"]:
        return f"C6 {word}: no runs yet."
    lead = {"contradicted": "avg pooling learns to find smaller objects than max", "supported":
            "max pooling learns to find smaller objects than avg"}.get(tr["outcome"], "no difference in the smallest "
                                                                    "object each head learns was resolved")
    return (f"in the lesson's 7x7 map {lead} (half the seeds learn from "
            + ", ".join(threshold_words(thresholds, h) for h in ("avg", "max", "concat"))
            + f"; share max - avg {effect(tr)}), on {int(tr['seeds'])} fresh seeds (confirm profile): C6 {word}.")

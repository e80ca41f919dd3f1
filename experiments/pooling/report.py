"""The pooling study's report: the verdict table, then each arm, why heads fail, the CAMs and the search."""
from __future__ import annotations

import math

import pandas as pd

from cnn_experiments.reports import report as R
from cnn_experiments.statistics import stats

from . import figures
from .design import (
    HEADS,
    LEARNED,
    LN2,
    PROFILES,
    cell_px,
    cells,
    chosen_lrs,
    comparisons,
    dilution_heads,
    heads,
    map_side,
)


def report(ctx: R.Context) -> tuple[str, str]:
    profile, runs = ctx.profile, ctx.runs
    thr, dil = runs[runs["arm"] == "threshold"], runs[runs["arm"] == "dilution"]
    word, verdict = R.verdict_section(ctx.table, "C6")
    body = [*design(profile), "", *verdict, "", *threshold(ctx, thr), "", *dilution(ctx, dil), "",
            *head_only(thr, profile), "", *why(ctx, thr), "", *cams(ctx), "", *planned(ctx),
            *search_section(runs, profile), "", *cluttered(ctx)]
    return "\n".join(body), finding(ctx.table, thr, profile, word)


def planned(ctx: R.Context) -> list[str]:
    "The quick study's power, planned from its pilot's per-seed spread at the seeds it declares."
    if ctx.profile != "quick" or ctx.table is None:
        return []
    p = PROFILES["quick"]
    at_its_size = lambda got: got.labelled[got.labelled["obj_size"].isin(p["sizes"])]
    # partial: a fresh results folder (`cnn-exp reproduce`) holds no pilot runs, and then no plan
    return ["## Power", "", ctx.power_section(ctx.table, "quick_pilot", comparisons("quick"), p["seeds"],
                                          label=at_its_size, partial=True), ""]


def design(profile: str) -> list[str]:
    from cnn_experiments.data.scenes import distinct_objects
    p = PROFILES[profile]
    side, cell = map_side(profile), cell_px(profile)
    objs = distinct_objects(p["n_scenes"])
    tr, va = objs["train"], objs["held-out"]
    per = ("per head (a threshold head's sizes together) and per head and map" if p.get("rate_per") == "head"
           else "per head and cell")
    search = ("one declared rate, " + f"{p['lrs'][0]:g}") if len(p["lrs"]) == 1 else (
        f"searched {per} over " + ", ".join(f"{lr:g}" for lr in p["lrs"]) + " (appendix)")
    drawn = (f"Each seed draws its own {tr['scenes']} training scenes from the 4,000 training digits and "
             f"{va['scenes']} held-out scenes from the 1,000 held-out digits." if p.get("vary_data") else
             f"{tr['scenes']} training scenes from the 4,000 training digits, {va['scenes']} held-out scenes from the "
             f"1,000 held-out digits; the training positives show {tr['bears']} distinct '3's of the "
             f"{tr['bears_available']} available, the held-out positives {va['bears']} of {va['bears_available']}.")
    return [
        f"Data: binary scenes: a '3' (the bear) or another digit matched in ink, at a random place among 8x8 "
        f"fragments of other digits at the RAM paper's density (4 per 60x60 px). {drawn} Body: {len(p['channels'])} "
        f"stride-2 Conv-BN-ReLU stages {p['channels']}, so a {p['canvas']} px scene becomes a {side}x{side} map of "
        f"{cell} px cells; head: {head_words(profile)}. fit_one_cycle({p['epochs']}), bs 64, Adam; learning rate "
        f"{search}; {p.get('precision', 'fp32')}" + (", channels_last (NHWC) weights" if p.get("channels_last")
                                                       else "") + ", on every machine alike.",
        "",
        f"A run *learns* when its held-out accuracy is above {LEARNED} (declared before the runs; chance is 0.5). "
        "Object sizes are in cells of the final map. Digits are 28 px natively: below 28 px the digit is shrunk, "
        "so small sizes test detail as well as dilution; the dilution arm keeps the digit at 28 px.",
    ]


def head_words(profile: str) -> str:
    p = PROFILES[profile]
    if p.get("arch") == "fastai_head":
        return (f"fastai's `create_head(ps={p['p']:g})` with the head's global pool (pool -> flatten -> BN -> "
                "dropout -> linear 512 -> ReLU -> BN -> dropout -> linear)")
    return "global pool -> linear"


def threshold(ctx: R.Context, thr: pd.DataFrame) -> list[str]:
    profile = ctx.profile
    if thr.empty:
        return ["## Threshold arm", "", "No runs yet."]
    rows, hs = [], heads(profile)
    for size, g in thr.groupby("obj_size"):
        avg = g[g["pool"] == "avg"].set_index("seed")["accuracy"]
        row = {"size": f"{size / cell_px(profile):g} ({int(size)} px)"}
        for h in hs:
            gh = g[g["pool"] == h]
            k, n = int(gh["learned"].sum()), len(gh)
            share, lo, hi = stats.share_interval(k, n) if n else (math.nan,) * 3
            learners = gh[gh["learned"]]["accuracy"]
            m, l2, h2, nl, _ = stats.interval(learners)
            half = (h2 - l2) / 2 if nl > 1 else math.nan
            row[f"{h}: learn"] = f"{k}/{n} ({lo:.2f}-{hi:.2f})"
            row[f"{h}: acc. of learners"] = R.fmt(m, half, 3, 0, max(l2, 0.0), min(h2, 1.0)) if nl else "-"
            if h != "avg":
                d = (gh.set_index("seed")["accuracy"] - avg).dropna()
                dm, dl, dh, dn, _ = stats.interval(d)
                row[f"{h} - avg"] = f"{dm:+.3f} [{dl:+.3f}, {dh:+.3f}]" if dn > 1 else "-"
        rows.append(row)
    t = pd.DataFrame(rows)
    share_cols = ["size", *[f"{h}: learn" for h in hs]]
    acc_cols = ["size", *[f"{h}: acc. of learners" for h in hs]]
    diff_cols = ["size", *[f"{h} - avg" for h in hs if h != "avg"]]
    # one size, no threshold to draw: each seed's avg and max instead
    one_size = thr["obj_size"].nunique() == 1 and {"avg", "max"} <= set(thr["pool"])
    fig = (ctx.figure(figures.paired_by_seed(thr, profile), f"{profile}_by_seed.png") if one_size
           else ctx.figure(figures.share_by_size(thr, profile), f"{profile}_share_vs_size.png"))
    return ["## Threshold arm: does the head learn to see the object at all?", "",
            (f"Objects from {min(thr['cells']):g} to {max(thr['cells']):g} cells" if thr["cells"].nunique() > 1 else
             f"Objects of {min(thr['cells']):g} cells") + f" of the {map_side(profile)}x{map_side(profile)} map; "
            f"seeds per cell: {seed_counts(thr)}.", "",
            "### Share of seeds that learn (exact 95% interval)", "", t[share_cols].to_markdown(index=False), "",
            fig, "", "### Each head's threshold: the size at which half the seeds learn", "",
            "A logistic model of learns against log size per head (95% profile-likelihood interval):", "",
            *[f"- {h}: " + stats.threshold_text(stats.threshold(g["cells"], g["learned"]), " cells")
              for h, g in thr.groupby("pool", sort=False) if h in hs], "",
            "### Held-out accuracy of the runs that learn (mean ± 95% t-interval)", "",
            t[acc_cols].to_markdown(index=False), "",
            "### Paired difference from avg, all runs (mean [95% t-interval], by seed)", "",
            t[diff_cols].to_markdown(index=False)]


def seed_counts(runs: pd.DataFrame) -> str:
    n = runs.groupby("cell_id")["seed"].nunique()
    return f"{n.min()}" if n.min() == n.max() else f"{n.min()} to {n.max()}"


def dilution(ctx: R.Context, dil: pd.DataFrame) -> list[str]:
    profile = ctx.profile
    if not PROFILES[profile]["maps"]:
        return ["## Dilution arm", "", f"The {profile} profile has no dilution arm; the medium and confirm profiles "
                "grow the map with the 28 px digit."]
    if dil.empty:
        return ["## Dilution arm", "", "No runs yet."]
    s = R.summarize(dil, ["map", "pool"])
    by = dil.groupby(["map", "pool"], sort=False)
    s["cell"] = [c + f" (learn {int(k)}/{int(n)})" for c, k, n in zip(R.cells(s, 3), by["learned"].sum(), by.size())]
    t = s.pivot(index="map", columns="pool", values="cell").reindex(columns=list(dilution_heads(profile)))
    t = t.astype(object).where(t.notna(), "not run")
    t.index = [f"{m}x{m} ({m * cell_px(profile)} px scene; the bear covers {share_of_map(m, profile):.1%})"
               for m in t.index]
    fig = ctx.figure(figures.difference_by_map(dil, profile, ctx.table), f"{profile}_dilution.png")
    return ["## Dilution arm: the bear at its native 28 px, the map growing", "",
            f"The same {cell_px(profile)} px cells and clutter density at every map size, the object always a "
            f"28 px digit: only the share of the map it covers changes. Seeds per cell: {seed_counts(dil)}.", "",
            t.to_markdown(), "", fig]


def share_of_map(m: int, profile: str) -> float:
    return (28 / cell_px(profile)) ** 2 / m**2


def head_only(thr: pd.DataFrame, profile: str) -> list[str]:
    hs = heads(profile)
    probes = [f"probe_{h}" for h in hs]
    if not PROFILES[profile].get("probe", True):
        return ["## Head-only arm", "", f"The {profile} profile does not probe its bodies; the medium and confirm "
                "profiles fit every head afresh on each threshold run's frozen body."]
    if thr.empty or thr[probes].isna().all().all():
        return ["## Head-only arm", "", "No probes yet."]
    size = differing_size(thr)
    g = thr[thr["obj_size"] == size]
    m = g.groupby("pool")[probes].mean().reindex(list(hs))
    own = g.groupby("pool")["accuracy"].mean().reindex(list(hs))
    m.columns = [f"probe {h}" for h in hs]
    m.insert(0, "its own head", own)
    m.index.name = "body trained with"
    best_probe = m.iloc[:, 1:].max(axis=1)
    lines = []
    for h in hs:
        if own[h] <= LEARNED and best_probe[h] <= LEARNED:
            lines.append(f"{h}: its bodies fail under every probe (best {best_probe[h]:.3f}): the head trained a "
                         "body that does not see the object")
        elif own[h] <= LEARNED:
            lines.append(f"{h}: its own head fails ({own[h]:.3f}) but a fresh head on the same body reaches "
                         f"{best_probe[h]:.3f}: the evidence is in the body, the trained head missed it")
    learners = g[g["learned"]]  # runs, not heads: a head whose mean is above chance still has runs that failed
    which = ", ".join(f"{h} {int((learners['pool'] == h).sum())} of {int((g['pool'] == h).sum())}" for h in hs
                      if (learners["pool"] == h).any())
    for h in ("max", "concat"):
        if len(learners):
            lines.append(f"the {h} probe on the bodies of the runs that learn ({which}): "
                         f"{learners[f'probe_{h}'].mean():.3f} (their own heads: {learners['accuracy'].mean():.3f})")
    return ["## Head-only arm: a worse body, or a head that cannot pool the evidence?", "",
            f"At {size / cell_px(profile):g} cells ({int(size)} px), where the heads differ most in the share of "
            "seeds that learn: each run's body frozen, and every pooling head fitted afresh on its feature maps "
            "(logistic regression on the pooled features, its strength chosen by cross-validation on the training "
            "scenes). Mean held-out accuracy over seeds:", "", m.to_markdown(floatfmt=".3f"), "",
            *[f"- {x}" for x in lines]]


def differing_size(thr: pd.DataFrame) -> int:
    "The threshold size where the heads' shares of seeds that learn differ most (the smaller size on a tie)."
    share = thr.groupby(["obj_size", "pool"])["learned"].mean().unstack()
    spread = share.max(axis=1) - share.min(axis=1)
    return int(spread.idxmax()) if spread.max() > 0 else int(share.index[len(share) // 2])


def why_curves(ctx: R.Context, thr: pd.DataFrame) -> tuple[int, pd.DataFrame]:
    "The size where the heads differ most, and its runs' training curves with each run's head and `learned`."
    size = differing_size(thr)
    g = thr[thr["obj_size"] == size]
    curves = ctx.store.curves(g["run_id"])
    return size, curves.merge(g[["run_id", "pool", "learned", "accuracy", "train_loss"]].rename(
        columns={"train_loss": "final_train_loss"}), on="run_id")


def max_against_avg(per: pd.Series, by: pd.DataFrame) -> str:
    "What the early gradient says of max against avg, in words from the numbers; empty without both heads."
    if not {"max", "avg"} <= set(per.index):
        return ""
    groups = [by.loc["max", k] for k in (True, False) if k in by.columns and by.loc["max"].notna()[k]]
    alike = len(groups) == 2 and all(g > per["avg"] for g in groups)
    if per["max"] > per["avg"]:
        return (f"max puts more of the gradient on the object's cells than avg from the first steps ({per['max']:.2f} "
                f"against {per['avg']:.2f} times an even spread)" + (", in its runs that learn and in those that do "
                                                                      "not" if alike else "")
                + ": these curves do not show max's gradient going to the clutter instead of the object, and they do "
                "not say why max's runs fail to train")
    return (f"max puts less of the gradient on the object's cells than avg from the first steps ({per['max']:.2f} "
            f"against {per['avg']:.2f} times an even spread): the clutter takes more of max's gradient")


def why(ctx: R.Context, thr: pd.DataFrame) -> list[str]:
    if thr.empty:
        return []
    size, curves = why_curves(ctx, thr)
    g = thr[thr["obj_size"] == size]
    if curves.empty:
        return ["## Why heads fail", "", "No training curves were recorded for these runs."]
    fig = ctx.figure(figures.curves(curves, size, ctx.profile), f"{ctx.profile}_why.png")
    early = curves[(curves["step"] > 0) & (curves["step"] <= figures.EARLY)]
    share = early.groupby("pool")["object_grad_share"].median()
    even = curves["object_cell_share"].median()
    per, by = figures.early_spread(curves)
    lines = [f"in the first {figures.EARLY} steps, the median share of the loss's gradient on the final map that "
             "reaches the object's cells: " + ", ".join(f"{h} {share[h]:.3f} ({per[h]:.2f} times an even spread)"
                                                        for h in HEADS if h in share)
             + f" (an even spread gives the object's share of the cells, {even:.3f})"]
    both = {True, False} <= set(by.columns)
    mixed = [h for h in HEADS if both and h in by.index and by.loc[h].notna().all()]
    if mixed:
        lines.append("heads whose seeds split, early gradient on the object's cells in the runs that learn vs those "
                     "that do not, times an even spread: "
                     + ", ".join(f"{h} {by.loc[h, True]:.2f} vs {by.loc[h, False]:.2f}" for h in mixed))
    if said := max_against_avg(per, by):
        lines.append(said)
    failed = g[~g["learned"]]
    if len(failed):
        fl = failed.groupby("pool")["train_loss"].median()
        fits = (fl < LN2 * 0.9).any()
        lines.append("runs that do not learn end at a median train loss of "
                     + ", ".join(f"{h} {fl[h]:.3f}" for h in HEADS if h in fl) + f" (chance {LN2})"
                     + (": below chance, they fit the training scenes without finding the object" if fits else ""))
    return ["## Why heads fail", "",
            f"At {size / cell_px(ctx.profile):g} cells ({int(size)} px). Top: the runs that learn; bottom: those "
            "that do not. Left: each head's median smoothed training loss; right: the share of the gradient on the "
            "final feature map that falls in the object's cells, as a multiple of the share an even spread over the "
            "map's cells puts there (1, the dashed line: what avg gives by construction), over training (log "
            "steps).", "", fig, "",
            *[f"- {x}" for x in lines]]


def cams(ctx: R.Context) -> list[str]:
    import torch

    from cnn_experiments.data.scenes import scenes_for
    from cnn_experiments.models.cams import cam_figure
    from cnn_experiments.runs.config import from_row
    from cnn_experiments.training.train import build_model, tensors
    if PROFILES[ctx.profile].get("arch", "pooled_cnn") != "pooled_cnn":
        return ["## Where each head looks: class activation maps", "", "None: fastai's head has a hidden layer between "
                "the pool and the classes, so no linear read-out turns the final map into a class activation map."]
    kept = [f for f in ctx.store.weights_dir.glob("*.safetensors")] if ctx.store.weights_dir.exists() else []
    ids = {f.stem for f in kept}
    rows = ctx.runs[(ctx.runs["arm"] == "threshold") & ctx.runs["run_id"].isin(ids)]
    if rows.empty:
        return ["## Where each head looks: class activation maps", "", "No saved weights for this profile."]
    models, cfg = {}, None
    for r in rows.sort_values("pool", key=lambda c: c.map(HEADS.index)).to_dict("records"):
        cfg = from_row(r)
        model = build_model(cfg, 2)
        model.load_state_dict(ctx.store.weights(r["run_id"]))
        models[cfg.pool] = model.eval()
    t = tensors(cfg.replace(device="cpu"))
    (_, _, _), (x_raw, y, boxes) = scenes_for(cfg.canvas, cfg.obj_size, cfg.num_dist, cfg.target, cfg.mode,
                                              cfg.n_scenes, False, cfg.seed if cfg.vary_data else None)
    with torch.no_grad():
        fig, table = cam_figure(models, t.x_valid, x_raw, y, boxes, cfg.canvas)
    img = ctx.figure(fig, f"{ctx.profile}_cams.png")
    return ["## Where each head looks: class activation maps", "",
            f"Seed {cfg.seed}, object of {cfg.obj_size / cell_px(ctx.profile):g} cells ({cfg.obj_size} px), the "
            "weights the sweep saved. The map is the final feature map weighted by the linear layer's 'bear minus "
            "not-bear' weights, before pooling, upsampled onto the scene, on one colour scale for every head; the "
            "box is the object.", "", img, "",
            table.to_markdown(index=False)]


def search_section(runs: pd.DataFrame, profile: str) -> list[str]:
    p = PROFILES[profile]
    if len(p["lrs"]) == 1:
        return ["## Learning rate", "", f"This profile declares one rate, {p['lrs'][0]:g}, for every cell: no search."]
    lr = chosen_lrs(profile, runs)
    searched = runs[runs["arm"] == "search"]
    rows = []
    for arm, cs in cells(profile).items():
        for c in cs:
            k = (c.canvas, c.obj_size, c.pool)
            rows.append(dict(arm=arm, cell=f"{c.obj_size} px in {c.canvas} px", head=c.pool, lr=lr[k],
                             edge=lr[k] in (min(p["lrs"]), max(p["lrs"]))))
    t = pd.DataFrame(rows).drop_duplicates(["cell", "head"])
    table = t.pivot(index="cell", columns="head", values="lr")
    table = table.loc[list(dict.fromkeys(t["cell"])), [h for h in HEADS if h in table.columns]]
    edges = t[t["edge"]]
    return ["## Learning rate (a nuisance parameter), searched per head and cell", "",
            f"Each cell trained at {', '.join(f'{x:g}' for x in p['lrs'])}, seed 0, on scenes of four fifths of "
            "the training digits and scored on scenes of the other fifth (never the held-out digits); the rate "
            f"with the best search-split accuracy is chosen ({len(searched)} search runs). Chosen rates:", "",
            table.map(lambda v: f"{v:g}" if v == v else "").to_markdown(), "",
            f"At the edge of the searched range: {len(edges)} of {len(t)} cells"
            + (" (" + ", ".join(f"{r.head} at {r.cell}: {r.lr:g}" for r in edges.itertuples()) + ")"
               if len(edges) else "") + "."]


def cluttered(ctx: R.Context) -> list[str]:
    path = ctx.results / "cluttered" / f"summary_{ctx.profile}.md"
    if not path.exists():
        return ["## Cluttered MNIST beside the RAM paper", "", f"Not run for this profile: `cnn-exp run cluttered "
                f"--profile {ctx.profile}`."]
    return ["## Cluttered MNIST beside the RAM paper", "", R.finding_of(path) + f" ([its report](../cluttered/"
            f"{path.name}))"]


def finding(table: pd.DataFrame, thr: pd.DataFrame, profile: str, word: str) -> str:
    "One sentence a reader can repeat: the effect at the lesson's scenario with its interval, then the verdict."
    if table is None or thr.empty:
        return f"C6 {word}: no runs yet."
    if not PROFILES[profile]["maps"]:
        return trainability_finding(table.iloc[0], thr, profile, word)
    r = table.iloc[0]
    n = int(r["n_a"])
    effect = f"{r['effect']:+.3f} [{r['ci_lo']:+.3f}, {r['ci_hi']:+.3f}] ({n} paired seeds)" if n else "not run yet"
    shares = thr.groupby("pool")["learned"].agg(["sum", "count"])
    k = {h: f"{int(shares.loc[h, 'sum'])}/{int(shares.loc[h, 'count'])}" for h in ("avg", "max", "concat")
         if h in shares.index}
    side = map_side(profile)
    return (f"with the bear in one cell of a {side}x{side} map ({cell_px(profile)} px in "
            f"{PROFILES[profile]['canvas']} px scenes), max minus avg pooling's held-out accuracy is "
            f"{effect}; runs that learn over "
            f"the threshold sizes: " + ", ".join(f"{h} {v}" for h, v in k.items())
            + f" ({profile} profile): C6 {word}.")





def trainability_finding(r: pd.Series, thr: pd.DataFrame, profile: str, word: str) -> str:
    "The threshold arm's answer in plain words: which head learned to see the small object in how many seeds."
    side, cell = map_side(profile), cell_px(profile)
    sizes = sorted(int(x) for x in thr["obj_size"].unique())
    k = thr.groupby("pool")["learned"].agg(["sum", "count"])
    seen = ", ".join(f"{h} in {int(k.loc[h, 'sum'])} of {int(k.loc[h, 'count'])} runs" for h in ("avg", "max")
                     if h in k.index)
    share = r["test"].startswith("exact sign-flip over seeds") or "McNemar" in r["test"]
    better = "learns to find it more often" if share else "finds it better"
    answer = {"supported": f"max pooling {better} than average pooling, as the lesson predicts",
              "contradicted": f"average pooling {better} than max pooling, the opposite of the lesson's prediction",
              stats.BELOW: "the heads differ by less than the smallest difference of interest"}.get(
        r["outcome"], "no difference between max and average pooling was resolved")
    acc = thr.groupby("pool")["accuracy"].mean()
    where = " and ".join(f"{s} px ({s / cell:g} cells)" for s in sizes)
    measured = ("share max - avg" if share else "held-out accuracy max - avg") + (
        f" {r['effect']:+.2f} [{r['ci_lo']:+.2f}, {r['ci_hi']:+.2f}]")
    return (f"with a bear of {where} in {PROFILES[profile]['canvas']} px scenes (a {side}x{side} map), {answer}: "
            f"{seen} learned it (mean accuracy avg {acc.get('avg', math.nan):.2f}, max {acc.get('max', math.nan):.2f}"
            f"); {measured} over {int(r['seeds'])} seeds ({profile} profile): C6 {word}.")

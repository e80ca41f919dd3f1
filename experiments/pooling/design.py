"""The pooling study's declaration: claim C6, its profiles, arms, search and declared comparisons.

    cnn-exp run pooling --profile medium          # = python -m experiments.pooling --profile medium

Three arms, one family of declared comparisons:
- threshold: the lesson's 7x7 map; objects from 3/8 of a cell to 1 1/4 cells; six heads; the learning rate
  searched per head and size; per cell the share of seeds that learn and the accuracy of those that do.
- dilution: the digit at its native 28 px while the map grows (same cell size, same clutter density): only the
  share of the map the object covers changes, the lesson's argument in isolation.
- head-only: each threshold run's body, frozen, probed by every pooling head (`Config.probe`).
Each run also records its training curve and where the loss's gradient falls on the final map (the object's
cells or the clutter's): the report's "why heads fail".

The `confirm` profile is the confirmatory study of the medium pilot, declared before its runs: fresh seeds
(1000 on) that each draw their own scenes, sizes dense around the pilot's thresholds, the map growing to 14x14,
a wider rate grid, and three questions, each with its declared test (`comparisons`):
1. trainability: over 12 to 16 px (0.75 to 1 cell), does max (or concat) learn at smaller objects than avg?
   The share of seeds that learn, exact McNemar paired by seed within each size. The pilot predicts the
   opposite of the lesson: avg learns from 14 px, max and concat from 16.
2. dilution: the 28 px digit on maps of 2x2 to 14x14: does max - avg grow with the map? The per-seed slope of
   max - avg over log2 of the map's side, a one-sample t over seeds (the pilot: +0.003 per doubling).
3. read-out: the bodies avg trained (at the sizes where they learn), frozen and read by each head: given the
   same features, does max find the object better than avg? Paired by seed (the pilot: +0.003).
Why max fails to train (the mechanism, tested apart from the lesson's claim): max sends the loss's gradient to one
cell per channel, at the start nearly always a fragment of clutter, so the body is never pushed to make the
object's cells stand out; avg spreads the gradient over every cell, the object's included. The mechanism
predicts (a) the read-out is equivalent within +-0.01 (the features, not the pooling, decide) and (b) GeM, a
softer max whose gradient reaches every cell in proportion to its activation, learns where max does not.
Seeds: 10 per cell, the power rule's count for the dilution slope (80% at +0.007 per doubling, about 0.02 from
the 2x2 to the 14x14 map, with the pilot's per-seed spread, at Holm's first-step level); the share tests and the
read-out have more power at 10 than that. Rates: threshold cells share one rate per head, scored over its five
sizes (each size's one search run is noise where runs split); dilution cells one per head and map.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from cnn_experiments.runs.config import Config
from cnn_experiments.statistics.stats import Comparison
from cnn_experiments.sweeps import search as S

TITLE = "pooling: does max pooling find the tiny bear that average pooling dilutes?"
CLAIM = ("C6: reduce the image to a 7x7 grid; average pooling asks each cell 'is there a bear here?' and "
         "averages, so a tiny bear in a corner is diluted; max pooling finds it; fastai concatenates both.")
HEADS = ("avg", "max", "concat", "avgmax", "gem", "lse")
DILUTION_HEADS = ("avg", "max", "concat")  # the claim's three
LRS = (3e-4, 1e-3, 3e-3, 1e-2, 3e-2)  # the declared search, per head and cell, on the search split
LEARNED = 0.6  # declared before the runs: a run learns when its held-out accuracy is above this (chance is 0.5)
LN2 = 0.6931  # cross-entropy of a binary guess at 50%
CONFIRM_LRS = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)  # the pilot chose 0.03 at 19 of 54 cells: the grid goes a step higher
PROFILES = {
    # about a minute on 2 CPU cores: the quick pilot's sharpest question, declared from it before its runs: a bear of
    # 12 px (0.75 cells of the 4x4 map), where the pilot's heads differed most (avg learned in 5 of 6 seeds, max in 1;
    # per-seed accuracy max - avg -0.20, SD 0.12); 12 fresh seeds that each draw their scenes (the exact sign-flip's
    # power: over 99% at the pilot's effect, about a quarter at the 0.05 margin, as its report plans); the pilot's rate,
    # 0.01 for both heads (interior); fp32 + channels_last, fast on every CPU, one precision for every machine
    "quick": dict(seeds=12, first_seed=100, vary_data=True, canvas=64, channels=(8, 16, 32, 64), sizes=(12,),
                  maps=(), heads=("avg", "max"), n_scenes=3000, epochs=5, lrs=(1e-2,), channels_last=True,
                  probe=False),
    # the quick study's pilot, at its 64 px geometry (a 4x4 map of 16 px cells): avg and max around the threshold,
    # rates searched per head, seeds that draw their own scenes; fp32 + channels_last, fast on every CPU
    "quick_pilot": dict(seeds=6, vary_data=True, canvas=64, channels=(8, 16, 32, 64), sizes=(10, 12, 14), maps=(),
                        heads=("avg", "max"), n_scenes=3000, epochs=5, lrs=(3e-3, 1e-2, 3e-2), rate_per="head",
                        channels_last=True, probe=False),
    # the lesson's 7x7 map at half the pixels (16 px cells): every arm, 10 seeds, about 2 hours on 2 CPU cores
    "medium": dict(seeds=10, canvas=112, channels=(8, 16, 32, 64), sizes=(6, 8, 10, 12, 14, 16, 20),
                   maps=(2, 4, 7, 10), n_scenes=4000, epochs=8, lrs=LRS),
    # the lesson's geometry (a GPU's work): 224 px scenes, five stride-2 stages, a 7x7 map of 32 px cells
    "full": dict(seeds=10, canvas=224, channels=(8, 16, 32, 64, 64), sizes=(12, 16, 20, 24, 28, 32, 40),
                 maps=(2, 4, 7, 14), n_scenes=8000, epochs=10, lrs=LRS),
    # fastai's own head (`create_head`: the pool -> flatten -> BN -> dropout -> linear 512 -> ReLU -> BN -> dropout ->
    # linear that `vision_learner` builds, ps=0.5) with each pool, on the confirmatory study's geometry (112 px, 7x7
    # map of 16 px cells): does the finding hold behind the head fastai users get? A pilot of 5 fresh seeds that draw
    # their own scenes, sizes from 0.75 to 1.25 cells, maps 2x2 to 7x7, the rate searched per head; from the confirm
    # runs' times (18 s a run at 112 px), about 35 minutes on 2 CPU cores
    "fastai_head_pilot": dict(seeds=5, first_seed=2000, vary_data=True, canvas=112, channels=(8, 16, 32, 64),
                              sizes=(12, 14, 16, 20), heads=("avg", "max", "concat"), maps=(2, 4, 7),
                              n_scenes=4000, epochs=8, lrs=CONFIRM_LRS, rate_per="head", arch="fastai_head",
                              head="fastai_pool", p=0.5, probe=False, channels_last=True),
    # the medium pilot's confirmatory study (module docstring): about 1.5 hours on 2 CPU cores
    "confirm": dict(seeds=10, first_seed=1000, vary_data=True, canvas=112, channels=(8, 16, 32, 64),
                    sizes=(12, 13, 14, 15, 16), heads=("avg", "max", "concat", "gem"), maps=(2, 4, 7, 14),
                    dilution_heads=("avg", "max"), n_scenes=4000, epochs=8, lrs=CONFIRM_LRS,
                    rate_per="head", cam_size=14),
}


def first_seed(profile: str) -> int:
    "The profile's first seed: a later study's seeds are fresh ones."
    return PROFILES[profile].get("first_seed", 0)


def cell_px(profile: str) -> int:
    "Side of a cell of the final map: each stride-2 stage halves the scene."
    return 2 ** len(PROFILES[profile]["channels"])


def map_side(profile: str, canvas: int | None = None) -> int:
    return (canvas or PROFILES[profile]["canvas"]) // cell_px(profile)


def heads(profile: str) -> tuple[str, ...]:
    "The threshold arm's heads."
    return PROFILES[profile].get("heads", HEADS)


def dilution_heads(profile: str) -> tuple[str, ...]:
    return PROFILES[profile].get("dilution_heads", DILUTION_HEADS)


def base(profile: str) -> Config:
    "The profile's runs before arm, head, size and rate: the suite's pool -> linear head unless it names fastai's."
    p = PROFILES[profile]
    return Config(data="scenes", arch=p.get("arch", "pooled_cnn"), head=p.get("head", "fastai"), p=p.get("p", 0.0),
                  canvas=p["canvas"], channels=p["channels"], target=3,
                  n_scenes=p["n_scenes"], epochs=p["epochs"], bs=64, schedule="one_cycle",
                  vary_data=p.get("vary_data", False), precision=p.get("precision", "fp32"),
                  channels_last=p.get("channels_last", False))


def cells(profile: str) -> dict[str, list[Config]]:
    "Each arm's cells before the search picks their rates (lr left at the declared grid's first)."
    p, b = PROFILES[profile], base(profile)
    return {
        "threshold": [b.replace(obj_size=s, pool=h, probe=p.get("probe", True)) for s in p["sizes"]
                      for h in heads(profile)],
        "dilution": [b.replace(canvas=m * cell_px(profile), obj_size=28, pool=h)
                     for m in p["maps"] for h in dilution_heads(profile)],
    }


def search(profile: str, runs: pd.DataFrame | None = None) -> list[Config]:
    "The declared search: every cell of every arm at every rate, one seed, trained and scored on the search split."
    todo = S.search_runs([c for arm in cells(profile).values() for c in arm], PROFILES[profile]["lrs"],
                         first_seed(profile))
    return sorted(todo, key=lambda c: (c.canvas, c.obj_size, HEADS.index(c.pool), c.lr))


def rate_group(profile: str):
    "Which cells share a rate: each its own, or (rate_per head) a threshold head's sizes together."
    if PROFILES[profile].get("rate_per", "cell") == "head":
        return lambda c: (c.canvas, c.pool, c.probe)  # threshold cells (probe) of one head; dilution: per map
    return None


def key(c) -> tuple:
    "A cell of the study without its rate: (canvas, object size, head)."
    return (int(c.canvas), int(c.obj_size), str(c.pool))


def arms(profile: str, runs: pd.DataFrame | None = None) -> dict[str, list[Config]]:
    "Each arm's cells at their searched rates."
    return {arm: S.choose(cs, PROFILES[profile]["lrs"], runs, rate_group(profile), first_seed(profile))
            for arm, cs in cells(profile).items()}


def chosen_lrs(profile: str, runs: pd.DataFrame | None) -> dict[tuple, float]:
    "Per cell (key), the rate the search chose."
    return {key(c): c.lr for cs in arms(profile, runs).values() for c in cs}


def grid(profile: str, runs: pd.DataFrame | None = None) -> list[Config]:
    return list(dict.fromkeys(c for cs in arms(profile, runs).values() for c in cs))


def label(runs: pd.DataFrame, profile: str) -> pd.DataFrame:
    """Each run once per arm it belongs to, with `arm`, `cells` (object side in cells of the final map),
    `map` (the map's side) and `learned`; search runs as arm "search"."""
    parts = []
    for arm, cs in {**arms(profile, runs), "search": search(profile)}.items():
        part = runs[runs["cell_id"].isin({c.cell_id for c in cs})]
        parts.append(part.assign(arm=arm))
    out = pd.concat(parts, ignore_index=True) if parts else runs.assign(arm=[])
    out = out.assign(cells=out["obj_size"] / cell_px(profile), map=out["canvas"] // cell_px(profile),
                     learned=out["accuracy"] > LEARNED)
    if profile != "confirm":
        return out
    out = pd.concat([out, slopes(out), readout(out)], ignore_index=True)
    return out.assign(learned=out["learned"].astype("boolean").fillna(False).astype(bool))  # derived rows: not runs


def slopes(runs: pd.DataFrame) -> pd.DataFrame:
    "Arm 'dilution trend': per seed and head, the OLS slope of (head - avg) accuracy over log2 of the map's side."
    dil = runs[runs["arm"] == "dilution"]
    acc = dil.pivot_table(index=["seed", "map"], columns="pool", values="accuracy")
    rows = []
    for seed, g in acc.groupby(level="seed"):
        x = np.log2(g.index.get_level_values("map").to_numpy(float))
        for h in [c for c in g.columns if c != "avg"]:
            y = (g[h] - g["avg"]).to_numpy()
            keep = np.isfinite(y)
            slope = np.polyfit(x[keep], y[keep], 1)[0] if keep.sum() >= 3 and np.ptp(x[keep]) > 0 else np.nan
            rows.append(dict(arm="dilution trend", pool=h, seed=seed, slope=slope, points=int(keep.sum())))
    return pd.DataFrame(rows, columns=["arm", "pool", "seed", "slope", "points"])


def readout(runs: pd.DataFrame) -> pd.DataFrame:
    """Arm 'read-out': the bodies avg trained at the threshold sizes where its run learned, read by each head
    (probe_<head>): per seed the mean over those sizes, one row per reading head."""
    bodies = runs[(runs["arm"] == "threshold") & (runs["pool"] == "avg") & runs["learned"]]
    rows = [dict(arm="read-out", reader=h, seed=seed, accuracy=g[f"probe_{h}"].mean(), bodies=len(g))
            for seed, g in bodies.groupby("seed") for h in DILUTION_HEADS if f"probe_{h}" in g]
    return pd.DataFrame(rows, columns=["arm", "reader", "seed", "accuracy", "bodies"])


def one_cell(profile: str) -> int:
    "The size of one cell, in px: the lesson's tiny bear, in one cell of the map."
    return cell_px(profile)


def comparisons(profile: str) -> list[Comparison]:
    if profile == "confirm":
        return confirmed()
    p = PROFILES[profile]
    if p["maps"]:
        return pilot(profile)
    return quick(profile) if len(p["sizes"]) == 1 else trainability(profile)


def quick(profile: str) -> list[Comparison]:
    """A profile of one object size (quick), declared from its pilot before its runs: does max find the bear better
    than avg? Held-out accuracy paired by seed, the exact sign-flip test, in the lesson's direction (tested
    two-sided); the quick pilot found the opposite."""
    size = PROFILES[profile]["sizes"][0]
    return [Comparison(f"max - avg, held-out accuracy, a bear of {size / cell_px(profile):g} cells ({size} px)",
                       dict(arm="threshold", pool="max"), dict(arm="threshold", pool="avg"), test="sign-flip",
                       margin=0.05)]


def trainability(profile: str) -> list[Comparison]:
    """A profile of the threshold arm alone (quick, quick_pilot), declared before its runs: max - avg in the share of
    seeds that learn, in the lesson's direction (tested two-sided); the seed is the unit over several sizes."""
    sizes = PROFILES[profile]["sizes"]
    return [Comparison(f"trainability: max - avg, share of seeds that learn, {'-'.join(map(str, sizes))} px",
                       dict(arm="threshold", pool="max"), dict(arm="threshold", pool="avg"), test="share",
                       learned=LEARNED, margin=0.1, strata=("obj_size",) if len(sizes) > 1 else ())]


def confirmed() -> list[Comparison]:
    """The confirmatory study's C6 family, declared before its runs, each row in the lesson's direction (tested
    two-sided): max (concat) learns at smaller objects than avg; max - avg grows with the map; max reads the same
    features better than avg."""
    thr = dict(arm="threshold")
    return [
        *[Comparison(f"trainability: {h} - avg, share of seeds that learn, 12-16 px", {**thr, "pool": h},
                     {**thr, "pool": "avg"}, test="share", learned=LEARNED, margin=0.1, strata=("obj_size",))
          for h in ("max", "concat")],
        Comparison("dilution: slope of max - avg over log2 of the map's side (2x2 to 14x14), per seed",
                   dict(arm="dilution trend", pool="max"), 0.0, metric="slope", margin=0.007),
        Comparison("read-out: max - avg reading the same avg-trained bodies", dict(arm="read-out", reader="max"),
                   dict(arm="read-out", reader="avg"), margin=0.01),
    ]


def mechanism() -> list[Comparison]:
    """Why max fails to train, its own family, declared before the runs: the read-out is the same within +-0.01
    (the body, not the pooling, decides), and GeM, a softer max, learns where max does not."""
    thr = dict(arm="threshold")
    return [Comparison("read-out: max - avg reading the same avg-trained bodies, within +-0.01",
                       dict(arm="read-out", reader="max"), dict(arm="read-out", reader="avg"), expect="equivalent",
                       margin=0.01),
            Comparison("intervention: gem - max, share of seeds that learn, 12-16 px", {**thr, "pool": "gem"},
                       {**thr, "pool": "max"}, test="share", learned=LEARNED, margin=0.1, strata=("obj_size",))]


def pilot(profile: str) -> list[Comparison]:
    """The claim's family, declared before the runs: detection at one cell (paired by seed), the share of seeds
    that learn over the threshold sizes (exact McNemar, paired by seed within each size), and the dilution trend
    ((max - avg) on the largest map minus on the 2x2 map, paired by seed)."""
    one = dict(arm="threshold", obj_size=one_cell(profile))
    big, small = max(PROFILES[profile]["maps"]), min(PROFILES[profile]["maps"])
    out = []
    for head in ("max", "concat"):
        out.append(Comparison(f"{head} - avg, accuracy, object of one cell", {**one, "pool": head},
                              {**one, "pool": "avg"}, margin=0.01))
    for head in ("max", "concat"):
        out.append(Comparison(f"{head} - avg, share of runs that learn, all threshold sizes",
                              dict(arm="threshold", pool=head), dict(arm="threshold", pool="avg"), test="share",
                              learned=LEARNED, margin=0.1, strata=("obj_size",)))
    for head in ("max", "concat"):
        out.append(Comparison(f"dilution: ({head} - avg) on the {big}x{big} map minus on the {small}x{small} map",
                              dict(arm="dilution", map=big, pool=head), dict(arm="dilution", map=big, pool="avg"),
                              c=dict(arm="dilution", map=small, pool=head), d=dict(arm="dilution", map=small,
                                                                                   pool="avg"), margin=0.01))
    return out


def keep(cfg: Config, profile: str) -> tuple[str, ...]:
    """The runs whose weights the report draws (class activation maps): the first seed, avg/max/concat, the object
    of one cell (or the profile's cam_size)."""
    if PROFILES[profile].get("arch", "pooled_cnn") != "pooled_cnn":  # an MLP head has no class activation map
        return ()
    size = PROFILES[profile].get("cam_size", one_cell(profile))
    drawn = (cfg.split == "heldout" and cfg.seed == first_seed(profile)
             and cfg.canvas == PROFILES[profile]["canvas"] and cfg.obj_size == size)  # the threshold arm's
    return ("",) if drawn and cfg.pool in DILUTION_HEADS else ()

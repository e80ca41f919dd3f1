"""Claim C6: average pooling dilutes a tiny object; max pooling finds it; fastai concatenates both.

    cnn-exp run pooling --profile medium          # = python -m experiments.pooling --profile medium

Three arms, one family of declared comparisons:
- threshold: the lesson's 7x7 map; objects from 3/8 of a cell to 1 1/4 cells; six heads; the learning rate
  searched per head and size; per cell the share of seeds that learn and the accuracy of those that do.
- dilution: the digit at its native 28 px while the map grows (same cell size, same clutter density): only the
  share of the map the object covers changes, the lesson's argument in isolation.
- head-only: each threshold run's body, frozen, probed by every pooling head (`Config.probe`).
Each run also records its training curve and where the loss's gradient falls on the final map (the object's
cells or the clutter's): the report's "why heads fail".
"""
from __future__ import annotations

import pandas as pd

from cnn_experiments import search as S
from cnn_experiments.config import Config
from cnn_experiments.experiment import Experiment
from cnn_experiments.stats import Comparison

TITLE = "pooling: does max pooling find the tiny bear that average pooling dilutes?"
CLAIM = ("C6: reduce the image to a 7x7 grid; average pooling asks each cell 'is there a bear here?' and "
         "averages, so a tiny bear in a corner is diluted; max pooling finds it; fastai concatenates both.")
HEADS = ("avg", "max", "concat", "avgmax", "gem", "lse")
DILUTION_HEADS = ("avg", "max", "concat")  # the claim's three
LRS = (3e-4, 1e-3, 3e-3, 1e-2, 3e-2)  # the declared search, per head and cell, on the search split
LEARNED = 0.6  # declared before the runs: a run learns when its held-out accuracy is above this (chance is 0.5)
LN2 = 0.6931  # cross-entropy of a binary guess at 50%
PROFILES = {
    # minutes on a 2-core CPU: 64 px scenes, a 4x4 map of 16 px cells; one declared rate, no search
    "quick": dict(seeds=2, canvas=64, channels=(8, 16, 32, 64), sizes=(8, 12, 16, 20), maps=(2, 4, 7),
                  n_scenes=3000, epochs=5, lrs=(1e-2,)),
    # the lesson's 7x7 map at half the pixels (16 px cells): every arm, 10 seeds, about 2 hours on 2 CPU cores
    "medium": dict(seeds=10, canvas=112, channels=(8, 16, 32, 64), sizes=(6, 8, 10, 12, 14, 16, 20),
                   maps=(2, 4, 7, 10), n_scenes=4000, epochs=8, lrs=LRS),
    # the lesson's geometry (a GPU's work): 224 px scenes, five stride-2 stages, a 7x7 map of 32 px cells
    "full": dict(seeds=10, canvas=224, channels=(8, 16, 32, 64, 64), sizes=(12, 16, 20, 24, 28, 32, 40),
                 maps=(2, 4, 7, 14), n_scenes=8000, epochs=10, lrs=LRS),
}


def cell_px(profile: str) -> int:
    "Side of a cell of the final map: each stride-2 stage halves the scene."
    return 2 ** len(PROFILES[profile]["channels"])


def map_side(profile: str, canvas: int | None = None) -> int:
    return (canvas or PROFILES[profile]["canvas"]) // cell_px(profile)


def base(profile: str) -> Config:
    p = PROFILES[profile]
    return Config(data="scenes", arch="pooled_cnn", canvas=p["canvas"], channels=p["channels"], target=3,
                  n_scenes=p["n_scenes"], epochs=p["epochs"], bs=64, schedule="one_cycle")


def cells(profile: str) -> dict[str, list[Config]]:
    "Each arm's cells before the search picks their rates (lr left at the declared grid's first)."
    p, b = PROFILES[profile], base(profile)
    return {
        "threshold": [b.replace(obj_size=s, pool=h, probe=True) for s in p["sizes"] for h in HEADS],
        "dilution": [b.replace(canvas=m * cell_px(profile), obj_size=28, pool=h)
                     for m in p["maps"] for h in DILUTION_HEADS],
    }


def search(profile: str) -> list[Config]:
    "The declared search: every cell of every arm at every rate, seed 0, trained and scored on the search split."
    todo = S.search_runs([c for arm in cells(profile).values() for c in arm], PROFILES[profile]["lrs"])
    return sorted(todo, key=lambda c: (c.canvas, c.obj_size, HEADS.index(c.pool), c.lr))


def key(c) -> tuple:
    "A cell of the study without its rate: (canvas, object size, head)."
    return (int(c.canvas), int(c.obj_size), str(c.pool))


def arms(profile: str, runs: pd.DataFrame | None = None) -> dict[str, list[Config]]:
    "Each arm's cells at their searched rates."
    return {arm: S.choose(cs, PROFILES[profile]["lrs"], runs) for arm, cs in cells(profile).items()}


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
    return out.assign(cells=out["obj_size"] / cell_px(profile), map=out["canvas"] // cell_px(profile),
                      learned=out["accuracy"] > LEARNED)


def one_cell(profile: str) -> int:
    "The size of one cell, in px: the lesson's tiny bear, in one cell of the map."
    return cell_px(profile)


def comparisons(profile: str) -> list[Comparison]:
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
    "The runs whose weights the report draws (class activation maps): seed 0, object of one cell, avg/max/concat."
    drawn = cfg.split == "heldout" and cfg.seed == 0 and cfg.probe and cfg.obj_size == one_cell(profile)
    return ("",) if drawn and cfg.pool in DILUTION_HEADS else ()


def _report(ctx):
    from .report import report
    return report(ctx)


EXPERIMENT = Experiment(name="pooling", title=TITLE, claim=CLAIM, profiles=PROFILES, grid=grid, report=_report,
                        comparisons=comparisons, search=search, keep=keep, label=label,
                        needs_runs=False)  # a profile not run yet gets a report that says so

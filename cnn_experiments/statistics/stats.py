"""Verdicts on claims: the one place that decides a comparison between runs.

A claim declares its comparisons as data; `compare` turns them and the runs (a DataFrame, one row per training run:
config columns, `seed`, metric columns) into a verdict table, and `verdict` reads the claim's verdict from it:

    small, large = {"obj_size": 16}, {"obj_size": 64}
    comparisons = [
        Comparison("max beats avg, small objects", a={"pool": "max", **small}, b={"pool": "avg", **small}),
        Comparison("same, large objects", a={"pool": "max", **large}, b={"pool": "avg", **large}, expect="equivalent"),
    ]
    table = compare(runs, comparisons)
    print(markdown(table), verdict(table))

Rule: one hypothesis per comparison, Holm's correction over the claim's family at ALPHA. A directional row tests the
difference (two-sided): supported in the predicted direction, contradicted in the other. An "equivalent" row tests
its margin: equivalent from a TOST inside it, contradicted from a difference resolved outside it (its 95% interval
wholly beyond the margin). A per-seed statistic that is discrete or degenerate gets an exact test. An arm with fewer
than MIN_SEEDS replicates gets numbers but no verdict ("indicative"). Each row states its power at the declared
smallest effect of interest (the margin) at the family's Bonferroni level, Holm's first step.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.power import NormalIndPower, TTestIndPower, TTestPower
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    proportion_confint,
    test_proportions_2indep,
    tost_proportions_2indep,
)
from statsmodels.stats.weightstats import DescrStatsW, ttest_ind, ttost_ind

from . import exact

ALPHA = 0.05  # family-wise error rate of a claim's comparisons
POWER = 0.8  # for the smallest detectable difference
MIN_SEEDS = 5  # fewer replicates in an arm: no verdict, the comparison is "indicative"
BELOW = "below the margin"  # a direction resolved, the whole interval smaller than the effect of interest
OUTCOMES = ("supported", "contradicted", "equivalent", BELOW, "inconclusive")
TESTS = ("t", "sign-flip", "rank-trend", "share")
EXPECTS = ("greater", "less", "equivalent")
COLUMNS = ["comparison", "metric", "test", "expect", "margin", "n_a", "n_b", "strata", "dropped", "effect", "ci_lo",
           "ci_hi", "p", "p_adj", "power", "detectable", "outcome", "note"]
NAN = math.nan
# the range of each metric a study reports: an interval never runs outside it
RANGES = {"accuracy": (0.0, 1.0), "auc": (0.0, 1.0), "error_rate": (0.0, 1.0), "error": (0.0, 100.0),
          "rho": (-1.0, 1.0), "edge_match": (-1.0, 1.0), "valid_loss": (0.0, math.inf),
          "train_loss": (0.0, math.inf), "gap": (-math.inf, math.inf)}

_TEST_NAMES = {("t", "paired"): "paired t", ("t", "welch"): "Welch t", ("t", "one-sample"): "one-sample t",
               ("t", "interaction"): "paired t on (a-b)-(c-d)", ("sign-flip", "paired"): "exact sign-flip",
               ("sign-flip", "one-sample"): "exact sign-flip, one sample",
               ("sign-flip", "interaction"): "exact sign-flip on (a-b)-(c-d)",
               ("rank-trend", "one-sample"): "exact permutation of the order within each seed",
               ("share", "paired"): "exact McNemar (share that learns)",
               ("share", "welch"): "Fisher exact (share that learns)"}
# per-item held-out predictions by run id: a mapping, or a loader of the run ids asked for (Store.items)
Items = Mapping[str, np.ndarray] | Callable[[list[str]], Mapping[str, np.ndarray]]
ITEM_SIGNS = {"one-sample": {"a": 1.0}, "paired": {"a": 1.0, "b": -1.0},
              "interaction": {"a": 1.0, "b": -1.0, "c": -1.0, "d": 1.0}}  # each arm's sign in the per-seed effect
NOT_IN = "the held-out set's own sampling error is not in this row's interval"
NO_ITEMS = f"no per-item predictions: {NOT_IN}"


@dataclass(frozen=True)
class Comparison:
    """One comparison of a claim: arm a against arm b (or a reference number) on `metric`, and what it predicts.

    An arm is the runs whose columns equal all its values. With c and d, the effect per seed is (a - b) - (c - d).
    `margin` is the smallest effect of interest: an "equivalent" row's margin, and the difference at which a
    directional row's power is stated.
    """
    name: str
    a: Mapping[str, object]
    b: Mapping[str, object] | float
    metric: str = "accuracy"
    expect: str = "greater"
    margin: float = 0.01
    paired: bool = True
    test: str = "t"  # t; sign-flip (exact, on the per-seed effects); rank-trend (per-seed Spearman rho); share
    learned: float = 0.6  # share: a run learns when its metric is above this (declared before the runs)
    c: Mapping[str, object] | None = None
    d: Mapping[str, object] | None = None
    strata: tuple[str, ...] = ()  # share, paired: runs pair by seed within each stratum (object size, say)
    heldout_n: int = 0  # one-sample against a fixed number: the held-out set's size, whose binomial error joins in
    # t on accuracy, every seed scored on one fixed held-out set: its items' sampling error joins in, from each
    # run's per-item predictions (compare's `items`; in place of heldout_n's binomial error where the runs have them)
    heldout_items: bool = False

    def __post_init__(self):
        wrong = {f"test is one of {TESTS}": self.test not in TESTS,
                 f"expect is one of {EXPECTS}": self.expect not in EXPECTS,
                 "an interaction needs both c and d": (self.c is None) != (self.d is None),
                 "an interaction is a paired t or sign-flip test of four arms":
                     self.c is not None and (not self.paired or self.test in ("share", "rank-trend")
                                             or self.one_sample),
                 "a sign-flip test is paired or one-sample": self.test == "sign-flip" and self.design == "welch",
                 "a rank-trend test is one-sample against 0 (a 'points' column counts each seed's points)":
                     self.test == "rank-trend" and (not self.one_sample or self.b != 0),
                 "a share test compares two arms": self.test == "share" and self.one_sample,
                 "strata pair a share test by seed": bool(self.strata) and not (self.test == "share" and self.paired),
                 "a paired share test is directional": self.test == "share" and self.paired
                     and self.expect == "equivalent",
                 "heldout_n is for a one-sample t against a fixed number":
                     self.heldout_n > 0 and (self.design != "one-sample" or self.test != "t"),
                 "heldout_items is for a paired, one-sample or interaction t on accuracy":
                     self.heldout_items and (self.design not in ITEM_SIGNS or self.test != "t"
                                             or self.metric != "accuracy"),
                 "the margin is >= 0": not self.margin >= 0}
        if any(wrong.values()):
            raise ValueError(f"comparison {self.name!r}: " + "; ".join(rule for rule, bad in wrong.items() if bad))

    @property
    def one_sample(self) -> bool:
        return not isinstance(self.b, Mapping)

    @property
    def design(self) -> str:
        "interaction, one-sample, paired or welch"
        if self.c is not None:
            return "interaction"
        return "one-sample" if self.one_sample else "paired" if self.paired else "welch"

    @property
    def test_name(self) -> str:
        return self.named(f" + the held-out set's binomial error (n={self.heldout_n})" if self.heldout_n else "")

    def named(self, heldout: str) -> str:
        "The test's name with `heldout`, the held-out set's error it counts, before a TOST's mark."
        name = _TEST_NAMES[self.test, self.design]
        if self.test == "share" and self.strata:  # the seed serves every stratum: it is the unit
            name = "exact sign-flip over seeds (each seed's share that learns, a - b, over its strata)"
        if self.test == "share":
            name += f", {self.metric} > {self.learned:g}" + (f", by {', '.join(self.strata)}" if self.strata else "")
        return name + heldout + (", TOST" if self.expect == "equivalent" else "")


def select(runs: pd.DataFrame, arm: Mapping[str, object]) -> pd.DataFrame:
    "The runs whose columns equal every value of `arm`; floats are compared with np.isclose."
    return runs[_mask(runs, arm)]


def _mask(runs: pd.DataFrame, arm: Mapping[str, object]) -> np.ndarray:
    mask = np.ones(len(runs), dtype=bool)
    for column, value in arm.items():
        if column not in runs.columns:
            raise ValueError(f"no column {column!r} in the runs (arm {dict(arm)})")
        values = runs[column].to_numpy()
        # a float from a declaration is rarely bit-equal to the one a sweep wrote
        mask &= np.isclose(values.astype(float), value) if isinstance(value, float) else values == value
    return mask


def compare(runs: pd.DataFrame, comparisons: Sequence[Comparison], alpha: float = ALPHA,
            partial: bool = False, power: bool = True, items: Items | None = None) -> pd.DataFrame:
    """The verdict table of a claim: one row per comparison, in order (columns: COLUMNS). With `partial` (a grid
    not yet complete) every row is indicative, since Holm's family is the whole declared set; a comparison whose
    arm has no runs yet is a row of no numbers. Without `power`, no power or detectable difference (faster).
    `items`: the runs' per-item held-out predictions by run id (a mapping or a loader), for rows declaring
    `heldout_items`; a row whose runs lack them is computed without and says so."""
    rows = [_measure(runs, c, items) if not partial or _all_arms(runs, c) else _unmeasured(c) for c in comparisons]
    family = np.array([not partial and min(r["n_a"], r["n_b"], r["seeds"]) >= MIN_SEEDS for r in rows], dtype=bool)
    return decide(rows, family, alpha, power)


def decide(rows: list[dict], family: np.ndarray, alpha: float = ALPHA, power: bool = True) -> pd.DataFrame:
    """Measured rows -> the verdict table: Holm over the family's one p per row, outcomes, and (with `power`) each
    row's power at its margin. The row's design stays in columns after COLUMNS (what a simulation redraws)."""
    p_adj = _holm([r["p"] for r in rows], family, alpha)
    level = alpha / max(1, int(family.sum()))  # Bonferroni: the level Holm uses for its first step
    for row, in_family, pa in zip(rows, family, p_adj):
        row.update(p_adj=pa, power=_power(row, level) if power else NAN,
                   detectable=_detectable(row, level) if power else NAN)
        row["outcome"] = _outcome(row, alpha) if in_family else "indicative"
        row["note"] = _note(row)
    extra = list(dict.fromkeys(k for r in rows for k in r if k not in COLUMNS))
    table = pd.DataFrame(rows, columns=COLUMNS + extra)
    table.attrs["alpha"] = alpha
    return table


def _measure(runs: pd.DataFrame, c: Comparison, items: Items | None = None) -> dict:
    "A comparison's numbers before the family's correction; `p` is its one hypothesis."
    if c.test == "share":
        numbers = _paired_shares(runs, c) if c.paired else _shares(runs, c)
    elif c.design == "welch":
        (a, dropped_a), (b, dropped_b) = _finite(_arm(runs, c, "a")[0]), _finite(_arm(runs, c, "b")[0])
        numbers = welch(a, b, c.margin) | {"dropped": dropped_a + dropped_b}
    elif c.test == "rank-trend":
        numbers = _rank_trend(runs, c)
    else:
        if c.design == "one-sample":
            d, dropped = _finite(_arm(runs, c, "a")[0] - float(c.b))
            extra = _binomial_var(d + float(c.b), c.heldout_n)
        else:
            (d, dropped), extra = _per_seed(runs, c), 0.0
        held = _held_out(runs, c, items) if c.heldout_items else {}
        numbers = differences(d, c.margin, c.test, held.get("item_var", extra)) | {"dropped": dropped} | held
    numbers.setdefault("seeds", min(numbers["n_a"], numbers["n_b"]))
    numbers.setdefault("strata", 1)
    lo, hi = _difference_range(c.metric)
    numbers["ci_lo"], numbers["ci_hi"] = (float(np.clip(numbers[k], lo, hi)) for k in ("ci_lo", "ci_hi"))
    row = {"comparison": c.name, "metric": c.metric, "test": c.test_name, "margin": c.margin, "expect": c.expect,
           "design": c.design, **numbers}
    if "items" in numbers:
        row["test"] = c.named(f" + the held-out items' sampling error ({numbers['items']} items)")
    if c.expect == "equivalent":  # the margin is the hypothesis: a TOST inside it, or a difference beyond it
        row["p"], row["beyond"] = min(row["p_tost"], row["p_out"]), row["p_out"] < row["p_tost"]
    else:
        row["p"] = row["p_diff"]
    return row


def _difference_range(metric: str) -> tuple[float, float]:
    lo, hi = RANGES.get(metric, (-math.inf, math.inf))
    return lo - hi, hi - lo


def _all_arms(runs: pd.DataFrame, c: Comparison) -> bool:
    arms = [c.a] + ([] if c.one_sample else [c.b]) + ([c.c, c.d] if c.c is not None else [])
    return all(_mask(runs, arm).any() for arm in arms)


def _unmeasured(c: Comparison) -> dict:
    return {"comparison": c.name, "metric": c.metric, "test": c.test_name, "margin": c.margin, "expect": c.expect,
            "design": c.design, "n_a": 0, "n_b": 0, "seeds": 0, "strata": 0, "dropped": 0, "effect": NAN,
            "ci_lo": NAN, "ci_hi": NAN, "p": NAN, "kind": "one", "scale": NAN}


def _arm(runs: pd.DataFrame, c: Comparison, which: str) -> tuple[np.ndarray, np.ndarray]:
    "An arm's metric (float) and seeds; an arm that selects nothing is a bug in the declaration."
    mask = _mask(runs, getattr(c, which))
    if not mask.any():
        raise ValueError(f"comparison {c.name!r}: arm {which} {dict(getattr(c, which))} selects no runs")
    if c.metric not in runs.columns:
        raise ValueError(f"comparison {c.name!r}: no metric column {c.metric!r}")
    seeds = runs["seed"].to_numpy()[mask] if "seed" in runs.columns else None
    return runs[c.metric].to_numpy(float)[mask], seeds


def _finite(values) -> tuple[np.ndarray, int]:
    "The finite values and the number of non-finite ones (diverged runs) left out."
    values = np.asarray(values, dtype=float)
    keep = np.isfinite(values)
    return values[keep], int((~keep).sum())


def _keyed(runs: pd.DataFrame, c: Comparison, which: str, keys: Sequence[str]) -> dict:
    "An arm's metric by (seed, *strata): one run per key, or the declaration is missing a column."
    mask = _mask(runs, getattr(c, which))
    if not mask.any():
        raise ValueError(f"comparison {c.name!r}: arm {which} {dict(getattr(c, which))} selects no runs")
    if "seed" not in runs.columns:
        raise ValueError(f"comparison {c.name!r}: no column 'seed' to pair the arms by")
    part = runs[mask]
    index = list(zip(*(part[k].to_numpy() for k in keys)))
    if len(set(index)) < len(index):
        raise ValueError(f"comparison {c.name!r}: arm {which} has several runs per seed; declare more columns"
                         + (" or strata" if c.test == "share" else ""))
    return dict(zip(index, part[c.metric].to_numpy(float)))


def _per_seed(runs: pd.DataFrame, c: Comparison) -> tuple[np.ndarray, int]:
    "Per-seed a - b (or (a - b) - (c - d)) over the seeds finite in every arm, and the non-finite runs left out."
    arms = [_keyed(runs, c, which, ["seed"]) for which in ("a", "b", "c", "d")[:4 if c.design == "interaction" else 2]]
    dropped = sum(int((~np.isfinite(list(arm.values()))).sum()) for arm in arms)
    common = sorted(set.intersection(*(set(arm) for arm in arms)))
    v = np.array([[arm[key] for arm in arms] for key in common], dtype=float).reshape(len(common), len(arms))
    v = v[np.isfinite(v).all(axis=1)]
    d = v[:, 0] - v[:, 1] if len(arms) == 2 else (v[:, 0] - v[:, 1]) - (v[:, 2] - v[:, 3])
    return d, dropped


def heldout_item_var(arms: Sequence[np.ndarray], signs: Sequence[float] = (1.0, -1.0)) -> float:
    """The variance that one fixed held-out set adds to the mean per-seed effect on accuracy, from the items: each
    arm's per-item correctness (seeds x items, rows paired by seed across arms), D_i the mean over seeds of the
    signed sum over arms, var_i(D_i) / n_items. One arm, sign 1: a mean accuracy's (what _binomial_var
    approximates). The seed-by-item residual is in this and in the seeds' own variance: counted twice, conservative."""
    per_item = sum(sign * np.asarray(arm, float).mean(0) for arm, sign in zip(arms, signs))
    n = np.shape(per_item)[-1]
    return float(np.var(per_item, ddof=1) / n) if n > 1 else 0.0


def _held_out(runs: pd.DataFrame, c: Comparison, items: Items | None) -> dict:
    "A heldout_items row's item variance and item count from its replicates' predictions, or why it has none."
    arms = _replicate_runs(runs, c)
    ids = [r for arm in arms for r, _ in arm]
    got = _load_items(items, ids) if ids else {}
    if len(got) < len(ids) or not ids:
        binomial = c.design == "one-sample" and c.heldout_n
        return {"heldout_note": "no per-item predictions: the held-out set's error is its binomial approximation"
                if binomial else NO_ITEMS}
    if len({len(v) for v in got.values()}) > 1:
        raise ValueError(f"comparison {c.name!r}: its runs were scored on held-out sets of different sizes "
                         f"({', '.join(map(str, sorted({len(v) for v in got.values()})))}); heldout_items needs one")
    if any(abs(got[r].mean() - v) > 1e-6 for arm in arms for r, v in arm):  # another run's, or of another metric
        return {"heldout_note": f"per-item predictions that do not give the runs' accuracy: {NOT_IN}"}
    matrices = [np.stack([got[r] for r, _ in arm]) for arm in arms]
    return {"item_var": heldout_item_var(matrices, list(ITEM_SIGNS[c.design].values())),
            "items": len(matrices[0][0])}


def _replicate_runs(runs: pd.DataFrame, c: Comparison) -> list[list[tuple[str, float]]]:
    """Per arm, the (run id, metric) of the replicates a t row uses: the finite runs of a one-sample arm; the seeds
    finite in every arm, in one order, for paired arms. No run_id column: none."""
    if "run_id" not in runs.columns:
        return [[] for _ in ITEM_SIGNS[c.design]]
    by_seed = []
    for which in ITEM_SIGNS[c.design]:
        part = runs[_mask(runs, getattr(c, which))]
        keys = range(len(part)) if c.design == "one-sample" else part["seed"].to_numpy()
        by_seed.append(dict(zip(keys, zip(part["run_id"].astype(str), part[c.metric].to_numpy(float)))))
    common = sorted(set.intersection(*(set(arm) for arm in by_seed)))
    kept = [k for k in common if all(np.isfinite(arm[k][1]) for arm in by_seed)]
    return [[arm[k] for k in kept] for arm in by_seed]


def _load_items(items: Items | None, run_ids: list[str]) -> dict[str, np.ndarray]:
    "The predictions of those of `run_ids` that have them."
    if items is None:
        return {}
    got = items(run_ids) if callable(items) else items
    return {r: np.asarray(got[r], bool) for r in run_ids if r in got}


def _binomial_var(accuracy: np.ndarray, n: int) -> float:
    "The variance a fixed held-out set of n items adds to a mean accuracy: every seed is scored on the same items."
    if not n or not len(accuracy):
        return 0.0
    p = float(np.clip(accuracy.mean(), 0, 1))
    return p * (1 - p) / n


def _constant(v: np.ndarray) -> bool:
    # every value equal: the t statistic is 0/0 and scipy's answer is NaN or rounding noise
    return bool(np.ptp(v) <= 1e-12 * max(1.0, float(np.abs(v).max())))


def differences(d: np.ndarray, margin: float, test: str, extra: float = 0.0) -> dict:
    """Paired, one-sample and interaction comparisons: a test of the mean of per-replicate effects d against 0 (t,
    with `extra` variance of the mean from a fixed held-out set), or the exact sign-flip test, which also decides
    every degenerate sample (all replicates equal) instead of a t statistic of 0/0."""
    n = len(d)
    row = {"n_a": n, "n_b": n, "effect": float(d.mean()) if n else NAN, "ci_lo": NAN, "ci_hi": NAN,
           "p_diff": NAN, "p_tost": NAN, "p_out": NAN, "kind": "one", "test_kind": test,
           "scale": float(d.std(ddof=1)) if n > 1 else NAN}
    if n < 2:
        return row
    if test == "sign-flip" or (_constant(d) and not extra):
        row["test_kind"] = "sign-flip"
        flip = exact.sign_flip(d)
        lower, upper = exact.sign_flip_p(d, -margin), exact.sign_flip_p(d, margin)
        # one-sided p from the two-sided symmetric test: half of it where the mean lies on the tested side
        one = lambda p, side: p / 2 if side else 1 - p / 2
        m = d.mean()
        p_above, p_below = one(lower, m > -margin), one(upper, m < margin)  # above -margin / below +margin
        p_out = 2 * min(one(upper, m > margin), one(lower, m < -margin))
        return row | {"ci_lo": flip["ci_lo"], "ci_hi": flip["ci_hi"], "p_diff": flip["p"],
                      "p_tost": max(p_above, p_below), "p_out": min(1.0, p_out), "constant": _constant(d)}
    var = d.var(ddof=1) / n + extra
    se = math.sqrt(var)
    # Satterthwaite: the held-out set's share of the variance has unlimited degrees of freedom
    df = (n - 1) * var**2 / (d.var(ddof=1) / n) ** 2 if d.var(ddof=1) > 0 else math.inf
    mean = float(d.mean())
    # one vectorised call: the tails at 0, for the TOST at -margin and +margin, and beyond the margin
    p0, p_above, p_below, p_up, p_low = stats.t.sf(
        [abs(mean) / se, (mean + margin) / se, -(mean - margin) / se, (mean - margin) / se,
         -(mean + margin) / se], df)
    half = stats.t.ppf(0.975, df) * se
    return row | {"ci_lo": mean - half, "ci_hi": mean + half, "p_diff": float(2 * p0),
                  "p_tost": float(max(p_above, p_below)), "p_out": float(min(1.0, 2 * min(p_up, p_low))),
                  "scale": math.sqrt(var * n)}


def _rank_trend(runs: pd.DataFrame, c: Comparison) -> dict:
    "Per-seed Spearman rho against 0: the exact permutation test; the interval is the t-interval over seeds."
    part = select(runs, c.a)
    if "points" not in part.columns:
        raise ValueError(f"comparison {c.name!r}: a rank-trend test needs a 'points' column")
    part = part[np.isfinite(part[c.metric].astype(float))]
    rhos, points = part[c.metric].to_numpy(float), part["points"].to_numpy(int)
    n = len(rhos)
    row = {"n_a": n, "n_b": n, "dropped": int(len(select(runs, c.a)) - n), "effect": float(rhos.mean()) if n else NAN,
           "ci_lo": NAN, "ci_hi": NAN, "p_diff": NAN, "p_tost": NAN, "p_out": NAN, "kind": "rank",
           "test_kind": "rank-trend", "scale": float(rhos.std(ddof=1)) if n > 1 else NAN,
           "points": tuple(int(k) for k in points), "constant": n > 1 and _constant(rhos)}
    if n < 2:
        return row
    lo, hi = interval(rhos)[1:3]
    return row | {"ci_lo": lo, "ci_hi": hi, "p_diff": exact.rank_trend(rhos, points)["p"]}


def welch(a: np.ndarray, b: np.ndarray, margin: float) -> dict:
    "Unpaired arms: Welch's t test, its interval, the TOST and the test beyond the margin, with unequal variances."
    n_a, n_b = len(a), len(b)
    row = {"n_a": n_a, "n_b": n_b, "effect": a.mean() - b.mean() if n_a and n_b else NAN, "ci_lo": NAN,
           "ci_hi": NAN, "p_diff": NAN, "p_tost": NAN, "p_out": NAN, "kind": "ind", "test_kind": "t", "scale": NAN}
    if n_a < 2 or n_b < 2:
        return row
    row["scale"] = math.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2)
    if _constant(a) and _constant(b):  # no spread at all: an exact test of two samples has nothing to permute
        row["constant"] = True
        return row | {"ci_lo": row["effect"], "ci_hi": row["effect"], "p_diff": 1.0, "p_tost": 1.0, "p_out": 1.0}
    with warnings.catch_warnings():  # one arm at a constant value (stuck at chance) is fine for Welch
        warnings.filterwarnings("ignore", "Precision loss", RuntimeWarning)
        result = stats.ttest_ind(a, b, equal_var=False)
    lo, hi = result.confidence_interval(0.95)
    # the same Welch test shifted by the margin: inside it (statsmodels' TOST), or beyond +m or -m
    p_tost = ttost_ind(a, b, -margin, margin, usevar="unequal")[0]
    up = ttest_ind(a, b, alternative="larger", usevar="unequal", value=margin)[1]
    down = ttest_ind(a, b, alternative="smaller", usevar="unequal", value=-margin)[1]
    return row | {"ci_lo": lo, "ci_hi": hi, "p_diff": result.pvalue, "p_tost": float(p_tost),
                  "p_out": min(1.0, 2 * float(min(up, down)))}


def _shares(runs: pd.DataFrame, c: Comparison) -> dict:
    "Share of runs that learn (metric > learned) in a vs b, unpaired: Fisher's exact test, Newcombe's interval."
    a, b = _arm(runs, c, "a")[0], _arm(runs, c, "b")[0]
    # NaN > learned is False: a diverged run did not learn, so it stays in the count
    return fisher(a > c.learned, b > c.learned, c.margin) | {"seeds": _n_seeds(runs, c)}


def fisher(learned_a: np.ndarray, learned_b: np.ndarray, margin: float) -> dict:
    "The numbers of an unpaired share comparison from each run's learned or not."
    k_a, n_a, k_b, n_b = int(learned_a.sum()), len(learned_a), int(learned_b.sum()), len(learned_b)
    with np.errstate(divide="ignore", invalid="ignore"):  # statsmodels also computes ratios of shares, 0/0 at k = 0
        lo, hi = confint_proportions_2indep(k_a, n_a, k_b, n_b, method="newcomb", compare="diff")
        p_tost = tost_proportions_2indep(k_a, n_a, k_b, n_b, -margin, margin, compare="diff").pvalue
        beyond = 2 * min(test_proportions_2indep(k_a, n_a, k_b, n_b, value=margin, compare="diff",
                                                 alternative="larger").pvalue,
                         test_proportions_2indep(k_a, n_a, k_b, n_b, value=-margin, compare="diff",
                                                 alternative="smaller").pvalue)
    return {"n_a": n_a, "n_b": n_b, "dropped": 0, "effect": k_a / n_a - k_b / n_b, "ci_lo": lo, "ci_hi": hi,
            "p_diff": stats.fisher_exact([[k_a, n_a - k_a], [k_b, n_b - k_b]]).pvalue,
            "p_tost": float(np.nan_to_num(p_tost, nan=1.0)), "p_out": min(1.0, float(np.nan_to_num(beyond, nan=1.0))),
            "kind": "share", "test_kind": "fisher", "scale": k_b / n_b}


def _n_seeds(runs: pd.DataFrame, c: Comparison) -> int:
    "Distinct seeds in the smaller arm: runs pooled over cells are not replicates."
    if "seed" not in runs.columns:
        return 0
    return min(runs.loc[_mask(runs, getattr(c, w)), "seed"].nunique() for w in ("a", "b"))


def _paired_shares(runs: pd.DataFrame, c: Comparison) -> dict:
    """Share that learns in a vs b, paired by seed (within each stratum): with strata, the seed is the unit (its
    scenes and initialisation serve every stratum): an exact sign-flip test of the per-seed share differences;
    with one pair per seed, the exact McNemar test and Newcombe's interval."""
    keys = ["seed", *c.strata]
    a, b = _keyed(runs, c, "a", keys), _keyed(runs, c, "b", keys)
    common = sorted(set(a) & set(b), key=str)
    la = np.array([a[k] > c.learned for k in common], bool)  # NaN > learned is False: a diverged run did not learn
    lb = np.array([b[k] > c.learned for k in common], bool)
    seeds, strata = [k[0] for k in common], [k[1:] for k in common]
    return seed_shares(la, lb, seeds, strata, c.margin) if c.strata else mcnemar(la, lb, seeds, strata)


def _shares_b(learned_b: np.ndarray, strata: Sequence) -> tuple[float, ...]:
    "b's share that learns in each stratum, in the strata's order."
    cells = sorted(set(strata), key=str)
    return tuple(float(learned_b[[s == cell for s in strata]].mean()) for cell in cells)


def mcnemar(learned_a: np.ndarray, learned_b: np.ndarray, seeds: Sequence, strata: Sequence) -> dict:
    "The numbers of a share comparison of independent pairs (one per seed) from each pair's learned or not."
    test = exact.paired_shares(learned_a, learned_b)
    n = len(learned_a)
    return {"n_a": n, "n_b": n, "dropped": 0, "effect": test["effect"], "ci_lo": test["ci_lo"],
            "ci_hi": test["ci_hi"], "p_diff": test["p"], "p_tost": NAN, "p_out": NAN, "kind": "paired share",
            "test_kind": "mcnemar", "scale": float(learned_b.mean()) if n else NAN, "seeds": len(set(seeds)),
            "strata": len(set(strata)), "shares_b": _shares_b(learned_b, strata)}


def seed_shares(learned_a: np.ndarray, learned_b: np.ndarray, seeds: Sequence, strata: Sequence,
                margin: float) -> dict:
    """The numbers of a share comparison whose seeds each serve every stratum: per seed, a's share that learns minus
    b's over the strata both have; the exact sign-flip test over seeds and the interval that inverts it."""
    frame = pd.DataFrame({"seed": seeds, "d": learned_a.astype(float) - learned_b.astype(float)})
    d = frame.groupby("seed", sort=True)["d"].mean().to_numpy()
    row = differences(d, margin, "sign-flip")
    return row | {"n_a": len(learned_a), "n_b": len(learned_b), "dropped": 0, "kind": "seed share",
                  "seeds": len(d), "strata": len(set(strata)), "shares_b": _shares_b(learned_b, strata),
                  "scale": float(learned_b.mean()) if len(learned_b) else NAN}


def _holm(p: list[float], family: np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    "Holm-adjusted p over the family; NaN outside it. A p that could not be computed counts as 1."
    adjusted = np.full(len(p), NAN)
    if family.any():
        raw = np.nan_to_num(np.asarray(p, dtype=float)[family], nan=1.0)
        # statsmodels' multipletests(method="holm"), without the gc.collect() it makes on every call (0.2 s beside
        # torch's heap, thousands of times in a simulation); tests pin the two equal
        order = np.argsort(raw, kind="stable")
        steps = np.minimum(1.0, np.maximum.accumulate(raw[order] * (len(raw) - np.arange(len(raw)))))
        adjusted[np.flatnonzero(family)[order]] = steps
    return adjusted


@lru_cache(maxsize=4096)
def _standardized(kind: str, n_a: int, n_b: int, level: float) -> float:
    "The smallest standardized effect a design detects with POWER in a two-sided test at `level`."
    solver = TTestPower() if kind == "one" else TTestIndPower() if kind == "ind" else NormalIndPower()  # share: h
    sizes = {"nobs": n_a} if kind == "one" else {"nobs1": n_a, "ratio": n_b / n_a}
    # the two-sided test's upper tail: statsmodels' two-sided solve misses at 5 seeds and small alpha (even < 0),
    # and scipy's noncentral t turns the far lower tail into NaN; at 80% power that tail is below 1e-5
    return np.asarray(solver.solve_power(alpha=level / 2, power=POWER, alternative="larger", **sizes)).item()


def planned(pilot: pd.DataFrame, seeds: int, alpha: float = ALPHA) -> list[float]:
    """Each row's power at its margin with `seeds` seeds and the spread measured in `pilot` (the same comparisons on
    a pilot's runs): a confirmatory study's plan, at Holm's first-step level over the family (NaN: no formula)."""
    level = alpha / max(1, len(pilot))
    out = []
    for r in pilot.to_dict("records"):
        n = seeds * max(1, int(r.get("strata") or 1)) if r["kind"] in ("paired share", "seed share") else seeds
        out.append(NAN if r["kind"] == "rank" else _power({**r, "n_a": n, "n_b": n, "seeds": seeds}, level))
    return out


def _detectable(row: dict, level: float) -> float:
    "The smallest |difference| the comparison detects with POWER, on the effect's scale (NaN: no formula fits)."
    if (min(row["n_a"], row["n_b"]) < 2 or not np.isfinite(row["scale"])
            or row["kind"] in ("rank", "paired share", "seed share")
            or row["expect"] == "equivalent"):  # a TOST's reach is its power at no difference, stated beside it
        return NAN
    if row.get("test_kind") == "sign-flip" and exact.smallest_p(row["n_a"]) >= level:
        return math.inf  # too few seeds for the exact test to reject at this level, whatever the effect
    effect = _standardized(row["kind"], row["n_a"], row["n_b"], level)
    return _share_difference(effect, row["scale"]) if row["kind"] == "share" else effect * row["scale"]


def _power(row: dict, level: float) -> float:
    "The chance the comparison resolves a true effect of its margin in the predicted direction (0 at the null)."
    n, margin, scale = min(row["n_a"], row["n_b"]), row["margin"], row["scale"]
    if n < 2 or not np.isfinite(scale) or margin <= 0:
        return NAN
    if row["expect"] == "equivalent":
        return _tost_power(row, level)
    if row.get("test_kind") == "sign-flip" and exact.smallest_p(_replicates(row)) >= level:
        return 0.0
    sign = 1 if row["expect"] == "greater" else -1
    if row["kind"] == "seed share":  # by simulation, with a random effect per seed
        return exact.seed_shares_power(row["shares_b"], row["seeds"], sign * margin, level)
    if row["kind"] == "rank":  # by simulation: no formula fits an exact test of discrete statistics
        return exact.rank_trend_power(row["points"], sign * margin, level)
    if row["kind"] == "paired share":
        return exact.paired_shares_power(row["shares_b"], row["n_a"] // max(1, row["strata"]), sign * margin, level)
    if scale == 0:
        return 1.0
    if row["kind"] == "share":
        h = abs(2 * math.asin(math.sqrt(min(1, scale + margin))) - 2 * math.asin(math.sqrt(scale)))
        return float(NormalIndPower().power(h, nobs1=row["n_a"], ratio=row["n_b"] / row["n_a"], alpha=level))
    if row["kind"] == "ind":  # Welch's estimated degrees of freedom cost power that no formula counts: simulated
        return _welch_power(row["n_a"], row["n_b"], round(margin / scale, 3), level)  # rounded: cached
    return float(TTestPower().power(effect_size=margin / scale, nobs=n, alpha=level / 2, alternative="larger"))


@lru_cache(maxsize=1024)
def _welch_power(n_a: int, n_b: int, effect: float, level: float) -> float:
    "Power of Welch's two-sided t-test at `level` for a standardized difference, equal spreads (fixed-seed draws)."
    rng = np.random.default_rng(0)
    a, b = rng.normal(effect, 1, (exact.SIMULATIONS, n_a)), rng.normal(0, 1, (exact.SIMULATIONS, n_b))
    result = stats.ttest_ind(a, b, axis=1, equal_var=False)
    return float(np.mean((result.pvalue < level) & (result.statistic > 0)))


def _tost_power(row: dict, level: float) -> float:
    "Power of the TOST to call a true difference of 0 equivalent within the margin (normal approximation)."
    n, margin, scale = row["n_a"], row["margin"], row["scale"]
    if row["kind"] not in ("one", "ind") or scale == 0:
        return NAN if scale != 0 else 1.0
    se = scale / math.sqrt(n) if row["kind"] == "one" else scale * math.sqrt(1 / row["n_a"] + 1 / row["n_b"])
    df = n - 1 if row["kind"] == "one" else row["n_a"] + row["n_b"] - 2
    crit = stats.t.ppf(1 - level, df)
    return float(max(0.0, 2 * stats.t.cdf(margin / se - crit, df) - 1))


def _share_difference(h: float, share_b: float) -> float:
    "The difference of shares from share_b that has Cohen's h; the smaller direction that stays within [0, 1]."
    phi = math.asin(math.sqrt(share_b))
    feasible = [abs(math.sin(x) ** 2 - share_b) for x in (phi + h / 2, phi - h / 2) if 0 <= x <= math.pi / 2]
    return min(feasible, default=NAN)


def _outcome(row: dict, alpha: float = ALPHA) -> str:
    """A non-indicative row's outcome from its one Holm-adjusted p; a direction resolved with its whole interval
    inside the smallest effect of interest is "below the margin", neither for the claim nor against it."""
    if not row["p_adj"] < alpha:
        return "inconclusive"
    if row["expect"] == "equivalent":
        return "contradicted" if row["beyond"] else "equivalent"
    if row["margin"] > 0 and -row["margin"] < row["ci_lo"] and row["ci_hi"] < row["margin"]:
        return BELOW
    return "supported" if np.sign(row["effect"]) == (1 if row["expect"] == "greater" else -1) else "contradicted"


def _replicates(row: dict) -> int:
    "The test's independent replicates: seeds for a seed-level share test, else the smaller arm's count."
    return int(row["seeds"]) if row["kind"] == "seed share" else int(min(row["n_a"], row["n_b"]))


def _note(row: dict) -> str:
    "What a reader should know beside the outcome."
    notes = []
    if row.get("constant"):
        notes.append("every replicate equal: an exact test")
    if row["outcome"] == "equivalent" and (row["ci_lo"] > 0 or row["ci_hi"] < 0):
        notes.append("inside the margin, and also non-zero")
    if row.get("test_kind") == "sign-flip" and row["n_a"] and exact.smallest_p(_replicates(row)) >= ALPHA:
        notes.append(f"{_replicates(row)} seeds: an exact test cannot reach p < {ALPHA:g}")
    if row.get("heldout_note"):
        notes.append(row["heldout_note"])
    return "; ".join(notes)


VERDICTS = ("supported", "partly supported", "mixed", "inconclusive", "contradicted", "indicative")


def word(table: pd.DataFrame) -> str:
    """The claim's word: supported (every comparison as predicted), partly supported (some as predicted, none
    against, the rest inconclusive or below the margin), mixed (some as predicted, some against), contradicted
    (some against, none as predicted), inconclusive (none resolved); indicative while an arm has too few seeds."""
    if table.empty:
        raise ValueError("a claim needs at least one comparison")
    if (table.outcome == "indicative").any():
        return "indicative"
    expected = np.where(table.expect == "equivalent", "equivalent", "supported")
    hits, against = table.outcome.to_numpy() == expected, (table.outcome == "contradicted").to_numpy()
    if hits.all():
        return "supported"
    if hits.any():
        return "mixed" if against.any() else "partly supported"
    return "contradicted" if against.any() else "inconclusive"


def tally(table: pd.DataFrame) -> str:
    "The outcomes counted: '3 supported, 1 contradicted, 2 inconclusive'."
    counts = table.outcome.value_counts()
    return ", ".join(f"{counts[o]} {o}" for o in (*OUTCOMES, "indicative") if o in counts)


def verdict(table: pd.DataFrame) -> str:
    "The claim's word and its outcomes counted: 'partly supported (3 supported, 2 inconclusive)'."
    return f"{word(table)} ({tally(table)})"


def interval(values, bounds: tuple[float, float] = (-math.inf, math.inf)) -> tuple[float, float, float, int, int]:
    """(mean, lo, hi, n, dropped) of the finite values with a 95% t-interval, clipped to the metric's `bounds`;
    dropped counts the non-finite ones."""
    v, dropped = _finite(values)
    n = len(v)
    if n == 0:
        return NAN, NAN, NAN, 0, dropped
    mean = float(v.mean())
    if n == 1 or _constant(v):
        return mean, mean, mean, n, dropped
    lo, hi = DescrStatsW(v).tconfint_mean(alpha=0.05)
    return mean, max(float(lo), bounds[0]), min(float(hi), bounds[1]), n, dropped


def threshold(size, learned) -> dict:
    """The size at which half the runs learn, from a logistic model of learned against log size, and its 95%
    profile-likelihood interval (the thresholds a likelihood-ratio test keeps). The slope is searched up to a step as
    sharp as the data allow, so runs split cleanly by size (where a plain logistic fit diverges) give the bracket
    between the sizes. The threshold is sought a grid's span beyond the sizes tried: an interval that runs past the
    smallest (largest) size is censored there, "below" ("above") its other end. kind: "logit", "censored below",
    "censored above", "below" (every run learns) or "above" (none); `edge`: the size tried at the open end."""
    x, y = np.log(np.asarray(size, float)), np.asarray(learned, bool)
    if y.all() or not y.any():
        edge = float(np.exp(x.min() if y.all() else x.max()))
        return {"kind": "below" if y.all() else "above", "threshold": NAN, "lo": edge, "hi": edge, "edge": edge}
    span = max(float(np.ptp(x)), math.log(2))
    taus = np.linspace(x.min() - span, x.max() + span, 601)
    slopes = np.geomspace(0.1, 1000 / max(np.ptp(x), 1e-9), 300)
    z = slopes[None, :, None] * (x[None, None, :] - taus[:, None, None])
    # log-likelihood of each (threshold, slope): log sigmoid(z) for runs that learn, log sigmoid(-z) for the rest
    ll = -np.logaddexp(0, np.where(y, -z, z)).sum(-1)
    profile = ll.max(1)
    kept = taus[2 * (profile.max() - profile) <= stats.chi2.ppf(0.95, 1)]
    best = taus[profile == profile.max()]
    kind, edge = "logit", NAN
    if kept.min() < x.min() - 1e-9:
        kind, edge = "censored below", float(np.exp(x.min()))
    elif kept.max() > x.max() + 1e-9:
        kind, edge = "censored above", float(np.exp(x.max()))
    return {"kind": kind, "threshold": float(np.exp(np.median(best))), "lo": float(np.exp(kept.min())),
            "hi": float(np.exp(kept.max())), "edge": edge}


def threshold_text(t: dict, unit: str = "", digits: int = 2) -> str:
    "A threshold in words: '0.81 [0.76, 0.86] cells', or the censored bound, or the bracket the data give."
    f = lambda v: f"{v:.{digits}f}"
    if t["kind"] == "logit" and f(t["threshold"]) in (f(t["lo"]), f(t["hi"])):  # a step at a size tried: no inside
        return f"between {f(t['lo'])} and {f(t['hi'])}{unit} (the runs split sharply there)"
    return {"logit": lambda: f"{f(t['threshold'])} [{f(t['lo'])}, {f(t['hi'])}]{unit}",
            "censored below": lambda: f"below {f(t['hi'])}{unit} (censored: its interval runs past the smallest "
                                      f"size tried, {f(t['edge'])})",
            "censored above": lambda: f"above {f(t['lo'])}{unit} (censored: its interval runs past the largest "
                                      f"size tried, {f(t['edge'])})",
            "below": lambda: f"below {f(t['hi'])}{unit} (every run learns)",
            "above": lambda: f"above {f(t['lo'])}{unit} (no run learns)"}[t["kind"]]()


def share_interval(k: int, n: int) -> tuple[float, float, float]:
    "The share k/n and its exact Clopper-Pearson 95% interval."
    if not 0 <= k <= n:
        raise ValueError(f"a share needs 0 <= k <= n, not k={k}, n={n}")
    if n == 0:
        return NAN, NAN, NAN
    lo, hi = proportion_confint(k, n, alpha=0.05, method="beta")
    return k / n, float(lo), float(hi)


def _predicted(r: dict, num) -> str:
    return (f"within ±{num(r['margin'], '')}" if r["expect"] == "equivalent"
            else f"{'>' if r['expect'] == 'greater' else '<'} 0")


def _n_cell(r: dict) -> str:
    n = r["n_a"]
    if r["kind"] in ("paired share", "seed share"):
        strata = r["strata"]
        return f"{n} pairs ({n // max(1, strata)} seeds x {strata} strata)" if strata > 1 else f"{n} pairs"
    if r["design"] == "welch":
        return f"{n} vs {r['n_b']}"
    return f"{n} seeds" if r["design"] in ("paired", "interaction") else f"{n}"


def markdown(table: pd.DataFrame, digits: int = 3) -> str:
    "The verdict table as GitHub markdown, with the decision rule in a line under it."
    num = lambda x, fmt="+": "–" if not np.isfinite(x) else f"{x:{fmt}.{digits}f}"
    lines = ["| comparison | predicted | test | n | effect [95% CI] | p (Holm) | outcome |",
             "|---|---|---|---|---|---|---|"]
    for r in table.to_dict("records"):
        dropped = f", {r['dropped']} diverged dropped" if r["dropped"] else ""
        ci = ("(no spread)" if r.get("constant") is True  # every replicate equal: a zero-width interval says nothing
              else f"[{num(r['ci_lo'])}, {num(r['ci_hi'])}]" if np.isfinite(r["ci_lo"]) and np.isfinite(r["ci_hi"])
              else "[unbounded]" if np.isfinite(r["effect"]) and r["n_a"] > 1 else "[–]")
        outcome = r["outcome"]
        if outcome == "inconclusive" and np.isfinite(r["detectable"]):
            outcome += f" (detectable: ±{num(r['detectable'], '')})"
        if r["note"]:
            outcome += f"; {r['note']}"
        cells = [r["comparison"].replace("|", r"\|"), _predicted(r, num), r["test"], _n_cell(r) + dropped,
                 f"{num(r['effect'])} {ci}", _p_cell(r["p"], r["p_adj"]), outcome]
        lines.append("| " + " | ".join(cells) + " |")
    alpha = table.attrs.get("alpha", ALPHA)
    lines += ["", f"One hypothesis per comparison, Holm's correction over the claim's {len(table)} at alpha "
                  f"{alpha:g}: a predicted direction is tested two-sided; \"within ±m\" is tested by its margin (a "
                  "TOST inside it: equivalent; a difference resolved beyond it: contradicted); a direction resolved "
                  "with its whole interval inside the margin is below the margin. An inconclusive row names the "
                  "smallest difference this design detects with 80% power. Fewer than "
                  f"{MIN_SEEDS} replicates in an arm: indicative (numbers, no verdict)."]
    return "\n".join(lines)


def _p_cell(p: float, adjusted: float) -> str:
    # an indicative row is outside the family: its raw p is shown, marked as such
    p, suffix = (adjusted, "") if np.isfinite(adjusted) else (p, " (raw)")
    return "–" if not np.isfinite(p) else ("<0.001" if p < 0.001 else f"{p:.3f}") + suffix

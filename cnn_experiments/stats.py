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

Rule: two-sided tests at ALPHA with Holm's correction over the claim's comparisons; "equivalent" only from a TOST within
the declared margin; an arm with fewer than MIN_SEEDS replicates gets numbers but no verdict ("indicative").
Runs of two arms with the same seed share data, batch order and initialisation, so arms are paired by seed by default.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import NormalIndPower, TTestIndPower, TTestPower
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint, tost_proportions_2indep
from statsmodels.stats.weightstats import DescrStatsW, ttost_ind

ALPHA = 0.05  # family-wise error rate of a claim's comparisons
POWER = 0.8  # for the smallest detectable difference
MIN_SEEDS = 5  # fewer replicates in an arm: no verdict, the comparison is "indicative"
OUTCOMES = ("supported", "contradicted", "equivalent", "inconclusive")
TESTS = ("t", "wilcoxon", "share")
EXPECTS = ("greater", "less", "equivalent")
COLUMNS = ["comparison", "metric", "test", "n_a", "n_b", "dropped", "effect", "ci_lo", "ci_hi", "p", "p_adj", "margin",
           "p_equiv", "p_equiv_adj", "detectable", "outcome", "expect"]
NAN = math.nan

_TEST_NAMES = {("t", "paired"): "paired t", ("t", "welch"): "Welch t", ("t", "one-sample"): "one-sample t",
              ("t", "interaction"): "paired t on (a-b)-(c-d)", ("wilcoxon", "paired"): "Wilcoxon signed-rank",
              ("wilcoxon", "one-sample"): "one-sample Wilcoxon signed-rank",
              ("wilcoxon", "interaction"): "Wilcoxon signed-rank on (a-b)-(c-d)"}
_N_CELLS = {"paired": "{n_a} pairs", "interaction": "{n_a} seeds", "one-sample": "{n_a}", "welch": "{n_a} vs {n_b}",
           "share": "{n_a} vs {n_b}"}
_DESIGNS = {name: design for (_, design), name in _TEST_NAMES.items()}


@dataclass(frozen=True)
class Comparison:
    """One comparison of a claim: arm a against arm b (or a reference number) on `metric`, and the sign it predicts.

    An arm is the runs whose columns equal all its values. With c and d, the effect per seed is (a - b) - (c - d).
    """
    name: str
    a: Mapping[str, object]
    b: Mapping[str, object] | float
    metric: str = "accuracy"
    expect: str = "greater"
    margin: float = 0.01
    paired: bool = True
    test: str = "t"
    learned: float = 0.6
    c: Mapping[str, object] | None = None
    d: Mapping[str, object] | None = None

    def __post_init__(self):
        wrong = {f"test is one of {TESTS}": self.test not in TESTS,
                 f"expect is one of {EXPECTS}": self.expect not in EXPECTS,
                 "an interaction needs both c and d": (self.c is None) != (self.d is None),
                 "an interaction is a paired t or Wilcoxon test of four arms":
                     self.c is not None and (not self.paired or self.test == "share" or self.one_sample),
                 "a Wilcoxon test is paired or one-sample": self.test == "wilcoxon" and self.design == "welch",
                 "a share test compares two arms": self.test == "share" and self.one_sample,
                 "the margin is >= 0": not self.margin >= 0}
        if any(wrong.values()):
            raise ValueError(f"comparison {self.name!r}: " + "; ".join(rule for rule, bad in wrong.items() if bad))

    @property
    def one_sample(self) -> bool:
        return not isinstance(self.b, Mapping)

    @property
    def design(self) -> str:
        "share, interaction, one-sample, paired or welch"
        if self.test == "share":
            return "share"
        if self.c is not None:
            return "interaction"
        return "one-sample" if self.one_sample else "paired" if self.paired else "welch"

    @property
    def test_name(self) -> str:
        if self.design == "share":
            return f"Fisher exact (share with {self.metric} > {self.learned:g})"
        return _TEST_NAMES[self.test, self.design]


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
            partial: bool = False) -> pd.DataFrame:
    """The verdict table of a claim: one row per comparison, in order (columns: COLUMNS). With `partial` (a grid
    not yet complete) every row is indicative, since Holm's family is the whole declared set; a comparison whose
    arm has no runs yet is a row of no numbers."""
    rows = [_measure(runs, c) if not partial or _all_arms(runs, c) else _unmeasured(c) for c in comparisons]
    family = np.array([not partial and min(r["n_a"], r["n_b"], r.get("seeds", r["n_a"])) >= MIN_SEEDS
                       for r in rows], dtype=bool)
    p_adj, p_equiv_adj = _holm([r["p"] for r in rows], family), _holm([r["p_equiv"] for r in rows], family)
    each = alpha / max(1, int(family.sum()))  # Bonferroni: the level Holm uses for its first step
    for row, in_family, pa, pe in zip(rows, family, p_adj, p_equiv_adj):
        row.update(p_adj=pa, p_equiv_adj=pe, detectable=_detectable(row, each))
        row["outcome"] = _outcome(row, alpha) if in_family else "indicative"
    table = pd.DataFrame(rows, columns=COLUMNS)
    table.attrs["alpha"] = alpha
    return table


def _measure(runs: pd.DataFrame, c: Comparison) -> dict:
    "A comparison's numbers before the family's corrections."
    if c.design == "share":
        (a, seeds_a), (b, seeds_b) = _arm(runs, c, "a"), _arm(runs, c, "b")
        numbers = _shares(a, b, c.learned, c.margin)
        if seeds_a is not None:  # runs pooled over cells are not replicates: a verdict needs MIN_SEEDS seeds
            numbers["seeds"] = min(len(set(seeds_a)), len(set(seeds_b)))
    elif c.design == "welch":
        (a, dropped_a), (b, dropped_b) = _finite(_arm(runs, c, "a")[0]), _finite(_arm(runs, c, "b")[0])
        numbers = _welch(a, b, c.margin) | {"dropped": dropped_a + dropped_b}
    else:
        one_sample = c.design == "one-sample"
        d, dropped = _finite(_arm(runs, c, "a")[0] - float(c.b)) if one_sample else _per_seed(runs, c)
        numbers = _differences(d, c.margin, c.test) | {"dropped": dropped}
    return {"comparison": c.name, "metric": c.metric, "test": c.test_name, "margin": c.margin, "expect": c.expect,
            **numbers}


def _all_arms(runs: pd.DataFrame, c: Comparison) -> bool:
    arms = [c.a] + ([] if c.one_sample else [c.b]) + ([c.c, c.d] if c.c is not None else [])
    return all(_mask(runs, arm).any() for arm in arms)


def _unmeasured(c: Comparison) -> dict:
    return {"comparison": c.name, "metric": c.metric, "test": c.test_name, "margin": c.margin, "expect": c.expect,
            "n_a": 0, "n_b": 0, "dropped": 0, "effect": NAN, "ci_lo": NAN, "ci_hi": NAN, "p": NAN, "p_equiv": NAN,
            "kind": "one", "scale": NAN}


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


def _per_seed(runs: pd.DataFrame, c: Comparison) -> tuple[np.ndarray, int]:
    "Per-seed a - b (or (a - b) - (c - d)) over the seeds finite in every arm, and the non-finite runs left out."
    arms, dropped = [], 0
    for which in ("a", "b", "c", "d")[:4 if c.design == "interaction" else 2]:
        values, seeds = _arm(runs, c, which)
        if seeds is None:
            raise ValueError(f"comparison {c.name!r}: no column 'seed' to pair the arms by")
        if len(set(seeds)) < len(seeds):
            raise ValueError(f"comparison {c.name!r}: arm {which} has several runs per seed; declare more columns")
        arms.append(dict(zip(seeds, values)))
        dropped += _finite(values)[1]
    common = sorted(set.intersection(*(set(arm) for arm in arms)))
    v = np.array([[arm[seed] for arm in arms] for seed in common], dtype=float).reshape(len(common), len(arms))
    v = v[np.isfinite(v).all(axis=1)]
    d = v[:, 0] - v[:, 1] if len(arms) == 2 else (v[:, 0] - v[:, 1]) - (v[:, 2] - v[:, 3])
    return d, dropped


def _constant(v: np.ndarray) -> bool:
    # every value equal: the t statistic is 0/0 and scipy's answer is NaN or rounding noise
    return bool(np.ptp(v) <= 1e-12 * max(1.0, float(np.abs(v).max())))


def _exact(value: float, margin: float) -> dict:
    """The numbers when every replicate gives the same effect: the t-test's limit as the spread goes to 0. An effect
    at the margin (a rank correlation of exactly 0.2 computed in floats, say) is not inside it."""
    inside = abs(value) < margin and not math.isclose(abs(value), margin)
    return {"effect": value, "ci_lo": value, "ci_hi": value, "p": 0.0 if value != 0 else 1.0,
            "p_equiv": 0.0 if inside else 1.0}


def _differences(d: np.ndarray, margin: float, test: str) -> dict:
    "Paired, one-sample and interaction comparisons: a test of the mean of per-replicate effects d against 0."
    n = len(d)
    row = {"n_a": n, "n_b": n, "effect": float(d.mean()) if n else NAN, "ci_lo": NAN, "ci_hi": NAN, "p": NAN,
           "p_equiv": NAN, "kind": "one", "scale": float(d.std(ddof=1)) if n > 1 else NAN}
    if n < 2:
        return row
    if _constant(d):
        return row | _exact(float(d.mean()), margin)
    if test == "t":
        s = DescrStatsW(d)
        lo, hi = s.tconfint_mean(alpha=0.05)
        return row | {"ci_lo": lo, "ci_hi": hi, "p": stats.ttest_1samp(d, 0.0).pvalue,
                      "p_equiv": s.ttost_mean(-margin, margin)[0]}
    ci = stats.bootstrap((d,), np.mean, method="BCa", rng=0).confidence_interval
    # TOST from two one-sided signed-rank tests: above -margin and below +margin
    p_equiv = max(stats.wilcoxon(d + margin, alternative="greater").pvalue,
                  stats.wilcoxon(d - margin, alternative="less").pvalue)
    return row | {"ci_lo": ci.low, "ci_hi": ci.high, "p": stats.wilcoxon(d).pvalue, "p_equiv": p_equiv}


def _welch(a: np.ndarray, b: np.ndarray, margin: float) -> dict:
    "Unpaired arms: Welch's t test, its interval, and the TOST with unequal variances."
    n_a, n_b = len(a), len(b)
    row = {"n_a": n_a, "n_b": n_b, "effect": a.mean() - b.mean() if n_a and n_b else NAN, "ci_lo": NAN,
           "ci_hi": NAN, "p": NAN, "p_equiv": NAN, "kind": "ind", "scale": NAN}
    if n_a < 2 or n_b < 2:
        return row
    row["scale"] = math.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2)
    if _constant(a) and _constant(b):
        return row | _exact(float(a.mean() - b.mean()), margin)
    with warnings.catch_warnings():  # one arm at a constant value (stuck at chance) is fine for Welch
        warnings.filterwarnings("ignore", "Precision loss", RuntimeWarning)
        result = stats.ttest_ind(a, b, equal_var=False)
    lo, hi = result.confidence_interval(0.95)
    return row | {"ci_lo": lo, "ci_hi": hi, "p": result.pvalue,
                  "p_equiv": ttost_ind(a, b, -margin, margin, usevar="unequal")[0]}


def _shares(a: np.ndarray, b: np.ndarray, learned: float, margin: float) -> dict:
    "Share of runs that learn (metric > learned) in a vs b: Fisher's exact test, Newcombe's interval, TOST."
    # NaN > learned is False: a diverged run did not learn, so it stays in the count
    k_a, n_a, k_b, n_b = int((a > learned).sum()), len(a), int((b > learned).sum()), len(b)
    with np.errstate(divide="ignore", invalid="ignore"):  # statsmodels also computes ratios of shares, 0/0 at k = 0
        lo, hi = confint_proportions_2indep(k_a, n_a, k_b, n_b, method="newcomb", compare="diff")
        p_equiv = tost_proportions_2indep(k_a, n_a, k_b, n_b, -margin, margin, compare="diff").pvalue
    return {"n_a": n_a, "n_b": n_b, "dropped": 0, "effect": k_a / n_a - k_b / n_b, "ci_lo": lo, "ci_hi": hi,
            "p": stats.fisher_exact([[k_a, n_a - k_a], [k_b, n_b - k_b]]).pvalue, "p_equiv": p_equiv,
            "kind": "share", "scale": k_b / n_b}


def _holm(p: list[float], family: np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    "Holm-adjusted p over the family; NaN outside it. A p that could not be computed counts as 1."
    adjusted = np.full(len(p), NAN)
    if family.any():
        raw = np.nan_to_num(np.asarray(p, dtype=float)[family], nan=1.0)
        adjusted[family] = multipletests(raw, alpha=alpha, method="holm")[1]
    return adjusted


@lru_cache(maxsize=4096)
def _standardized(kind: str, n_a: int, n_b: int, alpha: float) -> float:
    "The smallest standardized effect a design detects with POWER in a two-sided test at level alpha."
    solver = TTestPower() if kind == "one" else TTestIndPower() if kind == "ind" else NormalIndPower()  # share: h
    sizes = {"nobs": n_a} if kind == "one" else {"nobs1": n_a, "ratio": n_b / n_a}
    # the two-sided test's upper tail: statsmodels' two-sided solve misses at 5 seeds and small alpha (even < 0),
    # and scipy's noncentral t turns the far lower tail into NaN; at 80% power that tail is below 1e-5
    return np.asarray(solver.solve_power(alpha=alpha / 2, power=POWER, alternative="larger", **sizes)).item()


def _detectable(row: dict, alpha: float) -> float:
    "The smallest |difference| the comparison detects with POWER, on the effect's scale."
    if min(row["n_a"], row["n_b"]) < 2 or not np.isfinite(row["scale"]):
        return NAN
    effect = _standardized(row["kind"], row["n_a"], row["n_b"], alpha)
    return _share_difference(effect, row["scale"]) if row["kind"] == "share" else effect * row["scale"]


def _share_difference(h: float, share_b: float) -> float:
    "The difference of shares from share_b that has Cohen's h; the smaller direction that stays within [0, 1]."
    phi = math.asin(math.sqrt(share_b))
    feasible = [abs(math.sin(x) ** 2 - share_b) for x in (phi + h / 2, phi - h / 2) if 0 <= x <= math.pi / 2]
    return min(feasible, default=NAN)


def _outcome(row: dict, alpha: float = ALPHA) -> str:
    "A non-indicative row's outcome from its Holm-adjusted p values."
    differs, same = row["p_adj"] < alpha, row["p_equiv_adj"] < alpha
    if row["expect"] == "equivalent":
        return "equivalent" if same else "contradicted" if differs else "inconclusive"
    if differs:
        return "supported" if np.sign(row["effect"]) == (1 if row["expect"] == "greater" else -1) else "contradicted"
    return "equivalent" if same else "inconclusive"


def verdict(table: pd.DataFrame) -> str:
    "The claim's verdict: indicative, supported, contradicted, inconclusive or partly supported."
    if table.empty:
        raise ValueError("a claim needs at least one comparison")
    if (table.outcome == "indicative").any():
        return "indicative"
    expected = np.where(table.expect == "equivalent", "equivalent", "supported")
    hits = table.outcome.to_numpy() == expected
    against = (table.outcome == "contradicted") | ((table.outcome == "equivalent") & (table.expect != "equivalent"))
    if hits.all():
        return "supported"
    if not hits.any() and against.any():
        return "contradicted"
    return "inconclusive" if (table.outcome == "inconclusive").all() else "partly supported"


def interval(values) -> tuple[float, float, float, int, int]:
    "(mean, lo, hi, n, dropped) of the finite values with a 95% t-interval; dropped counts the non-finite ones."
    v, dropped = _finite(values)
    n = len(v)
    if n == 0:
        return NAN, NAN, NAN, 0, dropped
    mean = float(v.mean())
    if n == 1 or _constant(v):
        return mean, mean, mean, n, dropped
    lo, hi = DescrStatsW(v).tconfint_mean(alpha=0.05)
    return mean, float(lo), float(hi), n, dropped


def share_interval(k: int, n: int) -> tuple[float, float, float]:
    "The share k/n and its exact Clopper-Pearson 95% interval."
    if not 0 <= k <= n:
        raise ValueError(f"a share needs 0 <= k <= n, not k={k}, n={n}")
    if n == 0:
        return NAN, NAN, NAN
    lo, hi = proportion_confint(k, n, alpha=0.05, method="beta")
    return k / n, float(lo), float(hi)


def markdown(table: pd.DataFrame, digits: int = 3) -> str:
    "The verdict table as GitHub markdown, with the decision rule in a line under it."
    num = lambda x, fmt="+": "–" if not np.isfinite(x) else f"{x:{fmt}.{digits}f}"
    lines = ["| comparison | test | n | effect [95% CI] | p (Holm) | equivalence: margin, p (Holm) | outcome |",
             "|---|---|---|---|---|---|---|"]
    for r in table.to_dict("records"):
        n = _N_CELLS[_DESIGNS.get(r["test"], "share")].format(**r)
        dropped = f", {r['dropped']} diverged dropped" if r["dropped"] else ""
        # a zero-width interval: the t-test's limit, which says nothing about how replicates could differ
        same = ", every one equal" if np.isfinite(r["effect"]) and r["ci_lo"] == r["ci_hi"] and r["n_a"] > 1 else ""
        inconclusive = f"inconclusive (detectable: ±{num(r['detectable'], '')})"
        cells = [r["comparison"].replace("|", r"\|"), r["test"], n + same + dropped,
                 f"{num(r['effect'])} [{num(r['ci_lo'])}, {num(r['ci_hi'])}]", _p_cell(r["p"], r["p_adj"]),
                 f"±{num(r['margin'], '')}, {_p_cell(r['p_equiv'], r['p_equiv_adj'])}",
                 inconclusive if r["outcome"] == "inconclusive" else r["outcome"]]
        lines.append("| " + " | ".join(cells) + " |")
    alpha = table.attrs.get("alpha", ALPHA)
    lines += ["", f"Two-sided tests at alpha {alpha:g} with Holm's correction over the claim's comparisons; "
                  f"\"equivalent\" only from a TOST within the margin shown; fewer than {MIN_SEEDS} replicates "
                  "in an arm: indicative (numbers, no verdict)."]
    return "\n".join(lines)


def _p_cell(p: float, adjusted: float) -> str:
    # an indicative row is outside the family: its raw p is shown, marked as such
    p, suffix = (adjusted, "") if np.isfinite(adjusted) else (p, " (raw)")
    return "–" if not np.isfinite(p) else ("<0.001" if p < 0.001 else f"{p:.3f}") + suffix

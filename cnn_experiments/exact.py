"""Exact tests for per-seed statistics that are discrete, degenerate or few: where a t-test's p would be a shortcut.

    from cnn_experiments.exact import sign_flip, rank_trend, paired_shares
    sign_flip(np.array([0.2] * 6))          # p = 2/64: six seeds that agree, and nothing smaller
    rank_trend([0.2] * 5, [4] * 5)          # p = 0.5: the order of p shuffled within each seed

Each returns a dict with the test's p (two-sided) and, where the test has one, the interval that inverts it.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from scipy import stats

EXACT_UP_TO = 14  # seeds: every sign pattern enumerated up to here (16k); beyond, a fixed-seed random sample
SAMPLES = 20000  # sign patterns drawn beyond EXACT_UP_TO
MAX_POINTS = 8  # rank_trend enumerates the k! orders of a seed's points


def _signs(n: int) -> np.ndarray:
    "Sign patterns (rows) of n seeds: all 2^n of them, or a fixed random sample (the first row all +)."
    if n <= EXACT_UP_TO:
        return 1 - 2 * ((np.arange(2**n)[:, None] >> np.arange(n)) & 1)
    rng = np.random.default_rng(0)
    return np.vstack([np.ones(n, int), rng.choice([-1, 1], (SAMPLES - 1, n))])


def sign_flip_p(d: np.ndarray, mu: float = 0.0) -> float:
    "Two-sided p of the sign-flip test that the per-seed values d are symmetric about mu."
    x = np.asarray(d, float) - mu
    means = _signs(len(x)) @ x
    return float(np.mean(np.abs(means) >= abs(x.sum()) - 1e-12 * max(1.0, np.abs(x).sum())))


def smallest_p(n: int) -> float:
    "The smallest two-sided p a sign-flip test of n seeds can give: 2 / 2^n."
    return 2.0 / 2**n if n <= EXACT_UP_TO else 1.0 / SAMPLES


def sign_flip(d: np.ndarray, level: float = 0.05) -> dict:
    """The sign-flip test of mean(d) = 0 and its (1 - level) interval from inverting it: the means mu the test does
    not reject. With too few seeds to reject anything the interval is unbounded (inf)."""
    d = np.asarray(d, float)
    p = sign_flip_p(d)
    if smallest_p(len(d)) >= level:
        return {"p": p, "ci_lo": -math.inf, "ci_hi": math.inf}
    span = max(float(np.ptp(d)), 1e-12)
    lo, hi = _edge(d, float(d.mean()), float(d.min()) - span, level), _edge(d, float(d.mean()), float(d.max()) + span,
                                                                          level)
    return {"p": p, "ci_lo": lo, "ci_hi": hi}


def _edge(d: np.ndarray, inside: float, outside: float, level: float) -> float:
    "Bisection for the interval's edge between a mean the test keeps and one it rejects."
    for _ in range(48):
        mid = (inside + outside) / 2
        inside, outside = (mid, outside) if sign_flip_p(d, mid) >= level else (inside, mid)
    return inside


@lru_cache(maxsize=16)
def _rho_null(k: int) -> dict[int, float]:
    "Spearman's rho for k points with no ties, in its integer form sum of squared rank differences: value -> prob."
    if not 3 <= k <= MAX_POINTS:
        raise ValueError(f"a rank trend needs 3 to {MAX_POINTS} points per seed, got {k}")
    counts: dict[int, int] = {}
    ranks = np.arange(k)
    for perm in itertools.permutations(range(k)):
        s = int(((ranks - np.array(perm)) ** 2).sum())
        counts[s] = counts.get(s, 0) + 1
    total = math.factorial(k)
    return {s: c / total for s, c in counts.items()}


def _rho(s: int, k: int) -> float:
    return 1 - 6 * s / (k * (k * k - 1))


@lru_cache(maxsize=64)
def _sum_null(points: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    "The null distribution of the sum of per-seed rhos: their values and probabilities."
    dist = {0.0: 1.0}
    for k in points:
        step = {round(_rho(s, k), 12): q for s, q in _rho_null(k).items()}
        out: dict[float, float] = {}
        for a, pa in dist.items():
            for b, pb in step.items():
                key = round(a + b, 9)
                out[key] = out.get(key, 0.0) + pa * pb
        dist = out
    return np.array(list(dist)), np.array(list(dist.values()))


def rank_trend(rhos: Sequence[float], points: Sequence[int]) -> dict:
    """The exact permutation test of the mean of per-seed Spearman correlations: under no trend the order of the
    points within each seed is any of its k! orders, independently per seed. Two-sided p of |mean rho|."""
    values, probs = _sum_null(tuple(sorted(int(k) for k in points)))
    observed = abs(float(np.sum(rhos)))
    return {"p": min(1.0, float(probs[np.abs(values) >= observed - 1e-9].sum()))}


@lru_cache(maxsize=4096)
def _mcnemar(n10: int, discordant: int) -> float:
    return float(stats.binomtest(n10, discordant, 0.5).pvalue)


def paired_shares(learned_a: np.ndarray, learned_b: np.ndarray, level: float = 0.05) -> dict:
    """Runs that learn in a vs b, paired (by seed within each stratum): the exact McNemar test (a binomial test of
    the discordant pairs) and the difference of shares with the interval of its conditional exact test."""
    a, b = np.asarray(learned_a, bool), np.asarray(learned_b, bool)
    n10, n01, n = int((a & ~b).sum()), int((~a & b).sum()), len(a)
    effect = (n10 - n01) / n if n else math.nan
    if n10 + n01 == 0:
        return {"effect": effect, "ci_lo": 0.0, "ci_hi": 0.0, "p": 1.0, "discordant": 0}
    ci = stats.binomtest(n10, n10 + n01, 0.5).proportion_ci(confidence_level=1 - level, method="exact")
    share = (n10 + n01) / n  # the difference is share x (2 theta - 1), theta = n10 / (n10 + n01)
    return {"effect": effect, "ci_lo": share * (2 * ci.low - 1), "ci_hi": share * (2 * ci.high - 1),
            "p": _mcnemar(n10, n10 + n01), "discordant": n10 + n01}


SIMULATIONS = 2000  # draws behind a simulated power: its standard error is at most 1.1 points


def _trend_rhos(points: tuple[int, ...], slope: float, noise: list[np.ndarray]) -> np.ndarray:
    "Per-seed Spearman rhos of points on a latent line of `slope` (in SDs of the standardised p) plus `noise`."
    out = np.empty((len(noise[0]), len(points)))
    for j, (k, e) in enumerate(zip(points, noise)):
        x = (np.arange(k) - (k - 1) / 2) / np.std(np.arange(k))
        ranks = (slope * x + e).argsort(1).argsort(1)
        out[:, j] = 1 - 6 * ((ranks - np.arange(k)) ** 2).sum(1) / (k * (k * k - 1))
    return out


@lru_cache(maxsize=256)
def _slope(points: tuple[int, ...], rho: float) -> float:
    "The latent slope whose expected mean Spearman rho over these seeds is |rho| (bisection on 2,000 draws)."
    rng = np.random.default_rng(1)
    noise = [rng.normal(size=(2000, k)) for k in points]
    lo, hi = 0.0, 50.0
    for _ in range(30 if rho else 0):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _trend_rhos(points, mid, noise).mean() < abs(rho) else (lo, mid)
    return lo


def draw_rhos(points: tuple[int, ...], rho: float, draws: int, rng: np.random.Generator) -> np.ndarray:
    """Per-seed Spearman rhos (draws x seeds) of points that follow a latent linear trend with normal noise, its
    slope set so the expected mean rho is `rho` (0: every order equally likely)."""
    noise = [rng.normal(size=(draws, k)) for k in points]
    return _trend_rhos(points, _slope(points, rho), noise) * (np.sign(rho) or 1)


@lru_cache(maxsize=256)
def rank_trend_power(points: tuple[int, ...], rho: float, level: float) -> float:
    "Power of `rank_trend` at a true mean correlation `rho` (see `draw_rhos`)."
    draws = draw_rhos(points, rho, SIMULATIONS, np.random.default_rng(0))
    return float(np.mean([rank_trend(r, points)["p"] < level and np.sign(r.mean()) == np.sign(rho or 1)
                          for r in draws]))


@lru_cache(maxsize=256)
def paired_shares_power(shares_b: tuple[float, ...], pairs: int, difference: float, level: float) -> float:
    """Power of `paired_shares` when a's share that learns is b's plus `difference` in each stratum (clipped to
    [0, 1]), `pairs` pairs per stratum, a and b independent given the stratum (no help from the pairing)."""
    rng = np.random.default_rng(0)
    q_b = np.repeat(shares_b, pairs)
    q_a = np.clip(q_b + difference, 0, 1)
    a, b = rng.random((SIMULATIONS, len(q_a))) < q_a, rng.random((SIMULATIONS, len(q_b))) < q_b
    n10, n01 = (a & ~b).sum(1), (~a & b).sum(1)
    hits = [x + y > 0 and _mcnemar(int(x), int(x + y)) < level and np.sign(x - y) == np.sign(difference)
            for x, y in zip(n10, n01)]
    return float(np.mean(hits))

"""Exact tests for per-seed statistics that are discrete, degenerate or few: where a t-test's p would be a shortcut.

    from cnn_experiments.statistics.exact import sign_flip, rank_trend, paired_shares
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
from statsmodels.stats.proportion import proportion_confint

EXACT_UP_TO = 14  # seeds: every sign pattern enumerated up to here (16k); beyond, a fixed-seed random sample
SAMPLES = 20000  # sign patterns drawn beyond EXACT_UP_TO
MAX_POINTS = 8  # rank_trend enumerates the k! orders of a seed's points


@lru_cache(maxsize=64)
def _signs(n: int) -> np.ndarray:
    "Sign patterns (rows) of n seeds: all 2^n of them, or a fixed random sample (the first row all +)."
    if n <= EXACT_UP_TO:
        out = 1 - 2 * ((np.arange(2**n)[:, None] >> np.arange(n)) & 1)
    else:
        rng = np.random.default_rng(0)
        out = np.vstack([np.ones(n, int), rng.choice([-1, 1], (SAMPLES - 1, n))])
    out.flags.writeable = False  # cached: shared by every caller
    return out


def sign_flip_p(d: np.ndarray, mu: float = 0.0) -> float:
    """Two-sided p of the sign-flip test that the per-seed values d are symmetric about mu: scipy's
    `permutation_test((d - mu,), np.mean, permutation_type="samples")` up to EXACT_UP_TO seeds (a test checks),
    one matrix product over cached sign patterns, as the interval's bisection calls it 96 times a comparison."""
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


def newcombe_paired(n11: int, n10: int, n01: int, n00: int, level: float = 0.05) -> tuple[float, float]:
    """Newcombe's method 10 (Stat Med 1998;17:2635): the interval of p(a) - p(b) for independent paired pairs, from the
    Wilson score intervals of the two margins and the pairs' phi correlation."""
    n = n11 + n10 + n01 + n00
    p_a, p_b = (n11 + n10) / n, (n11 + n01) / n
    (l_a, u_a), (l_b, u_b) = (proportion_confint(k, n, alpha=level, method="wilson") for k in (n11 + n10, n11 + n01))
    margins = (n11 + n10) * (n01 + n00) * (n11 + n01) * (n10 + n00)
    phi = (n11 * n00 - n10 * n01) / math.sqrt(margins) if margins else 0.0
    d = p_a - p_b
    lo = d - math.sqrt(max(0.0, (p_a - l_a) ** 2 - 2 * phi * (p_a - l_a) * (u_b - p_b) + (u_b - p_b) ** 2))
    hi = d + math.sqrt(max(0.0, (u_a - p_a) ** 2 - 2 * phi * (u_a - p_a) * (p_b - l_b) + (p_b - l_b) ** 2))
    return max(-1.0, lo), min(1.0, hi)


def paired_shares(learned_a: np.ndarray, learned_b: np.ndarray, level: float = 0.05) -> dict:
    """Runs that learn in a vs b, one independent pair per seed: the exact McNemar test (a binomial test of the
    discordant pairs) and Newcombe's method 10 interval of the difference of shares."""
    a, b = np.asarray(learned_a, bool), np.asarray(learned_b, bool)
    n11, n10, n01, n00 = (int((x & y).sum()) for x, y in ((a, b), (a, ~b), (~a, b), (~a, ~b)))
    n = len(a)
    if not n:
        return {"effect": math.nan, "ci_lo": math.nan, "ci_hi": math.nan, "p": math.nan, "discordant": 0}
    lo, hi = newcombe_paired(n11, n10, n01, n00, level)
    p = _mcnemar(n10, n10 + n01) if n10 + n01 else 1.0
    return {"effect": (n10 - n01) / n, "ci_lo": lo, "ci_hi": hi, "p": p, "discordant": n10 + n01}


def coverage(interval, pairs: int, cells: Sequence[float]) -> float:
    """The exact coverage of a paired-shares interval `interval(n11, n10, n01, n00) -> (lo, hi)` at cell
    probabilities (p11, p10, p01, p00): every outcome of `pairs` pairs enumerated, weighted by its probability."""
    truth = cells[1] - cells[2]
    counts = np.array([(a, b, c, pairs - a - b - c) for a in range(pairs + 1) for b in range(pairs + 1 - a)
                       for c in range(pairs + 1 - a - b)])
    probs = stats.multinomial.pmf(counts, pairs, cells)
    total = 0.0
    for row, prob in zip(counts[probs > 1e-12], probs[probs > 1e-12]):
        lo, hi = interval(*(int(k) for k in row))
        total += prob * (lo - 1e-12 <= truth <= hi + 1e-12)
    return float(total)


SEED_SD = 1.0  # a seed's random effect on the logit scale of learning: 1.6-1.8x the binomial variance over 5 sizes


def draw_seed_shares(shares_a: Sequence[float], shares_b: Sequence[float], seeds: int, rng: np.random.Generator,
                     draws: int = 1, sd: float = SEED_SD) -> tuple[np.ndarray, np.ndarray]:
    """Learned or not (draws x seeds x strata) for arms a and b whose shares per stratum are given, each seed's arm
    drawing one random effect (its scenes and its model's initialisation) that it carries into every stratum."""
    logit = lambda q: np.log(np.clip(q, 1e-6, 1 - 1e-6) / (1 - np.clip(q, 1e-6, 1 - 1e-6)))
    out = []
    for shares in (shares_a, shares_b):
        effect = rng.normal(0, sd, (draws, seeds, 1))
        q = np.asarray(shares, float)
        z = np.where((q > 0) & (q < 1), logit(q) + effect, np.where(q >= 1, np.inf, -np.inf))
        out.append(rng.random((draws, seeds, len(q))) < 1 / (1 + np.exp(-z)))
    return out[0], out[1]


def reachable(shares: Sequence[float], difference: float) -> tuple[np.ndarray, np.ndarray]:
    "Shares of a and b that differ by `difference` in every stratum, centred on the given shares where [0, 1] allows."
    half = abs(difference) / 2
    centre = np.clip(np.asarray(shares, float), half, 1 - half)
    return centre + difference / 2, centre - difference / 2


@lru_cache(maxsize=256)
def seed_shares_power(shares: tuple[float, ...], seeds: int, difference: float, level: float,
                      sd: float = SEED_SD) -> float:
    """Power of the seed-level share test (`sign_flip` of each seed's share difference over its strata) at a true
    difference in every stratum, about the given shares, with seed random effects of `sd`."""
    if smallest_p(seeds) >= level:
        return 0.0
    q_a, q_b = reachable(shares, difference)
    a, b = draw_seed_shares(q_a, q_b, seeds, np.random.default_rng(0), SIMULATIONS // 4, sd)
    d = (a.astype(float) - b).mean(-1)
    means, signs = d.mean(1), _signs(seeds)
    # every draw's sign-flip p at once: the share of sign patterns whose |mean| reaches the draw's
    flipped = np.abs(d @ signs.T) >= np.abs(d.sum(1, keepdims=True)) - 1e-9
    p = flipped.mean(1)
    return float(np.mean((p < level) & (np.sign(means) == np.sign(difference))))


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
    """Power of `paired_shares` at a true `difference` about the given shares (each stratum's, `pairs` independent
    pairs in each; see `reachable`), a and b independent given the stratum (no help from the pairing)."""
    rng = np.random.default_rng(0)
    q_a, q_b = (np.repeat(q, pairs) for q in reachable(shares_b, difference))
    a, b = rng.random((SIMULATIONS, len(q_a))) < q_a, rng.random((SIMULATIONS, len(q_b))) < q_b
    n10, n01 = (a & ~b).sum(1), (~a & b).sum(1)
    hits = [x + y > 0 and _mcnemar(int(x), int(x + y)) < level and np.sign(x - y) == np.sign(difference)
            for x, y in zip(n10, n01)]
    return float(np.mean(hits))

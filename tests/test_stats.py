import gc
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower
from statsmodels.stats.proportion import proportion_confint

from cnn_experiments.stats import (
    COLUMNS,
    Comparison,
    compare,
    interval,
    markdown,
    select,
    share_interval,
    verdict,
)

SIMULATIONS = 1000
# per-seed accuracy at obj_size 16 in results/pooling/runs.csv: avg - max = +0.38, +0.34, -0.00, +0.42, +0.15
POOLING_DIFFERENCES = np.array([0.3835, 0.343, -0.0015, 0.4165, 0.1515])


@pytest.fixture(autouse=True, scope="module")
def frozen_heap():
    "statsmodels' Holm calls gc.collect() (~50 ms over torch's objects): frozen, the simulated families stay fast."
    gc.collect()
    gc.freeze()
    yield
    gc.unfreeze()


def runs_of(**arms) -> pd.DataFrame:
    "One run per value: arm name -> metric per seed (the seed is the position)."
    values = [np.asarray(v, dtype=float) for v in arms.values()]
    return pd.DataFrame({"arm": np.repeat(list(arms), [len(v) for v in values]),
                         "seed": np.concatenate([np.arange(len(v)) for v in values]),
                         "accuracy": np.concatenate(values)})


def arms(a: str, b, **kw) -> Comparison:
    "A comparison of arm a with arm b (a name) or a reference number, named 'a vs b'."
    return Comparison(f"{a} vs {b}", {"arm": a}, {"arm": b} if isinstance(b, str) else b, **kw)


def one_row(runs: pd.DataFrame, comparison: Comparison) -> pd.Series:
    return compare(runs, [comparison]).iloc[0]


def test_null_families_rarely_give_a_false_verdict():
    rng = np.random.default_rng(20261127)
    family = [arms("pa", "pb"), arms("wa", "wb", paired=False),
              arms("sa", "sb", test="share", learned=0.6, margin=0.1)]
    false, seen = 0, set()
    for _ in range(SIMULATIONS):
        seed_level = rng.normal(0.7, 0.1, 10)  # pairs share a seed's data and initialisation
        runs = runs_of(pa=seed_level + rng.normal(0, 0.02, 10), pb=seed_level + rng.normal(0, 0.02, 10),
                       wa=rng.normal(0.7, 0.05, 10), wb=rng.normal(0.7, 0.05, 10),
                       sa=np.where(rng.random(20) < 0.5, 0.9, 0.5), sb=np.where(rng.random(20) < 0.5, 0.9, 0.5))
        outcomes = compare(runs, family).outcome
        seen.update(outcomes)
        false += outcomes.isin(["supported", "contradicted"]).any()
    rate = false / SIMULATIONS
    assert rate <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / SIMULATIONS)
    assert rate > 0.01  # the tests do reject: a procedure that never decides would pass the line above
    assert seen <= {"supported", "contradicted", "inconclusive", "equivalent"}


def test_one_sd_paired_difference_at_10_seeds_is_supported_with_80_percent_power():
    rng = np.random.default_rng(7)
    comparison = arms("a", "b")
    supported = 0
    for _ in range(SIMULATIONS):
        b = rng.normal(0.7, 0.1, 10)
        runs = runs_of(a=b + rng.normal(0.05, 0.05, 10), b=b)  # mean difference = 1 SD of the differences
        supported += one_row(runs, comparison).outcome == "supported"
    power = TTestPower().power(effect_size=1.0, nobs=10, alpha=0.05)
    assert power == pytest.approx(0.80, abs=0.01)
    assert supported / SIMULATIONS >= power - 3 * math.sqrt(power * (1 - power) / SIMULATIONS)


def test_identical_arms_with_small_noise_are_equivalent_within_a_generous_margin():
    rng = np.random.default_rng(3)
    level = rng.normal(0.9, 0.05, 10)
    runs = runs_of(a=level + rng.normal(0, 0.001, 10), b=level + rng.normal(0, 0.001, 10))
    table = compare(runs, [arms("a", "b", expect="equivalent", margin=0.01)])
    assert table.outcome[0] == "equivalent" and table.p_equiv_adj[0] < 0.05
    assert verdict(table) == "supported"
    expected_difference = compare(runs, [arms("a", "b", margin=0.01)])
    assert expected_difference.outcome[0] == "equivalent"
    assert verdict(expected_difference) == "contradicted"  # no difference where one was predicted


@pytest.mark.parametrize("kw", [{}, {"paired": False}, {"test": "wilcoxon"}, {"test": "share", "learned": 0.9}])
def test_equivalent_never_appears_with_a_zero_margin(kw):
    rng = np.random.default_rng(11)
    for _ in range(30):
        level = rng.normal(0.9, 0.05, 12)
        runs = runs_of(a=level + rng.normal(0, 0.001, 12), b=level + rng.normal(0, 0.001, 12), same=level)
        table = compare(runs, [arms("a", "b", expect="equivalent", margin=0.0, **kw),
                               arms("same", "same", expect="equivalent", margin=0.0, **kw)])
        assert "equivalent" not in set(table.outcome)


def test_the_opposite_sign_is_contradicted_and_expect_less_is_supported():
    rng = np.random.default_rng(5)
    b = rng.normal(0.8, 0.05, 10)
    runs = runs_of(a=b - 0.1 + rng.normal(0, 0.01, 10), b=b)
    table = compare(runs, [arms("a", "b", expect="greater"), arms("a", "b", expect="less")])
    assert table.effect[0] < 0
    assert list(table.outcome) == ["contradicted", "supported"]
    assert verdict(table) == "partly supported"
    assert verdict(table.iloc[:1]) == "contradicted"
    assert verdict(table.iloc[1:]) == "supported"


def test_holm_adjusts_a_p_just_under_alpha_above_it():
    base = np.full(10, 0.5)
    runs = runs_of(base=base, a=base + [1.05, 1.55, -0.45, 0.45, 1.25, -0.05, 0.95, 0.65, 1.45, -0.75],
                   n1=base + [0.3, -0.5, 0.2, -0.1, 0.6, -0.4, 0.1, -0.3, 0.5, -0.2],
                   n2=base + [-0.4, 0.2, 0.7, -0.6, 0.1, 0.3, -0.2, -0.1, 0.5, -0.3])
    table = compare(runs, [arms("a", "base"), arms("n1", "base"), arms("n2", "base")])
    assert 0.03 < table.p[0] < 0.05
    assert table.p_adj[0] > table.p[0]
    np.testing.assert_allclose(table.p_adj, multipletests(table.p, method="holm")[1])
    np.testing.assert_allclose(table.p_equiv_adj, multipletests(table.p_equiv, method="holm")[1])
    assert table.outcome[0] == "inconclusive"  # supported on its own, not in a family of three
    assert one_row(runs, arms("a", "base")).outcome == "supported"


def test_pairing_by_seed_finds_the_pooling_difference_that_welch_misses():
    max_ = np.array([0.20, 0.55, 0.90, 0.35, 0.70])  # seeds vary a lot; each seed's avg - max does not
    runs = runs_of(avg=max_ + POOLING_DIFFERENCES, max=max_)
    table = compare(runs, [arms("avg", "max"), arms("avg", "max", paired=False)])
    paired, welch = table.iloc[0], table.iloc[1]
    assert round(paired.p, 2) == 0.03
    assert paired.p == pytest.approx(sps.ttest_rel(max_ + POOLING_DIFFERENCES, max_).pvalue)
    assert paired.effect == pytest.approx(POOLING_DIFFERENCES.mean())
    assert (paired.n_a, paired.n_b, welch.n_a, welch.n_b) == (5, 5, 5, 5)
    assert welch.p > 0.05 and welch.effect == pytest.approx(paired.effect)
    assert (paired.ci_lo > 0, welch.ci_lo > 0) == (True, False)


def test_shares_use_fisher_exact_and_clopper_pearson():
    avg, max_ = [0.9] * 7 + [0.5] * 3, [0.9] + [0.5] * 9
    row = one_row(runs_of(avg=avg, max=max_), arms("avg", "max", test="share", learned=0.6, margin=0.1))
    assert round(row.p, 2) == 0.02
    assert row.p == pytest.approx(sps.fisher_exact([[7, 3], [1, 9]]).pvalue)
    assert (row.n_a, row.n_b, row.effect) == (10, 10, pytest.approx(0.6))
    assert row.ci_lo < 0.6 < row.ci_hi
    share, lo, hi = share_interval(7, 10)
    assert share == 0.7 and (lo, hi) == pytest.approx(proportion_confint(7, 10, method="beta"))
    assert (lo, hi) == pytest.approx((0.3475, 0.9333), abs=1e-4)  # published Clopper-Pearson bounds


def test_fewer_than_5_seeds_is_indicative_and_outside_the_holm_family():
    rng = np.random.default_rng(2)
    runs = runs_of(a=rng.normal(1.0, 0.1, 4), b=rng.normal(0.0, 0.1, 4),
                   c=np.linspace(0.5, 0.7, 10), d=np.linspace(0.5, 0.7, 10) - 0.1 + rng.normal(0, 0.01, 10))
    table = compare(runs, [arms("a", "b"), arms("c", "d")])
    assert list(table.outcome) == ["indicative", "supported"]
    assert table.p[0] < 0.05 and np.isnan(table.p_adj[0])
    assert table.p_adj[1] == table.p[1]  # a family of one
    assert verdict(table) == "indicative"


def test_a_diverged_run_is_counted_as_dropped():
    a = np.linspace(0.8, 0.9, 10)
    a[3] = np.nan
    runs = runs_of(a=a, b=np.linspace(0.7, 0.8, 10) + [0, 0.01] * 5)
    for kw, n in [({}, (9, 9)), ({"paired": False}, (9, 10))]:
        row = one_row(runs, arms("a", "b", **kw))
        assert row.dropped == 1 and (row.n_a, row.n_b) == n
    paired = one_row(runs, arms("a", "b"))
    keep = np.arange(10) != 3
    assert paired.effect == pytest.approx(np.mean(a[keep] - runs.accuracy[runs.arm == "b"].to_numpy()[keep]))
    assert "9 pairs, 1 diverged dropped" in markdown(compare(runs, [arms("a", "b")]))
    assert interval(a)[3:] == (9, 1)


def test_a_nan_in_a_share_test_counts_as_not_learned():
    runs = runs_of(a=[0.9] * 7 + [np.nan, 0.5, 0.5], b=[0.9] * 2 + [0.5] * 8)
    row = one_row(runs, arms("a", "b", test="share"))
    assert (row.n_a, row.dropped) == (10, 0)
    assert row.effect == pytest.approx(0.7 - 0.2)


def test_interaction_effect_is_the_mean_over_seeds_of_a_minus_b_minus_c_minus_d():
    rng = np.random.default_rng(9)
    a, b, c, d = (rng.normal(0.8, 0.05, 8) for _ in range(4))
    runs = runs_of(a=a, b=b, c=c, d=d)
    row = one_row(runs, arms("a", "b", c={"arm": "c"}, d={"arm": "d"}))
    per_seed = (a - b) - (c - d)
    assert row.effect == pytest.approx(per_seed.mean())
    assert row.effect != pytest.approx((a - b).mean())
    assert row.p == pytest.approx(sps.ttest_1samp(per_seed, 0).pvalue)
    assert row.test == "paired t on (a-b)-(c-d)" and row.n_a == 8


@pytest.mark.parametrize("kw", [{}, {"paired": False}, {"test": "wilcoxon"}])
def test_zero_variance_data_give_exact_numbers_not_a_crash(kw):
    runs = runs_of(a=[0.9] * 6, b=[0.9] * 6, c=[0.95] * 6)
    table = compare(runs, [arms("a", "b", expect="equivalent", **kw), arms("c", "b", **kw)])
    same, better = table.iloc[0], table.iloc[1]
    assert (same.effect, same.ci_lo, same.ci_hi, same.p, same.p_equiv) == (0, 0, 0, 1.0, 0.0)
    assert better.effect == pytest.approx(0.05) and better.ci_lo == better.ci_hi == better.effect
    assert list(table.outcome) == ["equivalent", "supported"]
    assert interval([0.9] * 6)[:3] == pytest.approx((0.9, 0.9, 0.9))
    assert ", every one equal |" in markdown(table).splitlines()[3]


def test_an_effect_at_the_margin_in_every_replicate_is_not_equivalent():
    rho = 0.19999999999999998  # spearmanr's float for an exact 0.2
    table = compare(runs_of(a=[rho] * 5), [Comparison("trend", {"arm": "a"}, 0.0, margin=0.2)])
    assert table.p_equiv.iloc[0] == 1.0 and table.outcome.iloc[0] == "supported"


def test_an_arm_that_selects_nothing_raises_naming_the_comparison():
    runs = runs_of(a=[0.9] * 6, b=[0.8] * 6)
    with pytest.raises(ValueError, match="avg beats max.*arm b"):
        compare(runs, [Comparison("avg beats max", {"arm": "a"}, {"arm": "typo"})])
    with pytest.raises(ValueError, match="'pool'"):
        select(runs, {"pool": "max"})


@pytest.mark.parametrize("kw", [{"test": "wilcoxon", "paired": False}, {"test": "ttest"}, {"expect": "bigger"},
                                {"c": {"arm": "c"}, "d": {"arm": "d"}, "paired": False}, {"c": {"arm": "c"}}])
def test_a_comparison_that_cannot_be_decided_is_rejected_at_declaration(kw):
    with pytest.raises(ValueError):
        Comparison("bad", {"arm": "a"}, {"arm": "b"}, **kw)


def test_select_matches_floats_within_rounding():
    runs = pd.DataFrame({"lr": [0.1 + 0.2, 0.3, 0.03], "pool": ["max", "avg", "max"], "seed": [0, 0, 0]})
    assert select(runs, {"lr": 0.3}).index.tolist() == [0, 1]
    assert select(runs, {"lr": 0.3, "pool": "max"}).index.tolist() == [0]


def test_markdown_shows_the_margin_and_the_detectable_difference():
    rng = np.random.default_rng(4)
    level = rng.normal(0.9, 0.05, 10)
    runs = runs_of(a=level + rng.normal(0, 0.001, 10), b=level + rng.normal(0, 0.001, 10),
                   noisy=level + rng.normal(0, 0.05, 10))
    table = compare(runs, [arms("a", "b", expect="equivalent", margin=0.02), arms("noisy", "b")])
    assert list(table.outcome) == ["equivalent", "inconclusive"] and list(table.columns) == COLUMNS
    text = markdown(table)
    equivalent, inconclusive = (line for line in text.splitlines() if line.startswith("| a vs b") or
                                line.startswith("| noisy vs b"))
    assert "±0.020" in equivalent and "10 pairs" in equivalent and "paired t" in equivalent
    assert f"inconclusive (detectable: ±{table.detectable[1]:.3f})" in inconclusive
    assert "Holm" in text and "TOST" in text and "fewer than 5" in text


def test_detectable_is_the_power_analysis_at_the_bonferroni_level():
    rng = np.random.default_rng(8)
    runs = runs_of(a=rng.normal(0, 1, 10), b=rng.normal(0, 1, 10), c=rng.normal(0, 1, 10))
    table = compare(runs, [arms("a", "b"), arms("c", "b")])
    sd = np.std(runs.accuracy[runs.arm == "a"].to_numpy() - runs.accuracy[runs.arm == "b"].to_numpy(), ddof=1)
    assert TTestPower().power(table.detectable[0] / sd, nobs=10, alpha=0.05 / 2) == pytest.approx(0.8, abs=1e-4)
    # at 5 seeds in a family of ten, statsmodels' two-sided solve_power misses the root: the answer must still be right
    runs5 = runs_of(**{f"x{i}": rng.normal(0, 1, 5) for i in range(11)})
    table5 = compare(runs5, [arms(f"x{i}", "x0") for i in range(1, 11)])
    sd5 = np.std(runs5.accuracy[runs5.arm == "x1"].to_numpy() - runs5.accuracy[runs5.arm == "x0"].to_numpy(), ddof=1)
    # (its two-sided power is NaN here: scipy's noncentral t fails in the far tail, whose share is below 1e-5)
    upper_tail = TTestPower().power(table5.detectable[0] / sd5, nobs=5, alpha=0.05 / 10 / 2, alternative="larger")
    assert upper_tail == pytest.approx(0.8, abs=1e-4)


def test_verdict_reads_the_rows():
    def table(*rows):
        return pd.DataFrame(rows, columns=["outcome", "expect"])
    assert verdict(table(("supported", "greater"), ("equivalent", "equivalent"))) == "supported"
    assert verdict(table(("supported", "greater"), ("inconclusive", "less"))) == "partly supported"
    assert verdict(table(("inconclusive", "greater"), ("equivalent", "greater"))) == "contradicted"
    assert verdict(table(("inconclusive", "greater"), ("contradicted", "equivalent"))) == "contradicted"
    assert verdict(table(("inconclusive", "greater"), ("inconclusive", "equivalent"))) == "inconclusive"
    assert verdict(table(("supported", "greater"), ("indicative", "less"))) == "indicative"


def test_interval_is_the_t_interval_of_the_finite_values():
    values = [0.8, 0.85, 0.9, np.nan, 0.83]
    mean, lo, hi, n, dropped = interval(values)
    finite = np.array([0.8, 0.85, 0.9, 0.83])
    expected = sps.t.interval(0.95, 3, loc=finite.mean(), scale=sps.sem(finite))
    assert (mean, n, dropped) == (pytest.approx(finite.mean()), 4, 1)
    assert (lo, hi) == pytest.approx(expected)
    assert interval([0.7]) == (0.7, 0.7, 0.7, 1, 0)
    assert all(math.isnan(x) for x in interval([np.nan])[:3]) and interval([np.nan])[3:] == (0, 1)


def test_one_sample_and_wilcoxon_use_their_own_tests():
    rng = np.random.default_rng(6)
    a, b = rng.normal(0.62, 0.03, 8), rng.normal(0.6, 0.03, 8)
    runs = runs_of(a=a, b=b)
    table = compare(runs, [arms("a", 0.5), arms("a", "b", test="wilcoxon"), arms("a", 0.5, test="wilcoxon")])
    one, wilcoxon, one_wilcoxon = table.iloc[0], table.iloc[1], table.iloc[2]
    assert one.effect == pytest.approx(a.mean() - 0.5) and one.p == pytest.approx(sps.ttest_1samp(a, 0.5).pvalue)
    assert wilcoxon.p == pytest.approx(sps.wilcoxon(a - b).pvalue)
    bca = sps.bootstrap((a - b,), np.mean, method="BCa", rng=0).confidence_interval
    assert (wilcoxon.ci_lo, wilcoxon.ci_hi) == pytest.approx((bca.low, bca.high))
    assert one_wilcoxon.p == pytest.approx(sps.wilcoxon(a - 0.5).pvalue)
    lines = markdown(table).splitlines()
    assert "| one-sample t | 8 |" in lines[2] and "| Wilcoxon signed-rank | 8 pairs |" in lines[3]


def test_a_grid_not_yet_complete_gives_numbers_but_no_verdict():
    runs = runs_of(a=[0.9, 0.91, 0.92, 0.9, 0.93, 0.91], b=[0.5] * 6)
    done, missing = arms("a", "b"), arms("a", "c")
    table = compare(runs, [done, missing], partial=True)
    assert list(table.outcome) == ["indicative", "indicative"] and table.p.iloc[0] < 0.001
    assert table.n_a.iloc[1] == 0 and math.isnan(table.effect.iloc[1])
    assert compare(runs, [done]).outcome.iloc[0] == "supported"

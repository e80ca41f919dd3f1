"""`cnn-exp reproduce` judges a fresh study by its answer, not its bits: a check that a changed answer fails."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cnn_experiments.statistics.stats import Comparison
from cnn_experiments.studies import reproduction as R
from experiments import pooling as P

ROOT = Path(__file__).resolve().parents[1]

ONE_SIZE = [Comparison("trainability: max - avg, share of seeds that learn, 12 px", dict(arm="threshold", pool="max"),
                       dict(arm="threshold", pool="avg"), test="share", learned=0.6, margin=0.1)]


def study(learned: dict[str, int], seeds: int = 10) -> pd.DataFrame:
    "Labelled threshold runs at one size: the first k seeds of each head learn."
    rows = [dict(arm="threshold", pool=h, obj_size=12, seed=s, accuracy=0.9 if s < k else 0.5, learned=s < k)
            for h, k in learned.items() for s in range(seeds)]
    return pd.DataFrame(rows)


def test_the_same_answer_drawn_again_is_reproduced_even_where_runs_differ():
    committed = study({"avg": 10, "max": 1})
    fresh = study({"avg": 9, "max": 0})  # two runs near the threshold fell the other way
    judged = R.judge(committed, fresh, ONE_SIZE)
    assert judged.reproduced and judged.text().startswith("reproduced: C6 contradicted")


def test_a_reversed_effect_is_not_reproduced():
    committed = study({"avg": 10, "max": 0})
    judged = R.judge(committed, study({"avg": 0, "max": 10}), ONE_SIZE)
    assert not judged.reproduced and judged.outcomes_differ
    assert "contradicted -> supported" in judged.text()


def test_an_absent_effect_is_not_reproduced():
    judged = R.judge(study({"avg": 10, "max": 0}), study({"avg": 5, "max": 5}), ONE_SIZE)
    assert not judged.reproduced and judged.text().startswith("not reproduced")


def test_the_same_verdict_with_shares_beyond_their_tolerance_is_not_reproduced():
    committed, fresh = study({"avg": 10, "max": 0}), study({"avg": 6, "max": 0})
    judged = R.judge(committed, fresh, ONE_SIZE)
    assert not judged.outcomes_differ  # still contradicted: 6 discordant seeds, all one way
    assert not judged.reproduced and "avg 6/10 (committed 10/10, tolerance ±0.20: beyond it)" in judged.text()


def test_a_faithful_redraw_passes_the_check_at_least_95_percent_of_the_time():
    committed = study({"avg": 10, "max": 1})
    assert R.false_alarm(committed, ONE_SIZE, simulations=300) <= 0.05
    close = study({"avg": 6, "max": 4})  # a study near its own noise: the check is not always passed
    assert R.false_alarm(close, ONE_SIZE, simulations=40) > 0  # about one re-draw in eight fails it


def test_the_tolerance_is_the_binomial_spread_of_two_draws():
    tol = R.tolerance(5, 10, 0.025)
    q = 5.5 / 11
    a, b = np.random.default_rng(0).binomial(10, q, (2, 20000))
    assert np.mean(np.abs(a - b) / 10 <= tol) >= 0.975 > np.mean(np.abs(a - b) / 10 <= tol - 0.1)


@pytest.fixture(scope="module")
def committed() -> pd.DataFrame:
    "The committed quick pooling study, as its report reads it."
    from cnn_experiments.studies.study import load
    return load("pooling", "quick", ROOT / "results").labelled


def test_the_committed_quick_study_is_reproduced_by_itself_and_passes_95_percent_of_faithful_redraws(committed):
    assert R.judge(committed, committed, P.comparisons("quick")).reproduced
    assert R.false_alarm(committed, P.comparisons("quick"), simulations=200) <= 0.05 + 3 * (0.05 * 0.95 / 200) ** 0.5


def test_the_committed_quick_study_with_its_effect_reversed_is_not_reproduced(committed):
    swapped = committed.assign(pool=committed["pool"].map({"avg": "max", "max": "avg"}))
    judged = R.judge(committed, swapped, P.comparisons("quick"))
    assert not judged.reproduced and "contradicted -> supported" in judged.text()


def test_the_committed_quick_study_with_its_verdict_kept_but_a_share_moved_is_not_reproduced(committed):
    more = committed.copy()
    failing = more.index[(more["pool"] == "max") & ~more["learned"]][:6]
    more.loc[failing, ["accuracy", "learned"]] = [0.61, True]  # six more max runs just learn; avg still far ahead
    judged = R.judge(committed, more, P.comparisons("quick"))
    assert not judged.outcomes_differ and not judged.reproduced and "beyond it" in judged.text()

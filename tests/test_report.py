import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cnn_experiments import report as R


def test_ci95_is_the_t_interval():
    v = [0.91, 0.93, 0.92, 0.95, 0.90]
    mean, half, n = R.ci95(v)
    assert n == 5 and mean == pytest.approx(np.mean(v))
    assert half == pytest.approx(stats.t.ppf(0.975, 4) * np.std(v, ddof=1) / math.sqrt(5))
    assert math.isnan(R.ci95([0.9])[1]) and R.ci95([])[2] == 0


def test_summary_numbers_equal_a_direct_computation_from_runs_csv(tmp_path):
    rng = np.random.default_rng(0)
    runs = pd.DataFrame({"pool": np.repeat(["avg", "max"], 6), "obj_size": np.tile(np.repeat([16, 32], 3), 2),
                         "seed": np.tile([0, 1, 2], 4), "accuracy": rng.uniform(0.5, 1, 12)})
    runs.to_csv(tmp_path / "runs.csv", index=False)
    back = pd.read_csv(tmp_path / "runs.csv")
    s = R.summarize(back, ["obj_size", "pool"]).set_index(["obj_size", "pool"])
    for (size, pool), g in runs.groupby(["obj_size", "pool"]):
        acc = g["accuracy"].to_numpy()
        half = stats.t.ppf(0.975, 2) * acc.std(ddof=1) / math.sqrt(3)
        assert s.loc[(size, pool), "mean"] == pytest.approx(acc.mean())
        assert s.loc[(size, pool), "ci"] == pytest.approx(half)
        assert s.loc[(size, pool), "min"] == acc.min() and s.loc[(size, pool), "n"] == 3


def test_index_quotes_the_most_thorough_profile(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "summary_quick.md").write_text("# a\n**Finding:** quick says x\n")
    (tmp_path / "a" / "summary_full.md").write_text("# a\n**Finding:** full says y\n")
    text = R.write_index(tmp_path).read_text()
    assert "| [a](a/summary_full.md) | full | full says y |" in text and "quick says" not in text


def test_pivot_says_not_run_where_a_cell_has_no_runs():
    from cnn_experiments.report import pivot, summarize
    runs = pd.DataFrame([dict(size=s, pool=p, seed=k, accuracy=0.9 + 0.01 * k)
                         for s, p in ((1, "avg"), (1, "max"), (2, "avg")) for k in range(3)])
    t = pivot(summarize(runs, ["size", "pool"]), "size", "pool")
    assert t.loc[2, "max"] == "not run" and t.loc[1, "max"].startswith("0.910 ± ")


def test_the_header_counts_runs_per_device_when_a_grid_used_several():
    one = pd.DataFrame({"device": ["cpu (x86_64, 2 threads)"] * 2})
    assert R.devices(one) == "cpu (x86_64, 2 threads)"
    mixed = pd.DataFrame({"device": ["NVIDIA H200"] * 3 + ["cpu (x86_64, 2 threads)"]})
    assert R.devices(mixed) == "NVIDIA H200 (3 runs), cpu (x86_64, 2 threads) (1 runs)"


def test_a_seed_run_on_two_devices_counts_once_as_first_made():
    runs = pd.DataFrame({"cell_id": ["a", "a", "a", "b"], "seed": [0, 1, 0, 0],
                         "device": ["NVIDIA H200", "NVIDIA H200", "cpu", "cpu"]})
    kept = R.one_per_seed(runs)
    assert kept["device"].tolist() == ["NVIDIA H200", "NVIDIA H200", "cpu"] and kept.index.tolist() == [0, 1, 2]

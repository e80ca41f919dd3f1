"""Every experiment's declaration: its grid, its search and its comparisons fit together."""
import numpy as np
import pandas as pd
import pytest
import torch

from cnn_experiments.models.kernels import TOP_EDGE, edge_match
from cnn_experiments.reports import report as R
from cnn_experiments.runs.config import POOLS, to_row
from cnn_experiments.statistics import stats
from cnn_experiments.studies.registry import NAMES, get
from experiments import pooling as P


def runs_of(exp, profile: str) -> pd.DataFrame:
    "The profile's grid and search as a sweep would write them, with made-up metrics."
    rng = np.random.default_rng(0)

    def rows(cfgs):
        return pd.DataFrame([dict(run_id=c.run_id, cell_id=c.cell_id, profile=profile, **to_row(c),
                                  accuracy=rng.uniform(0.5, 1), valid_loss=rng.uniform(0, 1),
                                  train_loss=rng.uniform(0, 1), **probes(c)) for c in cfgs])

    def probes(c):  # a probed run's head-only accuracies, as train.run records them
        return {f"probe_{h}": rng.uniform(0.5, 1) for h in POOLS} if c.probe else {}
    searched = rows(exp.search(profile))  # the grid takes the rates this search chose
    grid = [c.replace(seed=s) for c in exp.grid(profile, searched) for s in exp.seed_list(profile)]
    return pd.concat([searched, rows(grid)], ignore_index=True)


@pytest.mark.parametrize("name", NAMES)
def test_each_profiles_comparisons_select_runs_of_its_grid(name):
    exp = get(name)
    for profile in exp.profiles:
        comparisons = exp.comparisons(profile)
        if not comparisons:
            continue
        runs = exp.label(runs_of(exp, profile), profile)
        if name == "pooling" and profile == "confirm":  # its second family, decided in the report
            comparisons = comparisons + P.mechanism()
        table = stats.compare(runs, comparisons)
        assert len(table) == len(comparisons) and table["n_a"].min() >= 1
        if exp.seeds(profile) < stats.MIN_SEEDS:
            assert set(table["outcome"]) == {"indicative"}
        else:  # a verdict: every row tested, its Holm-adjusted p and outcome set
            assert set(table["outcome"]) <= set(stats.OUTCOMES) and table["p_adj"].notna().all()


@pytest.mark.parametrize("name", [n for n in NAMES if n != "edge_filter"])
def test_each_grid_is_distinct_cells_and_searches_on_the_search_split(name):
    exp = get(name)
    for profile in exp.profiles:
        cells = exp.grid(profile)
        assert cells and len({c.cell_id for c in cells}) == len(cells)
        assert all(c.split == "heldout" for c in cells) and all(c.split == "search" for c in exp.search(profile))
        for c in cells + exp.search(profile):
            c.check()


def test_dropout_tests_the_trend_over_the_runs_that_learn():
    from experiments import dropout as D
    runs = D.label(runs_of(D.EXPERIMENT, "full"), "full")
    runs["learned"] = runs["dropout"] < 0.9  # p = 0.9 sits at chance: out of the trend
    runs["valid_loss"] = 1 - runs["dropout"] + 0.01 * runs["seed"]
    trends = D.trends(runs)
    held = trends[trends["trend"] == "valid_loss"]
    assert len(held) == 2 * 5 and np.allclose(held["rho"], -1)
    table = stats.compare(pd.concat([runs, trends]), D.comparisons("full"))
    assert table.set_index("comparison").loc["head (create_head ps): held-out loss trend over p (Spearman rho)",
                                              "outcome"] == "supported"


def test_downsampling_matches_the_cost_of_the_pooled_ways():
    from experiments import downsampling as D
    for task in D.TASKS:
        wide, pooled = D.cost(D.arm_config(task, "stride, matched cost"))[1], D.cost(D.arm_config(task, "maxpool"))[1]
        assert abs(wide / pooled - 1) < 0.1 and D.cost(D.arm_config(task, "stride"))[1] < pooled / 3


def test_fine_tune_gives_every_method_the_same_steps_and_fine_tune_a_frozen_phase():
    from experiments import fine_tune as F
    for k in F.PROFILES["medium"]["per_class"]:
        row = [c for c in F.grid("medium") if c.n_train == 10 * k]
        assert len(row) == len(F.METHODS) and len({(c.epochs, c.bs) for c in row}) == 1
        bs, epochs, frozen = F.schedule(10 * k)
        assert frozen * ((10 * k) // bs) >= F.FROZEN_STEPS and epochs * ((10 * k) // bs) >= F.STEPS
    assert {c.size for c in F.grid("medium") if c.arch != "simple_cnn"} == {128}
    assert {c.size for c in F.grid("full") if c.arch != "simple_cnn"} == {224}


def test_the_edge_match_is_one_for_the_lessons_kernel_and_small_for_noise():
    inside = torch.zeros(1, 5, 5)
    inside[0, 1:4, 2:5] = torch.rot90(TOP_EDGE, 1)
    assert edge_match(inside)[0] == pytest.approx(1.0)
    assert edge_match(inside, rotations=1)[0] < 0.8  # a left edge is not a top edge
    torch.manual_seed(0)
    assert edge_match(torch.randn(200, 5, 5)).mean() < 0.6


def test_the_top_edge_kernel_peaks_on_a_top_edge():
    from experiments import edge_filter
    x = torch.zeros(1, 1, 12, 12)
    x[0, 0, 4:9, 3:9] = 1.0  # an ink square: its top edge is row 4
    raw, act = edge_filter.edge_maps(x)
    row, col = divmod(int(raw[0, 0].argmax()), 12)
    assert row in (3, 4) and edge_filter.is_top_edge(x[0, 0], row, col)
    assert raw[0, 0, 8, 3:9].max() < 0 and act[0, 0, 8, 3:9].max() == 0  # the bottom edge is negative; ReLU zeroes it


def test_mnist_scratchs_kernels_at_init_are_the_runs_own(digits):
    from cnn_experiments.training import train
    from experiments import mnist_scratch as M
    cfg = M.grid("quick")[3].replace(seed=3, n_train=64)
    learn = train.learner(cfg)
    assert torch.equal(learn.model.state_dict()[M.FIRST_CONV][:, 0], M.init_kernels(cfg))


def test_dropout_describes_where_held_out_loss_is_lowest_and_where_runs_stop_learning():
    from experiments import dropout as D
    runs = D.label(runs_of(D.EXPERIMENT, "full"), "full")
    runs["learned"] = runs["dropout"] < 0.75
    runs["valid_loss"] = (runs["dropout"] - 0.25) ** 2 + 0.01 * runs["seed"]
    by = {s: {"valid_loss": R.summarize(g, ["dropout"], "valid_loss")} for s, g in runs.groupby("series", sort=False)}
    assert D.described(by, runs)[1] == ("body (Dropout2d): the lowest mean held-out loss is at p=0.25 (0.020, "
                                         "against 0.083 without dropout); from p=0.75 no run learns")

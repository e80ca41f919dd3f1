"""The declared learning-rate search: what it runs, what it chooses, and how a declared grid grows past an edge."""
import pandas as pd

from cnn_experiments.runs.config import Config
from cnn_experiments.sweeps import search as S

CELL = Config(data="mnist", n_train=50, bs=10, epochs=1)
LRS = (0.001, 0.003, 0.01, 0.03)


def ran(scores: dict[float, float]) -> pd.DataFrame:
    "Search runs of CELL with these search-split accuracies."
    return pd.DataFrame([{"run_id": S.searched(CELL, lr).run_id, "accuracy": a, "valid_loss": 1 - a}
                         for lr, a in scores.items()])


def rates(cfgs):
    return sorted(c.lr for c in cfgs)


def test_the_search_runs_every_rate_on_the_search_split_and_chooses_the_best():
    runs = S.search_runs([CELL], LRS)
    assert rates(runs) == list(LRS) and {c.split for c in runs} == {"search"}
    assert S.choose([CELL], LRS, None)[0].lr == 0.01  # before the search: the grid's middle
    assert S.choose([CELL], LRS, ran({0.001: 0.5, 0.003: 0.7, 0.01: 0.6, 0.03: 0.2}))[0].lr == 0.003


def test_a_tie_in_accuracy_goes_to_the_lower_loss_then_the_lower_rate():
    tie = pd.DataFrame([{"run_id": S.searched(CELL, lr).run_id, "accuracy": 0.5, "valid_loss": loss}
                        for lr, loss in ((0.001, 1.0), (0.003, 0.4), (0.01, 0.4), (0.03, 2.0))])
    assert S.choose([CELL], LRS, tie)[0].lr == 0.003


def test_a_grid_without_growth_keeps_its_edge_choice():
    top = ran({0.001: 0.1, 0.003: 0.2, 0.01: 0.3, 0.03: 0.9})
    assert rates(S.search_runs([CELL], LRS, runs=top)) == list(LRS)
    assert S.choose([CELL], LRS, top)[0].lr == 0.03
    assert S.table([CELL], LRS, top, str)["chosen"].tolist() == ["0.03 (edge)"]


def test_a_declared_growth_adds_the_next_rate_past_an_edge_choice_until_it_is_interior():
    top = {0.001: 0.1, 0.003: 0.2, 0.01: 0.3, 0.03: 0.9}
    assert rates(S.search_runs([CELL], LRS, runs=ran(top), grow=2)) == [*LRS, 0.1]
    assert S.table([CELL], LRS, ran(top), str, grow=2)["chosen"].tolist() == ["0.03 (edge) (0.1 not run yet)"]
    interior = ran({**top, 0.1: 0.4})  # the new rate is worse: 0.03 is now inside the grid
    assert rates(S.search_runs([CELL], LRS, runs=interior, grow=2)) == [*LRS, 0.1]
    assert S.choose([CELL], LRS, interior, grow=2)[0].lr == 0.03
    assert S.table([CELL], LRS, interior, str, grow=2)["chosen"].tolist() == ["0.03"]


def test_growth_waits_for_the_whole_grid_and_stops_after_its_declared_steps():
    assert rates(S.search_runs([CELL], LRS, runs=ran({0.03: 0.9}), grow=2)) == list(LRS)  # 3 rates not run yet
    climbing = ran({0.001: 0.1, 0.003: 0.2, 0.01: 0.3, 0.03: 0.4, 0.1: 0.5, 0.3: 0.6})
    assert rates(S.search_runs([CELL], LRS, runs=climbing, grow=2)) == [*LRS, 0.1, 0.3]
    assert S.choose([CELL], LRS, climbing, grow=2)[0].lr == 0.3
    assert S.table([CELL], LRS, climbing, str, grow=2)["chosen"].tolist() == ["0.3 (edge)"]


def test_a_bottom_edge_choice_grows_the_grid_downwards():
    bottom = ran({0.001: 0.9, 0.003: 0.2, 0.01: 0.3, 0.03: 0.1})
    assert rates(S.search_runs([CELL], LRS, runs=bottom, grow=1)) == [0.0003, *LRS]


def test_the_next_rate_keeps_the_grids_own_spacing():
    assert S.beyond((0.003, 0.01, 0.03), True) == 0.1 and S.beyond((0.003, 0.01, 0.03), False) == 0.001
    assert S.beyond((0.001, 0.01, 0.1), True) == 1.0 and S.beyond((0.01, 0.03), True) == 0.09

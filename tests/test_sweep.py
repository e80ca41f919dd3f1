"""Sweeps: resume, and the same numbers however the runs are executed."""
import gc

import pandas as pd
import pytest

from cnn_experiments.errors import UserError
from cnn_experiments.runs.progress import ProgressTable, clock, cost
from cnn_experiments.runs.store import Store
from cnn_experiments.sweeps import sweep
from tests.conftest import TINY, TINY_SCENES


def test_a_sweep_resumes_where_it_was(tmp_path):
    path, lines = tmp_path / "runs.csv", []
    grid = [TINY.replace(seed=s) for s in range(2)]
    first = sweep.run_sweep(grid, path, echo=lines.append)
    assert len(first) == 2 and "2 to run" in lines[0]
    lines.clear()
    second = sweep.run_sweep(grid + [TINY.replace(seed=2)], path, echo=lines.append)
    assert "2 already in" in lines[0] and "1 to run" in lines[0]
    assert len(second) == 3 and second["run_id"].is_unique
    assert second.iloc[:2]["accuracy"].tolist() == first["accuracy"].tolist()  # old rows untouched


def test_a_run_made_on_another_device_counts_as_done(tmp_path):
    path = tmp_path / "runs.csv"
    sweep.run_sweep([TINY], path, echo=lambda s: None)
    lines = []
    done = sweep.run_sweep([TINY.replace(device="cpu", seed=0)], path, echo=lines.append)
    assert "1 already in" in lines[0] and len(done) == 1


def test_the_same_grid_serially_and_with_two_processes_gives_identical_metrics(tmp_path):
    # two runs, one for each worker: digits, and scenes with their head-only probes (a number a worker computes too)
    grid = [TINY, TINY_SCENES.replace(probe=True)]
    serial = sweep.run_sweep(grid, tmp_path / "serial.csv", echo=lambda s: None).set_index("run_id")
    lines = []
    par = sweep.run_sweep(grid, tmp_path / "par.csv", echo=lines.append, jobs=2).set_index("run_id")
    assert "2 at a time" in lines[0] and sorted(par.index) == sorted(serial.index)
    cols = ["train_loss", "valid_loss", "accuracy", "auc", "probe_max", "device"]
    pd.testing.assert_frame_equal(par.loc[serial.index, cols], serial[cols])
    curves = [Store(tmp_path / f"{n}.csv").curves().sort_values(["run_id", "step"]) for n in ("serial", "par")]
    pd.testing.assert_frame_equal(*[c.reset_index(drop=True) for c in curves])


def test_a_sweep_saves_what_a_report_draws(tmp_path):
    path = tmp_path / "runs.csv"
    sweep.run_sweep([TINY_SCENES, TINY_SCENES.replace(seed=1)], path, echo=lambda s: None,
                    keep=lambda c: ("0.0.0.",) if c.seed == 0 else ())
    store = Store(path)
    saved = list(store.weights_dir.iterdir())
    assert [f.stem for f in saved] == [TINY_SCENES.run_id]
    assert set(store.weights(TINY_SCENES.run_id)) == {"0.0.0.weight"}
    assert set(store.curves()["run_id"]) == {TINY_SCENES.run_id, TINY_SCENES.replace(seed=1).run_id}


def test_a_fused_sweep_writes_one_row_per_member(tmp_path):
    grid = [TINY.replace(seed=s) for s in range(3)] + [TINY.replace(lr=0.01)]
    runs = sweep.run_sweep(grid, tmp_path / "runs.csv", echo=lambda s: None, fuse=2)
    assert sorted(runs["run_id"]) == sorted(c.run_id for c in grid)
    # the cell of 3 seeds goes as a fused pair and one alone; the other cell's one run trains alone
    assert sorted(runs["fused"].tolist()) == [1, 1, 2, 2]


def test_the_collector_is_unfrozen_after_a_sweep_even_a_stopped_one(tmp_path):
    sweep.run_sweep([TINY], tmp_path / "runs.csv", echo=lambda line: None)
    assert gc.get_freeze_count() == 0

    def ctrl_c_after_the_first_run(line):
        if "to run" not in line:  # the table's lines come after a run
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        sweep.run_sweep([TINY.replace(seed=1)], tmp_path / "runs.csv", echo=ctrl_c_after_the_first_run)
    assert gc.get_freeze_count() == 0


@pytest.mark.parametrize("kw,match", [
    (dict(jobs=0), "--jobs: at least 1"), (dict(fuse=0), "--fuse: at least 1"),
    (dict(executor="spark"), "--executor: unknown 'spark'; choose one of local, ray")])
def test_bad_sweep_options_are_named_before_any_work(tmp_path, kw, match):
    with pytest.raises(UserError, match=match):
        sweep.run_sweep([TINY], tmp_path / "runs.csv", **kw)
    assert not (tmp_path / "runs.csv").exists()


def test_every_config_is_checked_before_any_work(tmp_path):
    with pytest.raises(UserError, match="pool"):
        sweep.run_sweep([TINY, TINY.replace(pool="nope")], tmp_path / "runs.csv", echo=lambda s: None)
    assert not (tmp_path / "runs.csv").exists()


def test_progress_lines_count_done_of_total_with_elapsed_and_time_left():
    lines = []
    big = TINY.replace(data="scenes", canvas=128, n_scenes=100)
    table = ProgressTable(["seed"], lines.append, [TINY, TINY, TINY, big])
    metrics = dict(accuracy=0.9, train_loss=0.1, valid_loss=0.2, seconds=1.0)
    table.t0 -= 30  # 30 s into the sweep when the first run finishes
    table.line(1, TINY, metrics)
    header, first = lines
    assert header.split()[0] == "run" and header.split()[-2:] == ["elapsed", "left"]
    # elapsed, then the time left, each run weighed by its pixels x images x epochs: two more like the first, one big
    assert first.split()[0] == "1/4" and first.split()[-2:] == ["0:30", clock(30 * (2 + cost(big) / cost(TINY)))]
    assert cost(big) > 5 * cost(TINY)
    assert clock(3725) == "1:02:05" and clock(float("nan")) == "-"

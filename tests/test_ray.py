"""A sweep whose runs are tasks on a (local) Ray instance: same runs file, same resume, same numbers."""
import pytest

from cnn_experiments.sweeps import sweep
from cnn_experiments.training import train
from tests.conftest import TINY

ray = pytest.importorskip("ray")


def test_ray_sweep_writes_each_run_once_with_the_numbers_of_a_run_here(tmp_path, monkeypatch):
    monkeypatch.setenv("RAY_worker_niceness", "0")  # Ray's default of 15 starves its workers beside other tests
    # one CPU: one worker process, which imports torch and fastai (seconds) once, for the one run it is given
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        grid = [TINY.replace(seed=s) for s in range(2)]
        path, lines = tmp_path / "runs.csv", []
        first = sweep.run_sweep(grid[:1], path, echo=lambda s: None)  # one run here, then resume on Ray
        runs = sweep.run_sweep(grid, path, echo=lines.append, executor="ray")
    finally:
        ray.shutdown()
    assert "1 already in" in lines[0] and "1 to run" in lines[0]
    assert len(runs) == 2 and runs["run_id"].is_unique and runs.iloc[0]["accuracy"] == first.iloc[0]["accuracy"]
    on_ray = runs.set_index("run_id").loc[grid[1].run_id]
    assert on_ray["valid_loss"] == train.run(grid[1])["valid_loss"]  # one thread there as here: the same run

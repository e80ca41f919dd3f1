"""A sweep whose runs are tasks on a (local) Ray instance: same runs file, same resume."""
import pytest

from cnn_experiments import sweep, train
from cnn_experiments.train import Config

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_sweep_writes_each_run_once_and_resumes(tmp_path, local_ray):
    tiny = Config(data="mnist", n_train=128, epochs=1, bs=64, lr=0.03)
    grid = [tiny.replace(seed=s) for s in range(2)]
    path, lines = tmp_path / "runs.csv", []
    first = sweep.run_sweep(grid[:1], path, echo=lambda s: None)  # one run here, then resume on Ray
    runs = sweep.run_sweep(grid + [tiny.replace(lr=0.01)], path, echo=lines.append, executor="ray")
    assert "1 already in" in lines[0] and "2 to run" in lines[0]
    assert len(runs) == 3 and runs["run_id"].is_unique
    assert runs.iloc[0]["accuracy"] == first.iloc[0]["accuracy"]
    on_ray = runs.set_index("run_id").loc[grid[1].run_id]
    assert on_ray["valid_loss"] == pytest.approx(train.run(grid[1])["valid_loss"], rel=1e-4)  # the same run


def test_unknown_executor_is_named():
    with pytest.raises(ValueError, match="executor: unknown 'spark'; choose one of local, ray"):
        sweep.run_sweep([Config()], "x.csv", executor="spark")

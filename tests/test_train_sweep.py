import pandas as pd
import pytest

from cnn_experiments import sweep, train
from cnn_experiments.train import Config

TINY = Config(data="mnist", n_train=512, epochs=1, bs=64, lr=0.03)


def test_same_config_same_numbers_on_cpu():
    a, b = train.run(TINY), train.run(TINY)
    for k in ("train_loss", "valid_loss", "accuracy"):
        assert a[k] == b[k], k
    assert train.run(TINY.replace(seed=1))["valid_loss"] != a["valid_loss"]
    assert a["accuracy"] > 0.5  # 512 digits, one epoch: well above chance (0.1)


def test_run_reports_the_metrics_dict():
    m = train.run(TINY)
    assert {"train_loss", "valid_loss", "accuracy", "seconds", "epochs", "device", "diverged"} <= set(m)
    assert m["epochs"] == 1 and m["device"].startswith("cpu") and m["diverged"] is False


@pytest.mark.parametrize("field,value,match", [
    ("pool", "median", "pool: unknown value 'median'; choose one of avg"),
    ("act", "swish", "act: unknown value"),
    ("p", 1.0, r"p: dropout must be in \[0, 1\)"),
    ("epochs", 0, "epochs: must be a positive integer"),
    ("obj_size", 300, "obj_size: 300 px does not fit the 64 px canvas"),
    ("device", "tpu", "device: unknown value 'tpu'"),
    ("precision", "fp16", "precision: unknown value 'fp16'; choose one of fp32, bf16"),
])
def test_config_check_names_the_field(field, value, match):
    with pytest.raises(ValueError, match=match):
        TINY.replace(**{field: value}).check()


def test_run_id_changes_with_every_field_and_cell_id_ignores_seed():
    assert TINY.run_id != TINY.replace(lr=0.031).run_id
    assert TINY.cell_id == TINY.replace(seed=3).cell_id != TINY.replace(bs=32).cell_id


def test_sweep_resume_skips_finished_runs(tmp_path):
    path, lines = tmp_path / "runs.csv", []
    grid = [TINY.replace(seed=s) for s in range(2)]
    first = sweep.run_sweep(grid, path, echo=lines.append)
    assert len(first) == 2 and "2 to run" in lines[0]
    lines.clear()
    second = sweep.run_sweep(grid + [TINY.replace(seed=2)], path, echo=lines.append)
    assert "2 already in" in lines[0] and "1 to run" in lines[0]
    assert len(second) == 3 and second["run_id"].is_unique
    assert second.iloc[:2]["accuracy"].tolist() == first["accuracy"].tolist()  # old rows untouched


def test_a_sweep_leaves_the_collector_unfrozen_even_when_stopped(tmp_path):
    import gc
    sweep.run_sweep([TINY], tmp_path / "runs.csv", echo=lambda line: None)
    assert gc.get_freeze_count() == 0

    def ctrl_c_after_the_first_run(line):
        if "to run" not in line:  # the table's lines come after a run
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        sweep.run_sweep([TINY.replace(seed=1)], tmp_path / "runs.csv", echo=ctrl_c_after_the_first_run)
    assert gc.get_freeze_count() == 0


def test_any_device_counts_a_run_made_on_another_device_as_done(tmp_path):
    path, lines = tmp_path / "runs.csv", []
    sweep.run_sweep([TINY], path, echo=lambda s: None)
    made_on_gpu = pd.read_csv(path).assign(run_id=TINY.replace(device="cuda").run_id, device="NVIDIA H200")
    made_on_gpu.to_csv(path, index=False)  # as if seed 0 had run on a GPU
    grid = [TINY.replace(seed=s) for s in range(2)]
    finished = sweep.run_sweep(grid, path, echo=lines.append, any_device=True)
    assert "1 already in" in lines[0] and "1 to run" in lines[0]
    assert finished["device"].tolist()[0] == "NVIDIA H200" and finished["device"].str.startswith("cpu").sum() == 1
    lines.clear()
    redone = sweep.run_sweep(grid, path, echo=lines.append)  # without it, only this device's runs count
    assert "1 to run" in lines[0] and redone["device"].str.startswith("cpu").all() and len(redone) == 2


def test_sweep_checks_every_config_before_any_work(tmp_path):
    path = tmp_path / "runs.csv"
    with pytest.raises(ValueError, match="pool"):
        sweep.run_sweep([TINY, TINY.replace(pool="nope")], path, echo=lambda s: None)
    assert not path.exists()


def test_runs_file_cut_short_by_a_kill_loses_only_the_partial_row(tmp_path):
    path = tmp_path / "runs.csv"
    row = {"run_id": "a", "cell_id": "b", "profile": "quick", "accuracy": 0.5}
    sweep.append_row(path, row)
    sweep.append_row(path, {**row, "run_id": "c"})
    with open(path, "a") as f:
        f.write("d,b,quick,0.")  # a half-written row
    assert sweep.read_runs(path)["run_id"].tolist() == ["a", "c"]


def test_runs_file_of_another_version_gets_a_clear_error(tmp_path):
    path = tmp_path / "runs.csv"
    pd.DataFrame({"acc": [0.5]}).to_csv(path, index=False)
    with pytest.raises(ValueError, match="not a runs file of this version"):
        sweep.read_runs(path)
    with pytest.raises(ValueError, match="not a runs file of this version"):
        sweep.append_row(path, {"run_id": "x", "cell_id": "y", "profile": "quick", "p": 0.0})


def test_runs_file_missing_a_newer_config_field_is_upgraded_and_still_resumes(tmp_path):
    path = tmp_path / "runs.csv"
    sweep.run_sweep([TINY], path, echo=lambda s: None)
    old = pd.read_csv(path).drop(columns=["p_body"]).assign(retired_metric=1.0)  # as an older version wrote it
    old.to_csv(path, index=False)
    lines = []
    runs = sweep.run_sweep([TINY, TINY.replace(seed=1)], path, echo=lines.append)
    assert "1 already in" in lines[0] and len(runs) == 2
    back = pd.read_csv(path)
    assert (back["p_body"] == 0.0).all() and back["retired_metric"].iloc[0] == 1.0


def test_a_diverging_run_is_stopped_and_recorded_as_diverged(tmp_path):
    m = train.run(TINY.replace(lr=1e6, schedule="constant", epochs=3, bn=False))
    assert m["diverged"] is True and m["accuracy"] != m["accuracy"]  # NaN, not a NaN model's accuracy
    assert m["epochs"] < 3  # stopped early, not run to the end


def test_parallel_sweep_writes_every_run_once_with_the_numbers_of_a_serial_one(tmp_path):
    grid = [TINY.replace(seed=s) for s in range(3)]
    serial = sweep.run_sweep(grid[:1], tmp_path / "serial.csv", echo=lambda s: None)
    lines = []
    par = sweep.run_sweep(grid, tmp_path / "par.csv", echo=lines.append, jobs=2)
    assert "2 at a time" in lines[0] and len(lines) == 5  # the count, the table's head, one line per run
    assert sorted(par["run_id"]) == sorted(c.run_id for c in grid) and par["run_id"].is_unique
    first = par.set_index("run_id").loc[grid[0].run_id]
    # a worker has one thread, this process two: float sums may round differently, the run is the same
    assert first["valid_loss"] == pytest.approx(serial["valid_loss"].iloc[0], rel=1e-4)
    with pytest.raises(ValueError, match="jobs: at least 1"):
        sweep.run_sweep(grid, tmp_path / "x.csv", jobs=0)


def test_the_smoothed_loss_stays_on_the_device_and_matches_fastais():
    from fastai.learner import AvgSmoothLoss
    learn = train.learner(TINY, progress=False)
    train.fit(learn, TINY)
    ours = learn.recorder.smooth_loss
    assert isinstance(ours, train.DeviceSmoothLoss) and ours.value.device == next(learn.model.parameters()).device
    plain = train.learner(TINY, progress=False)
    plain.recorder.smooth_loss = AvgSmoothLoss()  # fastai's own, which copies each batch's loss to the host
    train.fit(plain, TINY)
    assert float(ours.value) == pytest.approx(float(plain.recorder.smooth_loss.value), rel=1e-6)

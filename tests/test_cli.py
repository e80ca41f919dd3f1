import subprocess
import sys

import pytest
import torch

from cnn_experiments import cli
from cnn_experiments.studies import study


@pytest.mark.parametrize("argv,match", [
    (["run", "poolng"], "experiment: unknown name 'poolng'; choose one of pooling, cluttered, mnist_scratch"),
    (["run", "pooling", "--profile", "huge"],
     "--profile: pooling has no profile 'huge'; choose one of quick, quick_pilot, medium, full, fastai_head_pilot, "
     "confirm"),
    (["run", "pooling", "--device", "tpu"], "invalid choice: 'tpu' (choose from 'cpu', 'cuda')"),
    (["run", "mnist_scratch", "--profile", "medium"], "no profile 'medium'; choose one of quick, full"),
    (["run", "pooling", "--seeds", "0"], "argument --seeds: must be at least 1, got 0"),
    (["run", "pooling", "--jobs", "0"], "argument --jobs: must be at least 1, got 0"),
    (["run", "pooling", "--fuse", "-2"], "argument --fuse: must be at least 1, got -2"),
    (["run", "pooling", "--seeds", "two"], "argument --seeds: 'two' is not a whole number"),
    (["run", "fine_tune", "--data", "x", "--epochs", "0"], "argument --epochs: must be at least 1, got 0"),
    (["run", "fine_tune", "--data", "x", "--size", "0"], "argument --size: must be at least 32, got 0"),
    (["report", "nope"], "experiment: unknown name 'nope'"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
])
def test_a_users_mistake_is_one_line_and_exit_2_before_anything_is_written(argv, match, capsys, tmp_path):
    assert cli.main([*argv, "--results", str(tmp_path)] if argv[0] in ("run", "report") else argv) == 2
    err = capsys.readouterr().err
    assert match in err and err.count("\n") == 1 and "Traceback" not in err
    assert not any(tmp_path.iterdir())


def test_a_bug_is_not_dressed_as_a_users_mistake(monkeypatch, tmp_path):
    def broken(*a, **k):
        raise ValueError("an internal bug")
    monkeypatch.setattr(study, "do_run", broken)
    with pytest.raises(ValueError, match="an internal bug"):  # its traceback shows, it is no exit-2 line
        cli.main(["run", "pooling", "--results", str(tmp_path)])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message for a machine without a GPU")
def test_cuda_without_a_gpu_is_a_clear_error(capsys, tmp_path):
    assert cli.main(["run", "pooling", "--device", "cuda", "--results", str(tmp_path)]) == 2
    assert "no CUDA GPU is visible; choose cpu" in capsys.readouterr().err


def test_experiments_run_as_modules_with_the_same_one_line_errors():
    r = subprocess.run([sys.executable, "-m", "experiments.pooling", "--profile", "huge"], capture_output=True,
                       text=True, timeout=120)
    lines = r.stderr.strip().splitlines()  # one line: no traceback, no library's import-time warnings
    assert r.returncode == 2 and len(lines) == 1 and "has no profile 'huge'" in lines[0]


def test_list_names_every_experiment_and_its_claim(capsys):
    from cnn_experiments.studies.registry import NAMES, get
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out and get(name).claim[:30] in out for name in NAMES)


def test_a_report_needs_runs_except_edge_filters(tmp_path, capsys):
    assert cli.main(["report", "edge_filter", "--results", str(tmp_path)]) == 0  # draws on the data alone
    assert (tmp_path / "edge_filter" / "summary_quick.md").exists()
    assert cli.main(["report", "activations", "--results", str(tmp_path)]) == 2
    assert "no quick runs of activations" in capsys.readouterr().err


def test_profiles_that_share_cells_share_their_runs(monkeypatch, tmp_path, capsys):
    "mnist_scratch's quick and full profiles run the same cells, 2 and (here) 3 seeds: full makes only the 1 more."
    from cnn_experiments.reports.report import text_only
    from experiments import mnist_scratch as M
    monkeypatch.setattr(M, "BASE", M.BASE.replace(n_train=64))
    monkeypatch.setitem(M.PROFILES, "full", {**M.PROFILES["full"], "seeds": 3})
    with text_only():  # the summaries' text is what is read here
        assert cli.main(["run", "mnist_scratch", "--results", str(tmp_path), "--jobs", "1"]) == 0
        capsys.readouterr()
        assert cli.main(["run", "mnist_scratch", "--profile", "full", "--results", str(tmp_path), "--jobs", "1"]) == 0
    out = capsys.readouterr().out
    assert "15 runs in the grid, 10 already in" in out and ", 5 to run" in out  # the 3rd seed of each of the 5 cells
    full = (tmp_path / "mnist_scratch" / "summary_full.md").read_text()
    quick = (tmp_path / "mnist_scratch" / "summary_quick.md").read_text()
    assert "seeds per cell: 3" in full and "seeds per cell: 2" in quick

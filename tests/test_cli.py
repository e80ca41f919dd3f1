import subprocess
import sys

import pytest
import torch

from cnn_experiments import cli
from experiments import pooling


@pytest.mark.parametrize("argv,match", [
    (["run", "poolng"], "experiment: unknown name 'poolng'; choose one of pooling, mnist_scratch, edge_filter"),
    (["run", "pooling", "--profile", "huge"], "invalid choice: 'huge' (choose from 'quick', 'medium', 'full')"),
    (["run", "pooling", "--device", "tpu"], "invalid choice: 'tpu' (choose from 'cpu', 'cuda')"),
    (["run", "mnist_scratch", "--profile", "medium"], "no profile 'medium'; choose one of quick, full"),
    (["run", "pooling", "--seeds", "0"], "--seeds: must be at least 1"),
    (["run", "pooling", "--jobs", "0"], "--jobs: must be at least 1"),
    (["run", "pooling", "--fuse", "-2"], "--fuse: must be at least 1"),
    (["run", "pooling", "--benchmark", "cluttered7"], "--benchmark: unknown 'cluttered7'; choose one of cluttered60"),
    (["report", "nope"], "experiment: unknown name 'nope'"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
])
def test_cli_errors_are_one_line_with_exit_code_2(argv, match, capsys, tmp_path):
    assert cli.main([*argv, "--results", str(tmp_path)] if argv[0] in ("run", "report") else argv) == 2
    err = capsys.readouterr().err
    assert match in err and err.count("\n") == 1 and "Traceback" not in err
    assert not any(tmp_path.iterdir())  # nothing half-written


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message for a machine without a GPU")
def test_cuda_without_a_gpu_is_a_clear_error(capsys, tmp_path):
    assert cli.main(["run", "pooling", "--device", "cuda", "--results", str(tmp_path)]) == 2
    assert "no CUDA GPU is visible; choose cpu" in capsys.readouterr().err


def test_experiments_run_as_modules_with_the_same_errors():
    r = subprocess.run([sys.executable, "-m", "experiments.pooling", "--profile", "huge"], capture_output=True,
                       text=True, timeout=120)
    lines = r.stderr.strip().splitlines()  # one line: no traceback, no library's import-time warnings
    assert r.returncode == 2 and len(lines) == 1 and "invalid choice: 'huge'" in lines[0]


def test_list_names_every_experiment(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in cli.EXPERIMENTS)


def test_pooling_run_end_to_end_writes_the_report(monkeypatch, tmp_path, capsys):
    tiny = dict(seeds=2, canvas=32, channels=(4, 8), sizes=(8, 16), n_scenes=128, epochs=1, lrs=(1e-2, 3e-2),
                search_size=16, cam_size=8)
    monkeypatch.setitem(pooling.PROFILES, "quick", tiny)
    assert cli.main(["run", "pooling", "--results", str(tmp_path)]) == 0
    out = tmp_path / "pooling"
    text = (out / "summary.md").read_text()
    for part in ("command: `cnn-exp run pooling --profile quick`", "seeds per cell: 2", "## Verdict",
                 "quick_accuracy_vs_size.png", "quick_cams.png", "## Per-seed spread", "chosen: avg"):
        assert part in text, part
    assert (out / "quick_cams.png").stat().st_size > 0 and (out / "summary_quick.md").exists()
    assert "pooling" in (tmp_path / "README.md").read_text()
    # run again: every run is found, none retrained
    capsys.readouterr()
    assert cli.main(["run", "pooling", "--results", str(tmp_path)]) == 0
    assert "0 to run" in capsys.readouterr().out


def test_cluttered_benchmark_reports_beside_the_paper(monkeypatch, tmp_path):
    monkeypatch.setitem(pooling.BENCH_PROFILES, "quick", dict(seeds=2, n_scenes=64, epochs=1))
    assert cli.main(["run", "pooling", "--benchmark", "cluttered60", "--results", str(tmp_path)]) == 0
    text = (tmp_path / "pooling" / "benchmark_cluttered60.md").read_text()
    assert "| CNN, 2 layers (Mnih et al. 2014, Table 2) | 7.83 |" in text
    assert "| RAM (Mnih et al. 2014, Table 2) | 5.23 |" in text
    assert "concat head" in text and "4,000 train digits" in text and "seeds: 2" in text


def test_report_without_runs(tmp_path, capsys):
    assert cli.main(["report", "edge_filter", "--results", str(tmp_path)]) == 0  # needs no runs
    assert (tmp_path / "edge_filter" / "summary_quick.md").exists()
    assert cli.main(["report", "activations", "--results", str(tmp_path)]) == 2
    assert "no quick runs of activations" in capsys.readouterr().err

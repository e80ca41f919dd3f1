"""benchmarks/fused_grid.py on the committed quick grid: the one-at-a-time runs it lacks, made once, on any device."""
import subprocess
import sys
from pathlib import Path

import pandas as pd

from experiments.pooling import HEADS

ROOT = Path(__file__).resolve().parents[1]


def fused_grid(*args, cwd):
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "fused_grid.py"), *args],
                          cwd=cwd, capture_output=True, text=True, timeout=300)


def test_alone_only_makes_the_lacking_runs_once_and_counts_them_from_any_device(tmp_path):
    runs = pd.read_csv(ROOT / "results" / "pooling" / "runs.csv")
    quick = runs[runs["profile"] == "quick"]
    (tmp_path / "pooling").mkdir()
    on_gpu = quick.assign(run_id=quick["run_id"] + "g", device="NVIDIA H200")  # the study's runs, made elsewhere
    on_gpu.drop(index=quick.index[0]).to_csv(tmp_path / "pooling" / "runs.csv", index=False)  # one never alone
    args = ["--profile", "quick", "--alone-only", "--results", str(tmp_path), "--out", str(tmp_path / "fg.md")]
    first = fused_grid(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    made = pd.read_csv(tmp_path / "fg.serial.runs.csv")
    assert len(made) == 1 and made["run_id"].iloc[0] == quick["run_id"].iloc[0]
    assert not (tmp_path / "fg.md").exists() and not (tmp_path / "fg.runs.csv").exists()  # nothing fused
    made.assign(device="NVIDIA H200").to_csv(tmp_path / "fg.serial.runs.csv", index=False)  # as if a GPU made it
    again = fused_grid(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert len(pd.read_csv(tmp_path / "fg.serial.runs.csv")) == 1  # the same run on another device: not remade


def test_a_wrong_profile_is_one_line_and_exit_2(tmp_path):
    bad = fused_grid("--profile", "huge", "--results", str(tmp_path), cwd=tmp_path)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "fused_grid: --profile must be one of quick, medium, full and --jobs at least 1, got 'huge', 1"]


def test_any_device_counts_fused_runs_made_elsewhere_and_reports_their_device(tmp_path):
    runs = pd.read_csv(ROOT / "results" / "pooling" / "runs.csv")
    quick = runs[runs["profile"] == "quick"]
    (tmp_path / "pooling").mkdir()
    quick.to_csv(tmp_path / "pooling" / "runs.csv", index=False)
    # every seed of every cell already fused on a GPU, with an accuracy that differs from the CPU's
    quick.assign(run_id=quick["run_id"] + "g", device="NVIDIA H200", fused=2,
                 accuracy=quick["accuracy"] - 0.01).to_csv(tmp_path / "fg.runs.csv", index=False)
    done = fused_grid("--profile", "quick", "--any-device", "--results", str(tmp_path),
                      "--out", str(tmp_path / "fg.md"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert len(pd.read_csv(tmp_path / "fg.runs.csv")) == len(quick)  # nothing trained again
    text = (tmp_path / "fg.md").read_text()
    assert "no fused runs were made by this call, 36 came from an earlier call (NVIDIA H200)" in text
    assert "--any-device" in text and "fused runs: " in text


def test_report_only_compares_the_cells_made_both_ways_and_trains_nothing(tmp_path):
    runs = pd.read_csv(ROOT / "results" / "pooling" / "runs.csv")
    quick = runs[runs["profile"] == "quick"]
    (tmp_path / "pooling").mkdir()
    quick.iloc[::-1].to_csv(tmp_path / "pooling" / "runs.csv", index=False)  # rows out of the grid's order
    cells = quick["cell_id"].unique()
    part = quick[quick["cell_id"].isin(cells[:3])]  # three whole cells fused so far, and one seed of a fourth
    part = pd.concat([part, quick[quick["cell_id"] == cells[3]].iloc[:1]])
    part.assign(fused=2, seconds=1.5).to_csv(tmp_path / "fg.runs.csv", index=False)
    args = ["--profile", "quick", "--report-only", "--results", str(tmp_path), "--out", str(tmp_path / "fg.md")]
    done = fused_grid(*args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert len(pd.read_csv(tmp_path / "fg.runs.csv")) == 7  # nothing trained
    text = (tmp_path / "fg.md").read_text()
    assert text.count("| yes |") + text.count("| NO |") == 3  # the fourth cell lacks a fused seed
    assert "7 of the 36 fused runs are made" in text and "not computed (not every size)" in text
    assert "| fused | cpu (x86_64, 2 threads) | 6 | 1.5 |" in text  # the compared cells' fit time
    shown = [tuple(r.split(" | ")[:2]) for r in text.splitlines() if r.endswith(("| yes |", "| NO |"))]
    grid = sorted(shown, key=lambda r: (float(r[0].strip("| ")), HEADS.index(r[1])))
    assert shown == grid  # rows in the grid's order: sizes, then heads as declared


def test_report_only_with_no_cell_made_both_ways_is_one_line_and_exit_2(tmp_path):
    runs = pd.read_csv(ROOT / "results" / "pooling" / "runs.csv")
    (tmp_path / "pooling").mkdir()
    runs[runs["profile"] == "quick"].to_csv(tmp_path / "pooling" / "runs.csv", index=False)
    bad = fused_grid("--profile", "quick", "--report-only", "--results", str(tmp_path),
                     "--out", str(tmp_path / "fg.md"), cwd=tmp_path)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    assert "--report-only: no cell of the quick grid" in bad.stderr and not (tmp_path / "fg.md").exists()

"""A real sweep process killed mid-run, interrupted, and resumed: every run ends up in runs.csv exactly once."""
import signal
import subprocess
import sys
import time

import pandas as pd

from cnn_experiments.sweep import read_runs
from experiments import mnist_scratch


def start(results):
    return subprocess.Popen([sys.executable, "-m", "experiments.mnist_scratch", "--results", str(results)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def rows(path):
    return len(read_runs(path)) if path.exists() else 0


def wait_for_rows(proc, path, n, timeout=180):
    t = time.time()
    while rows(path) < n:
        assert proc.poll() is None, proc.communicate()
        assert time.time() - t < timeout
        time.sleep(0.05)


def test_sweep_survives_sigkill_and_sigint_and_resumes_exactly_once(tmp_path):
    path = tmp_path / "mnist_scratch" / "runs.csv"
    expected = {c.replace(seed=s).run_id for c in mnist_scratch.grid("quick") for s in range(2)}

    proc = start(tmp_path)
    wait_for_rows(proc, path, 2)
    proc.send_signal(signal.SIGKILL)  # no chance to clean up
    proc.wait()
    killed_at = rows(path)

    proc = start(tmp_path)
    wait_for_rows(proc, path, killed_at + 1)
    proc.send_signal(signal.SIGINT)  # Ctrl-C: stops between rows and says what finished
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "runs finished and saved" in out and "run the same command again" in err

    proc = start(tmp_path)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    runs = pd.read_csv(path)
    assert set(runs["run_id"]) == expected and runs["run_id"].is_unique
    assert runs["accuracy"].notna().all() and (tmp_path / "mnist_scratch" / "summary_quick.md").exists()

"""Memory over a long sweep: does resident memory stay flat across hundreds of short runs?

    python benchmarks/sweep_memory.py                 # 200 runs; writes benchmark_results/sweep_memory.md

Each run is a real fastai run (256 embedded digits, one epoch) appended to a throwaway runs file; the
process's resident memory is read after every run. Target: no per-run growth beyond a small bound,
read here as under 1 MB per 10 runs over the last 100 runs (after the caches of the first runs have filled);
the growth from run 10 on is reported beside it.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cnn_experiments.reports import benchmark as B
from cnn_experiments.runs.config import Config
from cnn_experiments.sweeps.sweep import run_sweep
from cnn_experiments.training.train import device_name

TARGET_MB_PER_10 = 1.0
MEASURES = ("cnn_experiments/sweeps/sweep.py", "cnn_experiments/runs/store.py",
            "cnn_experiments/sweeps/executors.py",
            "cnn_experiments/training/train.py", "cnn_experiments/training/callbacks.py",
            "cnn_experiments/training/learner.py")


def rss_mb() -> float:
    "Resident memory of this process now, from /proc (Linux)."
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def parser() -> B.Parser:
    p = B.Parser(prog="sweep_memory.py", description="resident memory over a sweep of short runs")
    p.add_argument("--runs", type=B.positive_int, default=200, help="short runs in the sweep")
    B.output_options(p)
    return p


def main(a) -> None:
    runs = a.runs
    base = Config(data="mnist", n_train=256, epochs=1, bs=64, lr=0.03)
    samples = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "runs.csv"
        for i in range(runs):  # one config at a time, so memory is read between runs
            run_sweep([base.replace(seed=i)], path, echo=lambda s: None)
            samples.append(rss_mb())
    start = samples[min(9, len(samples) - 1)]
    per10 = 10 * (samples[-1] - start) / max(1, len(samples) - 10)
    late = max(0, len(samples) - 101)  # the last 100 runs
    late10 = 10 * (samples[-1] - samples[late]) / max(1, len(samples) - 1 - late)
    shown = sorted(i for i in {0, 9, 49, 99, 149, 199, 249, late, len(samples) - 1} if i < len(samples))
    rows = [f"| {i + 1} | {samples[i]:.1f} |" for i in shown]
    text = "\n".join([
        "# Benchmark: memory over a sweep of short runs", "",
        f"**Result:** {len(samples)} runs on {device_name('cpu')}: resident memory {start:.1f} MB after run 10, "
        f"{samples[-1]:.1f} MB after run {len(samples)}, peak {max(samples):.1f} MB; {late10:+.2f} MB per 10 runs "
        f"over the last {len(samples) - 1 - late} (target under {TARGET_MB_PER_10} MB: "
        f"{'met' if late10 < TARGET_MB_PER_10 else 'not met'}), {per10:+.2f} MB per 10 runs from run 10.", "",
        *B.benchmark_provenance(f"python benchmarks/sweep_memory.py --runs {runs}", MEASURES),
        "- work: each run is `run_sweep` of one config (256 embedded digits, one epoch, a fresh Learner), "
        "appended to a runs file; memory is VmRSS read after each run", "",
        "| after run | resident MB |", "|---|---|", *rows, ""])
    B.write_benchmark(text, B.benchmark_file("sweep_memory", a))


if __name__ == "__main__":
    sys.exit(B.script(parser(), main))

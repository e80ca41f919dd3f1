"""K models fused into one vs the same K runs one after another, timed in one run.

    python benchmarks/fused_vs_serial.py                  # CPU, K = 32 simple_cnns
    python benchmarks/fused_vs_serial.py --device cuda

Both sides are the sweep's own ways to run a cell's seeds (`train.run` per seed, `fused.run` for all), so each
includes building the Learner and scoring the model, and each computes with the threads a run uses (one on a
CPU). Targets: at least 1.5x the throughput on a CPU, 8x on a GPU, for K = 32.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cnn_experiments.reports import benchmark as B
from cnn_experiments.runs.config import Config
from cnn_experiments.training import fused, train
from cnn_experiments.training.train import device_name

TARGET = {"cpu": 1.5, "cuda": 8.0}
MEASURES = ("cnn_experiments/training/fused.py", "cnn_experiments/training/train.py",
            "cnn_experiments/training/learner.py", "cnn_experiments/training/callbacks.py",
            "cnn_experiments/data/mnist.py")


def parser() -> B.Parser:
    p = B.Parser(prog="fused_vs_serial.py", description="K fused models vs K runs one after another")
    p.add_argument("--device", default="cpu", choices=B.DEVICES)
    p.add_argument("--k", type=B.positive_int, default=32, help="models (seeds)")
    p.add_argument("--epochs", type=B.positive_int, default=1, help="epochs per model")
    p.add_argument("--bs", type=B.positive_int, default=64, help="batch size")
    B.output_options(p)
    return p


def main(a) -> None:
    cfgs = [Config(data="mnist", epochs=a.epochs, bs=a.bs, lr=0.01, seed=s, device=a.device).check()
            for s in range(a.k)]
    train.run(cfgs[0])  # warm-up: data loading and first-call allocations, for both sides
    t = time.perf_counter()
    serial = [train.run(c) for c in cfgs]
    t_serial = time.perf_counter() - t
    t = time.perf_counter()
    together = [r.metrics for r in fused.run(cfgs)]
    t_fused = time.perf_counter() - t
    ratio = t_serial / t_fused
    acc = {name: np.array([m["accuracy"] for m in ms]) for name, ms in (("serial", serial), ("fused", together))}
    gap = np.abs(acc["serial"] - acc["fused"]).max()
    target = TARGET[a.device]
    text = "\n".join([
        f"# Benchmark: {a.k} fused models vs {a.k} runs one after another", "",
        f"**Result:** on {device_name(a.device)}, {a.k} simple_cnns fused train {ratio:.2f}x as fast as one after "
        f"another (target {target}x: {'met' if ratio >= target else 'not met'}); per-seed held-out accuracy "
        f"differs by at most {gap:.4f}.", "",
        *B.benchmark_provenance(f"python benchmarks/fused_vs_serial.py --device {a.device} --k {a.k} --epochs "
                              f"{a.epochs} --bs {a.bs}", MEASURES),
        f"- work: simple_cnn, fit_one_cycle({a.epochs}, 0.01) on the 4,000 embedded training digits at bs {a.bs}, "
        f"seeds 0 to {a.k - 1}, each scored on the 1,000 held-out; both sides build their Learners and score them",
        "", "| way | seconds | runs per minute | mean held-out accuracy |", "|---|---|---|---|",
        f"| one after another (`train.run` per seed) | {t_serial:.1f} | {60 * a.k / t_serial:.1f} | "
        f"{acc['serial'].mean():.4f} |",
        f"| fused (`fused.run`, one model of {a.k} members) | {t_fused:.1f} | {60 * a.k / t_fused:.1f} | "
        f"{acc['fused'].mean():.4f} |", ""])
    B.write_benchmark(text, B.benchmark_file(f"fused_vs_serial_{a.device}", a))


if __name__ == "__main__":
    sys.exit(B.script(parser(), main))

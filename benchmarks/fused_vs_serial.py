"""K models fused into one vs the same K runs one after another, timed in one run.

    python benchmarks/fused_vs_serial.py                  # CPU, K = 32 simple_cnns
    python benchmarks/fused_vs_serial.py --device cuda

Both sides are the sweep's own ways to run a cell's seeds (`train.run` per seed, `fused.run` for all),
so each includes building the Learner and scoring the model. Targets (issue 6): at least 1.5x the
throughput on 2 CPU cores, 8x on a GPU, for K = 32.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from fastcore.script import call_parse

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cnn_experiments import fused, train
from cnn_experiments.report import benchmark_provenance, write_benchmark
from cnn_experiments.train import Config, device_name

TARGET = {"cpu": 1.5, "cuda": 8.0}


@call_parse
def main(device: str = "cpu",  # cpu or cuda
         k: int = 32,  # models (seeds)
         epochs: int = 1,  # epochs per model
         bs: int = 64,  # batch size
         out: str = ""):  # markdown file; default results/benchmarks/fused_vs_serial_<device>.md
    cfgs = [Config(data="mnist", epochs=epochs, bs=bs, lr=0.01, seed=s, device=device).check() for s in range(k)]
    train.run(cfgs[0])  # warm-up: data loading and first-call allocations, for both sides
    t = time.perf_counter()
    serial = [train.run(c) for c in cfgs]
    t_serial = time.perf_counter() - t
    t = time.perf_counter()
    together = fused.run(cfgs)
    t_fused = time.perf_counter() - t
    ratio = t_serial / t_fused
    acc = {name: np.array([m["accuracy"] for m in ms]) for name, ms in (("serial", serial), ("fused", together))}
    gap = np.abs(acc["serial"] - acc["fused"]).max()
    target = TARGET[device]
    text = "\n".join([
        f"# Benchmark: {k} fused models vs {k} runs one after another", "",
        f"**Result:** on {device_name(device)}, {k} simple_cnns fused train {ratio:.2f}x as fast as one after "
        f"another (target {target}x: {'met' if ratio >= target else 'not met'}); per-seed held-out accuracy "
        f"differs by at most {gap:.4f}.", "",
        *benchmark_provenance(f"python benchmarks/fused_vs_serial.py --device {device} --k {k} --epochs {epochs} "
                              f"--bs {bs}"),
        f"- work: simple_cnn, fit_one_cycle({epochs}, 0.01) on the 4,000 embedded train digits at bs {bs}, seeds "
        f"0 to {k - 1}, each scored on the 1,000 held-out; both sides build their Learners and score their models",
        "", "| way | seconds | runs per minute | mean held-out accuracy |", "|---|---|---|---|",
        f"| one after another (`train.run` per seed) | {t_serial:.1f} | {60 * k / t_serial:.1f} | "
        f"{acc['serial'].mean():.4f} |",
        f"| fused (`fused.run`, one model of {k} members) | {t_fused:.1f} | {60 * k / t_fused:.1f} | "
        f"{acc['fused'].mean():.4f} |", ""])
    write_benchmark(text, Path(out or f"results/benchmarks/fused_vs_serial_{device}.md"))

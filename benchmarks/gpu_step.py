"""Where a pooling-study training step spends its time on a GPU, and what each setting buys.

    python benchmarks/gpu_step.py --device cuda     # writes results/benchmarks/gpu_step_cuda.md

The full profile's model (224 px scenes, five stride-2 stages 8-16-32-64-64, max head) trained for
`steps` batches of 64 in a plain loop under each setting, timed in one run: cuDNN deterministic (what
fastai's `set_seed(reproducible=True)` asks for, the sweep's setting), cuDNN benchmark (autotuned,
not bit-reproducible), channels_last and bf16 autocast. Then the top kernels of the first setting.
"""
from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from fastcore.script import call_parse

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cnn_experiments.models import pooled_cnn
from cnn_experiments.report import benchmark_provenance, write_benchmark
from cnn_experiments.train import device_name

SETTINGS = {  # name: (cudnn.deterministic, cudnn.benchmark, channels_last, bf16)
    "deterministic, fp32 (the sweep's)": (True, False, False, False),
    "benchmark, fp32": (False, True, False, False),
    "benchmark, channels_last": (False, True, True, False),
    "benchmark, bf16 autocast": (False, True, False, True),
    "benchmark, channels_last + bf16": (False, True, True, True),
}


def steps_per_second(device, setting, x, y, steps) -> float:
    det, bench, cl, bf16 = setting
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = det, bench
    torch.manual_seed(0)
    fmt = torch.channels_last if cl else torch.contiguous_format
    model = pooled_cnn((8, 16, 32, 64, 64), 2, pool="max").to(device, memory_format=fmt)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    xb = x.to(memory_format=fmt)
    amp = torch.autocast(device, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    def step():
        with amp:
            loss = F.cross_entropy(model(xb), y)
        loss.backward()
        opt.step()
        opt.zero_grad()
    for _ in range(10):
        step()  # warm-up: autotuning, allocations
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    return steps / (time.perf_counter() - t)


@call_parse
def main(device: str = "cuda",  # a CUDA device
         steps: int = 200,  # timed steps per setting
         bs: int = 64,  # batch size (the study's)
         out: str = "results/benchmarks/gpu_step_cuda.md"):  # markdown file for the result
    if not torch.cuda.is_available():
        sys.exit("gpu_step: no CUDA GPU is visible; this benchmark measures one")
    x, y = torch.randn(bs, 1, 224, 224, device=device), torch.randint(0, 2, (bs,), device=device)
    rate = {name: steps_per_second(device, s, x, y, steps) for name, s in SETTINGS.items()}
    base = rate["deterministic, fp32 (the sweep's)"]
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    model = pooled_cnn((8, 16, 32, 64, 64), 2, pool="max").to(device)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(20):
            F.cross_entropy(model(x), y).backward()
        torch.cuda.synchronize()
    kernels = prof.key_averages().table(sort_by="self_device_time_total", row_limit=12)
    text = "\n".join([
        "# Benchmark: a training step of the full pooling profile on a GPU", "",
        f"**Result:** on {device_name(device)}, {base:.0f} steps/s as the sweep runs (deterministic cuDNN, fp32); "
        f"best setting {max(rate, key=rate.get)}: {max(rate.values()) / base:.2f}x that.", "",
        *benchmark_provenance(f"python benchmarks/gpu_step.py --device {device} --steps {steps} --bs {bs}"),
        f"- work: pooled_cnn (8, 16, 32, 64, 64) + max head on {bs} x 1 x 224 x 224, AdamW, plain loop, "
        f"{steps} steps after 10 warm-up steps, one process", "",
        "| setting | steps/s | images/s | vs the sweep's |", "|---|---|---|---|",
        *[f"| {k} | {v:.1f} | {v * bs:,.0f} | {v / base:.2f}x |" for k, v in rate.items()], "",
        "Forward + backward, deterministic fp32, 20 steps, by CUDA time:", "", "```", kernels, "```", ""])
    write_benchmark(text, Path(out))

"""A training step of the full pooling profile against the device's limits: a roofline, measured in one run.

    python benchmarks/roofline.py                     # the CPU, as a sweep runs there (one thread)
    python benchmarks/roofline.py --device cuda       # a GPU: writes benchmark_results/roofline_cuda.md

The model is the full profile's (224 px scenes, stride-2 stages 8-16-32-64-64, max head). Counted per image:
FLOPs of a forward and backward pass (torch's FLOP counter) and the bytes a step must move at the least (each
stage reads its input and writes its output once, forward and backward, as a fused Conv-BN-ReLU would) and as
executed layer by layer. Two ceilings bound the images per second: the device's peak arithmetic rate at the
setting's precision and the run's thread count (a large matmul, fp32 or bf16) over the FLOPs, and its memory
bandwidth (a large copy) over the bytes; the lower binds (the arithmetic intensity against the ridge point says
which). Every measured rate is reported as a fraction of its lower bound. Settings: the sweep's (fp32,
deterministic), channels_last, bf16 autocast, torch.compile, and K members fused into one grouped model.
"""
from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.benchmark import Timer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cnn_experiments.cli import DEVICES, Parser, positive_int, script
from cnn_experiments.errors import UserError
from cnn_experiments.fused import Fused
from cnn_experiments.models import pooled_cnn
from cnn_experiments.publish import benchmark_file, benchmark_provenance, output_options, write_benchmark
from cnn_experiments.train import RUN_THREADS, device_name

CHANNELS = (8, 16, 32, 64, 64)
MEASURES = ("cnn_experiments/models.py", "cnn_experiments/pooling.py", "cnn_experiments/fused.py")


def counts(model: nn.Module, side: int = 224) -> dict:
    "FLOPs (forward + backward) and bytes per image: the least a step moves, and as executed layer by layer."
    from torch.utils.flop_counter import FlopCounterMode
    x = torch.zeros(8, 1, side, side)
    with FlopCounterMode(display=False) as fc:
        F.cross_entropy(model(x), torch.zeros(8, dtype=torch.long)).backward()
    layer, stage = [0], [0]

    def each_layer(m, inp, out):
        layer[0] += inp[0].numel() + out.numel()

    def each_stage(m, inp, out):
        stage[0] += inp[0].numel() + out.numel()
    hooks = [m.register_forward_hook(each_layer) for m in model.modules() if not list(m.children())]
    hooks += [stage.register_forward_hook(each_stage) for stage in model[0]]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    # backward reads the output's gradient and the input, writes the input's gradient: twice the forward traffic
    return dict(flops=fc.get_total_flops() / 8, least=3 * 4 * stage[0] / 8, executed=3 * 4 * layer[0] / 8)


def seconds(stmt, runs: int, warmup: int = 2) -> float:
    "Mean seconds of one call of `stmt` over `runs` calls after `warmup`: torch.utils.benchmark (it syncs a GPU)."
    timer = Timer("stmt()", globals={"stmt": stmt}, num_threads=torch.get_num_threads())
    timer.timeit(warmup)  # first-call allocations, compilation, autotuning
    return timer.timeit(runs).mean


def bandwidth(device: str) -> float:
    "Bytes per second of a large device-to-device copy (read + write)."
    n = 1 << 27
    a, b = torch.empty(n, device=device), torch.empty(n, device=device)
    return 2 * 4 * n / seconds(lambda: b.copy_(a), 5)


def peak(device: str, dtype: torch.dtype) -> float:
    "FLOP/s of a large square matmul at `dtype`: the arithmetic ceiling at the threads the run has."
    n, reps = (2048, 3) if device == "cpu" else (8192, 20)
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    return 2 * n**3 / seconds(lambda: a @ b, reps)


def rate(device: str, bs: int, steps: int, k: int = 1, channels_last=False, bf16=False, compile=False) -> float:
    "Training images per second (members x batch) of the model, fused K times when k > 1, in a plain loop."
    torch.manual_seed(0)
    members = [pooled_cnn(CHANNELS, 2, pool="max") for _ in range(k)]
    model = (Fused(members) if k > 1 else members[0]).to(device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(bs, k, 224, 224, device=device).to(memory_format=fmt)
    y = torch.randint(0, 2, (bs, k) if k > 1 else (bs,), device=device)
    run = torch.compile(model) if compile else model
    amp = torch.autocast(device, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    def step():
        with amp:
            out = run(x)
            loss = F.cross_entropy(out.flatten(0, 1) if k > 1 else out, y.flatten())
        loss.backward()
        opt.step()
        opt.zero_grad()
    return bs * k / seconds(step, steps, warmup=3)


def parser() -> Parser:
    p = Parser(prog="roofline.py", description="a training step of the full pooling profile against the limits")
    p.add_argument("--device", default="cpu", choices=DEVICES)
    p.add_argument("--steps", type=positive_int, default=None, help="timed steps per setting (cpu 3, cuda 100)")
    p.add_argument("--bs", type=positive_int, default=64, help="batch size (the study's)")
    p.add_argument("--k", type=positive_int, default=None, help="members of the fused setting (cpu 4, cuda 32)")
    output_options(p)
    return p


def main(a) -> None:
    device = a.device
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device: cuda asked for but no CUDA GPU is visible")
    steps, k = a.steps or (3 if device == "cpu" else 100), a.k or (4 if device == "cpu" else 32)
    if device == "cpu":
        torch.set_num_threads(RUN_THREADS)  # as a sweep's runs compute
    else:
        torch.backends.cudnn.deterministic = True  # fastai's set_seed(reproducible=True), as the sweep runs
    c = counts(pooled_cnn(CHANNELS, 2, pool="max"))
    bw = bandwidth(device)
    peaks = {"fp32": peak(device, torch.float32), "bf16": peak(device, torch.bfloat16)}
    memory = bw / c["least"]
    settings = {"fp32 (the sweep's)": {}, "channels_last": dict(channels_last=True), "bf16 autocast": dict(bf16=True),
                "torch.compile": dict(compile=True), f"{k} members fused": dict(k=k),
                f"{k} members fused, channels_last + bf16": dict(k=k, channels_last=True, bf16=True)}
    rates = {name: rate(device, a.bs, steps, **kw) for name, kw in settings.items()}

    def bound(kw: dict) -> tuple[float, str]:
        "The lower ceiling for a setting, in images/s, and which it is."
        compute = peaks["bf16" if kw.get("bf16") else "fp32"] / c["flops"]
        return (compute, "compute") if compute < memory else (memory, "memory")
    bounds = {name: bound(kw) for name, kw in settings.items()}
    base, (base_bound, binds) = rates["fp32 (the sweep's)"], bounds["fp32 (the sweep's)"]
    best = max(rates, key=rates.get)
    ridge = {p: v / bw for p, v in peaks.items()}
    text = "\n".join([
        "# Benchmark: a training step of the full pooling profile against the device's limits", "",
        f"**Result:** on {device_name(device)}, the sweep's step trains {base:,.0f} images/s, "
        f"{base / base_bound:.1%} of the {base_bound:,.0f} images/s its lower ceiling ({binds}) allows; best setting "
        f"{best}: {rates[best]:,.0f} images/s ({rates[best] / base:.2f}x, {rates[best] / bounds[best][0]:.1%} of its "
        f"{bounds[best][1]} bound).", "",
        *benchmark_provenance(f"python benchmarks/roofline.py --device {device} --steps {steps} --bs {a.bs} --k {k}",
                              MEASURES),
        f"- work: pooled_cnn {CHANNELS} + max head, {a.bs} x 1 x 224 x 224 per member, AdamW, a plain loop, {steps} "
        "steps after 3 warm-up steps" + (f", {RUN_THREADS} thread" if device == "cpu" else ""), "",
        "| per image | forward + backward |", "|---|---|",
        f"| FLOPs | {c['flops'] / 1e6:,.1f} M |",
        f"| bytes at the least (each stage's input and output once) | {c['least'] / 1e6:,.1f} MB |",
        f"| bytes layer by layer (conv, BN, ReLU each read and write) | {c['executed'] / 1e6:,.1f} MB |",
        f"| arithmetic intensity at the least | {c['flops'] / c['least']:.2f} FLOP/byte |", "",
        "| ceiling | measured | images/s it allows |", "|---|---|---|",
        f"| arithmetic, fp32 (a {2048 if device == 'cpu' else 8192}² matmul) | {peaks['fp32'] / 1e9:,.1f} GFLOP/s | "
        f"{peaks['fp32'] / c['flops']:,.0f} |",
        f"| arithmetic, bf16 | {peaks['bf16'] / 1e9:,.1f} GFLOP/s | {peaks['bf16'] / c['flops']:,.0f} |",
        f"| memory (a copy of 512 MB) | {bw / 1e9:,.1f} GB/s | {memory:,.0f} |", "",
        f"The ridge point (peak over bandwidth) is {ridge['fp32']:.2f} FLOP/byte in fp32 and {ridge['bf16']:.2f} in "
        f"bf16; the step's {c['flops'] / c['least']:.2f} FLOP/byte is "
        + ("above both: compute binds." if c["flops"] / c["least"] > max(ridge.values()) else
           "below both: memory binds." if c["flops"] / c["least"] < min(ridge.values()) else
           "between them: compute binds in fp32, memory in bf16."), "",
        "| setting | images/s | vs the sweep's | GFLOP/s | its lower bound (images/s) | fraction of it |",
        "|---|---|---|---|---|---|",
        *[f"| {n} | {r:,.0f} | {r / base:.2f}x | {r * c['flops'] / 1e9:,.1f} | {bounds[n][0]:,.0f} ({bounds[n][1]}) | "
          f"{r / bounds[n][0]:.1%} |" for n, r in rates.items()], ""])
    write_benchmark(text, benchmark_file(f"roofline_{device}", a))


if __name__ == "__main__":
    sys.exit(script(parser(), main))

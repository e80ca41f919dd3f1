"""A training step of the full pooling profile against the device's limits: a roofline, measured in one run.

    python benchmarks/roofline.py                     # the CPU, as a sweep runs there (one thread)
    python benchmarks/roofline.py --device cuda       # a GPU: writes benchmark_results/roofline_cuda.md
    python benchmarks/roofline.py --size 112          # scenes of 112 px instead of the full profile's 224

The model is the full profile's (224 px scenes unless --size, stride-2 stages 8-16-32-64-64, max head). Per image:
FLOPs of a forward and backward pass (torch's FLOP counter) and the bytes a step must move at the least (each
stage reads its input and writes its output once, forward and backward, as a fused Conv-BN-ReLU would) and as
executed layer by layer. Two ceilings bound the images per second: the device's peak arithmetic rate at the
setting's precision and the run's thread count (a large matmul, fp32 or bf16) over the FLOPs, and its memory
bandwidth (a large copy) over the bytes; the lower binds (the arithmetic intensity against the ridge point says
which). Every measured rate is reported as a fraction of its lower bound. Settings: the sweep's (fp32,
deterministic), channels_last, bf16 autocast (where the device computes bf16 natively), torch.compile, and K
members fused into one grouped model. On the CPU, torch.profiler then splits a step of fp32 + channels_last and of
plain fp32 by part (each stage, the head, the loss, the optimizer step, the rest): each part's time, its FLOPs and
the fraction of the fp32 ceiling it reaches.
"""
from __future__ import annotations

import contextlib
import resource
import sys
import time
from bisect import bisect_right
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.profiler_util import FunctionEvent
from torch.profiler import ProfilerActivity, profile, record_function
from torch.utils.benchmark import Timer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cnn_experiments.errors import UserError
from cnn_experiments.models.cnns import pooled_cnn
from cnn_experiments.reports import benchmark as B
from cnn_experiments.runs.machine import native_bf16
from cnn_experiments.training.fused import Fused
from cnn_experiments.training.train import RUN_THREADS, device_name

CHANNELS = (8, 16, 32, 64, 64)
MEASURES = ("cnn_experiments/models/cnns.py", "cnn_experiments/models/pooling.py",
            "cnn_experiments/training/fused.py")
BACKWARD = "autograd::engine::evaluate_function: "  # the profiler's name of one autograd node's backward
LOSS, OPTIMIZER, REST = "loss (cross-entropy)", "optimizer step (AdamW, zero_grad)", "the rest"
KINDS = {"conv": "conv", "batch_norm": "BN", "batchnorm": "BN", "relu": "ReLU", "threshold": "ReLU"}  # op name parts


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


def setup(device: str, bs: int, size: int, k: int = 1,
          channels_last: bool = False) -> tuple[nn.Module, torch.optim.Optimizer, torch.Tensor, torch.Tensor]:
    "The model (fused K times when k > 1), its AdamW, and one batch of images and labels, seeded."
    torch.manual_seed(0)
    members = [pooled_cnn(CHANNELS, 2, pool="max") for _ in range(k)]
    model = (Fused(members) if k > 1 else members[0]).to(device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(bs, k, size, size, device=device).to(memory_format=fmt)
    y = torch.randint(0, 2, (bs, k) if k > 1 else (bs,), device=device)
    return model, opt, x, y


def rate(device: str, bs: int, steps: int, size: int = 224, k: int = 1, channels_last=False, bf16=False,
         compile=False) -> float:
    "Training images per second (members x batch) of the model, fused K times when k > 1, in a plain loop."
    model, opt, x, y = setup(device, bs, size, k, channels_last)
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


def parts(model: nn.Sequential, size: int) -> list[tuple[str, nn.Module]]:
    "The network in order, each part by the name the report gives it: the body's stages, then the head."
    named, chans = [], (1, *CHANNELS)
    for i, stage in enumerate(model[0]):
        half = -(-size // 2)  # a stride-2 conv padded by ks // 2 rounds up
        named.append((f"stage {i + 1} ({chans[i]}→{chans[i + 1]} ch, {size}→{half} px)", stage))
        size = half
    return named + [("max head (pool, linear)", model[1])]


def part_flops(size: int) -> dict[str, float]:
    "FLOPs per image, forward + backward, of each part counted alone (its input needs a gradient, the image's not)."
    from torch.utils.flop_counter import FlopCounterMode
    h, flops = torch.zeros(8, 1, size, size), {}
    for i, (name, part) in enumerate(parts(pooled_cnn(CHANNELS, 2, pool="max"), size)):
        h = h.detach().requires_grad_(i > 0)
        with FlopCounterMode(display=False) as fc:
            out = part(h)
            out.sum().backward()  # a sum's backward counts no FLOPs
        flops[name], h = fc.get_total_flops() / 8, out
    return flops | {LOSS: 0.0, OPTIMIZER: 0.0, REST: 0.0}  # elementwise work: the counter counts none


def forward_seqs(event: FunctionEvent) -> list[int]:
    "The autograd sequence numbers of the ops under a profiler range: its backward nodes carry the same."
    found = []
    for child in event.cpu_children:
        found += ([child.sequence_nr] if child.sequence_nr >= 0 else []) + forward_seqs(child)
    return found


def kind(op: str) -> str:
    "Which layer an op (forward) or autograd node (backward) computes: conv, BN, ReLU, or other."
    return next((k for part, k in KINDS.items() if part in op.lower()), "other")


def attribute(events: list[FunctionEvent], labels: list[str], steps: int) -> dict[str, dict[str, float]]:
    """Seconds per step of each labelled range, by kind of layer, plus the backward of the nodes its forward created
    (sequence numbers grow through a forward: each label owns those from its first up to the next label's first);
    REST is the step's time left over."""
    ranges = [e for e in events if e.name in labels]
    starts = sorted((min(seqs), e.name) for e in ranges if (seqs := forward_seqs(e)))
    firsts = [seq for seq, _ in starts]
    us = {label: dict.fromkeys(("conv", "BN", "ReLU", "other"), 0.0) for label in labels + [REST]}
    for e in ranges:
        us[e.name]["other"] += e.time_range.elapsed_us()  # Python between the ops; each op's time moves to its kind
        for op in e.cpu_children:
            us[e.name]["other"] -= op.time_range.elapsed_us()
            us[e.name][kind(op.name)] += op.time_range.elapsed_us()
    for e in events:
        if e.name.startswith(BACKWARD) and e.sequence_nr >= 0 and (i := bisect_right(firsts, e.sequence_nr)) > 0:
            us[starts[i - 1][1]][kind(e.name[len(BACKWARD):])] += e.time_range.elapsed_us()
    step = sum(e.time_range.elapsed_us() for e in events if e.name == "step")
    us[REST]["other"] = step - sum(sum(k.values()) for k in us.values())
    return {label: {k: t / 1e6 / steps for k, t in kinds.items()} for label, kinds in us.items()}


def profile_step(bs: int, size: int, steps: int, channels_last: bool) -> tuple[dict[str, dict], float, float]:
    """Seconds per step of each part, by kind of layer, from torch.profiler on the CPU; the step's seconds and minor
    page faults (fresh memory first touched) per step without the profiler."""
    model, opt, x, y = setup("cpu", bs, size, channels_last=channels_last)
    named = parts(model, size)

    def step():
        with record_function("step"):
            h = x
            for name, part in named:  # the model's forward, a part at a time
                with record_function(name):
                    h = part(h)
            with record_function(LOSS):
                loss = F.cross_entropy(h, y)
            loss.backward()
            with record_function(OPTIMIZER):
                opt.step()
                opt.zero_grad()
    for _ in range(3):
        step()
    faults, start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
    for _ in range(steps):
        step()
    plain = (time.perf_counter() - start) / steps
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / steps
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    return attribute(prof.events(), [n for n, _ in named] + [LOSS, OPTIMIZER], steps), plain, faults


def stage_table(bs: int, kinds: dict[str, dict], flops: dict[str, float], peak_fp32: float) -> list[str]:
    "A profiled step's parts as markdown rows: FLOPs, time (by kind), share, the fraction of the fp32 ceiling."
    secs = {name: sum(k.values()) for name, k in kinds.items()}
    step = sum(secs.values())

    def row(name: str, per_image: float, t: float, split: dict[str, float]) -> str:
        work, ms = per_image * bs, " / ".join(f"{v * 1e3:.1f}" for v in split.values())
        return (f"| {name} | {per_image / 1e6:,.2f} M | {t * 1e3:,.1f} | {ms} | {t / step:.1%} | "
                f"{work / t / 1e9:,.1f} | {work / t / peak_fp32:.1%} | {(t - work / peak_fp32) * 1e3:,.1f} |")
    total = {k: sum(split[k] for split in kinds.values()) for k in kinds[REST]}
    return ["| part | FLOPs per image (fwd + bwd) | ms per step | conv / BN / ReLU / other ms | share of the step | "
            "GFLOP/s | fraction of the fp32 ceiling | ms over the ceiling's |", "|---|---|---|---|---|---|---|---|",
            *[row(name, flops[name], secs[name], kinds[name]) for name in kinds],
            row("**step**", sum(flops.values()), step, total)]


def worst(secs: dict[str, float], flops: dict[str, float], bs: int, peak_fp32: float) -> str:
    "The part that holds the most time over what the fp32 ceiling needs for its FLOPs."
    return max(secs, key=lambda n: secs[n] - flops[n] * bs / peak_fp32)


def stage_section(bs: int, size: int, steps: int, peak_fp32: float) -> tuple[list[str], str]:
    "The per-part profile of fp32 + channels_last and of plain fp32, as markdown, and its finding for the result."
    flops, finding = part_flops(size), ""
    lines = ["## Where a step's time goes, by part (torch.profiler, the CPU)", "",
             "Each stage's and the head's time is its forward range plus the backward of the autograd nodes that "
             "forward created; the rest is the autograd engine between nodes, gradient accumulation and Python. FLOPs "
             "are torch's FLOP counter's (convolutions and the linear layer; BN, ReLU, pooling, the loss and AdamW "
             "count none). \"ms over the ceiling's\" is the part's time less what its FLOPs take at the fp32 ceiling.",
             ""]
    for name, cl in (("fp32 + channels_last", True), ("fp32 (the sweep's)", False)):
        kinds, plain, faults = profile_step(bs, size, steps, cl)
        secs = {name: sum(k.values()) for name, k in kinds.items()}
        step, part = sum(secs.values()), worst(secs, flops, bs, peak_fp32)
        most = max(kinds[part], key=kinds[part].get)
        finding = finding or (f"profiled at {name}, {part} holds the most time below the fp32 ceiling: "
                              f"{secs[part] / step:.0%} of the step at {flops[part] * bs / secs[part] / peak_fp32:.1%}"
                              f" of the ceiling, its {most} the largest share ({kinds[part][most] * 1e3:.1f} of "
                              f"{secs[part] * 1e3:.1f} ms)")
        lines += [f"### {name}, {size} px, batch {bs}", "", *stage_table(bs, kinds, flops, peak_fp32), "",
                  f"Profiled step {step * 1e3:,.1f} ms; the same step timed without the profiler ({steps} steps) "
                  f"{plain * 1e3:,.1f} ms, with {faults:,.0f} minor page faults a step "
                  f"({faults * resource.getpagesize() / 2**20:,.1f} MiB of freshly mapped memory first touched).", ""]
    return lines, finding


def parser() -> B.Parser:
    p = B.Parser(prog="roofline.py", description="a training step of the full pooling profile against the limits")
    p.add_argument("--device", default="cpu", choices=B.DEVICES)
    p.add_argument("--steps", type=B.positive_int, default=None, help="timed steps per setting (cpu 3, cuda 100)")
    p.add_argument("--bs", type=B.positive_int, default=64, help="batch size (the study's)")
    p.add_argument("--size", type=B.positive_int, default=224, help="scene side in px (the full profile's 224)")
    p.add_argument("--k", type=B.positive_int, default=None, help="members of the fused setting (cpu 4, cuda 32)")
    B.output_options(p)
    return p


def ridge_text(intensity: float, ridge: dict[str, float]) -> str:
    "Where the step's arithmetic intensity sits against each precision's ridge point: which ceiling binds."
    if len(ridge) == 1:
        return "above it: compute binds." if intensity > ridge["fp32"] else "below it: memory binds."
    return ("above both: compute binds." if intensity > max(ridge.values()) else
            "below both: memory binds." if intensity < min(ridge.values()) else
            "between them: compute binds in fp32, memory in bf16.")


def main(a) -> None:
    device, size = a.device, a.size
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device: cuda asked for but no CUDA GPU is visible")
    steps, k = a.steps or (3 if device == "cpu" else 100), a.k or (4 if device == "cpu" else 32)
    if device == "cpu":
        torch.set_num_threads(RUN_THREADS)  # as a sweep's runs compute
    else:
        torch.backends.cudnn.deterministic = True  # fastai's set_seed(reproducible=True), as the sweep runs
    bf16 = device == "cuda" or native_bf16()  # emulated bf16 runs 4-5x slower than fp32: not a setting to measure
    c = counts(pooled_cnn(CHANNELS, 2, pool="max"), size)
    bw = bandwidth(device)
    peaks = {"fp32": peak(device, torch.float32)} | ({"bf16": peak(device, torch.bfloat16)} if bf16 else {})
    memory = bw / c["least"]
    settings = {"fp32 (the sweep's)": {}, "channels_last": dict(channels_last=True)}
    settings |= {"bf16 autocast": dict(bf16=True)} if bf16 else {}
    settings |= {"torch.compile": dict(compile=True), f"{k} members fused": dict(k=k),
                 f"{k} members fused, channels_last" + (" + bf16" if bf16 else ""): dict(k=k, channels_last=True,
                                                                                        bf16=bf16)}
    rates = {name: rate(device, a.bs, steps, size, **kw) for name, kw in settings.items()}

    def bound(kw: dict) -> tuple[float, str]:
        "The lower ceiling for a setting, in images/s, and which it is."
        compute = peaks["bf16" if kw.get("bf16") else "fp32"] / c["flops"]
        return (compute, "compute") if compute < memory else (memory, "memory")
    bounds = {name: bound(kw) for name, kw in settings.items()}
    base, (base_bound, binds) = rates["fp32 (the sweep's)"], bounds["fp32 (the sweep's)"]
    best = max(rates, key=rates.get)
    ridge = {p: v / bw for p, v in peaks.items()}
    stages, finding = stage_section(a.bs, size, steps, peaks["fp32"]) if device == "cpu" else ([], "")
    text = "\n".join([
        "# Benchmark: a training step of the full pooling profile against the device's limits", "",
        f"**Result:** on {device_name(device)}, the sweep's step trains {base:,.0f} images/s, "
        f"{base / base_bound:.1%} of the {base_bound:,.0f} images/s its lower ceiling ({binds}) allows; best setting "
        f"{best}: {rates[best]:,.0f} images/s ({rates[best] / base:.2f}x, {rates[best] / bounds[best][0]:.1%} of its "
        f"{bounds[best][1]} bound)" + (f"; {finding}." if finding else "."), "",
        *B.benchmark_provenance(f"python benchmarks/roofline.py --device {device} --steps {steps} --bs {a.bs} --k {k} "
                              f"--size {size}", MEASURES),
        f"- work: pooled_cnn {CHANNELS} + max head, {a.bs} x 1 x {size} x {size} per member, AdamW, a plain loop, "
        f"{steps} steps after 3 warm-up steps" + (f", {RUN_THREADS} thread" if device == "cpu" else ""), "",
        "| per image | forward + backward |", "|---|---|",
        f"| FLOPs | {c['flops'] / 1e6:,.1f} M |",
        f"| bytes at the least (each stage's input and output once) | {c['least'] / 1e6:,.1f} MB |",
        f"| bytes layer by layer (conv, BN, ReLU each read and write) | {c['executed'] / 1e6:,.1f} MB |",
        f"| arithmetic intensity at the least | {c['flops'] / c['least']:.2f} FLOP/byte |", "",
        "| ceiling | measured | images/s it allows |", "|---|---|---|",
        f"| arithmetic, fp32 (a {2048 if device == 'cpu' else 8192}² matmul) | {peaks['fp32'] / 1e9:,.1f} GFLOP/s | "
        f"{peaks['fp32'] / c['flops']:,.0f} |",
        (f"| arithmetic, bf16 | {peaks['bf16'] / 1e9:,.1f} GFLOP/s | {peaks['bf16'] / c['flops']:,.0f} |" if bf16
         else "| arithmetic, bf16 | not measured: this CPU has no native bf16 (emulated, 4-5x slower than fp32) | – |"),
        f"| memory (a copy of 512 MB) | {bw / 1e9:,.1f} GB/s | {memory:,.0f} |", "",
        f"The ridge point (peak over bandwidth) is {ridge['fp32']:.2f} FLOP/byte in fp32"
        + (f" and {ridge['bf16']:.2f} in bf16" if bf16 else "")
        + f"; the step's {c['flops'] / c['least']:.2f} FLOP/byte is {ridge_text(c['flops'] / c['least'], ridge)}", "",
        "| setting | images/s | vs the sweep's | GFLOP/s | its lower bound (images/s) | fraction of it |",
        "|---|---|---|---|---|---|",
        *[f"| {n} | {r:,.0f} | {r / base:.2f}x | {r * c['flops'] / 1e9:,.1f} | {bounds[n][0]:,.0f} ({bounds[n][1]}) | "
          f"{r / bounds[n][0]:.1%} |" for n, r in rates.items()], "", *stages])
    B.write_benchmark(text, B.benchmark_file(f"roofline_{device}", a))


if __name__ == "__main__":
    sys.exit(B.script(parser(), main))

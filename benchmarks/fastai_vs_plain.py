"""The fastai path vs a plain PyTorch loop: same model, data, batch size and optimiser, timed in one run.

    python benchmarks/fastai_vs_plain.py                 # CPU; writes benchmark_results/fastai_vs_plain_cpu.md
    python benchmarks/fastai_vs_plain.py --device cuda

Rows: fastai's own DataLoader over a TensorDataset (per-item collation); our device-resident batch slicer
into fastai's stock Learner, smoothed loss kept on the device; the suite's path (`train.learner`): the same
plus our Learner, which asks only the callbacks that handle an event, and a loss that returns a plain tensor;
that with torch's AdamW wrapped by fastai's OptimWrapper (how much of the rest is fastai's optimiser, which
steps each parameter in Python); and a plain loop. Targets: within 1.15x of the plain loop on a CPU, 1.2x
on a GPU. The paths take turns, round after round, and each ratio is of medians, so load from
other work on a shared machine falls on all of them alike.
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from fastai.data.core import DataLoaders
from fastai.learner import Learner as StockLearner
from fastai.losses import CrossEntropyLossFlat
from fastai.optimizer import Adam, OptimWrapper
from fastcore.basics import noop
from torch.utils.data import TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cnn_experiments.data.mnist import TensorLoader, mnist_embedded, tensor_dls
from cnn_experiments.errors import UserError
from cnn_experiments.models.cnns import simple_cnn
from cnn_experiments.reports import benchmark as B
from cnn_experiments.training.callbacks import without_host_sync
from cnn_experiments.training.learner import CrossEntropy, Learner
from cnn_experiments.training.train import device_name

TARGET = {"cpu": 1.15, "cuda": 1.2}
MEASURES = ("cnn_experiments/training/learner.py", "cnn_experiments/training/callbacks.py",
            "cnn_experiments/data/mnist.py")


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def fastai_fit(dls, device, lr=1e-3, suite=False, stock=False, opt_func=Adam):
    "One epoch through a Learner: fastai's own (`stock`) or ours; `suite`: the smoothed loss kept on the device."
    learner, loss = (StockLearner, CrossEntropyLossFlat()) if stock else (Learner, CrossEntropy())
    learn = learner(dls, simple_cnn().to(device), loss_func=loss, opt_func=opt_func)
    learn.logger = noop
    if suite:
        without_host_sync(learn)  # as train.learner does: fastai's smoothed loss syncs with the host every batch
    with learn.no_bar():
        sync(device)
        t = time.perf_counter()
        learn.fit(1, lr)
        sync(device)
    return time.perf_counter() - t


def torch_adamw(params, lr, **kwargs):
    "torch's AdamW (multi-tensor where the device has it) with fastai Adam's hyper-parameters, for the Learner."
    return OptimWrapper(params, opt=torch.optim.AdamW, lr=lr, betas=(0.9, 0.99), eps=1e-5, weight_decay=0.01)


def plain_fit(xt, yt, xv, yv, bs, device, lr=1e-3):
    "What the Learner does, written out: Adam with decoupled wd 0.01, one epoch, then a validation pass."
    model = simple_cnn().to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.99), eps=1e-5, weight_decay=0.01)
    train = TensorLoader(xt, yt, bs, shuffle=True, drop_last=True, device=device)
    valid = TensorLoader(xv, yv, bs * 2, device=device)
    sync(device)
    t = time.perf_counter()
    model.train()
    for xb, yb in train:
        loss = F.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    with torch.no_grad():
        for xb, yb in valid:
            F.cross_entropy(model(xb), yb)
    sync(device)
    return time.perf_counter() - t


def parser() -> B.Parser:
    p = B.Parser(prog="fastai_vs_plain.py", description="the fastai path vs a plain PyTorch loop, in one run")
    p.add_argument("--device", default="cpu", choices=B.DEVICES)
    p.add_argument("--bs", type=B.positive_int, default=256, help="batch size, images")
    p.add_argument("--n", type=B.positive_int, default=60000, help="training images per epoch (the digits, tiled)")
    p.add_argument("--rounds", type=B.positive_int, default=5, help="timed epochs per path, in turns; median kept")
    B.output_options(p)
    return p


def main(a) -> None:
    device, bs, n, rounds = a.device, a.bs, a.n, a.rounds
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device: cuda asked for but no CUDA GPU is visible")
    d = mnist_embedded()
    reps = -(-n // len(d.x_train))
    xt, yt = d.x_train.repeat(reps, 1, 1, 1)[:n].to(device), d.y_train.repeat(reps)[:n].to(device)
    xv, yv = d.x_valid.to(device), d.y_valid.to(device)
    torch.manual_seed(0)
    paths = {
        # host tensors, as a fastai user has them: its workers cannot fork with CUDA tensors, it moves each batch
        "fastai DataLoaders.from_dsets(TensorDataset)": lambda: fastai_fit(DataLoaders.from_dsets(
            TensorDataset(xt.cpu(), yt.cpu()), TensorDataset(xv.cpu(), yv.cpu()), bs=bs, device=device), device,
            stock=True),
        "fastai's stock Learner + our device-resident batch slicer": lambda: fastai_fit(
            tensor_dls(xt, yt, xv, yv, bs=bs, device=device), device, suite=True, stock=True),
        "ours: + lean event dispatch, plain-tensor loss (train.learner)": lambda: fastai_fit(
            tensor_dls(xt, yt, xv, yv, bs=bs, device=device), device, suite=True),
        "ours, with torch's AdamW in fastai's OptimWrapper": lambda: fastai_fit(
            tensor_dls(xt, yt, xv, yv, bs=bs, device=device), device, suite=True, opt_func=torch_adamw),
        "plain PyTorch loop": lambda: plain_fit(xt, yt, xv, yv, bs, device),
    }
    for f in paths.values():
        f()  # warm-up: first-call allocations and kernel choices
    times = {name: [] for name in paths}
    for _ in range(rounds):
        for name, f in paths.items():
            times[name].append(f())
    best = {name: statistics.median(t) for name, t in times.items()}
    plain = best["plain PyTorch loop"]
    ours = best["ours: + lean event dispatch, plain-tensor loss (train.learner)"] / plain
    rows = [f"| {k} | {v:.2f} | {min(times[k]):.2f} to {max(times[k]):.2f} | {n / v:,.0f} | {v / plain:.2f}x |"
            for k, v in best.items()]
    target = TARGET[device]
    text = "\n".join([
        "# Benchmark: the fastai path vs a plain PyTorch loop", "",
        f"**Result:** on {device_name(device)}, the suite's fastai path takes {ours:.3f}x the plain loop's time "
        f"(target {target}x: {'met' if ours <= target else 'not met'}).", "",
        *B.benchmark_provenance(f"python benchmarks/fastai_vs_plain.py --device {device} --bs {bs} --n {n} "
                              f"--rounds {rounds}", MEASURES),
        f"- work: simple_cnn, one epoch of {n:,} images at bs {bs} plus one pass over 1,000 held-out; "
        f"median of {rounds} rounds after a warm-up; fastai's Adam (decoupled wd 0.01) and torch's AdamW "
        "with the same hyper-parameters", "",
        "| path | median seconds | range | images/s | vs plain |", "|---|---|---|---|---|", *rows, ""])
    B.write_benchmark(text, B.benchmark_file(f"fastai_vs_plain_{device}", a))


if __name__ == "__main__":
    sys.exit(B.script(parser(), main))

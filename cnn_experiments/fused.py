"""K models of one shape trained as one module: grouped convolutions, each member its own channels.

The fused loss is the sum of the members' losses, so each member's parameters see only their own
gradient; BatchNorm statistics are per channel, so per member; Adam is element-wise. K fused members
therefore train as K separate runs would, in one pass per batch. Each member also gets its own batches,
drawn in the order its own run would draw them (its seed's generator, continued after its init), so a
member of a model without dropout repeats the run it stands for, to float rounding (a test checks).
For these small networks the cost is per-batch overhead and kernels too narrow to fill the device
(benchmarks/gpu_step.py: BatchNorm over 8 channels dominates a step), which fusion amortises K times.
"""
from __future__ import annotations

import copy
import math
import time

import torch
import torch.nn.functional as F
from fastai.callback.progress import ProgressCallback
from fastai.data.core import DataLoaders
from fastai.torch_core import set_seed
from fastcore.basics import noop
from torch import nn

from . import data as D
from .callbacks import without_host_sync
from .config import Config
from .errors import UserError
from .learner import Learner
from .pooling import GeMPool2d
from .train import Result, build_model, device_name, fit, pinned_threads, scores, speedups, tensors

ARCHS = ("simple_cnn", "pooled_cnn")  # the architectures Fused knows how to stack


def fusable(cfg: Config) -> bool:
    "Whether runs of this config can train fused: an architecture Fused stacks, on tensors."
    return cfg.arch in ARCHS and cfg.data != "folder"


def _fuse_layer(parts: list[nn.Module], k: int) -> nn.Module:
    "One layer of every member as one layer over their stacked channels."
    m = parts[0]
    if isinstance(m, nn.Conv2d):
        return nn.Conv2d(k * m.in_channels, k * m.out_channels, m.kernel_size, m.stride, m.padding,
                         groups=k * m.groups, bias=m.bias is not None)
    if isinstance(m, nn.BatchNorm2d):
        return nn.BatchNorm2d(k * m.num_features, m.eps, m.momentum)
    if isinstance(m, nn.Sequential):
        return nn.Sequential(*[_fuse_layer(list(p), k) for p in zip(*parts)])
    if not any(True for _ in m.parameters()):  # activations, Dropout2d, 2x2 pools: channel by channel
        return copy.deepcopy(m)
    raise ValueError(f"fuse: cannot fuse a {type(m).__name__} layer")


class FusedGeM(nn.Module):
    "GeM pooling with one learned p per member, on features (B, K, C, h, w)."
    def __init__(self, k: int, eps: float = 1e-6):
        super().__init__()
        self.p, self.eps = nn.Parameter(torch.full((k,), 3.0)), eps

    def forward(self, x):
        p = self.p.clamp(min=1.0).view(1, -1, 1, 1, 1)
        return x.clamp(min=self.eps).pow(p).mean((-2, -1), keepdim=True).pow(1.0 / p).flatten(2)


class FusedLinear(nn.Module):
    "K linear layers: features (B, K, F) -> (B, K, n_out)."
    def __init__(self, k: int, n_in: int, n_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(k, n_out, n_in))
        self.bias = nn.Parameter(torch.empty(k, n_out))  # named `bias`: fastai exempts it from weight decay

    def forward(self, x):
        return torch.einsum("bkf,kof->bko", x, self.weight) + self.bias


class Fused(nn.Module):
    """K members of one architecture (pooled_cnn or simple_cnn) as one module. Input (B, K, H, W), member k's
    batch in channel k, or (B, 1, H, W) shared by all; output (B, K, n_out). Starts from the members' weights."""
    def __init__(self, members: list[nn.Sequential]):
        super().__init__()
        self.k = k = len(members)
        self.template = [copy.deepcopy(members[0])]  # a list: not a submodule, no parameters of its own
        m0 = members[0]
        self.pooled = isinstance(m0[-1], nn.Sequential) and isinstance(m0[-1][-1], nn.Linear)
        if self.pooled:  # body, then head = pool, Flatten, Dropout, Linear
            pool, _, drop, lin = m0[1]
            self.body = _fuse_layer([m[0] for m in members], k)
            self.pool = FusedGeM(k) if isinstance(pool, GeMPool2d) else copy.deepcopy(pool)
            self.drop = copy.deepcopy(drop)
            self.linear = FusedLinear(k, lin.in_features, lin.out_features)
        else:  # conv stages whose last gives the logits at 1x1, then Flatten
            self.body = _fuse_layer([m[:-1] for m in members], k)
        with torch.no_grad():
            for fused, parts in zip(self.state_dict().values(), zip(*[m.state_dict().values() for m in members])):
                fused.copy_(_join(parts, fused.shape))

    def forward(self, x):
        if x.shape[1] == 1:
            x = x.expand(-1, self.k, -1, -1)
        f = self.body(x)
        b = f.shape[0]
        if not self.pooled:
            return f.reshape(b, self.k, -1)
        if isinstance(self.pool, FusedGeM):
            z = self.pool(f.view(b, self.k, -1, *f.shape[-2:]))
        else:  # a pooling without parameters, applied to each member's channels as its own
            z = self.pool(f.reshape(b * self.k, -1, *f.shape[-2:])).reshape(b, self.k, -1)
        return self.linear(self.drop(z))

    def member(self, i: int) -> nn.Sequential:
        "Member i as a model of its own, with its current weights."
        m = copy.deepcopy(self.template[0]).to(next(self.parameters()).device)
        with torch.no_grad():
            for fused, own in zip(self.state_dict().values(), m.state_dict().values()):
                own.copy_(_part(fused, own.shape, i, self.k))
        return m


def _join(parts, shape) -> torch.Tensor:
    "The members' tensors as the fused one: concatenated channels, stacked per-member tensors, or shared."
    if parts[0].shape == shape:
        return parts[0]  # a counter such as BatchNorm's num_batches_tracked
    return torch.cat(parts) if parts[0].dim() and shape[0] == len(parts) * parts[0].shape[0] else torch.stack(parts)


def _part(fused: torch.Tensor, shape, i: int, k: int) -> torch.Tensor:
    if fused.shape == shape:
        return fused
    if len(shape) and fused.shape[1:] == shape[1:] and fused.shape[0] == k * shape[0]:
        return fused.chunk(k)[i]
    return fused[i]


class FusedLoader(D.TensorLoader):
    "Training batches for K members: member k's batch in channel k, in the order its own generator draws."
    def __init__(self, x, y, bs, generators: list[torch.Generator], device):
        super().__init__(x, y, bs, shuffle=True, drop_last=True, device=device)
        self.generators = generators

    def __iter__(self):
        idx = torch.stack([torch.randperm(self.n, generator=g) for g in self.generators]).to(self.device)
        for i in range(len(self)):
            b = idx[:, i * self.bs:(i + 1) * self.bs]  # (K, B)
            yield self.x[b][:, :, 0].transpose(0, 1), self.y[b].transpose(0, 1)  # (B, K, H, W), (B, K)


def fused_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    "The sum over members of each member's mean cross-entropy: member k's gradient is its own run's."
    return F.cross_entropy(out.flatten(0, 1), y.flatten(), reduction="none").view(y.shape).mean(0).sum()


def learner(cfgs) -> Learner:
    "A Learner training the configs `cfgs` (one cell, different seeds) as one fused model."
    c0 = cfgs[0]
    for c in cfgs:
        c.check()
        if c.cell_id != c0.cell_id or c.device != c0.device:
            raise UserError("fuse: members must share every field but the seed")
    if not fusable(c0):
        raise UserError(f"fuse: arch {c0.arch!r} cannot be fused; these can: {', '.join(ARCHS)}")
    if len({c.seed for c in cfgs}) < len(cfgs):
        raise UserError("fuse: members need different seeds")
    t = tensors(c0)
    xt, yt, xv, yv, n_out = t.x_train, t.y_train, t.x_valid, t.y_valid, t.n_out
    members, gens = [], []
    for c in cfgs:
        set_seed(c.seed, reproducible=True)  # as the member's own run: the same init ...
        members.append(build_model(c, n_out))
        gens.append(torch.Generator().set_state(torch.get_rng_state()))  # ... and the same batch order after it
    dls = DataLoaders(FusedLoader(xt, yt, c0.bs, gens, c0.device),
                      D.TensorLoader(xv, yv, c0.bs * 2, device=c0.device), device=c0.device)
    learn = Learner(dls, Fused(members).to(c0.device), loss_func=fused_loss, wd=c0.wd)
    learn.n_out, learn.logger = n_out, noop
    without_host_sync(learn)
    speedups(learn, c0)
    learn.remove_cb(ProgressCallback)
    return learn


@torch.no_grad()
def _outputs(model: Fused, loader: D.TensorLoader) -> torch.Tensor:
    model.eval()
    return torch.cat([model(xb).float() for xb, _ in loader.new(shuffle=False, drop_last=False, bs=loader.bs * 2)])


def evaluate(learn: Learner) -> list[dict]:
    "Per member, the metrics of `train.evaluate`: losses in eval mode, held-out accuracy, ROC AUC when binary."
    train, valid = learn.dls.train, learn.dls.valid
    train_out, valid_out = _outputs(learn.model, train), _outputs(learn.model, valid)
    return [scores(float(F.cross_entropy(train_out[:, k], train.y)), valid_out[:, k].softmax(1).cpu(),
                   valid.y.cpu(), learn.n_out) for k in range(learn.model.k)]


def run(cfgs, keep: tuple[str, ...] = ()) -> list[Result]:
    """Train `cfgs` fused; per member a `train.Result` (no training curve), `seconds` its share of the time;
    with `keep`, each member's state-dict entries under those prefixes."""
    with pinned_threads(cfgs[0].device):
        learn = learner(cfgs)
        t0 = time.perf_counter()
        fit(learn, cfgs[0])
        seconds = (time.perf_counter() - t0) / len(cfgs)
        out = []
        for i, m in enumerate(evaluate(learn)):
            diverged = not math.isfinite(m["train_loss"])
            if cfgs[i].probe and not diverged:
                m.update(_member_probes(learn, i))
            if diverged:
                m = {k: float("nan") for k in m}
            weights = None
            if keep:
                sd = learn.model.member(i).state_dict()
                weights = {k: v.detach().cpu().clone() for k, v in sd.items() if k.startswith(keep)}
            out.append(Result(dict(**m, diverged=diverged, seconds=round(seconds, 3), epochs_run=cfgs[0].epochs,
                                   device=device_name(cfgs[0].device), fused=len(cfgs)), [], weights))
    return out


def _member_probes(learn: Learner, i: int) -> dict:
    "The head-only probes of member i, on its own body and data."
    from types import SimpleNamespace

    from .probes import head_only
    tr, va = learn.dls.train, learn.dls.valid
    x = tr.x[:, i:i + 1] if tr.x.shape[1] > 1 else tr.x
    dls = SimpleNamespace(train=D.TensorLoader(x, tr.y, tr.bs), valid=D.TensorLoader(va.x, va.y, va.bs))
    return head_only(SimpleNamespace(model=learn.model.member(i), dls=dls))

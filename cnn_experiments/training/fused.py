"""K runs of one body shape trained as one module: grouped convolutions, each member its own channels.

Members may differ by seed, pooling head and learning rate: a whole column of a grid in one model. The fused
loss is the sum of the members' losses, so each member's parameters see only their own gradient; BatchNorm
statistics are per channel, so per member; Adam is element-wise, and each member's elements step at its own
rate. K fused members therefore train as K separate runs would, in one pass per batch. Each member also gets
its own batches, drawn in the order its own run would draw them (its seed's generator, continued after its
init), so a member of a model without dropout repeats the run it stands for, to float rounding (a test
checks). For these small networks the cost is per-batch overhead and kernels too narrow to fill the device
(benchmarks/roofline.py), which fusion amortises K times.
"""
from __future__ import annotations

import copy
import math
import time
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from fastai.callback.progress import ProgressCallback
from fastai.data.core import DataLoaders
from fastai.optimizer import Optimizer, average_grad, average_sqr_grad, debias, step_stat
from fastai.torch_core import set_seed
from fastcore.basics import noop
from torch import nn

from ..data import mnist as D
from ..errors import UserError
from ..models.pooling import GeMPool2d
from ..runs.config import FUSED_ARCHS, MAY_DIFFER, fusable, group_key
from .callbacks import without_host_sync
from .learner import Learner
from .train import Result, build_model, correct, fit, pinned_threads, ran_on, scores, speedups, tensors


def scaled_weight_decay(p, lr, wd, do_wd=True, **kwargs):
    "fastai's decoupled weight decay, at each member's own rate."
    if do_wd and wd != 0:
        p.data.mul_(1 - lr * wd * p.lr_scale)


def scaled_adam_step(p, lr, mom, step, sqr_mom, grad_avg, sqr_avg, eps, **kwargs):
    "fastai's Adam step, at each member's own rate."
    debias1, debias2 = debias(mom, 1 - mom, step), debias(sqr_mom, 1 - sqr_mom, step)
    p.data.addcdiv_(grad_avg * p.lr_scale, (sqr_avg / debias2).sqrt() + eps, value=-lr / debias1)
    return p


def member_adam(params, lr, mom=0.9, sqr_mom=0.99, eps=1e-5, wd=0.01, decouple_wd=True) -> Optimizer:
    "fastai's Adam (its defaults) for members of their own rates: every parameter carries `lr_scale`."
    cbs = [scaled_weight_decay, partial(average_grad, dampening=True), average_sqr_grad, step_stat, scaled_adam_step]
    return Optimizer(params, cbs, lr=lr, mom=mom, sqr_mom=sqr_mom, eps=eps, wd=wd)


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


class FusedHead(nn.Module):
    "The pooling heads (pool, Flatten, Dropout, Linear) of K members that pool alike: (B, K, C, h, w) -> (B, K, n)."
    def __init__(self, heads: list[nn.Sequential]):
        super().__init__()
        pool, _, drop, lin = heads[0]
        self.k = len(heads)
        self.pool = FusedGeM(self.k) if isinstance(pool, GeMPool2d) else copy.deepcopy(pool)
        self.drop = copy.deepcopy(drop)
        self.linear = FusedLinear(self.k, lin.in_features, lin.out_features)
        _copy_in(self, heads)

    def forward(self, f):
        if isinstance(self.pool, FusedGeM):
            z = self.pool(f)
        else:  # a pooling without parameters, applied to each member's channels as its own
            b = f.shape[0]
            z = self.pool(f.reshape(b * self.k, *f.shape[2:])).reshape(b, self.k, -1)
        return self.linear(self.drop(z))


def _kind(head: nn.Sequential) -> tuple:
    "What a pooling head is, for grouping: its pooling layer's type and settings."
    pool = head[0]
    return type(pool).__name__, getattr(pool, "r", None)


class Fused(nn.Module):
    """K members of one body (pooled_cnn, whose heads may differ, or simple_cnn) as one module. Input (B, K, H, W),
    member k's batch in channel k, or (B, 1, H, W) shared by all; output (B, K, n_out). Starts from the members'
    weights."""
    def __init__(self, members: list[nn.Sequential]):
        super().__init__()
        self.k = k = len(members)
        m0 = members[0]
        self.pooled = isinstance(m0[-1], nn.Sequential) and isinstance(m0[-1][-1], nn.Linear)
        if self.pooled:  # body, then head = pool, Flatten, Dropout, Linear
            self.body = _fuse_layer([m[0] for m in members], k)
            _copy_in(self.body, [m[0] for m in members])
            kinds = [_kind(m[1]) for m in members]
            self.groups = [[i for i in range(k) if kinds[i] == kind] for kind in dict.fromkeys(kinds)]
            self.heads = nn.ModuleList([FusedHead([members[i][1] for i in g]) for g in self.groups])
            self.register_buffer("order", torch.argsort(torch.tensor(sum(self.groups, []))), persistent=False)
        else:  # conv stages whose last gives the logits at 1x1, then Flatten
            self.body = _fuse_layer([m[:-1] for m in members], k)
            _copy_in(self.body, [m[:-1] for m in members])
            self.groups = [list(range(k))]
        self.templates = [copy.deepcopy(members[g[0]]) for g in self.groups]  # a list: no parameters of its own

    def forward(self, x):
        if x.shape[1] == 1:
            x = x.expand(-1, self.k, -1, -1)
        f = self.body(x)
        b = f.shape[0]
        if not self.pooled:
            return f.reshape(b, self.k, -1)
        f = f.view(b, self.k, -1, *f.shape[-2:])
        if len(self.groups) == 1:
            return self.heads[0](f)
        out = torch.cat([head(f[:, g]) for g, head in zip(self.groups, self.heads)], dim=1)
        return out[:, self.order]  # back in the members' order

    def member(self, i: int) -> nn.Sequential:
        "Member i as a model of its own, with its current weights."
        j = next(j for j, g in enumerate(self.groups) if i in g)
        m = copy.deepcopy(self.templates[j]).to(next(self.parameters()).device)
        with torch.no_grad():
            body = m[0] if self.pooled else m[:-1]
            for fused, own in zip(self.body.state_dict().values(), body.state_dict().values()):
                own.copy_(_part(fused, own.shape, i, self.k))
            if self.pooled:
                for fused, own in zip(self.heads[j].state_dict().values(), m[1].state_dict().values()):
                    own.copy_(_part(fused, own.shape, self.groups[j].index(i), len(self.groups[j])))
        return m

    def member_rates(self, lrs: list[float]) -> float:
        "Give every parameter its members' learning rates, relative to the highest; return that rate."
        top = max(lrs)
        parts = [(self.body, list(range(self.k)))] + ([*zip(self.heads, self.groups)] if self.pooled else [])
        for module, members in parts:
            rates = torch.tensor([lrs[i] / top for i in members])
            for p in module.parameters():
                per = p.shape[0] // len(members)  # parameters stack the members along their first dimension
                p.lr_scale = rates.repeat_interleave(per).view(-1, *[1] * (p.dim() - 1)).to(p.device, p.dtype)
        return top


def _copy_in(fused: nn.Module, parts: list[nn.Module]) -> None:
    "The members' weights into the fused module's, tensor by tensor in state-dict order."
    with torch.no_grad():
        for f, own in zip(fused.state_dict().values(), zip(*[m.state_dict().values() for m in parts])):
            f.copy_(_join(own, f.shape))


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
    "A Learner training the configs `cfgs` (one body and data; seeds, heads and rates may differ) as one model."
    c0 = cfgs[0]
    for c in cfgs:
        c.check()
        if group_key(c) != group_key(c0) or c.device != c0.device:
            raise UserError(f"fuse: members must share every field but {', '.join(MAY_DIFFER)}")
    if not fusable(c0):
        raise UserError(f"fuse: arch {c0.arch!r} cannot be fused; these can: {', '.join(FUSED_ARCHS)}")
    if len({c.run_id for c in cfgs}) < len(cfgs):
        raise UserError("fuse: members must be different runs")
    t = tensors(c0)
    xt, yt, xv, yv, n_out = t.x_train, t.y_train, t.x_valid, t.y_valid, t.n_out
    members, gens = [], []
    for c in cfgs:
        set_seed(c.seed, reproducible=True)  # as the member's own run: the same init ...
        members.append(build_model(c, n_out))
        gens.append(torch.Generator().set_state(torch.get_rng_state()))  # ... and the same batch order after it
    dls = DataLoaders(FusedLoader(xt, yt, c0.bs, gens, c0.device),
                      D.TensorLoader(xv, yv, c0.bs * 2, device=c0.device), device=c0.device)
    model = Fused(members).to(c0.device)
    rates = {}
    if len({c.lr for c in cfgs}) > 1:  # one fit at the highest rate; each member's elements scaled to its own
        top = model.member_rates([c.lr for c in cfgs])
        rates = dict(opt_func=member_adam)
    learn = Learner(dls, model, loss_func=fused_loss, wd=c0.wd, **rates)
    learn.n_out, learn.logger = n_out, noop
    learn.fit_config = c0.replace(lr=top) if rates else c0
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
    return [m for m, _ in held_out(learn)]


def held_out(learn: Learner) -> list[tuple[dict, np.ndarray]]:
    "Per member, `evaluate`'s metrics and its own held-out items right or wrong, in the held-out set's fixed order."
    train, valid = learn.dls.train, learn.dls.valid
    train_out, valid_out = _outputs(learn.model, train), _outputs(learn.model, valid)  # both read in order, unshuffled
    out = []
    for k in range(learn.model.k):
        probs = valid_out[:, k].softmax(1).cpu()
        out.append((scores(float(F.cross_entropy(train_out[:, k], train.y)), probs, valid.y.cpu(), learn.n_out),
                    correct(probs, valid.y.cpu())))
    return out


def run(cfgs, keep: tuple[str, ...] = ()) -> list[Result]:
    """Train `cfgs` fused; per member a `train.Result` (no training curve), `seconds` its share of the time;
    with `keep`, each member's state-dict entries under those prefixes."""
    with pinned_threads(cfgs[0].device):
        learn = learner(cfgs)
        t0 = time.perf_counter()
        fit(learn, learn.fit_config)
        seconds = (time.perf_counter() - t0) / len(cfgs)
        out = []
        for i, (m, items) in enumerate(held_out(learn)):
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
                                   fused=len(cfgs), **ran_on(cfgs[0].device)), [], weights,
                              items=None if diverged else items))
    return out


def _member_probes(learn: Learner, i: int) -> dict:
    "The head-only probes of member i, on its own body and data."
    from types import SimpleNamespace

    from .probes import head_only
    tr, va = learn.dls.train, learn.dls.valid
    x = tr.x[:, i:i + 1] if tr.x.shape[1] > 1 else tr.x
    dls = SimpleNamespace(train=D.TensorLoader(x, tr.y, tr.bs), valid=D.TensorLoader(va.x, va.y, va.bs))
    return head_only(SimpleNamespace(model=learn.model.member(i), dls=dls))

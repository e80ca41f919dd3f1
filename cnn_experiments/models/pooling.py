"""Global pooling layers by name, one registry (as timm's `adaptive_avgmax_pool`).

Each layer maps (N, C, H, W) -> (N, C * mult, 1, 1); `mult` is 2 for heads that concatenate.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from fastai.layers import AdaptiveConcatPool2d
from timm.layers import AdaptiveAvgMaxPool2d
from torch import nn

from ..runs import config
from ..runs.config import check_choice


class GeMPool2d(nn.Module):
    "Generalised mean, (mean x^p)^(1/p) with p learned (Radenovic et al. 2018): p=1 is avg, p->inf is max."
    def __init__(self, p: float = 3.0, eps: float = 1e-6):
        super().__init__()
        self.p, self.eps = nn.Parameter(torch.tensor(float(p))), eps

    def forward(self, x):
        p = self.p.clamp(min=1.0)  # below 1 the mean stops being a pooling of the positive activations
        return F.adaptive_avg_pool2d(x.clamp(min=self.eps).pow(p), 1).pow(1.0 / p)


class LSEPool2d(nn.Module):
    "Log-sum-exp, (1/r) log mean exp(r x) (Pinheiro and Collobert 2015): r->0 is avg, r->inf is max."
    def __init__(self, r: float = 5.0):
        super().__init__()
        self.r = r

    def forward(self, x):
        n = x.shape[-2] * x.shape[-1]
        return ((torch.logsumexp(self.r * x.flatten(2), dim=-1) - math.log(n)) / self.r)[..., None, None]


POOLS = {  # name -> (factory, feature multiplier)
    "avg": (lambda: nn.AdaptiveAvgPool2d(1), 1),
    "max": (lambda: nn.AdaptiveMaxPool2d(1), 1),
    "concat": (lambda: AdaptiveConcatPool2d(1), 2),  # fastai's: cat([max, avg])
    "avgmax": (lambda: AdaptiveAvgMaxPool2d(1), 1),  # timm's: the mean of global average and global max
    "gem": (GeMPool2d, 1),
    "lse": (LSEPool2d, 1),
}
assert tuple(POOLS) == config.POOLS  # the names a config accepts are the layers this module builds


assert tuple(POOLS) == config.POOLS


def check_pool(name: str) -> str:
    return check_choice("pool", name, POOLS)


def global_pool(name: str) -> nn.Module:
    "The global pooling layer called `name`."
    return POOLS[check_pool(name)][0]()


def pool_mult(name: str) -> int:
    "How many features per channel the pooling `name` gives (2 for concat)."
    return POOLS[check_pool(name)][1]

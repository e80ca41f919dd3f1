"""Bodies and heads: fastbook's `simple_cnn`, a configurable body of down-sampling stages, `head(pool, p)`."""
from __future__ import annotations

import torch
from torch import nn

from ..runs import config
from ..runs.config import check_choice
from .pooling import global_pool, pool_mult

ACTIVATIONS = {
    "relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "gelu": nn.GELU, "silu": nn.SiLU,
    "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "identity": nn.Identity,
}
DOWNS = config.DOWNS  # the body's way down: stride-2 conv, or conv + 2x2 pool
assert tuple(ACTIVATIONS) == config.ACTIVATIONS


def conv(ni: int, nf: int, ks: int = 3, act: bool = True, bn: bool = True,
         act_name: str = "relu", down: str = "stride", bn_first: bool = True) -> nn.Sequential:
    "One stage that halves the map: Conv-BN-act (or Conv-act-BN), the conv of stride 2 or followed by a 2x2 pool."
    check_choice("down", down, DOWNS)
    layers = [nn.Conv2d(ni, nf, ks, stride=2 if down == "stride" else 1, padding=ks // 2, bias=not bn)]
    norm = [nn.BatchNorm2d(nf)] if bn else []
    activation = [ACTIVATIONS[check_choice("act", act_name, ACTIVATIONS)]()] if act else []
    layers += norm + activation if bn_first else activation + norm
    if down != "stride":
        # ceil_mode keeps the stride-2 conv's map size (7 -> 4, not 3)
        layers.append((nn.MaxPool2d if down == "maxpool" else nn.AvgPool2d)(2, ceil_mode=True))
    return nn.Sequential(*layers)


def widen(channels, width: float) -> tuple[int, ...]:
    "Every stage's channels times `width`, rounded, at least 1."
    return tuple(max(1, round(c * width)) for c in channels)


def simple_cnn(bn: bool = True, act: str = "relu", down: str = "stride", n_out: int = 10,
               bn_first: bool = True, width: float = 1.0) -> nn.Sequential:
    "fastbook chapter 13's MNIST CNN: 28x28 -> 14 -> 7 -> 4 -> 2 -> 1, the last conv gives the logits."
    kw = dict(bn=bn, act_name=act, down=down, bn_first=bn_first)
    c = widen((8, 16, 32, 64), width)
    return nn.Sequential(conv(1, c[0], ks=5, **kw), conv(c[0], c[1], **kw), conv(c[1], c[2], **kw),
                         conv(c[2], c[3], **kw), conv(c[3], n_out, act=False, **kw), nn.Flatten())


def body(channels: tuple[int, ...], n_in: int = 1, bn: bool = True, act: str = "relu",
         down: str = "stride", bn_first: bool = True, p_body: float = 0.0) -> nn.Sequential:
    """len(channels) down-sampling stages (a 5x5 first conv, then 3x3): the map shrinks 2**len(channels) times.
    With `p_body`, spatial dropout (whole channels) follows every stage."""
    chans = (n_in, *channels)
    stages = []
    for i in range(len(channels)):
        stages.append(conv(chans[i], chans[i + 1], ks=5 if i == 0 else 3, bn=bn, act_name=act, down=down,
                           bn_first=bn_first))
        if p_body:
            stages[-1].append(nn.Dropout2d(p_body))
    return nn.Sequential(*stages)


def head(nf: int, n_out: int, pool: str = "avg", p: float = 0.0) -> nn.Sequential:
    "Global pooling by name -> flatten -> dropout p -> linear, sized for pools that concatenate."
    return nn.Sequential(global_pool(pool), nn.Flatten(), nn.Dropout(p), nn.Linear(nf * pool_mult(pool), n_out))


def pooled_cnn(channels: tuple[int, ...], n_out: int, pool: str = "avg", p: float = 0.0, **body_kw) -> nn.Sequential:
    "A body and a pooling head: model[0] gives the final feature map, model[1] pools and classifies it."
    return nn.Sequential(body(channels, **body_kw), head(channels[-1], n_out, pool, p))


def fastai_head(nf: int, n_out: int, pool: str | None = None, **kwargs) -> nn.Sequential:
    """fastai's `create_head(nf, n_out, **kwargs)`: concat pool, BN, dropout, linear 512, ReLU, BN, dropout, linear;
    with `pool`, its global pooling layer is the one called `pool` (sized for pools that concatenate)."""
    from fastai.vision.learner import create_head
    if pool is None:
        return create_head(nf, n_out, **kwargs)
    h = create_head(nf, n_out, concat_pool=pool_mult(pool) == 2, **kwargs)
    h[0] = global_pool(pool)
    return h


def fastai_head_cnn(channels: tuple[int, ...], n_out: int, p: float = 0.5, pool: str | None = None,
                    **body_kw) -> nn.Sequential:
    "A body and fastai's `create_head(ps=p)`, its global pooling fastai's concat or the one called `pool`."
    return nn.Sequential(body(channels, **body_kw), fastai_head(channels[-1], n_out, pool, ps=p))


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    "Multiply-accumulates of one forward pass of an input of `input_shape` (C, H, W), by torch's FLOP counter."
    from torch.utils.flop_counter import FlopCounterMode
    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, *input_shape))
    model.train(was_training)
    return counter.get_total_flops() // 2  # a multiply-accumulate is two FLOPs


def receptive_field(stages: int) -> int:
    "Side in px of what one cell of the final map sees: a 5x5 stride-2 conv, then 3x3 stride-2 convs."
    side, jump = 5, 2
    for _ in range(stages - 1):
        side, jump = side + 2 * jump, 2 * jump
    return side

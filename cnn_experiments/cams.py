"""Class activation maps of pooled_cnn models: where in the scene a pooling head looks."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

from . import report as R
from .scenes import scenes_for
from .train import Config, train


@torch.no_grad()
def class_activation_maps(model: torch.nn.Module, x: torch.Tensor, cls: int = 1) -> torch.Tensor:
    """(N, H, W) maps at the input's size: the final feature map weighted by the linear layer's weights for
    `cls` minus the mean of the other classes' (summed over the copies a concatenating pool makes)."""
    model.eval()
    feats = model[0](x)  # (N, C, h, w): the map before global pooling
    w = model[1][-1].weight  # (n_out, C * mult)
    w = w[cls] - torch.cat([w[:cls], w[cls + 1:]]).mean(0)
    w = w.view(-1, feats.shape[1]).sum(0)  # concat pools give [max, avg] copies of each channel
    cam = torch.einsum("nchw,c->nhw", feats, w)
    return F.interpolate(cam[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]


def _scenes(cfg: Config):
    return scenes_for(cfg.canvas, cfg.obj_size, cfg.num_dist, cfg.target, cfg.mode, cfg.n_scenes)[1]


def cam_study(cfgs: list[Config], path: Path, n_show: int = 4) -> tuple[str, pd.DataFrame]:
    """Train each config (seed 0), draw its CAMs on the same held-out scenes, and measure on every held-out
    positive scene whether the CAM's peak falls inside the object's box."""
    import matplotlib.pyplot as plt
    x_raw, y, boxes = _scenes(cfgs[0])
    show = torch.nonzero(y == 1)[:n_show, 0]
    fig, axs = plt.subplots(len(show), len(cfgs) + 1, figsize=(2.6 * (len(cfgs) + 1), 2.6 * len(show)),
                            squeeze=False)
    rows = []
    for j, cfg in enumerate(cfgs):
        learn, metrics = train(cfg, progress=False)
        cams = class_activation_maps(learn.model, learn.dls.valid.x).cpu()
        peak = cams.flatten(1).argmax(1)
        r, c = peak // cams.shape[-1], peak % cams.shape[-1]
        top, left, size = boxes[:, 0], boxes[:, 1], boxes[:, 2]
        inside = (r >= top) & (r < top + size) & (c >= left) & (c < left + size)
        pos = y == 1
        rows.append({"head": cfg.pool, "held-out accuracy (this run)": f"{metrics['accuracy']:.3f}",
                     "positive scenes whose CAM peak is inside the bear's box": f"{inside[pos].float().mean():.3f}",
                     "box's share of the scene (chance)": f"{(size[pos].float() ** 2 / cfg.canvas ** 2).mean():.3f}"})
        for i, k in enumerate(show):
            ax = axs[i, j + 1]
            ax.imshow(x_raw[k, 0].numpy(), cmap="gray")
            ax.imshow(cams[k].numpy(), cmap="inferno", alpha=0.55)
            _box(ax, boxes[k])
            ax.set_xticks([]), ax.set_yticks([])
            if i == 0:
                ax.set_title(f"{cfg.pool} pooling CAM")
    for i, k in enumerate(show):
        axs[i, 0].imshow(x_raw[k, 0].numpy(), cmap="gray")
        _box(axs[i, 0], boxes[k])
        axs[i, 0].set_xticks([]), axs[i, 0].set_yticks([])
    axs[0, 0].set_title("held-out scene")
    fig.suptitle(f"Class activation maps, objects of {cfgs[0].obj_size} px (box): bright = evidence for the bear")
    return R.save_fig(fig, path), pd.DataFrame(rows)


def _box(ax, box):
    import matplotlib.patches as patches
    top, left, size = (int(v) for v in box)
    ax.add_patch(patches.Rectangle((left - 0.5, top - 0.5), size, size, fill=False, ec="cyan", lw=1.2))

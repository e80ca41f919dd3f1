"""Class activation maps of pooled_cnn models: where in the scene a pooling head looks."""
from __future__ import annotations

import copy

import pandas as pd
import torch
import torch.nn.functional as F


@torch.no_grad()
def class_activation_maps(model: torch.nn.Module, x: torch.Tensor, cls: int = 1) -> torch.Tensor:
    """(N, H, W) maps at the input's size: the final feature map weighted by the linear layer's weights for
    `cls` minus the mean of the other classes' (summed over the copies a concatenating pool makes). Computed in
    float64: a map's peak is an argmax, and float32 rounding differs between CPUs enough to move a near-tie."""
    cam = feature_maps(model, x, torch.full((len(x),), cls))
    return F.interpolate(cam[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]


@torch.no_grad()
def feature_maps(model: torch.nn.Module, x: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    "(N, h, w) maps at the final feature map's size, each for its own image's class in `classes`."
    model = copy.deepcopy(model).double().eval()
    device = next(model.parameters()).device
    # (N, C, h, w), before global pooling; in batches, which float64 convolutions on a CPU take at twice the speed
    feats = torch.cat([model[0](b.double().to(device)).cpu() for b in x.split(64)])
    w = model[1][-1].weight.cpu()  # (n_out, C * mult)
    others = (w.sum(0, keepdim=True) - w) / max(len(w) - 1, 1)
    w = (w - others).view(len(w), -1, feats.shape[1]).sum(1)  # concat pools give [max, avg] copies of a channel
    return torch.einsum("nchw,nc->nhw", feats, w[classes.long()])


def peak_inside(cams: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    "Per scene: whether the map's peak falls inside the object's box (top, left, size)."
    peak = cams.flatten(1).argmax(1)
    r, c = peak // cams.shape[-1], peak % cams.shape[-1]
    top, left, size = boxes[:, 0], boxes[:, 1], boxes[:, 2]
    return (r >= top) & (r < top + size) & (c >= left) & (c < left + size)


def peak_words(peaks: dict[str, float], chance: float) -> str:
    "Which head's map points at the object most often, from each head's share of positive scenes peaking in its box."
    if not peaks:
        return "No maps"
    best = max(peaks, key=peaks.get)
    each = ", ".join(f"{h} {v:.3f}" for h, v in peaks.items())
    if peaks[best] <= chance:
        return f"No head's map peaks inside the object's box more often than chance ({each}; chance {chance:.3f})"
    return (f"{best} pooling's map points at the object most often\n(the share of positive scenes whose map peaks "
            f"inside its box: {each}; chance {chance:.3f})")


BLOCKS = 4  # a final map of this many cells a side or fewer is drawn as blocks, not upsampled smoothly


def cam_figure(models: dict[str, torch.nn.Module], x: torch.Tensor, x_raw: torch.Tensor, y: torch.Tensor,
               boxes: torch.Tensor, canvas: int, n_show: int = 4):
    """A figure of each model's maps on the same held-out positive scenes, on one colour scale with its bar, and a
    table: per model, the share of positive scenes whose map peaks inside the object's box (and that by chance)."""
    import matplotlib.patches as patches
    import matplotlib.pyplot as plt
    show = torch.nonzero(y == 1)[:n_show, 0]
    fig, axs = plt.subplots(len(show), len(models) + 1, figsize=(2.6 * (len(models) + 1), 2.6 * len(show)),
                            squeeze=False)
    rows, pos = [], y == 1
    maps = {head: class_activation_maps(model, x).cpu().float() for head, model in models.items()}
    # a map of few cells is drawn as its cells, not smoothed: the reader sees which cell lights up
    cells = {head: feature_maps(model, x[show], torch.full((len(show),), 1)).cpu().float()
             for head, model in models.items()}
    side = next(iter(cells.values())).shape[-1] if cells else 0
    blocks = side <= BLOCKS
    # one scale for every panel, symmetric about 0: the heads' evidence compared in the same units
    scale = float(torch.cat([m[show].flatten() for m in maps.values()]).abs().quantile(0.99)) or 1.0
    shown = None
    h, w = x_raw.shape[-2:]

    def draw(ax, k, cam=None):
        ax.imshow(x_raw[k, 0].numpy(), cmap="gray")
        top, left, size = (int(v) for v in boxes[k])
        ax.add_patch(patches.Rectangle((left - 0.5, top - 0.5), size, size, fill=False, ec="lime", lw=1.2))
        ax.set_xticks([]), ax.set_yticks([])
        if cam is not None:
            return ax.imshow(cam.numpy(), cmap="RdBu_r", vmin=-scale, vmax=scale, alpha=0.6, interpolation="nearest",
                             extent=(-0.5, w - 0.5, h - 0.5, -0.5))
    peaks, chance = {}, float((boxes[pos, 2].float() ** 2 / canvas**2).mean())
    for j, (head, cams) in enumerate(maps.items()):
        inside = float(peak_inside(cams, boxes)[pos].float().mean())
        peaks[head] = inside
        rows.append({"head": head, "positive scenes whose map peaks inside the bear's box": f"{inside:.3f}",
                     "the box's share of the scene (chance)": f"{chance:.3f}"})
        for i, k in enumerate(show):
            shown = draw(axs[i, j + 1], k, cells[head][i] if blocks else cams[k])
        axs[0, j + 1].set_title(f"{head} pooling CAM")
    for i, k in enumerate(show):
        draw(axs[i, 0], k)
    axs[0, 0].set_title("held-out scene")
    if shown is not None:
        fig.colorbar(shown, ax=axs, shrink=0.6, label="evidence for the bear, per position (red: for, blue: against)")
    fig.suptitle(peak_words(peaks, chance) + "\n"
                 + f"Objects of {int(boxes[0, 2])} px (green box); the {side}x{side} final map "
                 + ("drawn as its cells" if blocks else "upsampled smoothly") + "; one colour scale for every head")
    return fig, pd.DataFrame(rows)

"""Claim C1: the lesson's hand-made 3x3 top-edge kernel, slid over a real digit, then ReLU.

    python -m experiments.edge_filter        # = cnn-exp run edge_filter
"""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

from cnn_experiments import report as R
from cnn_experiments.data import mnist_embedded

TITLE = "edge_filter: a hand-made top-edge kernel on real digits"
CLAIM = ("C1: a 3x3 'top edge' kernel slid over an image gives large outputs on horizontal top edges "
         "(dark above, ink below); ReLU then zeroes the negatives.")
PROFILES = {"quick": dict(seeds=1), "full": dict(seeds=1)}
TOP_EDGE = torch.tensor([[-1.0, -1.0, -1.0], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
# fastbook's own kernel: rows top to bottom, so it fires where ink (high values) starts below a dark row.
# Written the other way up (top row +1) it would fire on bottom edges of the ink instead.


def grid(profile: str, runs=None) -> list:
    return []  # no training: the experiment is the convolution itself


def edge_maps(x: torch.Tensor, kernel: torch.Tensor = TOP_EDGE) -> tuple[torch.Tensor, torch.Tensor]:
    "The raw feature map (same size, zero padding) of `x` (N, 1, H, W) and the map after ReLU."
    raw = F.conv2d(x, kernel[None, None], padding=1)
    return raw, F.relu(raw)


def is_top_edge(x: torch.Tensor, row: int, col: int) -> bool:
    "A pixel is on a top edge when the pixel below has more ink than the pixel above."
    below = x[min(row + 1, x.shape[0] - 1), col]
    above = x[row - 1, col] if row > 0 else torch.tensor(0.0)
    return bool(below > above)


def peak_stats(digits: torch.Tensor) -> pd.DataFrame:
    "Per digit: where the raw map peaks, whether that is a top edge, and the fraction ReLU zeroes."
    raw, act = edge_maps(digits)
    rows = []
    for x, r, a in zip(digits[:, 0], raw[:, 0], act[:, 0]):
        i = int(r.argmax())
        row, col = divmod(i, r.shape[1])
        rows.append(dict(peak=float(r.max()), row=row, col=col, top_edge=is_top_edge(x, row, col),
                         negative_frac=float((r < 0).float().mean()), zeroed_by_relu=float((a == 0).float().mean())))
    return pd.DataFrame(rows)


def figure(x: torch.Tensor, path: Path) -> str:
    import matplotlib.pyplot as plt
    raw, act = edge_maps(x[None])
    fig, axs = plt.subplots(1, 3, figsize=(9, 3.3))
    lim = float(raw.abs().max())
    for ax, img, title, kw in [(axs[0], x[0], "input digit", dict(cmap="gray_r")),
                               (axs[1], raw[0, 0], "top-edge kernel output", dict(cmap="RdBu_r", vmin=-lim, vmax=lim)),
                               (axs[2], act[0, 0], "after ReLU", dict(cmap="RdBu_r", vmin=-lim, vmax=lim))]:
        ax.imshow(img.numpy(), **kw)
        ax.set_title(title), ax.set_xticks([]), ax.set_yticks([])
    fig.suptitle("The top-edge kernel is large (red) where ink begins below a dark row; ReLU keeps only that")
    return R.save_fig(fig, path)


def report(runs: pd.DataFrame, out: Path, profile: str) -> tuple[str, str]:
    d = mnist_embedded()
    digits = d.x_valid
    stats = peak_stats(digits)
    share = stats["top_edge"].mean()
    per_class = stats.assign(label=d.y_valid.numpy()).groupby("label")["top_edge"].mean()
    supported = share >= 0.95
    body = "\n".join([
        f"Data: the {len(digits)} held-out embedded MNIST digits; kernel {TOP_EDGE.int().tolist()} (top to bottom).",
        "", figure(digits[0], out / f"{profile}_edge_filter.png"), "",
        "| measure | value |", "|---|---|",
        f"| digits whose strongest response sits on a top edge | {share:.4f} "
        f"({int(stats['top_edge'].sum())} of {len(stats)}) |",
        f"| lowest share for one class | {per_class.min():.4f} (digit {int(per_class.idxmin())}) |",
        f"| share of map positions that are negative before ReLU (mean) | {stats['negative_frac'].mean():.4f} |",
        f"| share of map positions ReLU sets to zero (mean, zeros included) | {stats['zeroed_by_relu'].mean():.4f} |",
        "", "## Verdict", "",
        f"C1 is **{'supported' if supported else 'not supported'}**: the rule is at least 95% of digits with "
        f"the peak on a top edge (pixel below inkier than the pixel above); measured {share:.2%}."])
    finding = (f"the top-edge kernel peaks on a top edge in {share:.1%} of {len(stats)} held-out digits: "
               f"{'supported' if supported else 'not supported'}.")
    return body, finding


if __name__ == "__main__":
    from cnn_experiments.cli import main
    sys.exit(main(["run", "edge_filter", *sys.argv[1:]]))

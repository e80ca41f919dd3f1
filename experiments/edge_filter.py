"""Claim C1: the lesson's hand-made 3x3 top-edge kernel, slid over a real digit, then ReLU.

    cnn-exp run edge_filter                 # = python -m experiments.edge_filter

The first part is a demonstration by construction: the kernel is -1 above, +1 below, so it peaks where ink
begins below a dark row. The second part is a measurement: do the first-layer kernels that mnist_scratch's
networks learn look like this kernel (any orientation), more than the same kernels at initialisation?
"""
from __future__ import annotations

import sys

import pandas as pd
import torch
import torch.nn.functional as F

from cnn_experiments.data.mnist import mnist_embedded
from cnn_experiments.models.kernels import TOP_EDGE, edge_match
from cnn_experiments.studies.experiment import Experiment

TITLE = "edge_filter: does a hand-made kernel find top edges, and does a CNN learn such kernels?"
CLAIM = ("C1: a 3x3 'top edge' kernel slid over an image gives large outputs on horizontal top edges "
         "(dark above, ink below); ReLU then zeroes the negatives.")
PROFILES = {"quick": dict(seeds=1)}


def grid(profile: str, runs=None) -> list:
    return []  # no training here: the convolution itself, and mnist_scratch's saved kernels


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


def figure(x: torch.Tensor):
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
    return fig


def learned(ctx) -> tuple[list[str], str]:
    "mnist_scratch's learned kernels against the same kernels at initialisation (its most thorough profile)."
    from cnn_experiments.runs.store import Store
    from cnn_experiments.statistics import stats
    from experiments import mnist_scratch as M
    store = Store(ctx.results / "mnist_scratch" / "runs.csv")
    runs = store.read().rows
    # the best setting's cell (the same in every profile) and, in the confirmatory profile, the shuffled control
    names = {c.cell_id: name for p in M.PROFILES for c, (name, _, _) in zip(M.grid(p), M.rows(p))
             if name in (M.BEST, M.CONTROL[0])}
    runs = runs[runs["cell_id"].isin(names)] if len(runs) else runs

    def made(p):  # the profile's seeds of the cells it runs
        seeds = M.EXPERIMENT.seed_list(p)
        mine = runs[runs["seed"].astype(int).isin(seeds) & runs["cell_id"].map(names).isin([r[0] for r in M.rows(p)])]
        return mine if len(mine) == len(seeds) * (2 if M.PROFILES[p].get("control") else 1) else None
    profile = next((p for p in ("confirm", "full", "quick") if made(p) is not None), None)
    if profile is None:
        return ["No mnist_scratch runs yet: `cnn-exp run mnist_scratch --profile full` makes the kernels."], \
            "learned kernels not measured (no mnist_scratch runs)"
    runs = M.with_kernels(made(profile).assign(setting=lambda d: d["cell_id"].map(names)), store)
    for rotations, name in ((1, "top-edge only"), (4, "any orientation")):
        runs[name] = [float(edge_match(store.weights(r)[M.FIRST_CONV][:, 0], rotations).mean())
                      if s != M.INIT else float("nan") for r, s in zip(runs["run_id"], runs["setting"])]
    family = [stats.Comparison(
        "learned kernels' match with the hand-made kernel (any orientation): trained - at initialisation",
        {"setting": M.BEST}, {"setting": M.INIT}, metric="edge_match", margin=0.02)]
    if M.PROFILES[profile].get("control"):
        family.append(stats.Comparison(
            "learned kernels' match (any orientation): true labels - shuffled labels (the control)",
            {"setting": M.BEST}, {"setting": M.CONTROL[0]}, metric="edge_match", margin=0.02))
    table = ctx.compare(runs, family)
    word = stats.verdict(table)
    trained = runs[runs["setting"] == M.BEST]
    lines = [f"mnist_scratch's {profile} profile, setting {M.BEST}: the 8 first-layer 5x5 kernels of each seed. "
             "Match: a kernel's largest |cosine| with the hand-made 3x3 kernel placed anywhere inside it (both "
             "centred); top-edge only, or turned to any of four orientations (left, bottom and right edges).", "",
             f"Mean match over seeds: top-edge only {trained['top-edge only'].mean():.3f}, any orientation "
             f"{trained['any orientation'].mean():.3f}; at initialisation (any orientation) "
             f"{runs[runs['setting'] == M.INIT]['edge_match'].mean():.3f}"
             + (f"; trained on shuffled labels (any orientation) "
                f"{runs[runs['setting'] == M.CONTROL[0]]['edge_match'].mean():.3f}" if len(family) > 1 else "")
             + ".", "", f"**C1's learned-kernel check is {word}.**", "", stats.markdown(table)]
    than = "at initialisation" + (" and trained on shuffled labels" if len(family) > 1 else "")
    return lines, f"learned first-layer kernels match it better than {than}: {word}"


def report(ctx) -> tuple[str, str]:
    d = mnist_embedded()
    digits = d.x_valid
    st = peak_stats(digits)
    share = st["top_edge"].mean()
    per_class = st.assign(label=d.y_valid.numpy()).groupby("label")["top_edge"].mean()
    learned_lines, learned_word = learned(ctx)
    body = "\n".join([
        f"Data: the {len(digits)} held-out embedded MNIST digits; kernel {TOP_EDGE.int().tolist()} (top to bottom).",
        "", ctx.figure(figure(digits[0]), f"{ctx.profile}_edge_filter.png"), "",
        "## The kernel on real digits: a demonstration by construction", "",
        "The kernel subtracts the row above from the row below, so its output is largest where ink begins under "
        "a dark row: what the numbers show follows from the kernel itself, they are no test of a hypothesis.", "",
        "| measure | value |", "|---|---|",
        f"| digits whose strongest response sits on a top edge | {share:.4f} ({int(st['top_edge'].sum())} of "
        f"{len(st)}) |",
        f"| lowest share for one class | {per_class.min():.4f} (digit {int(per_class.idxmin())}) |",
        f"| share of map positions that are negative before ReLU (mean) | {st['negative_frac'].mean():.4f} |",
        f"| share of map positions ReLU sets to zero (mean, zeros included) | {st['zeroed_by_relu'].mean():.4f} |",
        "", "## Do learned kernels look like it?", "", *learned_lines])
    finding = (f"by construction, the top-edge kernel peaks on a top edge in {share:.1%} of {len(st)} held-out "
               f"digits; {learned_word}.")
    return body, finding


EXPERIMENT = Experiment(name="edge_filter", title=TITLE, claim=CLAIM, profiles=PROFILES, grid=grid,
                        report=report, needs_runs=False)

if __name__ == "__main__":
    from cnn_experiments.cli import main
    sys.exit(main(["run", "edge_filter", *sys.argv[1:]]))

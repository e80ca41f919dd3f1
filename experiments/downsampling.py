"""Claim C5: stride-2 convolution, max pool and average pool all shrink the activations; which one matters?

    cnn-exp run downsampling --profile full      # = python -m experiments.downsampling --profile full

All three halve the map, so the lesson's claim is true by construction; what it leaves open is whether the
choice changes accuracy. The pooled ways run each convolution at stride 1 and cost about 4x the arithmetic of
a stride-2 convolution, so they are compared with stride at matched cost too: stride-2 convolutions widened
until they do as many multiply-accumulates. Each arm gets its own learning rate from the declared search.

The `confirm` profile is the full pilot's confirmatory study, declared before its runs, and it tests what the
claim says: the way down changes accuracy. In the pilot, at matched cost, pooling beat the stride body on scenes
(+0.030 to +0.035) and by less on digits; so the prediction per task is that each pooled way beats the stride-2
body widened to its cost (paired by seed, margin 0.01). 25 fresh seeds (1000 on; the scenes' seeds also draw
their scenes), the power rule's count from the pilot's spread; rate grids a step wider at both ends, since
six of the pilot's eight chosen rates sat at an edge.
"""
from __future__ import annotations

import sys
from functools import cache

import pandas as pd

from cnn_experiments.models import cnns
from cnn_experiments.reports import report as R
from cnn_experiments.runs.config import Config
from cnn_experiments.statistics.stats import BELOW, Comparison
from cnn_experiments.studies.experiment import Experiment
from cnn_experiments.sweeps import search as S

TITLE = "downsampling: does the way down (stride-2 conv, max pool or avg pool) change accuracy, at equal cost?"
CLAIM = ("C5: a stride-2 convolution, a stride-1 convolution + 2x2 max pool and a stride-1 convolution + 2x2 "
         "average pool all halve the map; which one is used changes accuracy and cost.")
PROFILES = {"quick": dict(seeds=2, lrs=None), "full": dict(seeds=5, lrs="searched"),
            # the full pilot's confirmatory study (module docstring): minutes on 2 CPU cores
            "confirm": dict(seeds=25, first_seed=1000, lrs="wide", vary_data=True)}
MARGIN = 0.01  # declared: within 1 point of held-out accuracy, the way down does not matter
TASKS = {  # name -> (the run the ways down share, the searched rates)
    "MNIST digits": (Config(data="mnist", arch="simple_cnn", epochs=5, bs=64), (0.03, 0.1, 0.3)),
    "scenes, 16 px object in 64 px": (Config(data="scenes", arch="pooled_cnn", canvas=64, channels=(8, 16, 32, 64),
                                             obj_size=16, n_scenes=3000, epochs=5, pool="avg"), (3e-3, 1e-2, 3e-2)),
}
ARMS = ("stride", "stride, matched cost", "maxpool", "avgpool")
# confirm's grids; MNIST's amended before any run at 0.003: stride and maxpool chose 0.01, the declared bottom
WIDE = {"MNIST digits": (0.003, 0.01, 0.03, 0.1, 0.3, 1.0),
        "scenes, 16 px object in 64 px": (1e-3, 3e-3, 1e-2, 3e-2, 0.1)}


def cost(cfg: Config) -> tuple[int, int]:
    "Parameters and multiply-accumulates per image of the config's model."
    from cnn_experiments.training.train import build_model
    n_out, side = (10, 28) if cfg.data == "mnist" else (2, cfg.canvas)
    m = build_model(cfg, n_out)
    return cnns.n_params(m), cnns.macs(m, (1, side, side))


@cache
def matched_width(task: str) -> float:
    "The stride-2 body's width (in steps of 0.05) whose multiply-accumulates come closest to the max-pool body's."
    base = TASKS[task][0]
    target = cost(base.replace(down="maxpool"))[1]
    macs = cache(lambda i: cost(base.replace(width=round(1 + 0.05 * i, 2)))[1])
    lo, hi = 0, 60  # the cost grows with the width: bisect for the first width at or above the target
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (mid + 1, hi) if macs(mid) < target else (lo, mid)
    best = min((i for i in (lo - 1, lo) if i >= 0), key=lambda i: abs(macs(i) - target))
    return round(1 + 0.05 * best, 2)


def arm_config(task: str, arm: str, profile: str = "full") -> Config:
    base = TASKS[task][0].replace(vary_data=PROFILES[profile].get("vary_data", False))
    if arm == "stride, matched cost":
        return base.replace(width=round(matched_width(task), 2))
    return base.replace(down=arm)


def cells() -> list[Config]:
    return [arm_config(t, a) for t in TASKS for a in ARMS]


def rates(task: str, profile: str) -> tuple[float, ...]:
    lrs, how = TASKS[task][1], PROFILES[profile]["lrs"]
    return lrs if how == "searched" else WIDE[task] if how == "wide" else (lrs[1],)


def arms(task: str, profile: str) -> list[Config]:
    return [arm_config(task, a, profile) for a in ARMS]


def search(profile: str, runs: pd.DataFrame | None = None) -> list[Config]:
    first = EXPERIMENT.seed_list(profile).start
    return [c for t in TASKS for c in S.search_runs(arms(t, profile), rates(t, profile), first)]


def grid(profile: str, runs=None) -> list[Config]:
    first = EXPERIMENT.seed_list(profile).start
    return [c for t in TASKS for c in S.choose(arms(t, profile), rates(t, profile), runs, seed=first)]


def label(runs: pd.DataFrame, profile: str) -> pd.DataFrame:
    runs = runs[runs["split"] == "heldout"]
    arm = {}
    for t in TASKS:
        for a in ARMS:
            for lr in {*TASKS[t][1], *WIDE[t]}:
                arm[arm_config(t, a, profile).replace(lr=lr).cell_id] = (t, a)
    keys = runs["cell_id"].map(arm)
    return runs.assign(task=[k[0] for k in keys], arm=[k[1] for k in keys])


def comparisons(profile: str) -> list[Comparison]:
    return confirmed() if profile == "confirm" else pilot()


def confirmed() -> list[Comparison]:
    """The confirmatory family (module docstring): per task, each pooled way down beats the stride-2 body widened to
    its cost, paired by seed (the seed draws the arms' shared data and batch order)."""
    at = lambda t, a: {"task": t, "arm": a}
    # the digits' held-out set is fixed, so its items' error joins; scenes are drawn afresh per seed
    return [Comparison(f"{t}: {a} - stride at matched cost", at(t, a), at(t, "stride, matched cost"), margin=MARGIN,
                       heldout_items=t.startswith("MNIST")) for t in TASKS for a in ("maxpool", "avgpool")]


def pilot() -> list[Comparison]:
    """Per task, at matched cost: each pooled way against the widened stride-2 body (different models: unpaired),
    and max against average pooling (the same weights' shapes and init: paired by seed); equivalence within MARGIN."""
    out = []
    for t in TASKS:
        at = lambda a, t=t: {"task": t, "arm": a}
        out += [Comparison(f"{t}: maxpool - stride at matched cost", at("maxpool"), at("stride, matched cost"),
                           expect="equivalent", paired=False, margin=MARGIN),
                Comparison(f"{t}: avgpool - stride at matched cost", at("avgpool"), at("stride, matched cost"),
                           expect="equivalent", paired=False, margin=MARGIN),
                Comparison(f"{t}: maxpool - avgpool", at("maxpool"), at("avgpool"), expect="equivalent",
                           margin=MARGIN)]
    return out


def verb(r) -> str:
    "A declared row (a way down minus the widened stride-2 body) in words: beats, trails, matches, or not resolved."
    way, o, up = r["comparison"].split(": ")[1].split(" - ")[0], r["outcome"], r["effect"] > 0
    if o in ("indicative", "inconclusive"):
        return f"{way} against stride at matched cost: " + ("too few seeds to say" if o == "indicative" else
                                                            "not resolved")
    if o == "equivalent" or (o == "supported" and r["expect"] == "equivalent"):
        return f"{way} matches stride at matched cost (within the margin)"
    if o == BELOW:
        return f"{way} {'beats' if up else 'trails'} stride at matched cost, by less than the margin"
    return f"{way} {'beats' if up else 'trails'} stride at matched cost"


def frontier(s: pd.DataFrame, costs: dict, table: pd.DataFrame | None = None, word: str = ""):
    """Held-out accuracy against cost per task, each way down; a panel's title says what its declared rows found
    (`table`), the figure's the verdict (`word`)."""
    import matplotlib.pyplot as plt
    fig, axs = plt.subplots(1, len(TASKS), figsize=(12, 4.4))
    for ax, (task, g) in zip(axs, s.groupby("task", sort=False)):
        for i, r in enumerate(g.itertuples()):
            macs = costs[(task, r.arm)][1] * (1 + 0.06 * (i - (len(g) - 1) / 2))  # side by side where costs tie
            err = [[r.mean - r.lo], [r.hi - r.mean]] if r.n > 1 else None  # the interval within [0, 1]
            ax.errorbar(macs, r.mean, yerr=err, marker="o", capsize=3, label=r.arm, color=f"C{list(ARMS).index(r.arm)}")
        ax.set_xscale("log"), ax.set_xlabel("multiply-accumulates per image (log scale)")
        ax.set_ylabel("held-out accuracy (fraction;\nmean over seeds, 95% t-interval)")
        rows = table[table["comparison"].str.startswith(f"{task}: ") & table["comparison"].str.endswith(
            "stride at matched cost")] if table is not None else []
        said = "\n".join(verb(r) for _, r in rows.iterrows()) if len(rows) else ""
        ax.set_title(f"{task}\n{said}" if said else task, fontsize=9)
    axs[0].legend(fontsize=8, title="way down", title_fontsize=8)
    fig.suptitle("Accuracy against cost, each way down and stride-2 widened to the pooled ways' cost"
                 + (f": C5 {word}" if word else "") + "\n(points at one cost set side by side)", fontsize=11)
    fig.tight_layout()
    return fig


def report(ctx) -> tuple[str, str]:
    declared = {name: i for i, name in enumerate([*TASKS, *ARMS])}  # tables in the declared order
    runs = ctx.runs.assign(s_per_epoch=ctx.runs["seconds"] / ctx.runs["epochs"])
    runs = runs.sort_values(["task", "arm"], key=lambda col: col.map(declared), kind="stable")
    s = R.summarize(runs, ["task", "arm"])
    secs = R.summarize(runs, ["task", "arm"], "s_per_epoch")
    costs = {(t, a): cost(arm_config(t, a)) for t in TASKS for a in ARMS}
    lr = {(r.task, r.arm): r.lr for r in runs.drop_duplicates(["task", "arm"]).itertuples()}
    table = pd.DataFrame({
        "task": s["task"], "way down": s["arm"], "width": [arm_config(t, a).width for t, a in zip(s["task"], s["arm"])],
        "learning rate": [f"{lr[(t, a)]:g}" for t, a in zip(s["task"], s["arm"])],
        "held-out accuracy": R.cells(s, 4),
        "parameters": [f"{costs[(t, a)][0]:,}" for t, a in zip(s["task"], s["arm"])],
        "MACs per image": [f"{costs[(t, a)][1]:,}" for t, a in zip(s["task"], s["arm"])],
        "s per epoch (1 thread)": [f"{m:.2f}" for m in secs["mean"]], "n": s["n"]})
    word, verdict = R.verdict_section(ctx.table, "C5")
    first = EXPERIMENT.seed_list(ctx.profile).start
    lr_tables = [S.table(arms(t, ctx.profile), rates(t, ctx.profile), ctx.store.read().rows,
                         lambda c, t=t: f"{t}: {ARMS[arms(t, ctx.profile).index(c)]}", seed=first) for t in TASKS]
    body = "\n".join([
        "The three ways keep the same channels and final map size; the pooled ways run each conv at stride 1 and "
        "so cost more arithmetic for the same parameters. The matched-cost arm widens every stage of the stride-2 "
        "body until its multiply-accumulates come closest to the max-pool body's. Scenes: the pooling study's "
        "quick geometry, avg head. Tested: at matched cost, does the way down change held-out accuracy by more "
        f"than {MARGIN}? The lesson claims only that all three shrink the map, which they do by construction.", "",
        table.to_markdown(index=False), "",
        ctx.figure(frontier(s, costs, ctx.table, word), f"{ctx.profile}_frontier.png"), "",
        *verdict, "", "## Learning rate, searched per arm", "",
        "\n\n".join(t.to_markdown(index=False) for t in lr_tables) if PROFILES[ctx.profile]["lrs"] else
        "One declared rate per task (the middle of its search grid): " + ", ".join(
            f"{t}: {rates(t, ctx.profile)[0]:g}" for t in TASKS) + ".", "",
        "Seconds per epoch are from this run's machine, shared with other work: read them as rough ratios."])
    t = ctx.table
    if ctx.profile == "confirm" and not ctx.partial:
        answers, rec = found(t)
        body = "\n".join(["## What it found", "", *[f"- {x}" for x in answers], "", f"**Recommendation:** {rec}.",
                          "", body, "", "## Power", "",
                          ctx.power_section(t, "full", confirmed(), PROFILES["confirm"]["seeds"])])
        return body, f"C5 {word}: " + " ".join(a.replace("**", "") for a in answers) + f" Recommendation: {rec}."
    finding = (f"at matched cost, {int((t['outcome'] == 'equivalent').sum())} of {len(t)} comparisons equivalent "
               f"within ±{MARGIN} (" + "; ".join(f"{r.comparison} {R.signed(r.effect)}: {r.outcome}"
                                                for r in t.itertuples()) + f"): C5 {word}.")
    return body, finding


def found(table: pd.DataFrame) -> tuple[list[str], str]:
    "Per task, each pooled way against the stride body at its cost, in words; the advice the tests support."
    out, wins = [], {}
    for t in TASKS:
        rows = table[table["comparison"].str.startswith(f"{t}: ")]
        wins[t] = [r.comparison.split(": ")[1].split(" - ")[0] for r in rows.itertuples() if r.outcome == "supported"]
        out.append(f"**{t}**: " + "; ".join(f"{r.comparison.split(': ')[1]} {r.effect:+.3f} [{r.ci_lo:+.3f}, "
                                            f"{r.ci_hi:+.3f}] ({r.outcome})" for r in rows.itertuples()) + ".")
    where = [t for t in TASKS if wins[t]]
    rec = (("where arithmetic is not the limit, go down by pooling: at the same multiply-accumulates it is more "
            "accurate than a wider stride-2 body on " + " and ".join(where)) if where else
           "no way down resolved better than stride-2 at matched cost: take the cheaper stride-2 convolution")
    return out, rec


EXPERIMENT = Experiment(name="downsampling", title=TITLE, claim=CLAIM, profiles=PROFILES, grid=grid, report=report,
                        comparisons=comparisons, search=search, label=label)

if __name__ == "__main__":
    from cnn_experiments.cli import main
    sys.exit(main(["run", "downsampling", *sys.argv[1:]]))

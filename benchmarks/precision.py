"""bf16 autocast and channels_last against fp32: their speed and whether they keep accuracy, from one run.

    python benchmarks/precision.py                     # CPU, the pooling study's quick geometry (64 px)
    python benchmarks/precision.py --profile medium --sizes 20   # 112 px, the medium and confirm studies' geometry

Every setting trains the same pooling cells (sizes x heads) for the same seeds, at the rates the committed
search chose (or the profile's one declared rate), one run at a time as a sweep runs them. The report gives each
setting's training time relative to fp32 and whether its held-out accuracy is equivalent to fp32's within a
declared margin: per seed, the setting's accuracy minus fp32's averaged over the cells (the settings share data,
batch order and init), a paired TOST over seeds, Holm over the settings, with the power to call a true
difference of 0 equivalent. The bf16 settings run only where bf16 is computed natively (a GPU, or a CPU with
AVX512_BF16 or AMX): elsewhere autocast is emulated, several times slower, and a run refuses it.
"""
from __future__ import annotations

import sys
from argparse import ArgumentTypeError
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cnn_experiments.errors import UserError
from cnn_experiments.reports import benchmark as B
from cnn_experiments.runs.machine import native_bf16
from cnn_experiments.runs.store import Store
from cnn_experiments.statistics import stats
from cnn_experiments.training.train import device_name, run, tensors
from experiments import pooling

SETTINGS = {"fp32": dict(precision="fp32", channels_last=False), "bf16": dict(precision="bf16", channels_last=False),
            "channels_last": dict(precision="fp32", channels_last=True),
            "bf16 + channels_last": dict(precision="bf16", channels_last=True)}  # whatever the profile declares
MARGIN = 0.01  # declared: within 1 point of fp32's held-out accuracy, a setting keeps accuracy
MEASURES = ("cnn_experiments/training/callbacks.py", "cnn_experiments/training/train.py",
            "cnn_experiments/models/cnns.py")


def parser() -> B.Parser:
    p = B.Parser(prog="precision.py", description="bf16 autocast and channels_last against fp32")
    p.add_argument("--device", default="cpu", choices=B.DEVICES)
    p.add_argument("--profile", default="quick", choices=tuple(pooling.PROFILES),
                   help="the pooling profile's geometry and epochs")
    p.add_argument("--sizes", type=sizes, default="16,20", help="object sizes in px, comma-separated")
    p.add_argument("--heads", default="avg,max", help="pooling heads, comma-separated")
    p.add_argument("--seeds", type=B.positive_int, default=10, help="seeds per cell")
    p.add_argument("--results", default="results", help="where the committed search runs are (for the rates)")
    B.output_options(p)
    return p


def sizes(text: str) -> list[int]:
    "An argparse type: object sizes in px, comma-separated whole numbers."
    try:
        return [B.positive_int(s) for s in text.split(",")]
    except ArgumentTypeError:
        raise ArgumentTypeError(f"{text!r} is not a comma-separated list of sizes in px, such as 16,20") from None


def rate(profile: str, chosen: dict, key: tuple) -> float:
    "A cell's rate: the committed search's choice, or the profile's one declared rate; else a one-line error."
    declared = pooling.PROFILES[profile]["lrs"]
    if key in chosen or len(declared) == 1:
        return chosen.get(key, declared[0])
    raise UserError(f"--sizes: {key[1]} px is not searched in the {profile} profile; its sizes are "
                    + ",".join(map(str, pooling.PROFILES[profile]["sizes"])))


def settings(device: str) -> dict[str, dict]:
    "The settings to measure: bf16 only where it is computed natively (a GPU, or a CPU with AVX512_BF16 or AMX)."
    bf16 = device != "cpu" or native_bf16()
    return {n: kw for n, kw in SETTINGS.items() if bf16 or kw["precision"] != "bf16"}


def main(a) -> None:
    measured = settings(a.device)
    chosen = pooling.chosen_lrs(a.profile, Store(Path(a.results) / "pooling" / "runs.csv").read().rows)
    canvas = pooling.PROFILES[a.profile]["canvas"]
    cells = [pooling.base(a.profile).replace(obj_size=s, pool=h, lr=rate(a.profile, chosen, (canvas, s, h)),
                                             device=a.device)
             for s in a.sizes for h in a.heads.split(",")]
    for c in cells:
        tensors(c)  # the scenes are generated (and cached) before any clock starts
    run(cells[0].replace(epochs=1))  # warm-up: first-call allocations
    rows = [dict(setting=name, cell=f"{c.obj_size} px {c.pool}", seed=s, **run(c.replace(seed=s, **kw)))
            for name, kw in measured.items() for c in cells for s in range(a.seeds)]
    runs = pd.DataFrame(rows)
    seconds = runs.groupby("setting")["seconds"].sum()
    # one statistic per seed: the cells' mean accuracy (each seed's cells share its data and init across settings)
    per_seed = runs.groupby(["setting", "seed"], as_index=False)["accuracy"].mean()
    family = [stats.Comparison(f"{name} - fp32, mean over the cells", dict(setting=name), dict(setting="fp32"),
                               expect="equivalent", margin=MARGIN) for name in measured if name != "fp32"]
    table = stats.compare(per_seed, family)
    kept = {name: table.loc[table["comparison"].str.startswith(name + " -"), "outcome"].item() == "equivalent"
            for name in measured if name != "fp32"}
    power = {name: table.loc[table["comparison"].str.startswith(name + " -"), "power"].item() for name in kept}
    faster = [n for n in kept if seconds[n] < seconds["fp32"] and kept[n]]
    cells_table = runs.pivot_table(index="cell", columns="setting", values="accuracy", aggfunc="mean")[list(measured)]
    n_cells = len(cells)
    text = "\n".join([
        "# Benchmark: bf16 autocast and channels_last against fp32", "",
        f"**Result:** on {device_name(a.device)}, {canvas} px scenes, training time relative to fp32: "
        + ", ".join(f"{n} {seconds[n] / seconds['fp32']:.2f}x" for n in kept)
        + f"; held-out accuracy equivalent to fp32's within ±{MARGIN} (mean over {n_cells} cells, {a.seeds} seeds): "
        + ", ".join(f"{n} {'yes' if kept[n] else 'not shown'} (power {power[n]:.0%})" for n in kept)
        + "; faster and equivalent: " + (", ".join(faster) or "none")
        + ("" if len(measured) == len(SETTINGS) else "; bf16 not measured: this CPU has no native bf16, so autocast "
           "would be emulated (several times slower than fp32) and a run refuses it") + ".", "",
        *B.benchmark_provenance(f"python benchmarks/precision.py --device {a.device} --profile {a.profile} --sizes "
                              f"{','.join(map(str, a.sizes))} --heads {a.heads} --seeds {a.seeds}", MEASURES),
        f"- work: the pooling {a.profile} geometry ({canvas} px scenes, {pooling.PROFILES[a.profile]['epochs']} "
        f"epochs), {n_cells} cells x {a.seeds} seeds per setting, one run at a time; seconds are training time "
        "(fit), summed; scoring is fp32 in every setting", "",
        "| setting | seconds | time vs fp32 |", "|---|---|---|",
        *[f"| {n} | {seconds[n]:.1f} | {seconds[n] / seconds['fp32']:.2f}x |" for n in measured], "",
        "## Accuracy kept?", "",
        f"Declared: a setting keeps accuracy when the per-seed mean over the cells of its held-out accuracy minus "
        f"fp32's lies within ±{MARGIN} (paired TOST over seeds, Holm over the {len(kept)} settings). Power: the "
        "chance this design calls a true difference of 0 equivalent, from the spread seen.", "",
        stats.markdown(table), "",
        "Held-out accuracy per cell and setting (mean over seeds; numbers, not tests):", "",
        cells_table.to_markdown(floatfmt=".4f"), ""])
    geometry = "" if a.profile == "quick" else f"_{a.profile}"
    B.write_benchmark(text, B.benchmark_file(f"precision_{a.device}{geometry}", a))


if __name__ == "__main__":
    sys.exit(B.script(parser(), main))

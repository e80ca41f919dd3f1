"""What the head comparison on one's own folder costs: 3 heads x 5 seeds on 200 photos, at 224 px and at 128 px,
and at 128 px with `--channels-last` (and `--precision bf16` where the CPU computes bf16 natively).

    python benchmarks/folder_cost.py          # writes benchmark_results/folder_cost_cpu.md

The folder is `sample_folder(per_class=50)`: 200 real photos in 4 classes. Each setting is the README's command,
`cnn-exp run pooling --data FOLDER` (EfficientNet-Lite0, fine_tune(4), the default heads and seeds), timed from
start to its report, into a throwaway results folder. Target: the 224 px comparison in 30 minutes or less.
The fast setting's time is a ratio to fp32's at the same size, from the same run of this script.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cnn_experiments.data.folders import sample_folder
from cnn_experiments.errors import UserError
from cnn_experiments.own_images.heads import HEADS, run_heads
from cnn_experiments.reports import benchmark as B
from cnn_experiments.runs.machine import native_bf16
from cnn_experiments.sweeps.executors import default_jobs
from cnn_experiments.training.train import device_name

TARGET_MIN = 30
MEASURES = ("cnn_experiments/training/folder.py", "cnn_experiments/own_images/heads.py",
            "cnn_experiments/training/train.py", "cnn_experiments/models/pretrained.py",
            "cnn_experiments/training/callbacks.py", "cnn_experiments/sweeps/sweep.py")


def parser() -> B.Parser:
    p = B.Parser(prog="folder_cost.py", description="wall time of the head comparison on a folder of 200 photos")
    p.add_argument("--per-class", type=B.positive_int, default=50, help="photos per class (4 classes)")
    p.add_argument("--seeds", type=B.positive_int, default=5, help="seeds per head")
    p.add_argument("--epochs", type=B.positive_int, default=4, help="fine_tune epochs")
    p.add_argument("--jobs", type=B.positive_int, default=None, help="runs at once (default: one per core)")
    p.add_argument("--sizes", default="224,128", help="input sides to time, px, comma-separated")
    p.add_argument("--fast-sizes", default="128",
                   help="of those, the sides also timed in channels_last (+ bf16 where the CPU has it natively)")
    B.output_options(p)
    return p


def main(a) -> None:
    jobs = a.jobs or default_jobs("cpu")
    sizes = [int(s) for s in a.sizes.split(",")]
    fast_sizes = [int(s) for s in a.fast_sizes.split(",") if s] if a.fast_sizes else []
    if not set(fast_sizes) <= set(sizes):
        raise UserError(f"--fast-sizes: {a.fast_sizes} must be among --sizes {a.sizes}")
    rows, minutes, fast = [], {}, {}
    bf16 = native_bf16()  # emulated elsewhere, several times slower, and a run refuses it
    fast_name = "bf16 + channels_last" if bf16 else "channels_last"
    fast_flags = "--precision bf16 --channels-last" if bf16 else "--channels-last"
    runs = len(HEADS) * a.seeds
    with tempfile.TemporaryDirectory() as tmp:
        folder = sample_folder(Path(tmp) / "photos", per_class=a.per_class)
        n = sum(1 for _ in folder.rglob("*.jpg"))
        for size, quick in [(s, False) for s in sizes] + [(s, True) for s in fast_sizes]:
            t0 = time.perf_counter()
            run_heads(folder, heads=HEADS, seeds=a.seeds, size=size, epochs=a.epochs,
                      results=Path(tmp) / f"results_{size}_{quick}", jobs=jobs,
                      precision="bf16" if quick and bf16 else "fp32", channels_last=quick)
            took = (time.perf_counter() - t0) / 60
            (fast if quick else minutes)[size] = took
            setting = fast_name if quick else "fp32"
            vs = f"{took / minutes[size]:.2f}x" if quick else "1x"
            rows.append(f"| {size} px | {setting} | {runs} | {took:.1f} | {60 * took * jobs / runs:.0f} | {vs} |")
    big = max(sizes)
    met = "met" if minutes[big] <= TARGET_MIN else "not met"
    others = "; ".join(f"at {s} px {minutes[s]:.1f} min ({minutes[big] / minutes[s]:.1f}x faster)"
                       for s in sizes if s != big)
    text = "\n".join([
        "# Benchmark: the head comparison on a folder of one's own photos", "",
        f"**Result:** {len(HEADS)} heads x {a.seeds} seeds on {n} photos at {big} px took {minutes[big]:.1f} min "
        f"of wall time with {jobs} runs at once on {device_name('cpu')} (target {TARGET_MIN} min or less: {met})"
        + (f"; {others}" if others else "")
        + "".join(f"; at {s} px `{fast_flags}` takes {fast[s] / minutes[s]:.2f}x fp32's time" for s in fast_sizes)
        + ("" if bf16 else "; bf16 not timed: this CPU has no native bf16") + ".", "",
        *B.benchmark_provenance(f"python benchmarks/folder_cost.py --per-class {a.per_class} --seeds {a.seeds} "
                              f"--epochs {a.epochs} --sizes {a.sizes} --fast-sizes {a.fast_sizes}", MEASURES),
        f"- work: `cnn-exp run pooling --data FOLDER --size SIZE --epochs {a.epochs} --seeds {a.seeds} --jobs {jobs}` "
        f"on `sample_folder(per_class={a.per_class})` ({n} photos, 4 classes, 80/20 split), from start to report; "
        "a run's time grows with the photos and with the square of the size", "",
        "| size | setting | runs | wall minutes | seconds per run (one process) | vs fp32 |",
        "|---|---|---|---|---|---|", *rows, ""])
    B.write_benchmark(text, B.benchmark_file("folder_cost_cpu", a))


if __name__ == "__main__":
    sys.exit(B.script(parser(), main))

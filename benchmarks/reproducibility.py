"""The same run twice on one device: how far apart are the numbers?

    python benchmarks/reproducibility.py                 # CPU: expect identical numbers
    python benchmarks/reproducibility.py --device cuda   # a GPU: the tolerance the README quotes

One pooling-study run (64 px scenes, a 16 px object, each head in turn), trained twice from the same
config; fastai's `set_seed(reproducible=True)` makes cuDNN deterministic, but some CUDA kernels (the
backward of adaptive max pooling adds with atomics) may still sum in a different order.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cnn_experiments.reports import benchmark as B
from cnn_experiments.runs.config import Config
from cnn_experiments.training.train import device_name, run

METRICS = ("train_loss", "valid_loss", "accuracy", "auc")
MEASURES = ("cnn_experiments/training/train.py", "cnn_experiments/training/callbacks.py",
            "cnn_experiments/data/scenes.py")


def parser() -> B.Parser:
    p = B.Parser(prog="reproducibility.py", description="the same run twice on one device")
    p.add_argument("--device", default="cpu", choices=B.DEVICES)
    p.add_argument("--epochs", type=B.positive_int, default=3, help="epochs per run")
    B.output_options(p)
    return p


def main(a) -> None:
    device, epochs = a.device, a.epochs
    base = Config(data="scenes", arch="pooled_cnn", canvas=64, channels=(8, 16, 32, 64), obj_size=16,
                  n_scenes=2000, epochs=epochs, lr=1e-2, device=device).check()
    rows, worst = [], 0.0
    for pool in ("avg", "max", "concat", "gem"):
        first, second = run(base.replace(pool=pool)), run(base.replace(pool=pool))
        diffs = [abs(first[k] - second[k]) for k in METRICS]
        worst = max(worst, *diffs)
        rows.append(f"| {pool} | " + " | ".join(f"{first[k]:.6f} / {second[k]:.6f}" for k in METRICS)
                    + f" | {max(diffs):.2e} |")
    same = "identical numbers" if worst == 0 else f"numbers that differ by at most {worst:.2e}"
    text = "\n".join([
        "# Benchmark: the same run twice", "",
        f"**Result:** on {device_name(device)}, each run repeated from the same config gives {same} "
        "(train loss, held-out loss, accuracy, AUC).", "",
        *B.benchmark_provenance(f"python benchmarks/reproducibility.py --device {device} --epochs {epochs}", MEASURES),
        f"- work: pooled_cnn on 64 px scenes, 16 px object, {base.n_scenes} train scenes, "
        f"fit_one_cycle({epochs}, {base.lr:g}), seed 0, each head below run twice", "",
        "| head | " + " | ".join(f"{k} (1st / 2nd)" for k in METRICS) + " | largest difference |",
        "|---|" + "---|" * (len(METRICS) + 1), *rows, ""])
    B.write_benchmark(text, B.benchmark_file(f"reproducibility_{device}", a))


if __name__ == "__main__":
    sys.exit(B.script(parser(), main))

"""Progress a person reads: a sweep's fixed-width line per finished run (elapsed, time left), and whether fastai's
per-epoch bar shows.

    from cnn_experiments.runs.progress import ProgressTable, clock, show_progress
"""
from __future__ import annotations

import os
import sys
import time

from .config import Config, to_row


def show_progress() -> bool:
    "fastai's per-epoch bar for people at a terminal; none in tests, CI, output to a file, or CNN_EXP_PROGRESS=0."
    return sys.stdout.isatty() and os.environ.get("CNN_EXP_PROGRESS", "1") != "0"


def cost(cfg: Config) -> float:
    "A run's work in proportion: pixels per image x images x epochs (a 224 px run costs 4 of a 112 px one)."
    side = cfg.canvas if cfg.data == "scenes" else cfg.size or 28
    images = cfg.n_scenes if cfg.data == "scenes" else cfg.n_train or 4000
    return side * side * images * cfg.epochs


class ProgressTable:
    """A fixed-width line per finished run: its number of the total, the fields the grid varies, the metrics, then
    the sweep's elapsed time and the time left at its pace so far, each run weighted by its `cost`."""
    def __init__(self, cols: list[str], echo, todo: list[Config] = ()):
        self.cols, self.echo, self.started, self.total = cols, echo, False, len(todo)
        self.left_cost, self.done_cost = sum(cost(c) for c in todo), 0.0
        self.widths = [max(len(k), 8) for k in cols]
        self.width = max(5, 2 * len(str(self.total)) + 1)
        self.t0 = time.monotonic()

    def line(self, i: int, cfg: Config, m: dict) -> None:
        if not self.started:
            self.echo("  ".join(["run".rjust(self.width)] + [k.rjust(w) for k, w in zip(self.cols, self.widths)]
                                + [f"{'accuracy':>8}", f"{'train':>7}", f"{'valid':>7}", f"{'s':>6}",
                                   f"{'elapsed':>8}", f"{'left':>8}"]))
            self.started = True
        row = to_row(cfg)
        elapsed = time.monotonic() - self.t0
        self.done_cost += cost(cfg)
        self.left_cost -= cost(cfg)
        left = elapsed * max(self.left_cost, 0.0) / self.done_cost if self.total else float("nan")
        self.echo("  ".join([f"{i}/{self.total}".rjust(self.width) if self.total else f"{i:>5}"]
                            + [str(row[k]).rjust(w) for k, w in zip(self.cols, self.widths)]
                            + [f"{m['accuracy']:8.4f}", f"{m['train_loss']:7.4f}", f"{m['valid_loss']:7.4f}",
                               f"{m['seconds']:6.1f}", f"{clock(elapsed):>8}", f"{clock(left):>8}"]))


def clock(seconds: float) -> str:
    "A duration as h:mm:ss (or m:ss under an hour); a dash when unknown."
    if seconds != seconds:
        return "-"
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"

"""Reproducing a study: the same answer from a fresh run, judged by a declared test that can fail.

    cnn-exp reproduce     # the quick pooling study afresh into .reproduce/, compared with the committed one

A fresh run on another CPU is another draw of the same runs: oneDNN and ATen pick kernels per instruction set, float
sums round differently, and a run near a threshold may learn where the committed one did not. So bits are not the
test. The fresh study reproduces the committed one when
1. every declared comparison has the same outcome (so the claim has the same word), and
2. each arm's share of runs that learn is within its tolerance of the committed share: the largest difference that
   two faithful, independent draws of the arm's runs exceed with chance at most LEVEL / arms (binomial at the
   committed share, moved half a run from 0 and 1 so that an arm of 0 of 10 still allows a flip).
Its false-alarm rate, the chance that a faithful re-draw fails the check, is simulated from the committed runs.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as sps

from ..runs.progress import clock
from ..statistics import stats

LEVEL = 0.05  # the chance a faithful re-draw is called "not reproduced" for its shares, over all arms together
ARM = "pool"  # a study's arms, as the threshold arm's runs name them
SIMULATIONS = 400  # re-draws behind the false-alarm rate: its standard error is at most 1.1 points at 5%


@lru_cache(maxsize=1024)
def tolerance(k: int, n: int, level: float) -> float:
    """The largest difference of shares k/n that two independent draws of n runs at the committed share exceed with
    chance at most `level`."""
    q = (k + 0.5) / (n + 1)
    pmf = sps.binom.pmf(np.arange(n + 1), n, q)
    joint, gap = np.outer(pmf, pmf), np.abs(np.subtract.outer(np.arange(n + 1), np.arange(n + 1)))
    within = np.array([joint[gap <= t].sum() for t in range(n + 1)])
    return int(np.argmax(within >= 1 - level - 1e-12)) / n


def shares(labelled: pd.DataFrame) -> dict[str, tuple[int, int]]:
    "Per arm (head), the threshold arm's runs that learn and their number."
    thr = labelled[labelled["arm"] == "threshold"]
    return {str(h): (int(g["learned"].sum()), len(g)) for h, g in thr.groupby(ARM, sort=True)}


@dataclass
class Judgement:
    reproduced: bool
    verdicts: tuple[str, str]  # the claim's word and tally: committed, fresh
    outcomes_differ: list[str]  # the comparisons whose outcome changed
    arms: list[tuple[str, int, int, int, int, float]]  # arm, fresh k, n, committed k, n, tolerance

    def text(self) -> str:
        "The judgement in a line: the answer first, then the numbers behind it."
        word = "reproduced" if self.reproduced else "not reproduced"
        verdict = (f"C6 {self.verdicts[1]} again" if not self.outcomes_differ else
                   f"C6 {self.verdicts[1]} where the committed study is {self.verdicts[0]} (outcome changed: "
                   + "; ".join(self.outcomes_differ) + ")")
        arms = ", ".join(f"{a} {k}/{n} (committed {kc}/{nc}, tolerance ±{tol:.2f}"
                         + ("" if abs(k / n - kc / nc) <= tol + 1e-12 else ": beyond it") + ")"
                         for a, k, n, kc, nc, tol in self.arms)
        return f"{word}: {verdict}; runs that learn: {arms}"


def judge(committed: pd.DataFrame, fresh: pd.DataFrame, comparisons, before: pd.DataFrame | None = None) -> Judgement:
    """The fresh study against the committed one (both labelled runs): same outcomes, and shares within tolerance.
    `before`: the committed verdict table, where it is known already."""
    before = stats.compare(committed, comparisons, power=False) if before is None else before
    after = stats.compare(fresh, comparisons, power=False)
    changed = [f"{c}: {a} -> {b}" for c, a, b in zip(before["comparison"], before["outcome"], after["outcome"])
               if a != b]
    old, new = shares(committed), shares(fresh)
    level = LEVEL / max(1, len(old))
    arms = [(a, *new.get(a, (0, 0)), kc, nc, tolerance(kc, nc, level)) for a, (kc, nc) in old.items()]
    inside = all(n and abs(k / n - kc / nc) <= tol + 1e-12 for _, k, n, kc, nc, tol in arms)
    return Judgement(not changed and inside, (stats.verdict(before), stats.verdict(after)), changed, arms)


def redraw(labelled: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """The threshold arm drawn again, faithfully: each run learns with its cell's committed share (moved half a run
    from 0 and 1), independently; accuracy 0.9 for a run that learns and 0.5 for one that does not. The other arms
    stay as committed."""
    at = labelled["arm"] == "threshold"
    thr = labelled[at]
    cell = thr.groupby([ARM, "obj_size"])["learned"].transform(lambda g: (g.sum() + 0.5) / (len(g) + 1))
    learned = rng.random(len(thr)) < cell.to_numpy()
    return pd.concat([labelled[~at], thr.assign(learned=learned, accuracy=np.where(learned, 0.9, 0.5))])


def false_alarm(committed: pd.DataFrame, comparisons, simulations: int = SIMULATIONS, seed: int = 0) -> float:
    "The share of faithful re-draws of the committed study that the check calls not reproduced."
    rng = np.random.default_rng(seed)
    before = stats.compare(committed, comparisons, power=False)
    return float(np.mean([not judge(committed, redraw(committed, rng), comparisons, before).reproduced
                          for _ in range(simulations)]))


def reproduce(results: Path = Path("results"), into: Path = Path(".reproduce"), name: str = "pooling",
              profile: str = "quick", jobs: int | None = None, simulations: int = SIMULATIONS) -> str:
    """Run `name`'s `profile` from scratch into `into` (git-ignored) and judge it against the committed study: the
    answer in a line, then where it ran and what the check's false-alarm rate is (from `simulations` re-draws)."""
    from ..runs.machine import identity
    from ..runs.store import Store
    from .registry import get
    from .study import do_run, load
    rows = Store(results / name / "runs.csv").read().rows
    if rows.empty or not (rows["profile"] == profile).any():  # said before minutes of training, not after
        return f"no committed {profile} runs of {name} in {results} to compare with"
    shutil.rmtree(into, ignore_errors=True)
    started = time.monotonic()
    do_run(name, profile, results=into / "results", jobs=jobs)
    took = time.monotonic() - started
    committed, fresh = load(name, profile, results), load(name, profile, into / "results")
    comparisons = get(name).comparisons(profile)
    verdict = judge(committed.labelled, fresh.labelled, comparisons)
    same = committed.runs.set_index("run_id")["accuracy"]
    remade = fresh.runs.set_index("run_id")["accuracy"]
    common = same.index.intersection(remade.index)
    bits = (remade[common] - same[common]).abs().max() if len(common) else float("nan")
    machine = identity("cpu")
    features = machine["cpu_features"] or "no listed kernel features"
    passes = 1 - false_alarm(committed.labelled, comparisons, simulations)
    return "\n".join([
        verdict.text(),
        f"the study took {clock(took)} of wall time on {machine['cpu']} ({features}; ATen "
        f"{machine['cpu_capability']}, oneDNN {machine['onednn']}); largest accuracy difference of the {len(common)} "
        f"runs remade: {bits:.3f}",
        f"a faithful re-draw of the committed study passes this check {passes:.0%} of the time ({simulations} "
        "simulated re-draws)"])

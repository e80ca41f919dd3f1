"""The declared learning-rate search: each cell at each rate, one seed (0 unless declared), trained on four fifths of
the training data and scored on the other fifth (the search split). The held-out data are never looked at to choose
a rate.

    from cnn_experiments.search import search_runs, choose
"""
from __future__ import annotations

import math
from collections.abc import Callable

import pandas as pd

from .config import Config


def searched(cell: Config, lr: float, seed: int = 0) -> Config:
    "The search run of `cell` at rate `lr`."
    return cell.replace(lr=lr, split="search", probe=False, seed=seed)


def search_runs(cells: list[Config], lrs: tuple[float, ...], seed: int = 0) -> list[Config]:
    "Every cell at every rate (none when one rate is declared: nothing to choose)."
    if len(lrs) < 2:
        return []
    return list(dict.fromkeys(searched(c, lr, seed) for c in cells for lr in lrs))


def choose(cells: list[Config], lrs: tuple[float, ...], runs: pd.DataFrame | None,
           group: Callable[[Config], object] | None = None, seed: int = 0) -> list[Config]:
    """Each cell at the rate with the best search-split accuracy (then the lowest search-split loss, then the lower
    rate); before the search has run, at the declared grid's middle rate. With `group`, the cells of one group share
    a rate, scored over all their search runs (where runs split between learning and not, one run per rate is
    noise). Only the search's own seed counts: another profile's search of the same cell is another study's."""
    by_id = {} if runs is None or runs.empty else {rid: g for rid, g in runs.groupby("run_id")}
    members = {}
    for c in cells:
        members.setdefault(group(c) if group else c, []).append(c)
    out = []
    for c in cells:
        scores = []
        for lr in lrs:
            found = [by_id[i] for i in {searched(m, lr, seed).run_id for m in members[group(c) if group else c]}
                     if i in by_id]
            if found:
                g = pd.concat(found)
                acc, loss = g["accuracy"].mean(), g["valid_loss"].mean()
                scores.append((acc if acc == acc else -1.0, -loss if loss == loss else -math.inf, -lr, lr))
        out.append(c.replace(lr=max(scores)[-1] if scores else lrs[len(lrs) // 2]))
    return out


def table(cells: list[Config], lrs: tuple[float, ...], runs: pd.DataFrame, name, group=None,
          seed: int = 0) -> pd.DataFrame:
    "Per cell (named by `name(cell)`): search-split accuracy at each rate, the chosen rate, and whether at an edge."
    chosen = choose(cells, lrs, runs, group, seed)
    rows = []
    for c, pick in zip(cells, chosen):
        row = {"cell": name(c)}
        for lr in lrs:
            g = runs[runs["run_id"] == searched(c, lr, seed).run_id]
            row[f"{lr:g}"] = f"{g['accuracy'].mean():.3f}" if len(g) else "-"
        row["chosen"] = f"{pick.lr:g}" + (" (edge)" if len(lrs) > 1 and pick.lr in (min(lrs), max(lrs)) else "")
        rows.append(row)
    return pd.DataFrame(rows).drop_duplicates("cell")


def section(cells: list[Config], lrs: tuple[float, ...], runs: pd.DataFrame, name, intro: str, group=None,
            seed: int = 0) -> str:
    "A report's search: `intro` and the table, or one sentence when the profile declares a single rate."
    if len(lrs) < 2:
        return f"One declared rate, {lrs[0]:g}: no search."
    return f"{intro}\n\n" + table(cells, lrs, runs, name, group, seed).to_markdown(index=False)

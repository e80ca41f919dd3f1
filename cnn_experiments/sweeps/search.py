"""The declared learning-rate search: each cell at each rate, one seed (0 unless declared), trained on four fifths of
the training data and scored on the other fifth (the search split). The held-out data are never looked at to choose
a rate. A profile that declares `grow` steps extends a cell's grid one step past the edge its choice sits at, once
every rate of the grid has run, until the choice is interior or the steps are spent.

    from cnn_experiments.sweeps.search import search_runs, choose
"""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd

from ..runs.config import Config

Group = Callable[[Config], object] | None  # cells of one group share a rate, scored over all their search runs


def searched(cell: Config, lr: float, seed: int = 0) -> Config:
    "The search run of `cell` at rate `lr`."
    return cell.replace(lr=lr, split="search", probe=False, seed=seed)


def beyond(lrs: tuple[float, ...], up: bool) -> float:
    "The grid's next rate past its top (or bottom), at the grid's own spacing: 0.003, 0.01, 0.03 -> 0.1."
    ends = lrs if up else lrs[::-1]
    # three rates: two steps apart set the spacing (a half-decade grid alternates x3 and x3.3); two: their ratio
    a, b, c = ends[-3:] if len(ends) >= 3 else (ends[-2], ends[-1], ends[-1])
    return float(f"{b * c / a:.3g}")


class Search:
    "A profile's search runs as the store holds them: each cell's score per rate, its grown grid and its choice."

    def __init__(self, runs: pd.DataFrame | None, group: Group = None, seed: int = 0, grow: int = 0):
        empty = runs is None or runs.empty
        self.by_id = {} if empty else runs.groupby("run_id").indices  # positions: splitting every row is slow
        self.scores = None if empty else runs.reindex(columns=["accuracy", "valid_loss"]).reset_index(drop=True)
        self.group, self.seed, self.grow = group, seed, grow

    def score(self, members: list[Config], lr: float) -> tuple | None:
        "Search-split accuracy, then the lower loss, then the lower rate; None before any run at `lr`."
        found = [self.by_id[i] for i in {searched(m, lr, self.seed).run_id for m in members} if i in self.by_id]
        if not found:
            return None
        g = self.scores.iloc[np.concatenate(found)]
        acc, loss = g["accuracy"].mean(), g["valid_loss"].mean()
        return acc if acc == acc else -1.0, -loss if loss == loss else -math.inf, -lr, lr

    def grid(self, members: list[Config], lrs: tuple[float, ...]) -> tuple[float, ...]:
        "The declared grid, grown past an edge choice while every rate in it has run and steps are left."
        lrs = tuple(lrs)
        for _ in range(self.grow if len(lrs) > 1 else 0):
            scores = [self.score(members, lr) for lr in lrs]
            if None in scores:
                break
            best = max(scores)[-1]
            if best not in (lrs[0], lrs[-1]):
                break
            lrs = (*lrs, beyond(lrs, True)) if best == lrs[-1] else (beyond(lrs, False), *lrs)
        return lrs

    def members(self, cells: list[Config]) -> dict[object, list[Config]]:
        out: dict[object, list[Config]] = {}
        for c in cells:
            out.setdefault(self.group(c) if self.group else c, []).append(c)
        return out

    def rates(self, cells: list[Config], lrs: tuple[float, ...]) -> list[tuple[float, ...]]:
        "Each cell's grid (its group's, grown)."
        members = self.members(cells)
        return [self.grid(members[self.group(c) if self.group else c], lrs) for c in cells]

    def choose(self, cells: list[Config], lrs: tuple[float, ...]) -> list[Config]:
        "Each cell at its grid's best rate; before the search has run, at the declared grid's middle rate."
        members = self.members(cells)
        out = []
        for c, grid in zip(cells, self.rates(cells, lrs)):
            m = members[self.group(c) if self.group else c]
            scores = [s for lr in grid if (s := self.score(m, lr)) is not None]
            out.append(c.replace(lr=max(scores)[-1] if scores else lrs[len(lrs) // 2]))
        return out


def search_runs(cells: list[Config], lrs: tuple[float, ...], seed: int = 0, runs: pd.DataFrame | None = None,
                grow: int = 0, group: Group = None) -> list[Config]:
    "Every cell at every rate of its grid (none when one rate is declared: nothing to choose)."
    if len(lrs) < 2:
        return []
    grids = Search(runs, group, seed, grow).rates(cells, lrs)
    return list(dict.fromkeys(searched(c, lr, seed) for c, grid in zip(cells, grids) for lr in grid))


def choose(cells: list[Config], lrs: tuple[float, ...], runs: pd.DataFrame | None, group: Group = None,
           seed: int = 0, grow: int = 0) -> list[Config]:
    """Each cell at the rate with the best search-split accuracy (then the lowest search-split loss, then the lower
    rate); before the search has run, at the declared grid's middle rate. With `group`, the cells of one group share
    a rate, scored over all their search runs (where runs split between learning and not, one run per rate is
    noise). Only the search's own seed counts: another profile's search of the same cell is another study's."""
    return Search(runs, group, seed, grow).choose(cells, lrs)


def table(cells: list[Config], lrs: tuple[float, ...], runs: pd.DataFrame, name, group: Group = None,
          seed: int = 0, grow: int = 0) -> pd.DataFrame:
    "Per cell (named by `name(cell)`): search-split accuracy at each rate, the chosen rate, and whether at an edge."
    s = Search(runs, group, seed, grow)
    grids, chosen = s.rates(cells, lrs), s.choose(cells, lrs)
    columns = sorted({lr for grid in grids for lr in grid})
    rows = []
    for c, grid, pick in zip(cells, grids, chosen):
        row, ran = {"cell": name(c)}, []
        for lr in columns:
            g = runs[runs["run_id"] == searched(c, lr, seed).run_id]
            row[f"{lr:g}"] = f"{g['accuracy'].mean():.3f}" if len(g) else "-"
            ran += [lr] if len(g) and lr in grid else []
        pending = [f"{lr:g}" for lr in grid if lr not in ran]
        row["chosen"] = (f"{pick.lr:g}" + (" (edge)" if len(ran) > 1 and pick.lr in (min(ran), max(ran)) else "")
                         + (f" ({', '.join(pending)} not run yet)" if pending and ran else ""))
        rows.append(row)
    return pd.DataFrame(rows).drop_duplicates("cell")


def section(cells: list[Config], lrs: tuple[float, ...], runs: pd.DataFrame, name, intro: str, group: Group = None,
            seed: int = 0, grow: int = 0) -> str:
    "A report's search: `intro` and the table, or one sentence when the profile declares a single rate."
    if len(lrs) < 2:
        return f"One declared rate, {lrs[0]:g}: no search."
    return f"{intro}\n\n" + table(cells, lrs, runs, name, group, seed, grow).to_markdown(index=False)

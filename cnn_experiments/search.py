"""The declared learning-rate search: each cell at each rate, seed 0, trained on four fifths of the training data
and scored on the other fifth (the search split). The held-out data are never looked at to choose a rate.

    from cnn_experiments.search import search_runs, choose
"""
from __future__ import annotations

import math

import pandas as pd

from .config import Config


def searched(cell: Config, lr: float) -> Config:
    "The search run of `cell` at rate `lr`."
    return cell.replace(lr=lr, split="search", probe=False, seed=0)


def search_runs(cells: list[Config], lrs: tuple[float, ...]) -> list[Config]:
    "Every cell at every rate (none when one rate is declared: nothing to choose)."
    if len(lrs) < 2:
        return []
    return list(dict.fromkeys(searched(c, lr) for c in cells for lr in lrs))


def choose(cells: list[Config], lrs: tuple[float, ...], runs: pd.DataFrame | None) -> list[Config]:
    """Each cell at the rate with the best search-split accuracy (then the lowest search-split loss, then the lower
    rate); before the search has run, at the declared grid's middle rate."""
    by_id = {} if runs is None or runs.empty else {cid: g for cid, g in runs.groupby("cell_id")}
    out = []
    for c in cells:
        scores = []
        for lr in lrs:
            g = by_id.get(searched(c, lr).cell_id)
            if g is not None:
                acc, loss = g["accuracy"].mean(), g["valid_loss"].mean()
                scores.append((acc if acc == acc else -1.0, -loss if loss == loss else -math.inf, -lr, lr))
        out.append(c.replace(lr=max(scores)[-1] if scores else lrs[len(lrs) // 2]))
    return out


def table(cells: list[Config], lrs: tuple[float, ...], runs: pd.DataFrame, name) -> pd.DataFrame:
    "Per cell (named by `name(cell)`): search-split accuracy at each rate, the chosen rate, and whether at an edge."
    chosen = choose(cells, lrs, runs)
    rows = []
    for c, pick in zip(cells, chosen):
        row = {"cell": name(c)}
        for lr in lrs:
            g = runs[runs["cell_id"] == searched(c, lr).cell_id]
            row[f"{lr:g}"] = f"{g['accuracy'].mean():.3f}" if len(g) else "-"
        row["chosen"] = f"{pick.lr:g}" + (" (edge)" if len(lrs) > 1 and pick.lr in (min(lrs), max(lrs)) else "")
        rows.append(row)
    return pd.DataFrame(rows).drop_duplicates("cell")


def section(cells: list[Config], lrs: tuple[float, ...], runs: pd.DataFrame, name, intro: str) -> str:
    "A report's search: `intro` and the table, or one sentence when the profile declares a single rate."
    if len(lrs) < 2:
        return f"One declared rate, {lrs[0]:g}: no search."
    return f"{intro}\n\n" + table(cells, lrs, runs, name).to_markdown(index=False)

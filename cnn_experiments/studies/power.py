"""The verdict rule by simulation, at the families the studies declare: how often it gives a false verdict when no
effect exists, and how often it finds each comparison's effect of interest.

    cnn-exp power                            # every committed family, printed
    cnn-exp power --write docs/statistics.md # and written into its block there

Each family is redrawn as measured: its comparisons' designs, seeds, strata and spreads (the committed runs'),
through the rule's own code (`stats.differences`, `stats.welch`, `stats.fisher`, `stats.mcnemar`,
`exact.rank_trend`, `stats.decide`).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import UserError
from ..runs.files import write_atomic
from ..statistics import exact, stats

SIMULATIONS = 1000  # families drawn per scenario: a rate's standard error is at most 1.6 points
BLOCK = ("<!-- power: written by `cnn-exp power --write docs/statistics.md`; do not edit by hand -->",
         "<!-- /power -->")


def draw(row: dict, effect: float, rng: np.random.Generator) -> dict:
    "A row's numbers on data drawn from its design with a true effect `effect` (on its metric's scale)."
    kind, n, scale, margin = row["kind"], int(row["n_a"]), float(row["scale"]), float(row["margin"])
    scale = 0.0 if not np.isfinite(scale) else scale
    base = {k: row[k] for k in ("comparison", "metric", "test", "margin", "expect", "design")}
    if kind == "one":
        numbers = stats.differences(effect + rng.normal(0, scale, n), margin, row["test_kind"])
    elif kind == "ind":
        numbers = stats.welch(effect + rng.normal(0, scale, n), rng.normal(0, scale, int(row["n_b"])), margin)
    elif kind == "share":
        q_b = scale
        numbers = stats.fisher(rng.random(n) < min(1, max(0, q_b + effect)), rng.random(int(row["n_b"])) < q_b,
                               margin)
    elif kind == "paired share":
        shares = np.asarray(row["shares_b"])
        per = n // len(shares)
        q_a, q_b = (np.repeat(q, per) for q in exact.reachable(shares, effect))
        strata = list(np.repeat(np.arange(len(shares)), per))
        numbers = stats.mcnemar(rng.random(len(q_b)) < q_a, rng.random(len(q_b)) < q_b, list(range(per)) * len(shares),
                                strata)
    elif kind == "seed share":  # each seed's random effect carried into all its strata and both arms
        shares, seeds = np.asarray(row["shares_b"]), int(row["seeds"])
        a, b = exact.draw_seed_shares(*exact.reachable(shares, effect), seeds, rng)
        numbers = stats.seed_shares(a[0].ravel(), b[0].ravel(), np.repeat(np.arange(seeds), len(shares)),
                                    np.tile(np.arange(len(shares)), seeds), margin)
    elif kind == "rank":
        points = tuple(row["points"])
        rhos = exact.draw_rhos(points, effect, 1, rng)[0]
        numbers = {"n_a": n, "n_b": n, "effect": float(rhos.mean()), "ci_lo": math.nan, "ci_hi": math.nan,
                   "p_diff": exact.rank_trend(rhos, points)["p"], "p_tost": math.nan, "p_out": math.nan,
                   "kind": "rank", "test_kind": "rank-trend", "scale": math.nan}
    else:
        raise ValueError(f"comparison {row['comparison']!r}: no simulation for a {kind!r} design")
    out = {**base, "dropped": 0, "seeds": n, "strata": 1} | numbers
    if out["expect"] == "equivalent":
        out["p"], out["beyond"] = min(out["p_tost"], out["p_out"]), out["p_out"] < out["p_tost"]
    else:
        out["p"] = out["p_diff"]
    return out


def _effect(row: dict, at_interest: bool) -> float:
    "No effect, or the row's effect of interest in its predicted direction (an equivalence row's: none)."
    if not at_interest or row["expect"] == "equivalent":
        return 0.0
    return row["margin"] * (1 if row["expect"] == "greater" else -1)


def rates(table: pd.DataFrame, simulations: int = SIMULATIONS, seed: int = 0) -> dict:
    """The family's false-verdict rate with no effect (any directional row resolved, or an equivalence row
    contradicted), each equivalence row's false "equivalent" rate at its margin, and each row's simulated power at
    its effect of interest beside the power the report states."""
    rows = [r for r in table.to_dict("records")]
    rng = np.random.default_rng(seed)
    family = np.ones(len(rows), bool)
    expected = ["equivalent" if r["expect"] == "equivalent" else "supported" for r in rows]
    false, hits = 0, np.zeros(len(rows))
    false_equivalent = np.zeros(len(rows))
    for _ in range(simulations):
        null = stats.decide([draw(r, 0.0, rng) for r in rows], family, power=False).outcome.to_numpy()
        false += any(o in ("supported", "contradicted", stats.BELOW) if r["expect"] != "equivalent"
                     else o == "contradicted"
                     for o, r in zip(null, rows))
        alt = stats.decide([draw(r, _effect(r, True), rng) for r in rows], family, power=False).outcome.to_numpy()
        hits += alt == np.array(expected)
        if any(r["expect"] == "equivalent" for r in rows):
            edge = [draw(r, r["margin"] if r["expect"] == "equivalent" else 0.0, rng) for r in rows]
            false_equivalent += stats.decide(edge, family, power=False).outcome.to_numpy() == "equivalent"
    return {"false": false / simulations, "power": hits / simulations, "stated": table["power"].to_numpy(float),
            "false_equivalent": false_equivalent / simulations, "simulations": simulations,
            "equivalence": np.array([r["expect"] == "equivalent" for r in rows])}


def committed_families(results: Path = Path("results")) -> list[tuple[str, str, pd.DataFrame]]:
    """Every family a committed report decides with verdicts (a complete grid, enough seeds): its table. The reports
    are drawn into a copy of the results folder, so nothing committed is written."""
    import contextlib
    import io
    import shutil
    import tempfile

    from .registry import NAMES
    from .study import written
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "results"
        shutil.copytree(results, copy)
        for name in NAMES:
            for summary in sorted((results / name).glob("summary_*.md")):
                profile = summary.stem.removeprefix("summary_")
                with contextlib.redirect_stdout(io.StringIO()):
                    ctx = written(name, profile, copy)[0]
                out += [(name, profile, t) for t in ctx.tables if not (t.outcome == "indicative").any()]
    return out


def markdown(found: list[tuple[str, str, dict]]) -> str:
    "The families' simulated rates as a table, with its rule and error in a line under it."
    se = lambda r: 1.96 * math.sqrt(max(r, 0.05) * (1 - max(r, 0.05)) / found[0][2]["simulations"])
    pct = lambda x: f"{x:.1%}"
    lines = ["| experiment | profile | family (its first comparison) | comparisons | false verdicts, no effect "
             "| false \"equivalent\" at the margin | power at the margin, simulated | rows at 80% or more |",
             "|---|---|---|---|---|---|---|---|"]
    for name, profile, r in found:
        eq = r["false_equivalent"][r["equivalence"]]
        power = ", ".join(f"{p:.0%}" for p in r["power"])
        lines.append(f"| {name} | {profile} | {r['first']} | {len(r['power'])} | "
                     f"{pct(r['false'])} ± {pct(se(r['false']))} | "
                     + (f"at most {pct(eq.max())}" if len(eq) else "–") + f" | {power} | "
                     f"{int((r['power'] >= 0.8).sum())} of {len(r['power'])} |")
    n = found[0][2]["simulations"] if found else SIMULATIONS
    over = [f"{name} {profile}" for name, profile, r in found if r["false"] > 0.05 + 1.96 * math.sqrt(0.05 * 0.95 / n)]
    rows = np.concatenate([r["power"] for _, _, r in found]) if found else np.array([])
    lines += ["", ("With no effect, every family's false-verdict rate is within 5% and the simulation's error."
                   if not over else f"With no effect, above 5% beyond the simulation's error: {', '.join(over)}.")
              + f" {int((rows >= 0.8).sum())} of {len(rows)} rows reach 80% power at their margins."]
    lines += [_reports(found)]
    lines += ["", f"{n} simulated families per scenario, each row's design, seeds, strata and spread as committed; "
              "± is the simulation's 95% error. False verdicts: with no effect anywhere, a family with any directional "
              "row resolved or any equivalence row contradicted. Power: every row at its effect of interest (an "
              "equivalence row at no difference), the share of draws that give the row its predicted outcome. Shares "
              "over strata are redrawn with a random effect per seed and arm (SD 1 on the logit scale)."]
    return "\n".join(lines)


def _reports(found: list[tuple[str, str, dict]]) -> str:
    "A report that prints several families: the chance any of them gives a false verdict, at most their sum."
    by: dict[tuple[str, str], list[float]] = {}
    for name, profile, r in found:
        by.setdefault((name, profile), []).append(r["false"])
    several = {k: v for k, v in by.items() if len(v) > 1}
    if not several:
        return ""
    return "\nA report that prints several families: " + "; ".join(
        f"{name} {profile}, its {len(v)} families together at most {min(1.0, sum(v)):.1%}"
        for (name, profile), v in several.items()) + " (the sum of their rates: a bound whatever data they share)."


def power(results: Path = Path("results"), write: Path | None = None, simulations: int = SIMULATIONS) -> str:
    "Simulate every committed family; print the table and, with `write`, put it in that file's block."
    doc = write.read_text() if write is not None and write.is_file() else ""
    if write is not None and (BLOCK[0] not in doc or BLOCK[1] not in doc):  # said before minutes of simulation
        raise UserError(f"--write: {write} has no block {BLOCK[0]} ... {BLOCK[1]} to write the table into")
    found = [(name, profile, rates(table, simulations) | {"first": table["comparison"].iloc[0].replace("|", "/")})
             for name, profile, table in committed_families(results)]
    text = markdown(found)
    if write is not None:
        start, end = doc.index(BLOCK[0]), doc.index(BLOCK[1]) + len(BLOCK[1])
        write_atomic(write, doc[:start] + BLOCK[0] + "\n" + text + "\n" + BLOCK[1] + doc[end:])
    return text

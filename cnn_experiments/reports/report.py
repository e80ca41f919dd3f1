"""Runs -> summary tables (mean and 95% interval over seeds), markdown, figures, and the results index.

Every file is written whole (a temporary file, then a rename): a full disk leaves the old file, never half of one.
"""
from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..runs.files import write_atomic
from ..runs.store import Store
from ..statistics import stats

FINDING = "**Finding:**"  # the summary line that results/README.md quotes
WRITTEN = "- report: written"  # the one header line that changes when an unchanged report is written again
CAVEAT = "**Caveat:**"  # a summary's line that the README quotes beside its verdict


def unwritten(text: str) -> list[str]:
    "A summary's lines, without the one that says when it was written."
    return [ln for ln in text.splitlines() if not ln.startswith(WRITTEN)]


def write_summary(path: Path, text: str) -> None:
    "Write a summary, unless the file already says the same (its written line aside): a rerun leaves git clean."
    if not (path.exists() and unwritten(path.read_text()) == unwritten(text)):
        write_atomic(path, text)


def finding_of(summary: Path) -> str:
    found = [ln for ln in summary.read_text().splitlines() if ln.startswith(FINDING)]
    return found[0][len(FINDING):].strip() if found else "(no finding line)"


@dataclass
class Context:
    "What a report is a function of: the profile's runs (each cell's seed once), their store, where to write."
    runs: pd.DataFrame
    store: Store
    out: Path
    profile: str
    table: pd.DataFrame | None = None  # the verdict table of the declared comparisons (stats.compare)
    results: Path = Path("results")  # the results root: a report may read another experiment's saved weights
    partial: bool = False  # the grid is not complete: numbers only, no verdict (see `compare`)
    tables: list = field(default_factory=list)  # every verdict table the report decided, in order
    load: Callable | None = None  # another profile's runs of this study as `study.load` reads them (a pilot's)

    def compare(self, runs: pd.DataFrame, comparisons) -> pd.DataFrame:
        "A report's own verdict table (stats.compare), with no verdict while the grid is not complete."
        table = stats.compare(runs, comparisons, partial=self.partial, items=self.store.items)
        self.tables.append(table)
        return table

    def power_section(self, table: pd.DataFrame, pilot: str, comparisons, seeds: int, label=None,
                      partial: bool = False) -> str:
        """A confirmatory report's Power table: its `comparisons` on the `pilot` profile's runs at the declared `seeds`
        (planned) beside `table`'s own spread (achieved). `label`: the pilot's runs as the family reads them;
        `partial`: a row the pilot has no runs for (a new control) is planned as unknown."""
        got = self.load(pilot)
        runs = label(got) if label else got.labelled
        planned = stats.planned(stats.compare(runs, comparisons, partial=partial), seeds)
        return power_plan(table, planned, seeds, f"summary_{pilot}.md")

    def figure(self, fig, name: str) -> str:
        "Save a figure beside the summary; its markdown link."
        return save_fig(fig, self.out / name)


def summarize(runs: pd.DataFrame, by: list[str], metric: str = "accuracy") -> pd.DataFrame:
    """One row per cell of `by`: mean, ci (half-width of the 95% t-interval), lo, hi (the interval, within the
    metric's range), n (finite values), the per-seed min and max, and diverged (runs whose metric is not finite:
    counted, not silently dropped)."""
    rows = []
    bounds = stats.RANGES.get(metric, (-math.inf, math.inf))
    for key, g in runs.groupby(by, sort=False):
        mean, lo, hi, n, dropped = stats.interval(g[metric].astype(float), bounds)
        key = key if isinstance(key, tuple) else (key,)
        finite = g[metric][np.isfinite(g[metric].astype(float))]
        rows.append({**dict(zip(by, key)), "mean": mean, "ci": (hi - lo) / 2 if n > 1 else math.nan, "lo": lo,
                     "hi": hi, "n": n, "min": finite.min() if n else math.nan, "max": finite.max() if n else math.nan,
                     "diverged": dropped})
    return pd.DataFrame(rows)


def fmt(mean: float, half: float, digits: int = 4, diverged: int = 0, lo: float = math.nan,
        hi: float = math.nan) -> str:
    """mean ± half-width, or mean [lo, hi] where the metric's range cut the interval; and how many runs diverged
    when some did."""
    if math.isnan(mean):
        return "diverged"
    tiny = 10 ** -(digits + 2)
    if math.isnan(half):
        text = f"{mean:.{digits}f}"
    elif lo > mean - half + tiny or hi < mean + half - tiny:
        text = f"{mean:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"
    else:
        text = f"{mean:.{digits}f} ± {half:.{digits}f}"
    return text + (f" ({diverged} diverged)" if diverged else "")


def cells(summary: pd.DataFrame, digits: int = 4) -> list[str]:
    "A summary's rows (summarize) as 'mean ± half-width' cells, cut to the metric's range where it reaches it."
    div = summary["diverged"] if "diverged" in summary else [0] * len(summary)
    return [fmt(m, h, digits, int(d), lo, hi) for m, h, d, lo, hi in zip(summary["mean"], summary["ci"], div,
                                                                         summary["lo"], summary["hi"])]


def signed(x: float, digits: int = 3) -> str:
    "A difference with its sign; a dash for one not measured (an arm not run yet)."
    return f"{x:+.{digits}f}" if math.isfinite(x) else "–"


def pivot(summary: pd.DataFrame, rows: str, cols: str, digits: int = 3, columns=None) -> pd.DataFrame:
    """A rows x cols table of 'mean ± ci' strings, in the order the cells first appear (or `columns`, with those
    that have no runs yet); 'not run' where none ran."""
    s = summary.assign(cell=cells(summary, digits))
    t = s.pivot(index=rows, columns=cols, values="cell")
    order = list(dict.fromkeys(s[cols])) if columns is None else list(columns)
    return t.reindex(index=list(dict.fromkeys(s[rows])), columns=order).astype(object).fillna("not run")


def header(title: str, claim: str, runs: pd.DataFrame, command: str, profile: str) -> str:
    "The provenance block every summary opens with; an experiment without runs gets this machine's."
    from ..runs.store import provenance
    prov = provenance()
    if runs.empty:  # the report's own date and code go on its WRITTEN line only, so its text is the same any day
        from ..training.train import device_name
        runs = pd.DataFrame([{**prov, "git_rev": "the report's", "device": device_name("cpu")}])
        seeds, dates, varies = "none (no training)", "the report's", "nothing (no training)"
        cost = "no training"
        over = "over the seeds of the runs it reads from another study"
    else:
        varied = "vary_data" in runs and runs["vary_data"].astype(str).str.lower().eq("true").any()
        varies = ("initialisation, batch order, dropout and the data (each seed draws its own scenes, labelled "
                  "subset or train/validation split)" if varied else "initialisation, batch order and dropout; "
                  "every seed sees the same data, so intervals leave out the data's own sampling")
        over = "over seeds"
        dates = f"{runs['date'].min()[:10]} to {runs['date'].max()[:10]}"
        main = runs[runs["split"] != "search"] if "split" in runs else runs  # a search runs one seed a cell
        per_cell = main.groupby("cell_id")["seed"].nunique()
        seeds = ("none yet" if per_cell.empty else f"{per_cell.min()}" if per_cell.min() == per_cell.max()
                 else f"{per_cell.min()} to {per_cell.max()}")
        minutes = runs["seconds"].sum() / 60
        cost = (f"{len(runs)} runs, {minutes:.1f} min of training in all ({len(runs) / max(minutes, 1 / 60):.1f} runs "
                f"a minute of one process's training; reading data, probes and the report come on top)")

    def one(col):
        return ", ".join(sorted(map(str, runs[col].dropna().unique())))
    return "\n".join([
        f"# {title}", "", f"> {claim}", "",
        f"- command: `{command}`",
        f"- profile: {profile}; seeds per cell: {seeds}",
        f"- cost: {cost}",
        f"- seeds vary: {varies}",
        f"- date: {dates}",
        f"- device: {devices(runs)}",
        f"- versions: python {one('python')}, torch {one('torch')}, fastai {one('fastai')}; code {one('git_rev')}",
        f"- intervals: mean ± half-width of the 95% t-interval {over}, within the metric's range; verdicts from "
        "the declared tests below ([how a verdict is read](../../docs/statistics.md))",
        f"{WRITTEN} {prov['date'][:10]} by code {prov['git_rev']}", "", ""])


def one_per_seed(runs: pd.DataFrame) -> pd.DataFrame:
    "Each cell's seed once: the same seed run again on another device is not a new sample; the first stays."
    keys = [k for k in ("cell_id", "seed") if k in runs]  # a file with no runs yet has no seed column
    return runs.drop_duplicates(keys).reset_index(drop=True) if len(keys) == 2 else runs.reset_index(drop=True)


def devices(runs: pd.DataFrame) -> str:
    """The device that made the runs, with the machine that picked its kernels where the runs record it; or each
    with its number of runs where there were several."""
    where = runs.dropna(subset=["device"])
    n = where.apply(machine, axis=1).value_counts() if len(where) else where["device"]
    return n.index[0] if len(n) == 1 else "; ".join(f"{d} ({k} runs)" for d, k in n.items())


def machine(run: pd.Series) -> str:
    "A run's device and, where its row has the machine columns (store.LATE), the machine that picked its kernels."
    if "cpu" not in run:  # a report without runs names this machine's device alone: its text is the same anywhere
        return str(run["device"])
    text = lambda c: "" if pd.isna(run[c]) else str(run[c])
    if not text("cpu"):
        return f"{run['device']}, CPU not recorded"
    gpu = f"{text('gpu')}, host " if text("gpu") else ""
    return (f"{run['device']}, {gpu}{text('cpu')}, {text('cpu_features') or 'no listed features'}, "
            f"ATen {text('cpu_capability')}, oneDNN {text('onednn') or 'absent'}")


INCOMPLETE = "## Status: the grid is not complete"


def status(name: str, profile: str, expected: set, made: set) -> list[str]:
    "A report's status section when some of the grid's runs are not made yet (none when all are)."
    missing = expected - made
    if not missing:
        return []
    return [INCOMPLETE, "", f"{len(expected) - len(missing)} of {len(expected)} runs are made. `cnn-exp run {name} "
            f"--profile {profile}` makes the rest (it resumes). What follows reads the runs made, and every "
            "comparison is indicative (numbers, raw p) until the grid is complete: Holm's family is the whole "
            "declared set.", ""]


_render = True  # False within `text_only`


@contextlib.contextmanager
def text_only():
    "Reports written without rendering their figures (each keeps its link): all that comparing their text needs."
    global _render
    before, _render = _render, False
    try:
        yield
    finally:
        _render = before


def rendering() -> bool:
    "Whether figures are drawn now (not inside `text_only`)."
    return _render


def save_fig(fig, path: Path) -> str:
    "Save a matplotlib figure whole and return its markdown image link, relative to the summary."
    import matplotlib.pyplot as plt
    if _render:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
        write_atomic(path, buf.getvalue())
    plt.close(fig)
    return f"![{path.stem}]({path.name})"


def zoomed_errorbar(ax, x, mean, lo, hi, on_scale, colour, keep=(0.0,), digits: int = 2, **style) -> None:
    """Points with their 95% intervals on an axis zoomed to the points `on_scale` (and the values in `keep`); each
    point off the scale is drawn as censored: an open triangle at the axis's edge, pointing to where it lies, with
    its value beside it. `style` goes to the on-scale points' errorbar (a label among it)."""
    x, mean, lo, hi = (np.asarray(v, float) for v in (x, mean, lo, hi))
    on = np.asarray(on_scale, bool) & np.isfinite(mean)
    lo, hi = np.where(np.isfinite(lo), lo, mean), np.where(np.isfinite(hi), hi, mean)
    ax.errorbar(x[on], mean[on], yerr=[mean[on] - lo[on], hi[on] - mean[on]], color=colour, marker="o", capsize=3,
                **style)
    span = np.concatenate([lo[on], hi[on], np.asarray(keep, float)])
    bottom, top = (float(span.min()), float(span.max())) if len(span) else (-1.0, 1.0)
    pad = 0.08 * ((top - bottom) or 1.0)
    bottom, top = bottom - pad, top + pad
    off = ~on & np.isfinite(mean)
    if off.any():  # room at both edges for the censored markers
        bottom, top = bottom - pad, top + pad
    ax.set_ylim(bottom, top)
    for xi, m in zip(x[off], mean[off]):
        up = m > top
        y = m if bottom <= m <= top else top - 0.6 * pad if up else bottom + 0.6 * pad
        ax.plot([xi], [y], marker="o" if y == m else "^" if up else "v", ms=8, mfc="none", mec=colour, ls="none")
        ax.annotate(f"{m:+.{digits}f}", (xi, y), xytext=(-4, 0), textcoords="offset points", ha="right",
                    va="center", fontsize=7, color=colour)


def verdict_section(table: pd.DataFrame | None, claim: str) -> tuple[str, list[str]]:
    "The claim's verdict (stats.verdict) and the markdown of its declared comparisons."
    if table is None:
        return "not tested yet", ["## Verdict", "", "No runs yet."]
    word = stats.verdict(table)
    return word, ["## Verdict", "", f"**{claim} is {word}.**", "", stats.markdown(table)]


def power_plan(table: pd.DataFrame, planned: list[float], seeds: int, pilot: str) -> str:
    """A confirmatory report's power per comparison, planned before its runs from the pilot's spread at the declared
    seeds, beside what each row found (a resolved row's interval says more than any power)."""
    pct = lambda x: "–" if not np.isfinite(x) else f"{x:.0%}"
    found = lambda r: (f"{r['outcome']}: {r['effect']:+.3f} [{r['ci_lo']:+.3f}, {r['ci_hi']:+.3f}]"
                       if np.isfinite(r["effect"]) else r["outcome"])
    rows = [f"| {r['comparison']} | ±{r['margin']:g} | {pct(plan)} | {found(r)} |"
            for r, plan in zip(table.to_dict("records"), planned)]
    return "\n".join([f"Power at each comparison's margin, at Holm's first-step level, planned before the runs from "
                      f"the spread of the [pilot]({pilot}) with the {seeds} seeds declared; beside it, what the row "
                      "found.", "", "| comparison | margin | planned power | found [95% CI] |", "|---|---|---|---|",
                      *rows])

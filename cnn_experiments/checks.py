"""Checks that the committed results are what this code makes.

    cnn-exp check        # every committed summary regenerates unchanged; no benchmark predates the code it measures
    cnn-exp reproduce    # the quick pooling study afresh, compared with the committed one (what `make run` does)
"""
from __future__ import annotations

import contextlib
import io
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from .experiment import NAMES
from .progress import clock
from .publish import MEASURES
from .report import unwritten
from .stats import VERDICTS


def _quiet(fn, *args):
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args)


def stale_summaries(results: Path) -> list[str]:
    "Each committed summary that the current code, reading results/ alone, writes differently."
    from .folder_app import report_folder
    from .folder_heads import report_heads
    from .study import do_report
    problems = []
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "results"
        shutil.copytree(results, copy)
        readme = results.parent / "README.md"
        if readme.exists():
            shutil.copy(readme, Path(tmp) / "README.md")
        for name in NAMES:
            for summary in sorted((results / name).glob("summary_*.md")):
                profile = summary.stem.removeprefix("summary_")
                _quiet(do_report, name, profile, copy)
                if unwritten((copy / name / summary.name).read_text()) != unwritten(summary.read_text()):
                    problems.append(f"{summary}: stale; `cnn-exp report {name} --profile {profile}` rewrites it")
        for name, write in (("fine_tune", report_folder), ("pooling", report_heads)):
            for summary in sorted(results.glob(f"{name}/folder_*/summary.md")):
                _quiet(write, copy / summary.parent.relative_to(results))
                if unwritten((copy / summary.relative_to(results)).read_text()) != unwritten(summary.read_text()):
                    problems.append(f"{summary}: stale; the folder's `cnn-exp run {name} --data ...` rewrites it")
        for table in ("results.csv", "results.md"):
            if not (results / table).exists() or (copy / table).read_text() != (results / table).read_text():
                problems.append(f"{results / table}: missing or stale; `cnn-exp report NAME` rewrites it")
        if readme.exists() and unwritten((Path(tmp) / "README.md").read_text()) != unwritten(readme.read_text()):
            problems.append(f"{readme}: its results block is stale; `cnn-exp report NAME` rewrites it")
    return problems


def stale_benchmarks(results: Path) -> list[str]:
    "Each benchmark report whose code revision is older than the last change to the code it measures."
    root = results.resolve().parent
    shallow = subprocess.run(["git", "rev-parse", "--is-shallow-repository"], cwd=root, capture_output=True, text=True)
    if shallow.returncode or shallow.stdout.strip() != "false":
        return []  # not a git checkout, or one without its history: nothing to compare with
    problems = []
    for report in sorted(results.glob("benchmarks/*.md")):
        text = report.read_text()
        rev = re.search(r"; code ([0-9a-f]{7,40})\b", text)
        measures = next((ln[len(MEASURES):].strip() for ln in text.splitlines() if ln.startswith(MEASURES)), "")
        if not rev or not measures:
            problems.append(f"{report}: no code revision or no '{MEASURES}' line; measure it again")
            continue
        paths = [p.strip() for p in measures.split(",")]
        known = subprocess.run(["git", "cat-file", "-e", f"{rev[1]}^{{commit}}"], cwd=root, capture_output=True)
        if known.returncode:
            problems.append(f"{report}: code {rev[1]} is not in this repository's history; measure it again")
            continue
        changed = subprocess.run(["git", "log", "--format=%h", f"{rev[1]}..HEAD", "--", *paths], cwd=root,
                                 capture_output=True, text=True).stdout.split()
        if changed:
            problems.append(f"{report}: measured at {rev[1]}, but {', '.join(paths)} changed since (latest "
                            f"{changed[0]}); measure it again")
    return problems


def check(results: Path = Path("results")) -> list[str]:
    "Every problem found, one line each (none: the committed results are current)."
    return stale_summaries(results) + stale_benchmarks(results)


def reproduce(results: Path = Path("results"), into: Path = Path(".reproduce"), name: str = "pooling",
              profile: str = "quick", jobs: int | None = None) -> str:
    """Run `name`'s `profile` from scratch into `into` (git-ignored) and compare its verdict and numbers with the
    committed ones: one line."""
    from .report import finding_of
    from .store import Store
    from .study import do_run
    shutil.rmtree(into, ignore_errors=True)
    started = time.monotonic()
    do_run(name, profile, results=into / "results", jobs=jobs)
    took = time.monotonic() - started
    fresh = Store(into / "results" / name / "runs.csv").read().rows
    committed = Store(results / name / "runs.csv").read().rows
    committed = committed[committed["profile"] == profile].drop_duplicates("run_id").set_index("run_id")
    fresh = fresh.drop_duplicates("run_id").set_index("run_id")
    common = fresh.index.intersection(committed.index)
    if committed.empty or not len(common):
        return f"no committed {profile} runs of {name} in {results} to compare with"
    diff = (fresh.loc[common, "accuracy"] - committed.loc[common, "accuracy"]).abs().max()
    word = lambda p: re.findall("|".join(sorted(VERDICTS, key=len, reverse=True)), finding_of(p))
    same = word(into / "results" / name / f"summary_{profile}.md") == word(results / name / f"summary_{profile}.md")
    runs = f"{len(common)} of {len(committed)} committed runs remade"
    return (f"{'reproduced' if same and diff == 0 else 'not reproduced exactly'}: "
            f"{'same verdict' if same else 'another verdict'}, {runs}, largest accuracy difference {diff:.3f}"
            + ("" if diff == 0 else " (another CPU or library version rounds floats differently)")
            + f"; the study took {clock(took)} of wall time")


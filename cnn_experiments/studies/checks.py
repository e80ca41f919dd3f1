"""Checks that the committed results are what this code makes.

    cnn-exp check        # every committed summary regenerates unchanged; no benchmark predates the code it measures
"""
from __future__ import annotations

import contextlib
import io
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..reports.benchmark import MEASURES
from ..reports.publish import BENCHMARKS_DOC
from ..reports.report import text_only, unwritten
from .registry import NAMES


def _quiet(fn, *args):
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args)


def summaries(results: Path) -> list[tuple[str, str]]:
    "Each committed summary as (writer, argument): ('NAME', PROFILE) for a study, ('folder', ITS PATH) for a folder's."
    studies = [(name, s.stem.removeprefix("summary_"))
               for name in NAMES for s in sorted((results / name).glob("summary_*.md"))]
    folders = [("folder", str(s.parent.relative_to(results)))
               for name in ("fine_tune", "pooling") for s in sorted(results.glob(f"{name}/folder_*/summary.md"))]
    return studies + folders


def copy_of(results: Path, into: Path) -> Path:
    "A copy of the results folder and of the README beside it, which the reports rewrite."
    copy = shutil.copytree(results, into / "results")
    if (results.parent / "README.md").exists():
        shutil.copy(results.parent / "README.md", into / "README.md")
    if (results.parent / BENCHMARKS_DOC).exists():
        (into / BENCHMARKS_DOC).parent.mkdir()
        shutil.copy(results.parent / BENCHMARKS_DOC, into / BENCHMARKS_DOC)
    return copy


def regenerate(results: Path, copy: Path, summary: tuple[str, str]) -> list[str]:
    """Rewrite one summary into `copy` from its runs alone, and compare it, the results table and the README block
    with the committed ones: a line per difference."""
    from ..own_images.fine_tune import report_folder
    from ..own_images.heads import report_heads
    from .study import do_report
    writer, arg = summary
    with text_only():  # the figures are not compared
        if writer == "folder":
            _quiet(report_folder if arg.startswith("fine_tune") else report_heads, copy / arg)
            path, fix = Path(arg) / "summary.md", "the folder's `cnn-exp run ... --data ...` rewrites it"
        else:
            _quiet(do_report, writer, arg, copy)
            path, fix = Path(writer) / f"summary_{arg}.md", f"`cnn-exp report {writer} --profile {arg}` rewrites it"
    problems = [] if unwritten((copy / path).read_text()) == unwritten((results / path).read_text()) else [
        f"{results / path}: stale; {fix}"]
    for table in ("results.csv", "results.md"):
        if not (results / table).exists() or (copy / table).read_text() != (results / table).read_text():
            problems.append(f"{results / table}: missing or stale; `cnn-exp report NAME` rewrites it")
    readme = results.parent / "README.md"
    if readme.exists() and unwritten((copy.parent / "README.md").read_text()) != unwritten(readme.read_text()):
        problems.append(f"{readme}: its answers or results block is stale; `cnn-exp report NAME` rewrites it")
    doc = results.parent / BENCHMARKS_DOC
    if doc.exists() and (copy.parent / BENCHMARKS_DOC).read_text() != doc.read_text():
        problems.append(f"{doc}: its benchmarks block is stale; `cnn-exp report NAME` rewrites it")
    return problems


_worker: dict = {}  # a check worker's results folder and its own copy of it


def _start_worker(results: Path, tmp: str) -> None:
    _worker.update(results=results, copy=copy_of(results, Path(tempfile.mkdtemp(dir=tmp))))


def _regenerate_in_worker(summary: tuple[str, str]) -> list[str]:
    return regenerate(_worker["results"], _worker["copy"], summary)


def stale_summaries(results: Path, jobs: int = 1) -> list[str]:
    """Each committed summary that the current code, reading results/ alone, writes differently, and the tables and
    README block it would change. With `jobs` > 1, that many processes regenerate the summaries, each in its own
    copy: every report leaving the committed files as they are is the same as all of them doing so together."""
    todo = summaries(results)
    jobs = min(jobs, len(todo))
    with tempfile.TemporaryDirectory() as tmp:
        if jobs > 1:
            from ..sweeps.executors import context
            # started as the sweep's workers are: a child forked from this process could hang on its OpenMP threads
            with context().Pool(jobs, _start_worker, (results, tmp)) as pool:
                found = pool.map(_regenerate_in_worker, todo, chunksize=1)
        else:
            copy = copy_of(results, Path(tmp))
            found = [regenerate(results, copy, s) for s in todo]
    return list(dict.fromkeys(line for lines in found for line in lines))  # a stale table is named once


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


def check(results: Path = Path("results"), jobs: int = 1) -> list[str]:
    "Every problem found, one line each (none: the committed results are current)."
    return stale_summaries(results, jobs) + stale_benchmarks(results)

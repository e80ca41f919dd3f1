"""`cnn-exp check` and `cnn-exp reproduce`: the committed results are what the code makes."""
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from cnn_experiments import cli
from cnn_experiments.reports.report import text_only
from cnn_experiments.studies import checks
from cnn_experiments.studies.reproduction import reproduce
from experiments import pooling as P

ROOT = Path(__file__).resolve().parents[1]
# the quick study's design (avg and max at one size, no dilution arm, no probes, one declared rate) in miniature:
# 4 runs of a fraction of a second
TINY = dict(seeds=2, canvas=32, channels=(4, 8), sizes=(4,), maps=(), heads=("avg", "max"), n_scenes=128, epochs=1,
            lrs=(1e-2,), probe=False)


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    folder = tmp_path_factory.mktemp("made") / "results"
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(P.PROFILES, "quick", TINY)
        with text_only():  # the checks compare text; the figures are not drawn
            assert cli.main(["run", "pooling", "--results", str(folder), "--jobs", "1"]) == 0
    return folder


@pytest.fixture
def results(made, monkeypatch, tmp_path):
    "A results folder with a tiny pooling study in it (a copy: a test may spoil it)."
    monkeypatch.setitem(P.PROFILES, "quick", TINY)
    return shutil.copytree(made, tmp_path / "results")


def test_a_summary_that_the_code_would_write_otherwise_is_stale(results):
    assert checks.stale_summaries(results) == []
    summary = results / "pooling" / "summary_quick.md"
    summary.write_text(summary.read_text().replace("## Dilution arm", "## Dilution"))
    assert checks.stale_summaries(results) == [
        f"{summary}: stale; `cnn-exp report pooling --profile quick` rewrites it"]


def test_reproduce_remakes_the_study_and_judges_its_answer_naming_the_machine(results, tmp_path):
    with text_only():  # the fresh study's figures are not what it is judged by
        lines = reproduce(results, tmp_path / "again", jobs=1, simulations=20).splitlines()
    assert re.fullmatch(r"reproduced: C6 indicative \(1 indicative\) again; runs that learn: avg \d/2 .*", lines[0])
    assert re.fullmatch(r"the study took \d+:\d\d of wall time on .+ \(.*; ATen \w+, oneDNN .*\); largest accuracy "
                        r"difference of the 4 runs remade: 0\.000", lines[1]), lines[1]
    assert re.fullmatch(r"a faithful re-draw of the committed study passes this check \d+% of the time \(20 "
                        r"simulated re-draws\)", lines[2]), lines[2]
    fresh = (tmp_path / "again" / "results" / "pooling" / "runs.csv").read_text().splitlines()
    assert len(fresh) == 1 + 4 and all(",quick," in r for r in fresh[1:])  # remade afresh, beside the committed
    runs = results / "pooling" / "runs.csv"
    runs.write_text(runs.read_text().replace(",quick,", ",other,"))  # no committed quick runs any more
    assert reproduce(results, tmp_path / "again", jobs=1).startswith("no committed quick runs of pooling")


def git(root, *args):
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True,
                   env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@t", "PATH": "/usr/bin:/bin"})
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                          text=True).stdout.strip()


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_a_benchmark_measured_before_a_change_to_its_code_is_stale(tmp_path):
    (tmp_path / "results" / "benchmarks").mkdir(parents=True)
    (tmp_path / "fast.py").write_text("x = 1\n")
    (tmp_path / "other.py").write_text("y = 1\n")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", ".")
    rev = git(tmp_path, "commit", "-qm", "code")
    report = tmp_path / "results" / "benchmarks" / "fast.md"
    report.write_text(f"**Result:** 2x\n- date: 2026; torch 2; code {rev}\n- measures: fast.py\n")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-qm", "measured")
    (tmp_path / "other.py").write_text("y = 2\n")
    git(tmp_path, "commit", "-qam", "another file")
    assert checks.stale_benchmarks(tmp_path / "results") == []
    (tmp_path / "fast.py").write_text("x = 2\n")
    latest = git(tmp_path, "commit", "-qam", "the measured code")
    assert checks.stale_benchmarks(tmp_path / "results") == [
        f"{report}: measured at {rev}, but fast.py changed since (latest {latest}); measure it again"]


def test_a_report_without_runs_reads_the_same_on_another_day_and_commit(monkeypatch):
    import pandas as pd

    from cnn_experiments.reports import report
    from cnn_experiments.runs import store
    texts = []
    for date, rev in (("2026-01-01T09:00:00", "1111111"), ("2027-06-30T18:00:00", "2222222")):
        monkeypatch.setattr(store, "provenance", lambda d=date, r=rev: dict(
            date=d, python="3.11.7", torch="2.14.1", fastai="2.8.12", git_rev=r))
        texts.append(report.unwritten(report.header("t", "c", pd.DataFrame(), "cnn-exp run edge_filter", "quick")))
    assert texts[0] == texts[1]


def test_the_benchmarks_doc_quotes_a_result_up_to_its_first_clause_with_brackets_whole(tmp_path):
    from cnn_experiments.reports import publish
    (tmp_path / "results" / "benchmarks").mkdir(parents=True)
    (tmp_path / "results" / "benchmarks" / "grid.md").write_text(
        "**Result:** 66 runs in 4.5 min (14.7 per minute; 3.2 s each); 0 of 33 cells equivalent.\n")
    readme, doc = tmp_path / "README.md", tmp_path / publish.BENCHMARKS_DOC
    readme.write_text(f"intro\n{publish.ANSWERS[0]}\nold\n{publish.ANSWERS[1]}\nrest\n")
    doc.parent.mkdir()
    doc.write_text(f"intro\n{publish.BLOCK[0]}\nold\n{publish.BLOCK[1]}\nrest\n")
    publish.update_readme(readme, tmp_path / "results")
    line = "- [grid](../results/benchmarks/grid.md): 66 runs in 4.5 min (14.7 per minute; 3.2 s each)\n"
    assert line in doc.read_text() and "old" not in doc.read_text() + readme.read_text()


def test_the_results_table_has_a_row_per_arm_and_the_check_covers_it(results):
    import pandas as pd
    table = pd.read_csv(results / "results.csv")
    assert set(table["experiment"]) == {"pooling"} and set(table["profile"]) == {"quick"}
    assert table["arm"].is_unique and (table["seeds"] == 2).all() and (table["ci_lo"] >= 0).all()
    assert "| pooling " in (results / "results.md").read_text()
    (results / "results.csv").write_text((results / "results.csv").read_text().replace("pooling,", "other,", 1))
    assert checks.stale_summaries(results) == [  # a row the reports would not write, in the table and its view
        f"{results / t}: missing or stale; `cnn-exp report NAME` rewrites it" for t in ("results.csv", "results.md")]


def test_a_benchmark_writes_into_the_git_ignored_folder_unless_told_to_publish():
    from argparse import Namespace

    from cnn_experiments.reports.benchmark import BENCHMARKS, PUBLISHED, benchmark_file
    assert benchmark_file("roofline_cpu", Namespace(out="", publish=False)) == BENCHMARKS / "roofline_cpu.md"
    assert benchmark_file("roofline_cpu", Namespace(out="", publish=True)) == PUBLISHED / "roofline_cpu.md"
    assert benchmark_file("roofline_cpu", Namespace(out="x/y.md", publish=True)) == Path("x/y.md")
    ignored = subprocess.run(["git", "check-ignore", "-q", str(BENCHMARKS / "roofline_cpu.md")], cwd=ROOT)
    assert ignored.returncode == 0  # a user's benchmark run leaves `git status` clean


def test_two_processes_find_the_stale_summary_among_clean_ones(tmp_path):
    results = tmp_path / "results"
    shutil.copytree(ROOT / "results" / "activations", results / "activations")
    for table in ("results.csv", "results.md"):
        shutil.copy(ROOT / "results" / table, results / table)
    summary = results / "activations" / "summary_full.md"
    summary.write_text(summary.read_text().replace("## Verdict", "## The verdict"))
    assert checks.stale_summaries(results, jobs=2) == [  # the quick and confirm summaries are current
        f"{summary}: stale; `cnn-exp report activations --profile full` rewrites it"]

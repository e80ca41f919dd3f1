"""The committed results are current, as `cnn-exp check` finds them: every summary regenerates unchanged from the
committed runs alone (a test each, so the workers share them out), and every benchmark report is newer than the
code it measures."""
from pathlib import Path

import pytest

from cnn_experiments.studies import checks

RESULTS = Path(__file__).resolve().parents[1] / "results"


@pytest.fixture(scope="module")
def copy(tmp_path_factory) -> Path:
    "A worker's own copy of the results and the README, which the reports rewrite."
    return checks.copy_of(RESULTS, tmp_path_factory.mktemp("committed"))


@pytest.mark.parametrize("summary", checks.summaries(RESULTS), ids="/".join)
def test_each_committed_summary_is_what_the_code_writes_from_its_runs(summary, copy):
    assert checks.regenerate(RESULTS, copy, summary) == []


def test_each_benchmark_report_is_newer_than_the_code_it_measures():
    assert checks.stale_benchmarks(RESULTS) == []

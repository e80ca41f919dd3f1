"""docs/faults.md lists the faults tried and what each gets: every test it names exists and makes its fault happen."""
import importlib
import inspect
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# what a test that makes a fault happen checks: an error raised, a process's exit code or stderr, a set-aside row
CHECKS_A_FAULT = re.compile(r"pytest\.raises\(|returncode|\.err\b|stderr|rejected|\.bad\b|SIGKILL|SIGINT|exit")


def rows() -> list[list[str]]:
    lines = [ln for ln in (ROOT / "docs" / "faults.md").read_text().splitlines() if ln.startswith("| ")][1:]
    return [[c.strip() for c in ln.strip("|").split(" | ")] for ln in lines]


def test_every_fault_in_the_docs_is_made_to_happen_by_a_test():
    assert len(rows()) >= 15
    for cells in rows():
        assert len(cells) == 3 and cells[1], cells
        sources = []
        for ref in cells[2].split(", "):
            file, name = ref.split("::")
            test = getattr(importlib.import_module(f"tests.{Path(file).stem}"), name, None)
            assert callable(test), f"{ref} (named in docs/faults.md) does not exist"
            sources.append(inspect.getsource(test))
        if re.search(r"one line|refused|set aside|traceback", cells[1]):  # an error the user sees: a test sees it too
            assert any(CHECKS_A_FAULT.search(s) for s in sources), f"{cells[0]}: no named test checks the error"


def test_a_test_that_checks_no_failure_is_caught():
    def passes_whatever():
        assert 1 + 1 == 2
    assert not CHECKS_A_FAULT.search(inspect.getsource(passes_whatever))

"""docs/faults.md lists the faults tried and what each gets: every test it names exists."""
import importlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_fault_in_the_docs_is_made_to_happen_by_a_test():
    rows = [ln for ln in (ROOT / "docs" / "faults.md").read_text().splitlines() if ln.startswith("| ")][1:]
    assert len(rows) >= 15
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split(" | ")]
        assert len(cells) == 3 and cells[1], row
        for ref in cells[2].split(", "):
            file, name = ref.split("::")
            module = importlib.import_module(f"tests.{Path(file).stem}")
            assert callable(getattr(module, name, None)), f"{ref} (named in docs/faults.md) does not exist"

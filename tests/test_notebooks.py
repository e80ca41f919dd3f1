"""The notebooks under nbs/ run top to bottom: the finding from the committed runs as it is, the folder comparison
on a small generated folder (its parameters cell set small, as a user would set it)."""
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from tests.test_fine_tune import make_folder

NBS = Path(__file__).resolve().parents[1] / "nbs"


def run(name: str, cwd: Path, parameters: str | None = None) -> nbformat.NotebookNode:
    nb = nbformat.read(NBS / name, as_version=4)
    if parameters is not None:
        cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
        cell.source = parameters
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


def text(nb) -> str:
    return "\n".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
                     for c in nb.cells if c.cell_type == "code" for o in c.outputs)


def test_the_pooling_finding_notebook_reads_the_committed_study_and_trains_nothing():
    nb = run("pooling_finding.ipynb", NBS)
    out = text(nb)
    assert "seeds 1000 to 1009" in out and "contradicted" in out and "**avg**" in out
    assert sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs) == 2


def test_the_folder_notebook_compares_the_heads_on_a_small_folder(tmp_path):
    folder = make_folder(tmp_path / "bears", per_class=4, px=32)
    nb = run("heads_on_your_folder.ipynb", tmp_path, f'FOLDER = "{folder}"\nHEADS = ("avg", "max")\n'
             'SEEDS, SIZE, EPOCHS = 1, 32, 1\nRESULTS = "out"\nJOBS = 1')
    out = text(nb)
    assert "['black', 'grizzly', 'teddy']" in out
    report = next((tmp_path / "out" / "pooling").glob("folder_bears_*/summary.md"))
    assert str(report.relative_to(tmp_path)) in out and report.read_text().splitlines()[0] in out

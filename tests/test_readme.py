"""The README's first screen: each claim's answer in plain words and the which-head answer, as the reports give them."""
from pathlib import Path

import pytest

from cnn_experiments.reports import publish
from cnn_experiments.reports.report import text_only

ROOT = Path(__file__).resolve().parents[1]


def test_the_first_15_lines_answer_every_claim_and_which_head_as_the_committed_reports_do():
    first = ROOT.joinpath("README.md").read_text().splitlines()[:15]
    assert publish.ANSWERS[0] in first and publish.ANSWERS[1] in first
    block = first[first.index(publish.ANSWERS[0]) + 1:first.index(publish.ANSWERS[1])]
    with text_only():  # the committed figure stays as it is
        assert block == publish.answers(ROOT / "results")
    assert block[-1] == "![claims](results/claims.png)" and (ROOT / "results" / "claims.png").exists()
    claims = {ln.split("**")[1] for ln in block if ln.startswith("- **C")}
    assert claims == {"C1", "C2, C3", "C4", "C5", "C6", "C7", "C8"}
    assert any(ln.startswith("- **Which head for your images?** **avg**") for ln in block)
    assert all("The lesson was **" in ln and "[Report](results/" in ln for ln in block if ln.startswith("- **C"))


@pytest.mark.parametrize("counts, word", [
    ({"supported": 4, "equivalent": 1}, "right"),
    ({"supported": 6, "inconclusive": 1}, "right"),
    ({"contradicted": 1}, "wrong"),
    ({"supported": 2, "contradicted": 1, "equivalent": 9}, "mostly right"),  # one exception among twelve rows
    ({"supported": 1, "contradicted": 2, "below the margin": 1}, "mostly wrong"),  # the central prediction fails
    ({"supported": 1, "contradicted": 1}, "it depends"),
    ({"inconclusive": 3, "below the margin": 1}, "not settled"),
])
def test_how_the_lesson_fared_is_read_from_its_outcomes_counted(counts, word):
    assert publish.fared(counts) == word


def test_a_claims_line_gives_the_number_that_shows_it_and_its_exception(tmp_path):
    s = tmp_path / "summary_confirm.md"
    s.write_text("# x: does it?\n\n> C9: it does.\n\n**C9 is mixed (2 supported, 1 contradicted).**\n\nEach row.\n\n"
                 "| comparison | predicted | test | n | effect [95% CI] | p (Holm) | outcome |\n"
                 "|---|---|---|---|---|---|---|\n"
                 "| a - b | > 0 | t | 5 | +0.100 [+0.050, +0.150] | 0.01 | supported |\n"
                 "| c - d | > 0 | t | 5 | -0.200 [-0.300, -0.100] | 0.01 | contradicted |\n"
                 "| e - f | > 0 | t | 5 | +0.010 [+0.001, +0.020] | 0.04 | supported |\n\nafter\n")
    assert publish.answer_of(s, "r/x/summary_confirm.md") == (
        "- **C9** Does it? The lesson was **mostly right** (2 supported, 1 contradicted): a - b +0.100 [+0.050, "
        "+0.150]; wrong about: c - d -0.200 [-0.300, -0.100]. [Report](r/x/summary_confirm.md)")

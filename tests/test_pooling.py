"""The pooling study: its arms, its declared comparisons, and a report that trains nothing."""
import os

import numpy as np
import pandas as pd
import pytest
import torch

from cnn_experiments import cli
from cnn_experiments.reports.publish import verdicts_of
from cnn_experiments.reports.report import text_only
from cnn_experiments.runs.config import POOLS, to_row
from cnn_experiments.statistics import stats
from cnn_experiments.training import probes, train
from experiments import pooling as P


def test_profiles_hold_the_lessons_geometry_and_the_declared_search():
    for profile in ("medium", "full"):
        p = P.PROFILES[profile]
        assert P.map_side(profile) == 7 and p["seeds"] >= 10
        cells = [s / P.cell_px(profile) for s in p["sizes"]]
        assert min(cells) <= 0.4 and max(cells) >= 1.25 and 1.0 in cells
        assert len(p["lrs"]) >= 5 and min(p["lrs"]) <= 3e-4 and max(p["lrs"]) >= 3e-2
        assert 2 in p["maps"] and max(p["maps"]) >= 10
    search = P.search("medium")
    cells = {P.key(c) for arm in P.cells("medium").values() for c in arm}
    assert {c.split for c in search} == {"search"} and len(search) == len(cells) * len(P.LRS)


def test_the_grid_takes_each_cells_searched_rate():
    search = P.search("medium")
    best = {(112, 12, "max"): 3e-2, (32, 28, "avg"): 3e-4}
    runs = pd.DataFrame([dict(run_id=c.run_id, cell_id=c.cell_id, accuracy=0.9 if best.get(P.key(c)) == c.lr else 0.6,
                              valid_loss=0.3) for c in search])
    lrs = {P.key(c): c.lr for c in P.grid("medium", runs)}
    assert lrs[(112, 12, "max")] == 3e-2 and lrs[(32, 28, "avg")] == 3e-4
    assert lrs[(112, 12, "avg")] == 3e-4  # a tie: the lower rate


def test_the_confirmatory_threshold_rate_is_one_per_head_scored_over_its_sizes():
    search = P.search("confirm")
    assert {c.seed for c in search} == {1000} and {c.vary_data for c in search} == {True}
    lrs = P.PROFILES["confirm"]["lrs"]
    assert max(lrs) > max(P.LRS)  # a step past the top of the pilot's grid, its most chosen rate

    def accuracy(c):  # max: one size's lucky run at 1e-3, every size decent at 1e-2
        if c.pool == "max" and c.obj_size != 28:  # the threshold arm (search runs carry no probes)
            return 0.95 if (c.obj_size, c.lr) == (12, 1e-3) else 0.8 if c.lr == 1e-2 else 0.5
        return 0.9 if c.lr == 3e-2 else 0.7
    runs = pd.DataFrame([dict(run_id=c.run_id, cell_id=c.cell_id, accuracy=accuracy(c), valid_loss=0.3)
                         for c in search])
    chosen = {P.key(c): c.lr for c in P.grid("confirm", runs)}
    assert {lr for (canvas, size, head), lr in chosen.items() if head == "max" and canvas == 112 and size != 28} \
        == {1e-2}
    assert chosen[(224, 28, "max")] == 3e-2


def simulated(profile: str, accuracy) -> pd.DataFrame:
    "The profile's grid, every seed, with accuracies from `accuracy(cfg)`: a runs table as a sweep writes it."
    runs = [c.replace(seed=s) for c in P.grid(profile) for s in range(P.PROFILES[profile]["seeds"])]
    rows = [dict(run_id=c.run_id, cell_id=c.cell_id, **to_row(c), accuracy=accuracy(c)) for c in runs]
    return P.label(pd.DataFrame(rows), profile)


def lesson_world(c, avg_concat_gap=0.0):
    "Max pooling learns small objects where avg does not; the gap grows with the map."
    rng = np.random.default_rng([P.HEADS.index(c.pool), c.obj_size, c.canvas, c.seed])
    small = c.obj_size <= P.one_cell("medium")
    base = 0.92 if c.pool in ("max", "concat") or not small else 0.55
    if c.canvas != 112 or c.obj_size == 28:  # dilution: avg falls as the map grows
        base = 0.95 - (0.3 * (c.canvas / 160) if c.pool == "avg" else 0)
    return base + rng.normal(0, 0.01) - (avg_concat_gap if c.pool == "concat" else 0)


def test_the_claim_is_supported_in_a_world_where_the_lesson_holds():
    table = stats.compare(simulated("medium", lesson_world), P.comparisons("medium"))
    assert stats.word(table) == "supported", table[["comparison", "outcome"]]


def test_avg_beating_concat_but_not_max_is_said():
    "The old verdict read max only: a concat that loses to avg must show in the table and the verdict."
    def world(c):
        rng = np.random.default_rng(c.seed * 7 + len(c.pool))
        return {"concat": 0.70}.get(c.pool, 0.90) + rng.normal(0, 0.01)
    table = stats.compare(simulated("medium", world), P.comparisons("medium")).set_index("comparison")
    assert table.loc["concat - avg, accuracy, object of one cell", "outcome"] == "contradicted"
    assert table.loc["max - avg, accuracy, object of one cell", "outcome"] == "inconclusive"  # directional: no "equal"
    assert stats.word(table.reset_index()) == "contradicted"


def test_only_the_drawn_runs_keep_their_weights():
    kept = [c for c in P.grid("medium") if P.keep(c.replace(seed=0), "medium")]
    assert sorted(c.pool for c in kept) == ["avg", "concat", "max"]
    assert {c.obj_size for c in kept} == {P.one_cell("medium")} and not P.keep(kept[0].replace(seed=1), "medium")


# every arm, the claim's three heads: 18 runs of a fraction of a second
TINY = dict(seeds=2, canvas=32, channels=(4, 8), sizes=(4,), maps=(8, 16), heads=("avg", "max", "concat"),
            n_scenes=128, epochs=1, lrs=(1e-2,))


def test_the_study_runs_end_to_end_and_its_report_trains_nothing(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(P.PROFILES, "quick", TINY)
    # a body's head-only probes as a run records them (fitting them is test_train's): the arm's table is drawn
    monkeypatch.setattr(probes, "head_only", lambda learn: {f"probe_{h}": 0.5 for h in POOLS})
    assert cli.main(["run", "pooling", "--results", str(tmp_path), "--jobs", "1"]) == 0
    out = tmp_path / "pooling"
    text = (out / "summary_quick.md").read_text()
    for part in ("command: `cnn-exp run pooling --profile quick`", "seeds per cell: 2",
                 "runs a minute of one process's training", "## Verdict", "| comparison | predicted | test |",
                 "## Threshold arm", "## Dilution arm", "## Head-only arm", "| body trained with ",
                 "## Why heads fail", "quick_cams.png", "distinct '3's", "indicative"):
        assert part in text, part
    assert (out / "quick_cams.png").stat().st_size > 0 and (out / "curves.csv").exists()
    monkeypatch.setattr(train, "fit", lambda *a: pytest.fail("a report trained a model"))
    capsys.readouterr()
    with text_only():  # the text is compared; the figures are drawn above
        assert cli.main(["report", "pooling", "--profile", "quick", "--results", str(tmp_path)]) == 0
    again = (out / "summary_quick.md").read_text()
    assert [ln for ln in again.splitlines() if not ln.startswith("- report:")] == \
           [ln for ln in text.splitlines() if not ln.startswith("- report:")]
    rows = (out / "runs.csv").read_text().splitlines()
    (out / "runs.csv").write_text("\n".join(r for r in rows if ",max," not in r) + "\n")  # max not run yet
    with text_only():
        assert cli.main(["report", "pooling", "--profile", "quick", "--results", str(tmp_path)]) == 0
    partial = (out / "summary_quick.md").read_text()
    assert "## Status: the grid is not complete" in partial and "not run yet" in partial
    assert "| max - avg, accuracy, object of one cell | > 0 | paired t | 0 seeds |" in partial


def pilot_world(cfg, keep=(), progress=None):
    """A fake train.result in the pilot's world: avg learns from 13 px, max and concat from 16, gem from 14; the
    dilution arm's max gains 0.01 per doubling of the map's side; every probe reads a body alike."""
    rng = np.random.default_rng([P.HEADS.index(cfg.pool), cfg.obj_size, cfg.canvas, cfg.seed, int(cfg.lr * 1e4)])
    starts = {"avg": 13, "gem": 14}.get(cfg.pool, 16)
    if cfg.obj_size == 28:
        acc = 0.9 + (0.01 * np.log2(cfg.canvas / 16) if cfg.pool == "max" else 0) + rng.normal(0, 0.003)
    else:
        acc = (0.9 if cfg.obj_size >= starts else 0.5) + rng.normal(0, 0.003)
    probes = {f"probe_{h}": acc + rng.normal(0, 0.003) for h in P.HEADS} if cfg.probe else {}
    curve = [dict(step=s, epoch=0, train_loss=0.69 - 0.01 * s * (acc > 0.6), object_grad_share=0.1 * (acc > 0.6),
                  object_cell_share=0.02) for s in range(1, 10)]
    metrics = dict(accuracy=acc, train_loss=0.3, valid_loss=0.3, diverged=False, seconds=1.0, epochs_run=cfg.epochs,
                   device="cpu (test)", **probes)
    return train.Result(metrics, curve)


def test_the_confirmatory_report_opens_with_its_answers_and_recommends_avg_where_max_fails(monkeypatch, tmp_path):
    monkeypatch.setattr(train, "result", pilot_world)
    fitted, fit = {}, stats.threshold

    def threshold(size, learned):  # the report and its figures ask for a head's threshold 16 times: fit each once
        key = (tuple(np.asarray(size, float)), tuple(np.asarray(learned, bool)))
        if key not in fitted:
            fitted[key] = fit(size, learned)
        return dict(fitted[key])
    monkeypatch.setattr(stats, "threshold", threshold)
    monkeypatch.setattr(os, "fsync", lambda fd: None)  # 420 runs appended: their durability is test_store's
    assert cli.main(["run", "pooling", "--profile", "confirm", "--results", str(tmp_path), "--jobs", "1"]) == 0
    text = (tmp_path / "pooling" / "summary_confirm.md").read_text()
    order = [text.index(h) for h in ("## What it found", "## Which head to use", "## Figures", "## Verdict",
                                     "## Threshold arm", "## Appendix: learning rates")]
    assert order == sorted(order) and "## Status" not in text
    found = text[order[0]:order[1]]
    assert "**Does max learn at smaller objects than avg?** No, the opposite." in found
    assert "**Does max - avg grow as the map grows?** Yes" in found
    assert "(equivalent within ±0.01)" in found and "the same bodies read alike, equivalent within ±0.01; GeM" in found
    head = text[order[1]:order[2]]
    assert "cells**: **avg**" in head and "**max** on maps of 14x14" in head
    assert "**C6 is mixed (1 supported, 2 contradicted, 1 inconclusive).**" in text
    assert verdicts_of(tmp_path / "pooling" / "summary_confirm.md") == "C6 mixed (1 supported, 2 contradicted, 1 " \
        "inconclusive)"  # the README's claims table quotes C6 alone, not the mechanism's family
    assert "Chosen rates at an edge of the grid:" in text and "seeds per cell: 10" in text
    for name in ("confirm_share_vs_size.png", "confirm_dilution.png", "confirm_why.png"):
        assert (tmp_path / "pooling" / name).stat().st_size > 0, name


def test_the_fastai_head_pilot_runs_fastais_head_with_each_pool_and_reports(monkeypatch, tmp_path):
    "Declared: fastai's create_head with each global pool, the rate searched per head; its report names that head."
    cfgs = P.grid("fastai_head_pilot")
    assert {(c.arch, c.head, c.p, c.probe) for c in cfgs} == {("fastai_head", "fastai_pool", 0.5, False)}
    assert {c.pool for c in cfgs} == {"avg", "max", "concat"} and P.keep(cfgs[0], "fastai_head_pilot") == ()
    model = train.build_model(cfgs[0].replace(pool="max"), 2)
    assert type(model[1][0]).__name__ == "AdaptiveMaxPool2d" and isinstance(model[1][2], torch.nn.BatchNorm1d)
    small = dict(seeds=2, sizes=(14, 16), maps=(2, 7), lrs=(1e-2, 3e-2))  # the report's sections from fewer runs
    monkeypatch.setitem(P.PROFILES, "fastai_head_pilot", {**P.PROFILES["fastai_head_pilot"], **small})
    monkeypatch.setattr(train, "result", pilot_world)
    monkeypatch.setattr(os, "fsync", lambda fd: None)
    argv = ["run", "pooling", "--profile", "fastai_head_pilot", "--results", str(tmp_path), "--jobs", "1"]
    with text_only():
        assert cli.main(argv) == 0
    text = (tmp_path / "pooling" / "summary_fastai_head_pilot.md").read_text()
    assert "head: fastai's `create_head(ps=0.5)` with the head's global pool" in text
    assert "| max - avg, share of runs that learn, all threshold sizes |" in text and "## Dilution arm" in text
    assert "None: fastai's head has a hidden layer" in text

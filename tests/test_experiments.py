import numpy as np
import pandas as pd
import torch

from cnn_experiments import models
from cnn_experiments.cams import class_activation_maps
from experiments import edge_filter, pooling


def test_top_edge_kernel_peaks_on_a_top_edge():
    x = torch.zeros(1, 1, 12, 12)
    x[0, 0, 4:9, 3:9] = 1.0  # an ink square: its top edge is row 4
    raw, act = edge_filter.edge_maps(x)
    row, col = divmod(int(raw[0, 0].argmax()), 12)
    assert row in (3, 4) and edge_filter.is_top_edge(x[0, 0], row, col)
    assert raw[0, 0, 8, 3:9].max() < 0 and act[0, 0, 8, 3:9].max() == 0  # the bottom edge is negative; ReLU zeroes it


def test_top_edge_peaks_on_real_digits(digits):
    assert edge_filter.peak_stats(digits.x_valid[:200])["top_edge"].mean() > 0.95


def test_cam_points_at_the_hot_cell():
    model = models.pooled_cnn((4,), n_out=2, pool="max")
    body = torch.nn.Identity()
    model[0] = body  # the "feature map" is the input itself: one channel
    lin = model[1][-1] = torch.nn.Linear(1, 2)
    with torch.no_grad():
        lin.weight[:] = torch.tensor([[-1.0], [1.0]])
    x = torch.zeros(1, 1, 7, 7)
    x[0, 0, 6, 0] = 2.0  # the tiny bear in the bottom-left corner
    cam = class_activation_maps(model, x)
    assert divmod(int(cam[0].argmax()), 7) == (6, 0)


def table(means: dict, spread=0.01, seeds=5):
    "A hand-made runs table: {(cells, pool): mean accuracy} with a small, fixed per-seed spread."
    rows = [dict(cells=c, pool=p, seed=s, accuracy=m + spread * (s - (seeds - 1) / 2) / seeds)
            for (c, p), m in means.items() for s in range(seeds)]
    from cnn_experiments.report import summarize
    return summarize(pd.DataFrame(rows), ["cells", "pool"])


def lesson_world(small_max, small_avg, large=0.97):
    return table({(0.5, "avg"): small_avg, (0.5, "max"): small_max, (0.5, "concat"): small_max,
                  (1.0, "avg"): small_avg + 0.03, (1.0, "max"): small_max + 0.03, (1.0, "concat"): small_max + 0.03,
                  (7.0, "avg"): large, (7.0, "max"): large + 0.001, (7.0, "concat"): large})


def test_pooling_verdict_supported_when_max_clearly_wins_small_and_the_gap_closes():
    word, lines = pooling.verdict(lesson_world(small_max=0.85, small_avg=0.6))
    assert word == "supported"
    assert any("0.5 cells: max" in ln and "max beats avg" in ln for ln in lines)


def test_pooling_verdict_not_supported_when_max_loses():
    word, _ = pooling.verdict(lesson_world(small_max=0.6, small_avg=0.85))
    assert word.startswith("contradicted")
    word, _ = pooling.verdict(lesson_world(small_max=0.7, small_avg=0.7))
    assert word.startswith("not supported")


def test_pooling_verdict_skips_sizes_where_every_head_is_at_chance():
    at_chance = {(0.25, h): 0.5 for h in ("avg", "max", "concat")}
    s = pd.concat([table(at_chance), lesson_world(small_max=0.85, small_avg=0.6)])
    word, lines = pooling.verdict(s)
    assert word == "supported" and lines[0].startswith("0.25 cells: every head at chance")


def test_pooling_grid_uses_the_searched_lr_per_head():
    search = pooling.search("medium")
    assert {c.split for c in search} == {"search"} and len(search) == len(pooling.HEADS) * 2
    runs = pd.DataFrame([dict(cell_id=c.replace(device="cuda").cell_id, pool=c.pool, valid_loss=0.3,
                              accuracy=0.9 if c.lr == 3e-3 and c.pool == "max" else 0.8) for c in search])
    lrs = {c.pool: c.lr for c in pooling.grid("medium", runs)}
    assert lrs["max"] == 3e-3 and all(np.isclose(v, 3e-3) for v in lrs.values())  # ties: first (lower) lr
    assert {c.obj_size for c in pooling.grid("medium", runs)} == set(pooling.PROFILES["medium"]["sizes"])


def test_profiles_reach_a_seven_by_seven_map():
    assert pooling.map_side("full") == 7 and pooling.cell_px("full") == 32
    assert pooling.map_side("medium") == 7 and pooling.cell_px("medium") == 16
    full = pooling.PROFILES["full"]
    assert full["seeds"] >= 5 and len(full["sizes"]) >= 6 and 28 in full["sizes"] and full["canvas"] in full["sizes"]


def test_pooling_verdict_on_an_incomplete_grid_is_final_only_when_the_missing_sizes_cannot_change_it():
    no = lesson_world(small_max=0.7, small_avg=0.7)  # not supported at the smallest sizes
    assert pooling.pending("not supported", no, {7.0: ["avg"]}) is None
    assert pooling.pending("not supported", no, {}) is None
    assert "0.5 cells" in pooling.pending("not supported", no, {0.5: ["lse"]})
    yes = lesson_world(small_max=0.85, small_avg=0.6)  # supported needs the gap at the largest size
    assert "7 cells is missing" in pooling.pending("supported", yes, {7.0: ["max"]})


def test_pooling_missing_runs_names_the_heads_short_of_seeds():
    cfgs = pooling.grid("quick")
    seeds = pooling.PROFILES["quick"]["seeds"]
    rows = [dict(cell_id=c.cell_id, seed=s) for c in cfgs for s in range(seeds)
            if not (c.obj_size == 64 and c.pool in ("gem", "lse") and s == 1)]
    assert pooling.missing_runs(pd.DataFrame(rows), "quick") == {64 / pooling.cell_px("quick"): ["gem", "lse"]}
    assert pooling.missing_runs(pd.DataFrame(rows[:0], columns=["cell_id", "seed"]), "quick").keys() == {
        s / pooling.cell_px("quick") for s in pooling.PROFILES["quick"]["sizes"]}


def test_pooling_resume_command_names_any_device_for_a_grid_made_on_two_devices():
    one = pd.DataFrame({"device": ["cpu (x86_64, 2 threads)"] * 2})
    two = pd.DataFrame({"device": ["NVIDIA H200", "cpu (x86_64, 2 threads)"]})
    assert pooling.resume_command(one, "full") == "`cnn-exp run pooling --profile full`"
    assert pooling.resume_command(two, "full") == "`cnn-exp run pooling --profile full --any-device`"

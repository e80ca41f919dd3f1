"""The benchmarks' own commands: every committed report's command line is one its script still takes."""
import importlib.util
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch

from cnn_experiments.errors import UserError
from tests.conftest import TINY_SCENES

ROOT = Path(__file__).resolve().parents[1]
REPORTS = sorted((ROOT / "results" / "benchmarks").glob("*.md"))


def script(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("report", REPORTS, ids=[r.stem for r in REPORTS])
def test_a_committed_benchmarks_command_parses(report):
    command = re.search(r"^- command: `python benchmarks/(\w+)\.py ?(.*)`$", report.read_text(), re.M)
    assert command, f"{report.name} names no command"
    script(command[1]).parser().parse_args(shlex.split(command[2]))


def test_precision_runs_a_profiles_one_declared_rate_and_names_the_sizes_a_searched_profile_has():
    precision = script("precision")
    assert precision.rate("quick", {}, (64, 20, "avg")) == 0.01  # quick declares one rate for every cell
    assert precision.rate("medium", {(112, 20, "avg"): 3e-3}, (112, 20, "avg")) == 3e-3
    with pytest.raises(UserError, match="21 px is not searched in the medium profile; its sizes are 6,8"):
        precision.rate("medium", {}, (112, 21, "avg"))


def test_roofline_splits_a_step_by_part_and_its_flops_add_up_to_the_whole():
    roofline = script("roofline")
    flops = roofline.part_flops(32)
    assert sum(flops.values()) == roofline.counts(roofline.pooled_cnn(roofline.CHANNELS, 2, pool="max"), 32)["flops"]
    kinds, _, _ = roofline.profile_step(2, 32, 1, channels_last=True)
    assert list(kinds) == list(flops)  # the stages, the head, the loss, the optimizer step, the rest
    assert all(kinds[name]["conv"] > 0 for name in list(kinds)[:5])  # each stage owns its convolution's time


def test_the_plain_loops_schedule_is_fastais_fit_one_cycle():
    from fastai.callback.schedule import combined_cos
    plain = script("plain_pooling")
    total, lr = 400, 0.1
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=lr, betas=(0.9, 0.99))
    sched, got = plain.one_cycle(opt, lr, total), []
    for _ in range(total):
        got.append((opt.param_groups[0]["lr"], opt.param_groups[0]["betas"][0]))
        opt.step()
        sched.step()
    lrs, moms = combined_cos(0.25, lr / 25, lr, lr / 1e5), combined_cos(0.25, 0.95, 0.85, 0.95)
    want = [(float(lrs(i / total)), float(moms(i / total))) for i in range(total)]
    assert np.allclose(got, want, rtol=0.02, atol=lr / total)  # the same curves, within a step of each other


def test_the_plain_loop_trains_the_suites_model_on_the_suites_scenes():
    plain = script("plain_pooling")
    acc = plain.plain_run(TINY_SCENES.replace(pool="max", epochs=2))
    assert 0.0 <= acc <= 1.0 and acc == plain.plain_run(TINY_SCENES.replace(pool="max", epochs=2))  # seeded

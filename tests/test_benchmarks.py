"""The benchmarks' own commands: every committed report's command line is one its script still takes."""
import importlib.util
import re
import shlex
from pathlib import Path

import pytest

from cnn_experiments.errors import UserError

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

"""The GPU path, where there is a GPU: a run, a fused pair and the bf16 / channels-last options train there."""
import pytest
import torch

from cnn_experiments.training import fused, train
from tests.conftest import TINY, TINY_SCENES

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_a_run_on_the_gpu_learns_as_on_the_cpu():
    gpu, cpu = train.run(TINY.replace(device="cuda")), train.run(TINY)
    assert gpu["device"] == torch.cuda.get_device_name() and gpu["accuracy"] == pytest.approx(cpu["accuracy"], abs=0.05)


def test_fused_members_and_the_fast_options_train_on_the_gpu():
    cfgs = [TINY_SCENES.replace(device="cuda", seed=s, precision="bf16", channels_last=True) for s in (0, 1)]
    results = fused.run(cfgs)
    alone = [train.run(c) for c in cfgs]  # each member trains as it would on its own, within bf16's rounding
    assert all(r.metrics["fused"] == 2 for r in results)
    assert [r.metrics["accuracy"] for r in results] == pytest.approx([a["accuracy"] for a in alone], abs=0.05)

"""The Python API: the heads as fastai modules, a learner with a chosen head, the README's example as written."""
import re
from pathlib import Path

import pytest
import torch
from fastai.vision.all import ImageDataLoaders, Resize, resnet18, vision_learner
from fastai.vision.learner import create_head as fastai_create_head

from cnn_experiments import api
from cnn_experiments.models.pooling import POOLS
from tests.test_fine_tune import make_folder

README = Path(__file__).resolve().parents[1] / "README.md"


def tiny_dls(tmp_path):
    root = make_folder(tmp_path / "bears", per_class=4, px=32)
    return ImageDataLoaders.from_folder(root, valid_pct=0.25, seed=0, item_tfms=Resize(32), bs=4, num_workers=0)


def test_concat_is_fastais_own_head_and_every_other_pool_swaps_only_the_pooling_layer():
    assert str(api.create_head(512, 3, pool="concat")) == str(fastai_create_head(512, 3))
    avg = fastai_create_head(512, 3, concat_pool=False)
    for name in POOLS:
        head = api.create_head(512, 3, pool=name)
        assert type(head[0]) is type(POOLS[name][0]())
        assert [str(m) for m in head[1:]] == [str(m) for m in (fastai_create_head(512, 3) if name == "concat"
                                                               else avg)[1:]]
        assert head.eval()(torch.randn(2, 512, 7, 7)).shape == (2, 3)


def test_max_head_reads_the_largest_cell_and_avg_the_mean():
    x = torch.zeros(1, 4, 7, 7)
    x[0, :, 6, 6] = 49.0  # one bright cell in the corner: max sees 49, avg 1
    assert api.create_head(4, 2, pool="max")[0](x).flatten().tolist() == [49.0] * 4
    assert api.create_head(4, 2, pool="avg")[0](x).flatten().tolist() == [1.0] * 4


def test_a_head_drops_into_vision_learner_as_its_custom_head(tmp_path):
    dls = tiny_dls(tmp_path)
    head = api.create_head(512, dls.c, pool="max")
    learn = vision_learner(dls, resnet18, pretrained=False, custom_head=head)
    assert learn.model[1] is head
    xb, _ = dls.one_batch()
    assert learn.model.eval()(xb).shape == (len(xb), dls.c)


def test_the_readmes_python_example_runs_as_written(tmp_path):
    section = README.read_text().split("## Python", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)[1]
    assert len(code.strip().splitlines()) <= 3
    scope = {"dls": tiny_dls(tmp_path)}
    exec(code, scope)
    learn = scope["learn"]
    assert type(learn.model[1][0]) is type(POOLS["avg"][0]())  # the head the example asks for
    assert len(learn.recorder.values) == 4  # fine_tune(4): four epochs after the frozen one


@pytest.mark.parametrize("name, columns", [("pooling", {"arm", "learned", "cells", "accuracy"})])
def test_a_committed_studys_runs_and_verdicts_load_without_training(name, columns):
    runs, table = api.study_runs(name, "confirm"), api.verdicts(name, "confirm")
    assert columns <= set(runs.columns) and runs["seed"].min() >= 1000
    assert set(table["outcome"]) <= {"supported", "contradicted", "inconclusive", "equivalent", "below the margin"}
    assert len(table) == 4


def test_reading_a_committed_study_loads_neither_torch_nor_fastai():
    "A notebook that only reads results starts in seconds: training's libraries come with what trains."
    import subprocess
    import sys
    code = ("import sys\nfrom cnn_experiments.api import study_runs\nstudy_runs('pooling', 'quick')\n"
            "print(sorted(m for m in ('torch', 'fastai') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "[]"

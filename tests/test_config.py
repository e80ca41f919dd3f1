import pytest

from cnn_experiments.errors import UserError
from cnn_experiments.runs.config import Config, from_row, to_row
from tests.conftest import TINY


@pytest.mark.parametrize("field,value,match", [
    ("pool", "median", "pool: unknown value 'median'; choose one of avg"),
    ("act", "swish", "act: unknown value"),
    ("p", 1.0, r"p: dropout must be in \[0, 1\)"),
    ("epochs", 0, "epochs: must be a positive integer"),
    ("obj_size", 300, "obj_size: 300 px does not fit the 64 px canvas"),
    ("device", "tpu", "device: unknown value 'tpu'"),
    ("precision", "fp16", "precision: unknown value 'fp16'; choose one of fp32, bf16"),
    ("width", 0.0, "width: must be positive"),
    ("probe", True, "probe: head-only probes need arch pooled_cnn"),
    ("head", "fastai_pool", "head: 'fastai_pool' goes with the pretrained bodies and fastai_head, not simple_cnn"),
    ("head", "gap", "head: unknown value 'gap'; choose one of fastai, pool, fastai_pool"),
])
def test_check_names_the_field_at_fault(field, value, match):
    with pytest.raises(UserError, match=match):
        TINY.replace(**{field: value}).check()


def test_fine_tune_needs_a_frozen_and_an_unfrozen_epoch():
    ft = dict(arch="efficientnet_lite0", pretrained=True, schedule="fine_tune")
    with pytest.raises(UserError, match=r"freeze_epochs \(1\) frozen and at least 1 unfrozen, got 1"):
        Config(**ft, epochs=1).check()
    with pytest.raises(UserError, match=r"freeze_epochs \(3\)"):
        Config(**ft, epochs=3, freeze_epochs=3).check()
    Config(**ft, epochs=4, freeze_epochs=3).check()


def test_run_id_is_the_seed_and_the_changed_fields_and_not_the_device():
    assert TINY.run_id != TINY.replace(lr=0.031).run_id
    assert TINY.cell_id == TINY.replace(seed=3).cell_id != TINY.replace(bs=16).cell_id
    assert TINY.run_id == TINY.replace(device="cuda").run_id  # where it ran is recorded, not identity
    # pinned: a change to how ids are made would orphan every committed run
    assert Config(epochs=1).run_id == "843f5ee44e89" and Config(epochs=1).cell_id == "bf21a9e8fbc5"


def test_a_row_gives_back_its_config():
    cfg = TINY.replace(channels=(8, 16), pool="gem", p=0.25, seed=3, bn=False, device="cuda")
    row = {k: str(v) for k, v in to_row(cfg).items()} | {"device": "NVIDIA H100 80GB HBM3"}
    assert from_row(row) == cfg
    assert from_row({"epochs": 5.0, "n_train": float("nan")}) == Config(epochs=5)  # pandas' floats and blanks


def test_a_body_from_scratch_with_the_pool_head_is_pooled_cnn():
    with pytest.raises(UserError, match="head: 'pool' on a body from scratch is arch pooled_cnn"):
        TINY.replace(arch="fastai_head", head="pool").check()

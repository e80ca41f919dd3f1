"""One run: a pure function of its config, computed with the same threads wherever it runs."""
import pytest
import torch

from cnn_experiments.runs.machine import MACHINE
from cnn_experiments.training import train
from cnn_experiments.training.callbacks import TrainingCurve, object_cells, object_grad_share
from tests.conftest import TINY, TINY_SCENES


def test_same_config_same_numbers_and_another_seed_other_numbers():
    a, b = train.run(TINY), train.run(TINY)
    for k in ("train_loss", "valid_loss", "accuracy"):
        assert a[k] == b[k], k
    assert train.run(TINY.replace(seed=1))["valid_loss"] != a["valid_loss"]
    assert a["accuracy"] > 0.5  # 256 digits, one epoch: well above chance (0.1)


def test_a_run_computes_with_one_thread_whatever_the_caller_uses():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        two = train.run(TINY)
        torch.set_num_threads(1)
        one = train.run(TINY)
        assert torch.get_num_threads() == 1  # the caller's setting is given back
    finally:
        torch.set_num_threads(before)
    assert two["valid_loss"] == one["valid_loss"] and two["device"] == one["device"] == train.device_name("cpu")
    assert "1 thread)" in one["device"]


def test_the_metrics_of_a_run():
    m = train.run(TINY)
    assert {"train_loss", "valid_loss", "accuracy", "seconds", "epochs_run", "device", "diverged", *MACHINE} <= set(m)
    assert m["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert m["epochs_run"] == 2 and m["diverged"] is False


def test_a_diverging_run_is_stopped_and_recorded_as_diverged():
    m = train.run(TINY.replace(lr=1e6, schedule="constant", epochs=3, bn=False))
    assert m["diverged"] is True and m["accuracy"] != m["accuracy"]  # NaN, not a NaN model's accuracy
    assert m["epochs_run"] < 3  # stopped early, not run to the end


def test_the_training_curve_and_gradient_probe_change_no_number(monkeypatch):
    cfg = TINY_SCENES.replace(epochs=2)
    with_probe = train.result(cfg)
    assert [r["step"] for r in with_probe.curve] == [0, 1, 2, 4, 4 + 4]  # 4 batches an epoch: powers of 2, epoch ends
    assert {"train_loss", "object_grad_share", "object_cell_share"} <= set(with_probe.curve[-1])
    monkeypatch.setattr(TrainingCurve, "record", lambda self: None)
    plain = train.result(cfg)
    assert with_probe.metrics["valid_loss"] == plain.metrics["valid_loss"] and plain.curve == []


def test_average_pooling_spreads_the_gradient_evenly_and_max_sends_it_to_one_cell():
    from cnn_experiments.models.cnns import pooled_cnn
    torch.manual_seed(0)
    x, y = torch.rand(6, 1, 32, 32), torch.ones(6, dtype=torch.long)
    boxes = torch.tensor([[0, 0, 8]] * 6)  # the top-left cell of a 4x4 map of 8 px cells
    avg = object_grad_share(pooled_cnn((4, 8, 8), 2, pool="avg"), x, y, boxes)
    assert avg["object_cell_share"] == pytest.approx(1 / 16)
    assert avg["object_grad_share"] == pytest.approx(1 / 16, rel=1e-4)  # 1/16 of the gradient to each cell
    model = pooled_cnn((4, 8, 8), 2, pool="max")
    bn = model[0][0][1].running_mean.clone()
    share = object_grad_share(model, x, y, boxes)["object_grad_share"]
    assert torch.equal(model[0][0][1].running_mean, bn)  # measured as training sees it, nothing changed
    assert share != pytest.approx(1 / 16, rel=1e-2)


def test_object_cells_are_the_cells_a_box_overlaps():
    mask = object_cells(torch.tensor([[10, 20, 12]]), canvas=64, side=4)[0]  # rows 10-21, cols 20-31 of 16 px cells
    assert mask.nonzero().tolist() == [[0, 1], [1, 1]]


def test_the_smoothed_loss_stays_on_the_device_and_matches_fastais():
    from fastai.learner import AvgSmoothLoss

    from cnn_experiments.training.callbacks import DeviceSmoothLoss
    learn = train.learner(TINY, progress=False)
    train.fit(learn, TINY)
    ours = learn.recorder.smooth_loss
    assert isinstance(ours, DeviceSmoothLoss) and ours.value.device == next(learn.model.parameters()).device
    plain = train.learner(TINY, progress=False)
    plain.recorder.smooth_loss = AvgSmoothLoss()  # fastai's own, which copies each batch's loss to the host
    train.fit(plain, TINY)
    assert float(ours.value) == pytest.approx(float(plain.recorder.smooth_loss.value), rel=1e-6)


def test_head_only_probes_fit_every_pooling_head_on_the_frozen_body():
    from cnn_experiments.training import probes as P
    cfg = TINY_SCENES.replace(probe=True, n_scenes=256)
    learn = train.learner(cfg, progress=False)
    train.fit(learn, cfg)
    body = {k: v.clone() for k, v in learn.model[0].state_dict().items()}
    probes = P.head_only(learn)
    assert set(probes) == {f"probe_{h}" for h in ("avg", "max", "concat", "avgmax", "gem", "lse")}
    after = learn.model[0].state_dict()
    assert all(torch.equal(body[k], after[k]) for k in body)  # the body is read, never trained
    n_valid = len(learn.dls.valid.y)  # each probe is scored on the held-out scenes: a count of them right
    assert all(abs(v * n_valid - round(v * n_valid)) < 1e-6 for v in probes.values())


@pytest.mark.parametrize("head, first", [("fastai", "AdaptiveConcatPool2d"), ("pool", "AdaptiveMaxPool2d"),
                                          ("fastai_pool", "AdaptiveMaxPool2d")])
def test_a_pretrained_body_gets_the_head_its_config_names(head, first):
    cfg = TINY.replace(arch="efficientnet_lite0", pretrained=False, head=head, pool="max", size=32)
    model = train.build_model(cfg, 10)
    assert type(model[1][0]).__name__ == first
    assert any(isinstance(m, torch.nn.BatchNorm1d) for m in model[1]) == (head != "pool")  # fastai's head has BN

"""The GPU path's options, checked on the CPU: bf16 autocast while training only, channels-last weights."""
import pytest
import torch

from cnn_experiments.training import fused, train
from cnn_experiments.training.train import Config

CFG = Config(data="mnist", n_train=256, epochs=1, bs=64, lr=3e-3)


def conv_dtypes(learn, model_conv, score=lambda learn: train.evaluate(learn, learn.n_out)) -> dict:
    "Run fit and scoring; the dtypes the first convolution produced in each."
    seen = {"train": set(), "score": set()}
    model_conv.register_forward_hook(lambda m, i, o: seen["train" if m.training else "score"].add(o.dtype))
    train.fit(learn, CFG)
    score(learn)
    return seen


def test_bf16_autocasts_training_and_scores_in_fp32():
    learn = train.learner(CFG.replace(precision="bf16"))
    seen = conv_dtypes(learn, learn.model[0][0])
    assert seen == {"train": {torch.bfloat16}, "score": {torch.float32}}
    assert all(p.dtype == torch.float32 for p in learn.model.parameters())  # weights and optimiser stay fp32
    fp32 = train.learner(CFG)
    assert conv_dtypes(fp32, fp32.model[0][0]) == {"train": {torch.float32}, "score": {torch.float32}}


def test_bf16_and_channels_last_train_fused_members_too():
    cfgs = [CFG.replace(seed=s, precision="bf16", channels_last=True) for s in (0, 1)]
    learn = fused.learner(cfgs)
    conv = next(m for m in learn.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert conv_dtypes(learn, conv, fused.evaluate) == {"train": {torch.bfloat16}, "score": {torch.float32}}
    # bf16 rounding, not a broken model: each member within 0.02 (20 of the 1,000 held-out digits) of its seed's
    # fp32 run alone (here they differ by 1 and 3 digits)
    for c, m in zip(cfgs, fused.evaluate(learn), strict=True):
        assert m["accuracy"] == pytest.approx(train.run(CFG.replace(seed=c.seed))["accuracy"], abs=0.02)


def test_channels_last_gives_the_numbers_of_the_default_layout():
    a, b = train.run(CFG), train.run(CFG.replace(channels_last=True))
    assert train.learner(CFG.replace(channels_last=True)).model[0][0].weight.is_contiguous(
        memory_format=torch.channels_last)
    assert b["train_loss"] == pytest.approx(a["train_loss"], abs=1e-3)

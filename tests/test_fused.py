"""Fused training: K models as one module, each member training as its own run would."""
import pytest
import torch

from cnn_experiments.errors import UserError
from cnn_experiments.models.cnns import pooled_cnn, simple_cnn
from cnn_experiments.runs.config import Config
from cnn_experiments.training import fused, train


def members(make, k=3):
    out = []
    for s in range(k):
        torch.manual_seed(s)
        out.append(make())
    return out


@pytest.mark.parametrize("make", [
    lambda: simple_cnn(),
    lambda: pooled_cnn((8, 16), 2, pool="concat", down="maxpool"),
    lambda: pooled_cnn((8, 16), 2, pool="gem", p_body=0.1),
    lambda: pooled_cnn((8, 16), 2, pool="lse", act="gelu", bn_first=False),
], ids=["simple_cnn", "concat+maxpool", "gem+dropout2d", "lse+gelu"])
def test_fused_model_computes_each_member_and_gives_it_back(make):
    ms = members(make)
    f = fused.Fused(ms).eval()
    x = torch.randn(5, 3, 28, 28)
    out = f(x)
    for k, m in enumerate(ms):
        m.eval()
        assert torch.allclose(out[:, k], m(x[:, k:k + 1]), atol=1e-5)
        back = f.member(k).state_dict()
        assert all(torch.equal(back[n], t) for n, t in m.state_dict().items())
    assert torch.allclose(f(x[:, :1])[:, 1], ms[1](x[:, :1]), atol=1e-5)  # one batch shared by all


@pytest.mark.parametrize("cfg", [
    Config(data="mnist", n_train=256, epochs=1, bs=32, lr=3e-3),
    Config(data="scenes", arch="pooled_cnn", canvas=32, channels=(8, 16), n_scenes=256, pool="gem", epochs=1,
           bs=32, lr=3e-3),
], ids=["simple_cnn", "pooled_cnn-gem"])
def test_a_fused_member_repeats_its_own_run(cfg):
    """Eight steps at a moderate rate: grouped and plain convolutions round differently (1e-7), and a high rate
    over many steps amplifies that; a member fed another member's batch order misses by far more (below)."""
    cfgs = [cfg.replace(seed=s) for s in (1, 2)]
    together = [r.metrics for r in fused.run(cfgs)]
    alone = [train.run(c) for c in cfgs]
    for c, m, a in zip(cfgs, together, alone):
        for k in ("train_loss", "valid_loss", "accuracy"):
            assert m[k] == pytest.approx(a[k], abs=2e-5), (c.seed, k)
        assert m["fused"] == 2
    assert together[0]["valid_loss"] != together[1]["valid_loss"]  # members differ by seed
    learn = fused.learner(cfgs)
    learn.dls.train.generators[1] = torch.Generator().set_state(learn.dls.train.generators[0].get_state())
    train.fit(learn, cfgs[0])
    assert abs(fused.evaluate(learn)[1]["train_loss"] - alone[1]["train_loss"]) > 5e-4


def test_only_seeds_heads_and_rates_may_differ_inside_a_fused_group():
    with pytest.raises(UserError, match="share every field but seed, pool, lr, probe"):
        fused.learner([Config(bs=32), Config(bs=64, seed=1)])
    with pytest.raises(UserError, match="different runs"):
        fused.learner([Config(), Config()])
    with pytest.raises(UserError, match="cannot be fused"):
        fused.learner([Config(arch="fastai_head"), Config(arch="fastai_head", seed=1)])


def test_a_fused_member_keeps_its_weights_and_probes():
    cfgs = [Config(data="scenes", arch="pooled_cnn", canvas=32, channels=(4, 8), n_scenes=128, epochs=1, bs=32,
                   lr=3e-3, probe=True, seed=s) for s in (0, 1)]
    r = fused.run(cfgs, keep=("1.",))
    assert set(r[0].weights) == {"1.3.weight", "1.3.bias"} and "probe_max" in r[1].metrics


def test_members_that_differ_by_head_and_rate_repeat_their_own_runs():
    base = Config(data="scenes", arch="pooled_cnn", canvas=32, channels=(8, 16), n_scenes=256, epochs=1, bs=32)
    cfgs = [base.replace(pool="concat", lr=3e-3, seed=1), base.replace(pool="gem", lr=1e-3, seed=1),
            base.replace(pool="concat", lr=1e-3, seed=2), base.replace(pool="max", lr=3e-3, seed=1)]
    together = [r.metrics for r in fused.run(cfgs)]
    for c, m in zip(cfgs, together):
        alone = train.run(c)
        for k in ("train_loss", "valid_loss"):
            assert m[k] == pytest.approx(alone[k], abs=2e-5), (c.pool, c.lr, k)


def test_a_sweep_fuses_a_column_of_a_grid():
    from cnn_experiments.sweeps.sweep import units
    base = Config(data="scenes", arch="pooled_cnn", canvas=32, channels=(8, 16), n_scenes=256)
    grid = [base.replace(pool=p, lr=lr, seed=s) for p in ("avg", "max") for lr in (1e-3, 1e-2) for s in (0, 1)]
    other = base.replace(obj_size=16)  # other data: another model
    work = units(grid + [other], fuse=8)
    assert [len(cfgs) for cfgs, _ in work] == [8, 1]

import pytest
import torch

from cnn_experiments.errors import UserError
from cnn_experiments.models import cnns
from cnn_experiments.models.pooling import POOLS, global_pool, pool_mult


def test_simple_cnn_gives_ten_logits():
    assert cnns.simple_cnn()(torch.randn(3, 1, 28, 28)).shape == (3, 10)
    assert len([m for m in cnns.simple_cnn(bn=False).modules() if isinstance(m, torch.nn.BatchNorm2d)]) == 0


@pytest.mark.parametrize("down", cnns.DOWNS)
@pytest.mark.parametrize("act", list(cnns.ACTIVATIONS))
def test_every_way_down_and_activation_keeps_the_map_size(down, act):
    assert cnns.simple_cnn(act=act, down=down)(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert cnns.body((4, 8, 8, 8, 8), act=act, down=down)(torch.randn(1, 1, 224, 224)).shape[-2:] == (7, 7)


@pytest.mark.parametrize("pool", list(POOLS))
def test_pooling_head_output_shape(pool):
    m = cnns.pooled_cnn((4, 8, 16), n_out=2, pool=pool, p=0.5)
    assert m(torch.randn(5, 1, 64, 64)).shape == (5, 2)
    assert m[1][-1].in_features == 16 * pool_mult(pool)


def one_hot_map(value=3.0, side=7):
    x = torch.zeros(1, 2, side, side)
    x[0, :, 0, 6] = value  # one hot cell in a corner: the tiny bear
    return x


def test_max_pool_finds_one_hot_cell_and_avg_dilutes_it():
    x = one_hot_map()
    assert global_pool("max")(x).flatten().tolist() == [3.0, 3.0]
    assert torch.allclose(global_pool("avg")(x).flatten(), torch.full((2,), 3.0 / 49))
    assert torch.allclose(global_pool("concat")(x).flatten(), torch.tensor([3.0, 3.0, 3 / 49, 3 / 49]))
    assert torch.allclose(global_pool("avgmax")(x).flatten(), torch.full((2,), (3.0 + 3 / 49) / 2))


def test_gem_and_lse_sit_between_avg_and_max():
    x = one_hot_map()
    for name in ("gem", "lse"):
        v = global_pool(name)(x).flatten()
        assert (v > 3 / 49).all() and (v < 3.0).all(), name
    assert any(p.requires_grad for p in global_pool("gem").parameters())  # GeM's p is learned


def test_unknown_pool_names_the_choices():
    with pytest.raises(UserError, match="avg, max, concat"):
        global_pool("median")


def test_macs_count_convolutions_and_linear_layers():
    conv = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 5, stride=2, padding=2))
    assert cnns.macs(conv, (1, 28, 28)) == 14 * 14 * 8 * 25
    head = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    assert cnns.macs(head, (3, 2, 2)) == 12 * 3


def test_width_multiplies_every_stage_and_the_receptive_field_covers_a_digit():
    assert cnns.widen((8, 16, 32), 2.1) == (17, 34, 67)
    assert cnns.n_params(cnns.simple_cnn(width=2)) > 3 * cnns.n_params(cnns.simple_cnn())
    assert [cnns.receptive_field(k) for k in (1, 2, 3, 4)] == [5, 9, 17, 33]  # four stages see a 28 px digit


@pytest.mark.parametrize("pool", list(POOLS))
def test_fastais_head_takes_each_pool_and_keeps_the_rest_as_fastai_builds_it(pool):
    from fastai.vision.learner import create_head
    h = cnns.fastai_head(16, 3, pool, ps=0.5)
    fastai = create_head(16, 3, ps=0.5)
    assert type(h[0]) is type(global_pool(pool)) and h[2].num_features == 16 * pool_mult(pool)
    assert [type(m) for m in h[1:]] == [type(m) for m in fastai[1:]]  # flatten, BN, dropout, linear, ReLU, ...
    assert h(torch.randn(4, 16, 7, 7)).shape == (4, 3)
    as_built = cnns.fastai_head(16, 3, None, ps=0.5)  # no pool named: fastai's own concat head
    assert [type(m) for m in as_built] == [type(m) for m in fastai] and as_built[2].num_features == 32


def test_the_fastai_head_cnn_uses_the_pool_it_is_given():
    m = cnns.fastai_head_cnn((4, 8), 2, p=0.5, pool="max")
    assert isinstance(m[1][0], type(global_pool("max"))) and m[1][2].num_features == 8
    assert m(torch.randn(2, 1, 32, 32)).shape == (2, 2)

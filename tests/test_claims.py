"""The verdicts of the other claims, on hand-made tables: each says supported where it should and not where not."""
import pandas as pd
import pytest
import torch
from torch import nn

from cnn_experiments import models
from cnn_experiments.report import summarize
from experiments import activations, downsampling, dropout


def summary(means: dict, by: str, spread=0.002, seeds=5, metric="accuracy"):
    rows = [{by: k, "seed": s, metric: m + spread * (s - 2) / 2} for k, m in means.items() for s in range(seeds)]
    return summarize(pd.DataFrame(rows), [by], metric)


def test_activations_verdict():
    close = {"relu": 0.975, "leaky_relu": 0.974, "gelu": 0.976, "silu": 0.973, "tanh": 0.970, "sigmoid": 0.968}
    assert activations.verdict(summary({**close, "identity": 0.90}, "act"))[0] == "supported"
    assert activations.verdict(summary({**close, "identity": 0.972}, "act"))[0] == "not supported"  # linear is fine
    assert activations.verdict(summary({**close, "sigmoid": 0.5, "identity": 0.9}, "act"))[0] == "not supported"


def dropout_tables(valid_at_0, valid_best, train_at_0, train_at_max):
    ps = [0.0, 0.5, 0.9]
    lerp = [0.0, 0.5, 1.0]
    return {"head": {
        "valid_loss": summary({0.0: valid_at_0, 0.5: valid_best, 0.9: valid_at_0 + 1}, "dropout", 0.01,
                              metric="valid_loss"),
        "train_loss": summary({p: train_at_0 + t * (train_at_max - train_at_0) for p, t in zip(ps, lerp)},
                              "dropout", 0.001, metric="train_loss")}}


def test_dropout_verdict_checks_both_halves():
    assert dropout.verdict(dropout_tables(0.5, 0.3, 0.001, 0.05))[0] == "supported"
    assert dropout.verdict(dropout_tables(0.5, 0.3, 0.001, 0.001))[0] == "partly supported"
    assert dropout.verdict(dropout_tables(0.3, 0.5, 0.05, 0.001))[0] == "not supported"


def test_nn_dropout_zeroes_about_p_and_scales_the_rest():
    torch.manual_seed(0)
    for p in (0.1, 0.5, 0.9):
        d = nn.Dropout(p).train()
        y = d(torch.ones(200_000))
        assert abs(float((y == 0).float().mean()) - p) < 0.01
        assert torch.allclose(y[y != 0], torch.full_like(y[y != 0], 1 / (1 - p)))
        assert torch.equal(d.eval()(torch.ones(10)), torch.ones(10))


@pytest.mark.parametrize("p", [0.25, 0.5, 0.75])
def test_dropout_figure_mask_drops_a_fraction_p(p):
    rand, mask = dropout.dropout_mask((100, 100), p)
    assert abs(float(1 - mask.mean()) - p) < 0.02 and torch.equal(mask, (rand >= p).float())


def test_dropout_grid_shares_the_no_dropout_run():
    cells = dropout.grid("quick")
    assert len(cells) == 2 * len(dropout.PS) - 1 and len({c.cell_id for c in cells}) == len(cells)


@pytest.mark.parametrize("down", models.DOWNS)
def test_downsampling_costs_are_counted(down):
    params, macs = downsampling.cost(downsampling.TASKS["MNIST digits"].replace(down=down))
    assert params == models.n_params(models.simple_cnn(down=down))
    first = 14 * 14 * 8 * 25 * (1 if down == "stride" else 4)  # stride 1 computes 4x the outputs
    assert macs > first


def test_macs_of_one_conv():
    assert models.macs(nn.Sequential(nn.Conv2d(1, 8, 5, stride=2, padding=2)), (1, 28, 28)) == 14 * 14 * 8 * 25

import numpy as np
import pytest
import torch

from cnn_experiments import scenes as S
from cnn_experiments.data import Digits


@pytest.fixture(scope="module")
def src(digits):
    return digits.x_train[:, 0], digits.y_train


def test_same_seed_same_scenes_other_seed_other_scenes(src):
    a = S.make_scenes(*src, n=20, canvas=64, obj_size=16, seed=5)
    b = S.make_scenes(*src, n=20, canvas=64, obj_size=16, seed=5)
    c = S.make_scenes(*src, n=20, canvas=64, obj_size=16, seed=6)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert not torch.equal(a[0], c[0])


@pytest.mark.parametrize("size", [8, 16, 28, 56, 64])
def test_object_fully_inside_the_canvas_at_every_size(src, size):
    x, y, boxes = S.make_scenes(*src, n=200, canvas=64, obj_size=size, num_dist=0, seed=1)
    top, left, side = boxes.T
    assert (side == size).all() and (top >= 0).all() and (left >= 0).all()
    assert (top + size <= 64).all() and (left + size <= 64).all()
    for img, (t, le, _) in zip(x[:, 0], boxes):  # no clutter: every inked pixel is the object's
        outside = img.clone()
        outside[t:t + size, le:le + size] = 0
        assert outside.sum() == 0 and img.sum() > 0
    if size < 64:  # positions are spread over the canvas, corners reachable
        assert top.min() <= 2 and top.max() >= 64 - size - 2


def test_binary_scenes_are_balanced_and_labels_match_the_target(src):
    digits, labels = src
    x, y, _ = S.make_scenes(digits, labels, n=400, canvas=48, obj_size=28, num_dist=0, target=3, seed=2)
    assert y.sum() == 200
    # the object is pasted unresized at 28 px: it equals a digit of the right class
    ref = {d.numpy().tobytes(): int(c) for d, c in zip(digits, labels)}
    for img, label, (t, le, _) in zip(x[:, 0], y, S.make_scenes(digits, labels, 400, 48, 28, 0, 3, seed=2)[2]):
        c = ref[img[t:t + 28, le:le + 28].numpy().tobytes()]
        assert (c == 3) == bool(label)


def test_positive_and_negative_scenes_have_the_same_pixel_mass(src):
    x, y, _ = S.make_scenes(*src, n=2000, canvas=64, obj_size=28, num_dist=0, target=3, seed=3)
    mass = x.sum((1, 2, 3))
    pos, neg = mass[y == 1], mass[y == 0]
    assert abs(pos.mean() - neg.mean()) / pos.mean() < 0.03
    assert abs(pos.std() - neg.std()) / pos.std() < 0.15
    assert abs(pos.median() - neg.median()) / pos.median() < 0.05


def test_clutter_density_is_the_same_across_canvas_sizes(src):
    assert S.default_num_dist(60) == 4 and S.default_num_dist(100) == 11
    ink = {}
    for canvas in (64, 112, 224):
        x, _, _ = S.make_scenes(*src, n=60, canvas=canvas, obj_size=1, seed=4)
        ink[canvas] = float(x.mean())  # ink per pixel: fragments per pixel times ink per fragment
    assert max(ink.values()) / min(ink.values()) < 1.15, ink


def test_no_held_out_digit_in_a_train_scene(monkeypatch):
    # train digits all blank, held-out digits all ink: any held-out pixel in a train scene would show
    blank, ink = torch.zeros(100, 1, 28, 28), torch.ones(100, 1, 28, 28)
    labels = torch.arange(100) % 10
    fake = Digits(blank, labels, ink, labels, "fake")
    monkeypatch.setattr(S, "load_digits", lambda name, search=False: fake)
    S.scenes_for.cache_clear()
    (xt, _, _), (xv, _, _) = S.scenes_for(64, 16, -1, 3, "binary", 40)
    S.scenes_for.cache_clear()
    assert xt.sum() == 0 and (xv.sum((1, 2, 3)) > 0).all()


def test_tenway_scenes_label_the_digit(src):
    digits, labels = src
    x, y, boxes = S.make_scenes(digits, labels, n=100, canvas=60, obj_size=28, num_dist=0, mode="tenway", seed=7)
    ref = {d.numpy().tobytes(): int(c) for d, c in zip(digits, labels)}
    for img, label, (t, le, _) in zip(x[:, 0], y, boxes):
        assert ref[img[t:t + 28, le:le + 28].numpy().tobytes()] == int(label)
    assert len(np.unique(y.numpy())) == 10


def test_object_larger_than_canvas_is_refused(src):
    with pytest.raises(ValueError, match="obj_size"):
        S.make_scenes(*src, n=2, canvas=32, obj_size=40)

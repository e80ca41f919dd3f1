import numpy as np
import pytest
import torch

from cnn_experiments.data import scenes as S
from cnn_experiments.data.mnist import Digits, load_digits
from cnn_experiments.errors import UserError
from cnn_experiments.runs.config import Config


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


def test_clutter_density_is_exact_at_every_canvas_size():
    assert S.default_num_dist(60) == pytest.approx(4.0)  # the RAM paper's 60x60 scenes with 4 distractors
    rng = np.random.default_rng(0)
    for canvas in (32, 64, 112, 160, 224):
        mean = S.default_num_dist(canvas)
        counts = S.clutter_counts(mean, 2000, rng)
        assert abs(counts.mean() / mean - 1) < 0.05, canvas
        assert set(np.unique(counts)) <= {np.floor(mean), np.floor(mean) + 1}


@pytest.mark.parametrize("profile", ["medium", "confirm"])
def test_the_dilution_arm_changes_only_the_map_size(src, monkeypatch, profile):
    "Across its canvases: the same objects, pixel for pixel, and the same clutter density."
    from experiments import pooling
    cells = pooling.cells(profile)["dilution"]
    canvases = sorted({c.canvas for c in cells})
    assert {c.obj_size for c in cells} == {28} and len(canvases) == len(pooling.PROFILES[profile]["maps"])
    assert {c.canvas // pooling.cell_px(profile) for c in cells} == set(pooling.PROFILES[profile]["maps"])
    assert len({c.replace(canvas=0).cell_id for c in cells if c.pool == "avg"}) == 1  # nothing else differs
    seed = S.scene_seed(0, cells[0].seed + 1000 if cells[0].vary_data else None)  # a seed's own scenes, or fixed
    crops, labels = [], []
    monkeypatch.setattr(S, "clutter_counts", lambda mean, n, rng: (rng.random(n), np.zeros(n))[1])  # no clutter
    for canvas in canvases:  # the objects are drawn first: clutter or none, they are the same
        x, y, boxes = S.make_scenes(*src, n=50, canvas=canvas, obj_size=28, seed=seed)
        crops.append(torch.stack([img[0, t:t + 28, le:le + 28] for img, (t, le, _) in zip(x, boxes)]))
        labels.append(y)
    assert all(torch.equal(c, crops[0]) for c in crops) and all(torch.equal(y, labels[0]) for y in labels)
    monkeypatch.undo()
    density = [S.clutter_counts(S.default_num_dist(c), 4000, np.random.default_rng(1)).mean() / c**2 for c in canvases]
    assert max(density) / min(density) < 1.05


def test_each_confirmatory_seed_draws_scenes_of_its_own_none_the_pilots():
    from experiments import pooling
    exp = pooling.EXPERIMENT
    cell = pooling.cells("confirm")["threshold"][0]
    assert cell.vary_data and not pooling.cells("medium")["threshold"][0].vary_data
    assert set(exp.seed_list("confirm")).isdisjoint(exp.seed_list("medium"))  # fresh inits too
    first, second = (S.scene_split(cell.replace(seed=s, n_scenes=40)) for s in exp.seed_list("confirm")[:2])
    fixed = S.scene_split(cell.replace(seed=1000, n_scenes=40, vary_data=False))
    assert not torch.equal(first[0], second[0]) and not torch.equal(first[2], second[2])
    assert not torch.equal(first[0], fixed[0])


def test_distinct_objects_counts_the_bears_the_scenes_show():
    n = S.distinct_objects(400)
    assert n["train"]["scenes"] == 400 and n["held-out"]["scenes"] == 100
    assert 0 < n["train"]["bears"] <= min(n["train"]["positives"], n["train"]["bears_available"])
    assert n["train"]["bears_available"] == 400 and n["held-out"]["bears_available"] == 100


@pytest.mark.parametrize("run_seed", [None, 3])  # fixed scenes, and a run's own (vary_data)
def test_no_held_out_digit_in_a_train_scene(monkeypatch, run_seed):
    # train digits all blank, held-out digits all ink: any held-out pixel in a train scene would show
    blank, ink = torch.zeros(100, 1, 28, 28), torch.ones(100, 1, 28, 28)
    labels = torch.arange(100) % 10
    fake = Digits(blank, labels, ink, labels, "fake")
    monkeypatch.setattr(S, "load_digits", lambda name, search=False: fake)
    S.scenes_for.cache_clear()
    (xt, _, _), (xv, _, _) = S.scenes_for(64, 16, -1, 3, "binary", 40, False, run_seed)
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
    with pytest.raises(UserError, match="obj_size"):
        S.make_scenes(*src, n=2, canvas=32, obj_size=40)


def test_vary_data_draws_new_scenes_per_seed(digits):
    cfg = Config(data="scenes", canvas=32, obj_size=8, n_scenes=40)

    def scenes(**kw):
        S.scenes_for.cache_clear()  # a fresh draw each time: equal scenes are equal draws, not one cached object
        return S.scene_split(cfg.replace(**kw))

    same = lambda a, b: all(torch.equal(u, v) for u, v in zip(a, b))
    fixed = scenes(seed=0)
    assert same(fixed, scenes(seed=1))  # without vary_data the seed leaves the scenes alone
    d = load_digits("mnist")  # and they are still today's draws, seeds 0 and 1, bit for bit
    kw = dict(canvas=32, obj_size=8)
    assert torch.equal(fixed[0], S.make_scenes(d.x_train[:, 0], d.y_train, 40, seed=0, **kw)[0])
    assert torch.equal(fixed[2], S.make_scenes(d.x_valid[:, 0], d.y_valid, 10, seed=1, **kw)[0])
    a, b = scenes(seed=0, vary_data=True), scenes(seed=1, vary_data=True)
    assert same(a, scenes(seed=0, vary_data=True))
    for i in (0, 2, 4):  # train scenes, held-out scenes, boxes: all drawn anew
        assert not torch.equal(a[i], b[i]) and not torch.equal(a[i], fixed[i])
    S.scenes_for.cache_clear()
    S.scene_split(cfg.replace(seed=0, vary_data=True))
    assert not same(S.scene_split(cfg.replace(seed=1, vary_data=True)), a)  # the run seed is in the cache key
    S.scenes_for.cache_clear()

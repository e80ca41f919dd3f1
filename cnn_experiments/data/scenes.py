"""Small-object scenes: one digit (the "bear") in a canvas of clutter, seeded and deterministic.

Clutter follows DeepMind's `mnist-cluttered`: `num_dist` random 8x8 crops of other digits added at
random positions, the canvas clipped to 1. The default density (fragments per pixel) is the RAM paper's
60x60 benchmark, 4 per 3,600 px, at every canvas size: each scene draws floor(d) or floor(d) + 1 fragments
so that their mean is d = density x area exactly, on a 32 px canvas as on a 224 px one. Binary scenes hold the
target digit (positive) or a digit of another class with about the same ink (negative), at the same size;
ten-way scenes hold any digit and are labelled by it (the RAM paper's cluttered MNIST).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import UserError
from .mnist import load_digits

DENSITY = 4 / 60**2  # clutter fragments per pixel: the RAM paper's 60x60 scenes with 4 distractors
FRAGMENT = 8  # side of a clutter fragment, px
MASS_CANDIDATES = 16  # a negative digit is the closest in ink to a random target digit, of this many


def default_num_dist(canvas: int) -> float:
    "Clutter fragments per scene at the default density: the mean, a whole number only by chance."
    return DENSITY * canvas * canvas


def clutter_counts(mean: float, n: int, rng: np.random.Generator) -> np.ndarray:
    "Fragments per scene: floor(mean) or one more, so that their expected number is `mean` exactly."
    return np.floor(mean) + (rng.random(n) < mean % 1)


def resize_digits(digits: torch.Tensor, size: int) -> torch.Tensor:
    "Digits (N, 28, 28) in [0, 1] resized to size x size (antialiased when shrinking)."
    if size == digits.shape[-1]:
        return digits.clone()
    out = F.interpolate(digits[:, None], size=(size, size), mode="bilinear", antialias=size < digits.shape[-1],
                        align_corners=False)[:, 0]
    return out.clamp(0, 1)


def pick_objects(labels: np.ndarray, mass: np.ndarray, n: int, target: int, mode: str,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    "Indices of the object digits and the scene labels: binary is half positives, ink-matched negatives."
    if mode == "tenway":
        idx = rng.integers(0, len(labels), n)
        return idx, labels[idx]
    pos, neg = np.flatnonzero(labels == target), np.flatnonzero(labels != target)
    y = np.zeros(n, np.int64)
    y[: n // 2] = 1
    y = rng.permutation(y)
    idx = np.empty(n, np.int64)
    idx[y == 1] = rng.choice(pos, int(y.sum()))
    # each negative: of MASS_CANDIDATES other digits, the one whose ink is closest to a random target digit's
    ref = mass[rng.choice(pos, int((y == 0).sum()))]
    cand = rng.choice(neg, (len(ref), MASS_CANDIDATES))
    idx[y == 0] = cand[np.arange(len(ref)), np.abs(mass[cand] - ref[:, None]).argmin(1)]
    return idx, y


def make_scenes(digits: torch.Tensor, labels: torch.Tensor, n: int, canvas: int, obj_size: int,
                num_dist: int = -1, target: int = 3, mode: str = "binary", seed: int | np.random.SeedSequence = 0):
    """`n` scenes (n, 1, canvas, canvas) in [0, 1], their labels, and each object's box (top, left, size).

    Objects and clutter both come from `digits` (N, 28, 28): pass only train digits for train scenes.
    """
    if obj_size > canvas:
        raise UserError(f"obj_size: {obj_size} px does not fit the {canvas} px canvas")
    rng = np.random.default_rng(seed)
    lab, src = labels.numpy(), digits.numpy()
    # the objects first: the same scenes' objects whatever the canvas and the clutter
    idx, y = pick_objects(lab, src.reshape(len(src), -1).sum(1), n, target, mode, rng)
    objects = resize_digits(digits[torch.from_numpy(idx)], obj_size).numpy()
    top_left = rng.integers(0, canvas - obj_size + 1, (n, 2))  # uniform, corners included
    counts = clutter_counts(default_num_dist(canvas) if num_dist < 0 else num_dist, n, rng)
    most = int(counts.max()) if n else 0
    out = np.zeros((n, canvas, canvas), np.float32)
    # clutter: 8x8 crops of random digits (any class) at random places, as mnist-cluttered draws them
    f_src = rng.integers(0, len(src), (n, most))
    f_at = rng.integers(0, 28 - FRAGMENT + 1, (n, most, 2))
    f_to = rng.integers(0, canvas - FRAGMENT + 1, (n, most, 2))
    for i in range(n):
        for j in range(int(counts[i])):
            (a, b), (r, c) = f_at[i, j], f_to[i, j]
            out[i, r:r + FRAGMENT, c:c + FRAGMENT] += src[f_src[i, j], a:a + FRAGMENT, b:b + FRAGMENT]
        r, c = top_left[i]
        out[i, r:r + obj_size, c:c + obj_size] += objects[i]
    np.clip(out, 0, 1, out=out)
    boxes = np.column_stack([top_left, np.full(n, obj_size)])
    return torch.from_numpy(out)[:, None], torch.from_numpy(y), torch.from_numpy(boxes)


def scene_seed(fixed: int, run_seed: int | None = None):
    "The fixed scene seed, or (vary_data) a stream keyed by it and the run's seed: never one of the fixed draws."
    # a spawn key, not [fixed, run_seed]: numpy ignores a seed array's trailing zeros (run seed 0 = the fixed draw)
    return fixed if run_seed is None else np.random.SeedSequence(fixed, spawn_key=(run_seed,))


@lru_cache(maxsize=2)
def scenes_for(canvas: int, obj_size: int, num_dist: int, target: int, mode: str, n_scenes: int,
               search: bool = False, run_seed: int | None = None):
    """Train and evaluation scenes: train scenes from train digits only, evaluation from the others only.
    Without `run_seed` the scenes are fixed (seeds 0 and 1) whatever the run's seed: every head sees the same data;
    with it (vary_data) each run seed draws scenes of its own, and is part of the cache key."""
    d = load_digits("mnist", search)
    xt, yt, xv, yv = d.x_train[:, 0], d.y_train, d.x_valid[:, 0], d.y_valid
    kw = dict(canvas=canvas, obj_size=obj_size, num_dist=num_dist, target=target, mode=mode)
    train = make_scenes(xt, yt, n_scenes, seed=scene_seed(0, run_seed), **kw)
    valid = make_scenes(xv, yv, max(n_scenes // 4, 2), seed=scene_seed(1, run_seed), **kw)
    return train, valid


def scene_split(cfg):
    "The scenes of a run's config: (x_train, y_train, x_eval, y_eval, train boxes)."
    (xt, yt, bt), (xv, yv, _) = scenes_for(cfg.canvas, cfg.obj_size, cfg.num_dist, cfg.target, cfg.mode,
                                           cfg.n_scenes, cfg.split == "search", cfg.seed if cfg.vary_data else None)
    return xt, yt, xv, yv, bt


def distinct_objects(n_scenes: int, target: int = 3, mode: str = "binary", search: bool = False) -> dict:
    """How many different digits the scenes' objects are, train and held-out: the scenes draw their objects first
    (scenes_for's seeds 0 and 1), so this holds for every canvas and object size of a profile."""
    d = load_digits("mnist", search)
    out = {}
    for name, x, y, n, seed in (("train", d.x_train, d.y_train, n_scenes, 0),
                                ("held-out", d.x_valid, d.y_valid, max(n_scenes // 4, 2), 1)):
        lab, src = y.numpy(), x.numpy()
        idx, labels = pick_objects(lab, src.reshape(len(src), -1).sum(1), n, target, mode,
                                   np.random.default_rng(seed))
        out[name] = dict(scenes=n, positives=int((labels == 1).sum()), bears=len(set(idx[labels == 1].tolist())),
                         bears_available=int((lab == target).sum()), others=len(set(idx[labels == 0].tolist())))
    return out

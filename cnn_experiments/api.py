"""The suite from Python and Jupyter: the pooling heads as fastai modules, a learner with the head of your choice,
the head comparison on your own folder, and a committed study's runs with its verdicts.

    from cnn_experiments.api import create_head
    head = create_head(512, dls.c, pool="max")   # fastai's head, its global pooling swapped for max
    learn = vision_learner(dls, resnet18, custom_head=head)

    from cnn_experiments.api import head_learner
    learn = head_learner(dls, pool="avg")        # EfficientNet-Lite0 with ImageNet weights (offline), frozen
    learn.fine_tune(4)
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

# the global pooling heads by name: avg, max, concat (fastai's), avgmax, gem, lse
from .runs.config import POOLS as HEADS

__all__ = ["HEADS", "compare_heads", "create_head", "global_pool", "head_learner", "pool_head", "sample_folder",
           "study_runs", "verdicts"]


def global_pool(name: str):
    "The global pooling layer called `name` (an nn.Module: (N, C, H, W) -> (N, C * mult, 1, 1))."
    from .models.pooling import global_pool
    return global_pool(name)


def pool_head(nf: int, n_out: int, pool: str = "avg", p: float = 0.0):
    "The pooling study's head: global pooling `pool` -> flatten -> dropout p -> linear."
    from .models.cnns import head
    return head(nf, n_out, pool, p)


def create_head(nf: int, n_out: int, pool: str = "concat", **kwargs):
    """fastai's `create_head(nf, n_out, **kwargs)` with the global pooling layer called `pool`; the rest (flatten,
    batchnorm, dropout, linear, ReLU, batchnorm, dropout, linear) as fastai builds it. `nf`: the body's channels
    (512 for resnet18/34, 1280 for EfficientNet-Lite0). "concat" gives fastai's own head."""
    from .models.cnns import fastai_head
    return fastai_head(nf, n_out, pool, **kwargs)


def head_learner(dls, pool: str = "concat", arch: str = "efficientnet_lite0", pretrained: bool = True,
                 p: float = 0.25, **kwargs):
    """A fastai Learner like `vision_learner(dls, arch)`, its head the suite's: global pooling `pool` -> flatten ->
    dropout `p` -> linear, as the head comparison trains it. Frozen when `pretrained`: call `fine_tune`.
    efficientnet_lite0's ImageNet weights come with the package (no network); resnet18/34's are downloaded."""
    from .models.pretrained import learner
    return learner(dls, arch, dls.c, pretrained=pretrained, p=p, pool=pool, **kwargs)


def compare_heads(folder: Path | str, **options) -> Path:
    """`cnn-exp run pooling --data FOLDER` from Python: every head at every seed on a folder of class sub-folders
    (resuming), each head's model saved; returns the report's path (its first lines answer which head). Options,
    as the command's: heads=("avg", "max", "concat"), seeds=5, arch="efficientnet_lite0", size=224, epochs=4,
    aug="fastbook", results="folder_results", jobs (default: one per CPU core)."""
    from .own_images.heads import run_heads
    return run_heads(folder, **options)


def sample_folder(root: Path | str, per_class: int = 12, seed: int = 0) -> Path:
    """A folder of real photos (crops of four photos that scikit-image ships, a class each) to try the head
    comparison offline: `compare_heads(sample_folder("photos"))`."""
    from .data.folders import sample_folder
    return sample_folder(root, per_class, seed)


def study_runs(name: str = "pooling", profile: str | None = None, results: Path | str = "results") -> pd.DataFrame:
    """A committed study's runs as its report reads them: each cell's seed once, with the study's own columns
    (for pooling: arm, cells, map, learned). Trains nothing."""
    from .studies.study import load
    return load(name, profile, Path(results)).labelled


def verdicts(name: str = "pooling", profile: str | None = None, results: Path | str = "results") -> pd.DataFrame:
    "A committed study's verdict table: each declared comparison, its estimate, interval, p and outcome."
    from .studies.study import load
    return load(name, profile, Path(results)).table

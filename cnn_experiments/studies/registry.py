"""The experiments by name: each is the module `experiments.<name>`, loaded when asked for.

    from cnn_experiments.studies.registry import get; get("pooling").grid("quick")
"""
from __future__ import annotations

import importlib

from ..errors import UserError
from .experiment import Experiment

NAMES = ("pooling", "cluttered", "mnist_scratch", "edge_filter", "activations", "downsampling", "dropout",
         "fine_tune")


def get(name: str) -> Experiment:
    "The experiment called `name`."
    if name not in NAMES:
        raise UserError(f"experiment: unknown name {name!r}; choose one of {', '.join(NAMES)}")
    return importlib.import_module(f"experiments.{name}").EXPERIMENT

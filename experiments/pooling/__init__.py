"""Claim C6: average pooling dilutes a tiny object; max pooling finds it; fastai concatenates both.

    cnn-exp run pooling --profile medium          # = python -m experiments.pooling --profile medium

`design` declares the study (profiles, arms, search, comparisons); `report` writes the pilots' and the quick
study's reports, `confirm_report` the confirmatory study's; `figures` draws for both.
"""
from __future__ import annotations

from cnn_experiments.studies.experiment import Experiment

from . import confirm_report
from . import report as pilot_report
from .design import (
    CLAIM,
    DILUTION_HEADS,
    HEADS,
    LEARNED,
    LRS,
    PROFILES,
    TITLE,
    base,
    cell_px,
    cells,
    chosen_lrs,
    comparisons,
    grid,
    keep,
    key,
    label,
    map_side,
    mechanism,
    one_cell,
    search,
)

__all__ = ["CLAIM", "DILUTION_HEADS", "EXPERIMENT", "HEADS", "LEARNED", "LRS", "PROFILES", "TITLE", "base", "cell_px",
           "cells", "chosen_lrs", "comparisons", "grid", "keep", "key", "label", "map_side", "mechanism", "one_cell",
           "search"]


def report(ctx):
    "A confirmatory study opens with its answers; a pilot's or the quick study's report with its verdict table."
    return (confirm_report.report if ctx.profile == "confirm" else pilot_report.report)(ctx)


EXPERIMENT = Experiment(name="pooling", title=TITLE, claim=CLAIM, profiles=PROFILES, grid=grid, report=report,
                        comparisons=comparisons, search=search, keep=keep, label=label,
                        needs_runs=False)  # a profile not run yet gets a report that says so

"""The interface every experiment fills in: what it claims, its grid per profile, its declared comparisons, what
its report draws. `cnn-exp` runs and reports any experiment through this alone; `registry` finds one by name.

    from experiments.pooling import EXPERIMENT; EXPERIMENT.grid("quick")
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pandas as pd

from ..errors import UserError
from ..reports.report import Context
from ..runs.config import Config


@dataclass(frozen=True)
class Experiment:
    name: str
    title: str  # the summary's heading
    claim: str  # the claim under test, in the lesson's words
    profiles: Mapping[str, Mapping]  # profile -> its settings: "seeds" per cell, "first_seed" (default 0)
    grid: Callable[[str, pd.DataFrame | None], list[Config]]  # the cells of a profile, given the search's runs
    report: Callable[[Context], tuple[str, str]]  # the summary's body and its one-line finding
    comparisons: Callable[[str], list] = lambda profile: []  # declared before the runs: stats.Comparison each
    # nuisance-parameter runs on the search split, given the search's runs so far (a declared grid may grow)
    search: Callable[[str, pd.DataFrame | None], list[Config]] = lambda profile, runs=None: []
    keep: Callable[[Config, str], tuple[str, ...]] = lambda cfg, profile: ()  # state-dict entries a report draws
    label: Callable[[pd.DataFrame, str], pd.DataFrame] = lambda runs, profile: runs  # derived columns for tables
    needs_runs: bool = True  # edge_filter draws from the data alone

    def check_profile(self, profile: str) -> None:
        if profile not in self.profiles:
            raise UserError(f"--profile: {self.name} has no profile {profile!r}; choose one of "
                            + ", ".join(self.profiles))

    def seeds(self, profile: str) -> int:
        return self.profiles[profile]["seeds"]

    def seed_list(self, profile: str, n: int | None = None) -> range:
        "The profile's seeds (n of them, default its own count), from its first: a later study's are fresh ones."
        first = self.profiles[profile].get("first_seed", 0)
        return range(first, first + (n or self.seeds(profile)))

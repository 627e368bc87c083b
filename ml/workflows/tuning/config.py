"""What defines a tuning run besides the data: the typed `TuneConfig` and the objectives."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


class TuneError(ValueError):
    """Bad tuning input (unknown model, empty or invalid search space, bad storage...)."""


@dataclass(frozen=True)
class Objective:
    name: str
    direction: Literal["maximize", "minimize"]


OBJECTIVES = {
    "uno_c": Objective("uno_c", "maximize"),
    "harrell_c": Objective("harrell_c", "maximize"),
    "ibs": Objective("ibs", "minimize"),
}


@dataclass(frozen=True)
class TuneConfig:
    """Everything that defines a tuning run, besides the data."""

    model: str
    objective: str = "uno_c"
    n_trials: int = 20
    timeout: float | None = None
    outer_folds: int = 3
    inner_folds: int = 3
    workers: int = 1
    seed: int = 0
    storage: str | None = None
    study: str | None = None
    pruner_startup_trials: int = 5
    space_path: str | None = None

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise TuneError(f"unknown objective '{self.objective}'; choose one of {', '.join(OBJECTIVES)}")
        for name, low in (("n_trials", 0), ("outer_folds", 2), ("inner_folds", 2), ("workers", 1)):
            if getattr(self, name) < low:
                raise TuneError(f"{name} must be >= {low}, got {getattr(self, name)}")
        if self.timeout is not None and self.timeout <= 0:
            raise TuneError(f"timeout must be > 0 seconds, got {self.timeout}")

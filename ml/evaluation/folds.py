"""Resampling: repeated K-fold cross-validation stratified on the event indicator."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import RepeatedStratifiedKFold


@dataclass(frozen=True)
class Fold:
    """One train/test split: `repeat` and `fold` number it (0-based), `train`/`test` are row indices."""

    repeat: int
    fold: int
    train: np.ndarray
    test: np.ndarray


class EvaluationError(ValueError):
    """Resampling impossible as asked (e.g. fewer events than folds)."""


def make_folds(y: np.ndarray, n_folds: int, n_repeats: int, random_state: int | None) -> list[Fold]:
    """Repeated K-fold stratified on the event indicator; every test fold holds events."""
    event = y["event"].astype(bool)
    if n_folds < 2 or n_repeats < 1:
        raise EvaluationError("need at least 2 folds and 1 repeat")
    if event.sum() < n_folds or (~event).sum() < 1 and len(y) < n_folds:
        raise EvaluationError(f"{int(event.sum())} events for {n_folds} folds: every test fold needs an "
                              "event; use fewer folds")
    strata = event if (~event).sum() >= n_folds else np.zeros(len(y), dtype=bool)
    cv = RepeatedStratifiedKFold(n_splits=n_folds, n_repeats=n_repeats, random_state=random_state)
    folds = []
    for k, (train, test) in enumerate(cv.split(np.zeros(len(y)), strata)):
        if not event[test].any() or not event[train].any():
            raise EvaluationError(f"fold {k % n_folds + 1} of repeat {k // n_folds + 1} has no events; "
                                  "use fewer folds")
        folds.append(Fold(k // n_folds, k % n_folds, train, test))
    return folds

"""The one fit-and-score loop, shared by the benchmark and the tuning.

    scoring = Scoring.of(data)                                   # horizons, tau, calibration
    fs = fit_and_score(estimator, X_train, y_train, X_test, y_test, scoring)
    fs.metrics, fs.calibration, fs.risk, fs.notes, fs.fit_seconds

`fit_and_score` fits one estimator on a fold's training rows and scores its held-out rows
with `metrics.score_fold` (the censoring distribution comes from the training rows). The
folds themselves run through `ml.evaluation.parallel.map_folds` (results in fold order).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ml.evaluation.metrics import FoldScore, score_fold


@dataclass(frozen=True)
class Scoring:
    """What `score_fold` needs besides the rows: the data set's horizons, tau and calibration."""

    horizons: Mapping[str, float]
    tau: float
    calibration_horizon: str
    calibration_groups: int = 3

    @classmethod
    def of(cls, data: Any, calibration_groups: int = 3) -> Scoring:
        """From a `features.datasets.SurvivalData` (its horizons, tau and calibration horizon)."""
        return cls(dict(data.horizons), float(data.tau), data.calibration_horizon, calibration_groups)


@dataclass
class FitScore:
    """One model on one fold: held-out metrics, calibration table, test risks and notes.

    `error` is set (and the metrics empty) when fitting or scoring raised one of the
    exceptions the caller chose to catch.
    """

    metrics: dict[str, float] = field(default_factory=dict)
    calibration: pd.DataFrame = field(default_factory=pd.DataFrame)
    risk: np.ndarray = field(default_factory=lambda: np.empty(0))
    notes: list[str] = field(default_factory=list)
    fit_seconds: float = math.nan
    error: str | None = None


def score_held_out(y_train: np.ndarray, y_test: np.ndarray, risk: np.ndarray, scoring: Scoring,
                   surv: np.ndarray | None = None, times: np.ndarray | None = None) -> FoldScore:
    """`score_fold` of a risk score (and curves, if any) with the data set's scoring settings."""
    return score_fold(y_train, y_test, risk, horizons=dict(scoring.horizons), tau=scoring.tau,
                      calibration_horizon=scoring.calibration_horizon, surv=surv, times=times,
                      calibration_groups=scoring.calibration_groups)


def fit_and_score(estimator: Any, X_train: pd.DataFrame, y_train: np.ndarray, X_test: pd.DataFrame,
                  y_test: np.ndarray, scoring: Scoring, *, curves: bool = True,
                  catch: tuple[type[BaseException], ...] = ()) -> FitScore:
    """Fit `estimator` on the training rows and score the held-out rows.

    RuntimeWarnings of the fit (e.g. overflow in a Newton step) become notes; other warnings
    of the fit are recorded and dropped. Without `curves` the survival-curve metrics (Brier,
    IBS, calibration table) are skipped: cheaper when only a C-index is wanted. An exception
    listed in `catch` returns a FitScore with `error` set instead of propagating.
    """
    start = time.perf_counter()
    notes: list[str] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RuntimeWarning)
            estimator.fit(X_train, y_train)
        seconds = time.perf_counter() - start
        notes += [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
        risk = estimator.predict(X_test)
        surv = estimator.predict_survival_function(X_test, return_array=True) if curves else None
        fs = score_held_out(y_train, y_test, risk, scoring, surv=surv,
                            times=estimator.unique_times_ if curves else None)
    except catch as exc:
        return FitScore(notes=notes, error=str(exc))
    return FitScore(fs.metrics, fs.calibration, np.asarray(risk), notes + fs.notes, seconds)

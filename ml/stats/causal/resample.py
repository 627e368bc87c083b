"""Bootstrap of the adjusted curves: every model (propensity, Cox outcome, censoring) is
re-fitted in every resample, so the spread carries the uncertainty of all of them.

Resamples are drawn within each arm (`ml.stats.weighting.stratified_resample`, arm sizes kept)
and the logistic propensity is re-fitted on the resampled design matrix
(`ml.stats.weighting.refit_weights`, ATE weights 1/e and 1/(1-e), unstabilised).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ml.stats.bootstrap import run_resamples
from ml.stats.causal.estimators import ARMS, CausalSample, survival_on_grid
from ml.stats.weighting import refit_weights


def stack(curves: dict[str, dict[bool, np.ndarray]], estimators) -> np.ndarray:
    """{estimator: {arm: values}} as an array (estimator, arm (treated, control), grid)."""
    return np.array([[curves[name][arm] for arm in ARMS] for name in estimators])


def _one(sample: CausalSample, idx: np.ndarray, grid: np.ndarray, estimators) -> np.ndarray:
    ipw = refit_weights(sample.design[idx], sample.treated[idx], "ate", False, None)
    return stack(survival_on_grid(sample.take(idx, ipw), grid, estimators), estimators)


def bootstrap_curves(sample: CausalSample, grid: np.ndarray, estimators, replicates: int, seed: int,
                     progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, int]:
    """(replicates' curves as (replicate, estimator, arm, grid), number of failed resamples).

    A resample whose propensity or Cox fit fails is left out and counted (with a warning);
    the same seed gives the same replicates. `progress(done, replicates)` after each one.
    """
    out, failed = run_resamples(sample.treated, replicates, seed,
                                lambda idx: _one(sample, idx, grid, estimators), progress,
                                what="bootstrap resamples of the adjusted curves", unit="arm")
    shape = (0, len(estimators), len(ARMS), len(grid))
    return (np.stack(out) if out else np.zeros(shape)), failed

"""Bootstrap of the adjusted curves: every model (propensity, Cox outcome, censoring) is
re-fitted in every resample, so the spread carries the uncertainty of all of them.

Resamples are drawn within each arm (`ml.stats.weighting.stratified_resample`, arm sizes kept)
and the logistic propensity is re-fitted on the resampled design matrix
(`ml.stats.weighting.refit_weights`, ATE weights 1/e and 1/(1-e), unstabilised).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np

from ml.stats.causal.estimators import ARMS, CausalSample, survival_on_grid
from ml.stats.errors import CausalInputError
from ml.stats.weighting import refit_weights, stratified_resample


def stack(curves: dict[str, dict[bool, np.ndarray]], estimators) -> np.ndarray:
    """{estimator: {arm: values}} as an array (estimator, arm (treated, control), grid)."""
    return np.array([[curves[name][arm] for arm in ARMS] for name in estimators])


def _one(sample: CausalSample, idx: np.ndarray, grid: np.ndarray, estimators) -> np.ndarray:
    treated = sample.treated[idx]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a resample may be quasi-separated: fine here
        ipw = refit_weights(sample.design[idx], treated, "ate", False, None)
        return stack(survival_on_grid(sample.take(idx, ipw), grid, estimators), estimators)


def bootstrap_curves(sample: CausalSample, grid: np.ndarray, estimators, replicates: int, seed: int,
                     progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, int]:
    """(replicates' curves as (replicate, estimator, arm, grid), number of failed resamples).

    A resample whose propensity or Cox fit fails is left out and counted (with a warning);
    the same seed gives the same replicates. `progress(done, replicates)` after each one.
    """
    rng = np.random.default_rng(seed)
    out, failed = [], 0
    for done in range(1, replicates + 1):
        idx = stratified_resample(sample.treated, rng)
        try:
            out.append(_one(sample, idx, grid, estimators))
        except (CausalInputError, np.linalg.LinAlgError, ValueError):
            failed += 1
        if progress is not None:
            progress(done, replicates)
    if replicates and not out:
        raise CausalInputError(f"none of the {replicates} bootstrap resamples could be analysed "
                               "(every propensity or Cox fit failed): too few events or patients per arm")
    if failed:
        warnings.warn(f"{failed} of {replicates} bootstrap resamples of the adjusted curves could not "
                      "be analysed (Cox or propensity fit failed) and were left out", stacklevel=2)
    shape = (0, len(estimators), len(ARMS), len(grid))
    return (np.stack(out) if out else np.zeros(shape)), failed

"""Pointwise bootstrap band of IPTW-weighted Kaplan-Meier curves, and the reverse-KM follow-up.

Greenwood's variance treats IPTW weights as counts of real patients, so a weighted curve gets
its band from the bootstrap the analysis uses for its medians: patients resampled within each
treatment group, the propensity model re-fitted and the weights recomputed in every resample
(`ml.stats.weighting.refit_weights`); the band is the pointwise 2.5-97.5 percentiles of the
resampled curves on a time grid.
"""

from __future__ import annotations

import warnings

import numpy as np

from ml.stats import km
from ml.stats.errors import CausalInputError
from ml.stats.weighting import IPTW, propensity_design, refit_weights, stratified_resample


def weighted_km_band(df, iptw: IPTW, time: np.ndarray, event: np.ndarray, grid: np.ndarray,
                     replicates: int, seed: int, alpha: float = 0.05) -> dict[bool, tuple[np.ndarray, ...]]:
    """{treated flag: (low, high)} pointwise percentile band of each group's weighted KM on `grid`."""
    design = propensity_design(iptw, df)
    rng = np.random.default_rng(seed)
    curves: dict[bool, list[np.ndarray]] = {True: [], False: []}
    for _ in range(replicates):
        idx = stratified_resample(iptw.treated, rng)
        t = iptw.treated[idx]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a quasi-separated resample: its weights are clipped
                w = refit_weights(design[idx], t, iptw.estimand, iptw.stabilized, iptw.truncate)
        except (CausalInputError, np.linalg.LinAlgError, ValueError):
            continue
        for flag in (True, False):
            m = t == flag
            times, surv = km.weighted_km(time[idx][m], event[idx][m], w[m])
            curves[flag].append(km.step_at(times, surv, grid))
    q = (100 * alpha / 2, 100 * (1 - alpha / 2))
    return {flag: tuple(np.percentile(np.vstack(c), q, axis=0)) if c else
            (np.full(len(grid), np.nan), np.full(len(grid), np.nan)) for flag, c in curves.items()}


def reverse_km_median(time, event) -> float:
    """Median follow-up by the reverse Kaplan-Meier (censoring as the event; Schemper & Smith 1996)."""
    return km.km_median_fast(np.asarray(time, float), ~np.asarray(event, bool))

"""The one Kaplan-Meier estimator (optionally weighted): curve, S(t) and median.

Tied times are handled as in R's `survfit` and lifelines: deaths at a time are counted against
everyone still at risk just before it (censored at that time included). With weights every
count is a sum of weights; the point estimate is then the IPTW (Xie and Liu 2005) curve.
"""

from __future__ import annotations

import numpy as np


def _reverse_cumsum(a: np.ndarray) -> np.ndarray:
    return np.flip(np.cumsum(np.flip(a, 0), 0), 0)


def weighted_km(time, event, weights=None) -> tuple[np.ndarray, np.ndarray]:
    """Kaplan-Meier (optionally weighted) at the distinct event times: (times, survival)."""
    time = np.asarray(time, dtype=float)
    event = np.asarray(event).astype(bool)
    w = np.ones(len(time)) if weights is None else np.asarray(weights, dtype=float)
    order = np.argsort(time, kind="stable")
    t, e, w = time[order], event[order], w[order]
    at_risk = _reverse_cumsum(w)
    times, first = np.unique(t, return_index=True)
    deaths = np.add.reduceat(w * e, first)
    keep = np.add.reduceat(e.astype(int), first) > 0
    hazard = deaths[keep] / at_risk[first][keep]
    return times[keep], np.cumprod(1 - hazard)


def km_median_fast(time, event, weights=None) -> float:
    """The KM median as lifelines defines it: the first time S(t) <= 0.5; NaN if never."""
    times, surv = weighted_km(time, event, weights)
    below = np.flatnonzero(surv <= 0.5)
    return float(times[below[0]]) if len(below) else np.nan


def survival_at(time, event, at: float, weights=None) -> float:
    """Kaplan-Meier S(at): 1 before the first event time."""
    times, surv = weighted_km(time, event, weights)
    i = np.searchsorted(times, at, side="right")
    return float(surv[i - 1]) if i else 1.0

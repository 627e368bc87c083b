"""The one Kaplan-Meier estimator (optionally weighted): curve, S(t), median and Greenwood CIs.

Tied times are handled as in R's `survfit` and lifelines: deaths at a time are counted against
everyone still at risk just before it (censored at that time included). With weights every
count is a sum of weights; the point estimate is then the IPTW (Xie and Liu 2005) curve.

The 95 % CIs (`km_curve`, `km_median`) are the exponential Greenwood (log(-log)) intervals of
lifelines' `KaplanMeierFitter`, computed in the same order of operations so that the medians of
the bounds are the same numbers. They are for unweighted curves only: Greenwood's variance
counts every weight as a patient, so IPTW-weighted CIs come from the bootstrap instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from features import schema


def _reverse_cumsum(a: np.ndarray) -> np.ndarray:
    return np.flip(np.cumsum(np.flip(a, 0), 0), 0)


def _event_counts(time, event, weights=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(distinct event times, at risk just before each, deaths at each), counts weighted."""
    time = np.asarray(time, dtype=float)
    event = np.asarray(event).astype(bool)
    w = np.ones(len(time)) if weights is None else np.asarray(weights, dtype=float)
    order = np.argsort(time, kind="stable")
    t, e, w = time[order], event[order], w[order]
    at_risk = _reverse_cumsum(w)
    times, first = np.unique(t, return_index=True)
    deaths = np.add.reduceat(w * e, first) if len(t) else np.zeros(0)
    keep = np.add.reduceat(e.astype(int), first) > 0 if len(t) else np.zeros(0, bool)
    return times[keep], at_risk[first][keep], deaths[keep]


def weighted_km(time, event, weights=None) -> tuple[np.ndarray, np.ndarray]:
    """Kaplan-Meier (optionally weighted) at the distinct event times: (times, survival)."""
    times, at_risk, deaths = _event_counts(time, event, weights)
    return times, np.cumprod(1 - deaths / at_risk)


def km_median_fast(time, event, weights=None) -> float:
    """The KM median as lifelines defines it: the first time S(t) <= 0.5; NaN if never."""
    times, surv = weighted_km(time, event, weights)
    return _first_time_at_or_below(times, surv)


def survival_at(time, event, at: float, weights=None) -> float:
    """Kaplan-Meier S(at): 1 before the first event time."""
    times, surv = weighted_km(time, event, weights)
    i = np.searchsorted(times, at, side="right")
    return float(surv[i - 1]) if i else 1.0


def _first_time_at_or_below(times: np.ndarray, curve: np.ndarray, level: float = 0.5) -> float:
    below = np.flatnonzero(curve <= level)
    return float(times[below[0]]) if len(below) else np.nan


# --- unweighted curve with the exponential Greenwood interval ----------------------------------


@dataclass(frozen=True)
class KMCurve:
    """An unweighted Kaplan-Meier curve at its distinct event times, with a pointwise CI."""

    time: np.ndarray
    survival: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    at_risk: np.ndarray
    deaths: np.ndarray


def km_curve(time, event, alpha: float = 0.05) -> KMCurve:
    """Kaplan-Meier with the exponential Greenwood (log(-log)) 1 - alpha pointwise interval.

    S is accumulated on the log scale and the variance sum drops the term of a time at which
    everyone at risk dies (S = 0, both bounds 0), as lifelines does.
    """
    times, at_risk, deaths = _event_counts(time, event)
    with np.errstate(divide="ignore", invalid="ignore"):
        survival = np.exp(np.cumsum(np.log(at_risk - deaths) - np.log(at_risk)))
        terms = deaths / (at_risk * (at_risk - deaths))
        variance = np.cumsum(np.where(np.isinf(terms), 0.0, terms))
        log_s = np.log(survival)
        half_width = stats.norm.ppf(1 - alpha / 2) * np.sqrt(variance) / log_s
        low = np.exp(-np.exp(np.log(-log_s) - half_width))
        high = np.exp(-np.exp(np.log(-log_s) + half_width))
    return KMCurve(time=times, survival=survival, ci_low=np.nan_to_num(low, nan=1.0),
                   ci_high=np.nan_to_num(high, nan=1.0), at_risk=at_risk, deaths=deaths)


@dataclass(frozen=True)
class MedianSurvival:
    """A Kaplan-Meier median with its 95 % CI (NaN where not reached)."""

    median: float
    ci_low: float
    ci_high: float
    n: int
    events: int


def km_median(time, event, alpha: float = 0.05) -> MedianSurvival:
    """Unweighted KM median and its CI: the times at which the curve and its Greenwood bounds
    first reach 0.5 (the lower bound gives the lower limit); NaN where a curve never does."""
    curve = km_curve(time, event, alpha)
    return MedianSurvival(
        median=_first_time_at_or_below(curve.time, curve.survival),
        ci_low=_first_time_at_or_below(curve.time, curve.ci_low),
        ci_high=_first_time_at_or_below(curve.time, curve.ci_high),
        n=int(len(np.asarray(time))),
        events=int(np.sum(event)),
    )


def km_medians_by_group(df: pd.DataFrame, group: str = schema.TREATMENT) -> pd.DataFrame:
    """Unweighted KM medians of PFS and OS, overall and per group, as one tidy frame."""
    rows = []
    subsets = [("all", np.ones(len(df), bool))]
    subsets += [(str(g), (df[group] == g).to_numpy()) for g in (schema.TREATED, schema.CONTROL)]
    for endpoint, (tcol, ecol) in schema.ENDPOINTS.items():
        for label, mask in subsets:
            if not mask.any():
                continue
            m = km_median(df.loc[mask, tcol], df.loc[mask, ecol])
            rows.append({"endpoint": endpoint, "group": label, "n": m.n, "events": m.events,
                         "median": m.median, "ci_low": m.ci_low, "ci_high": m.ci_high})
    return pd.DataFrame(rows)


def km_frame(time, event, weights=None, alpha: float = 0.05) -> pd.DataFrame:
    """A KM curve as a step table for plotting, from time 0 to the last follow-up time.

    Columns time, survival, ci_low, ci_high; the Greenwood band only without weights
    (NaN with them, see the module docstring).
    """
    time = np.asarray(time, dtype=float)
    if weights is None:
        curve = km_curve(time, event, alpha)
        times, surv, low, high = curve.time, curve.survival, curve.ci_low, curve.ci_high
    else:
        times, surv = weighted_km(time, event, weights)
        low = high = np.full(len(times), np.nan)
    end = max(float(time.max()), float(times[-1]) if len(times) else 0.0)
    nan_or_one = np.nan if weights is not None else 1.0
    return pd.DataFrame({
        "time": np.r_[0.0, times, end],
        "survival": np.r_[1.0, surv, surv[-1] if len(surv) else 1.0],
        "ci_low": np.r_[nan_or_one, low, low[-1] if len(low) else nan_or_one],
        "ci_high": np.r_[nan_or_one, high, high[-1] if len(high) else nan_or_one],
    })

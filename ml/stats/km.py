"""The one Kaplan-Meier estimator (optionally weighted): curve, S(t), median and Greenwood CIs.

Tied times are handled as in R's `survfit` and lifelines: deaths at a time are counted against
everyone still at risk just before it (censored at that time included). With weights every
count is a sum of weights; the point estimate is then the IPTW (Xie and Liu 2005) curve.

The 95 % CIs (`km_curve`, `km_median`) are the exponential Greenwood (log(-log)) intervals of
lifelines' `KaplanMeierFitter` and R's `survfit(conf.type = "log-log")`. They are for unweighted
curves only: Greenwood's variance counts every weight as a patient, so IPTW-weighted CIs come
from the bootstrap instead.

Medians (of the curve and of its CI bounds) follow R's `quantile.survfit`: the first time the
curve falls below 0.5; where it sits on exactly 0.5 (to `MEDIAN_TOL`) over an interval, the
midpoint of that interval: from the time it reaches 0.5 to the next time it drops, or to the last
follow-up time if it never drops again. (lifelines returns the plateau's start.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from features import schema

MEDIAN_TOL = float(np.sqrt(np.finfo(float).eps))
"""A curve within this of 0.5 is on 0.5 (R's `quantile.survfit` tolerance)."""


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


def step_at(knots, values, at, start: float = 1.0) -> np.ndarray:
    """A right-continuous step function (value `start` before the first knot) read at `at`."""
    knots, values = np.asarray(knots, dtype=float), np.asarray(values, dtype=float)
    index = np.searchsorted(knots, np.asarray(at, dtype=float), side="right")
    return np.concatenate([[start], values])[index]


def weighted_km(time, event, weights=None) -> tuple[np.ndarray, np.ndarray]:
    """Kaplan-Meier (optionally weighted) at the distinct event times: (times, survival)."""
    times, at_risk, deaths = _event_counts(time, event, weights)
    return times, np.cumprod(1 - deaths / at_risk)


def km_median_fast(time, event, weights=None) -> float:
    """The (optionally weighted) KM median as R's `survfit` defines it (see the module
    docstring: the midpoint of an exact 0.5 plateau); NaN if the curve never reaches 0.5."""
    times, surv = weighted_km(time, event, weights)
    return median_time(times, surv, _last_time(time))


def survival_at(time, event, at: float, weights=None) -> float:
    """Kaplan-Meier S(at): 1 before the first event time."""
    times, surv = weighted_km(time, event, weights)
    i = np.searchsorted(times, at, side="right")
    return float(surv[i - 1]) if i else 1.0


def _last_time(time) -> float:
    time = np.asarray(time, dtype=float)
    return float(time.max()) if len(time) else np.nan


def median_time(times: np.ndarray, curve: np.ndarray, last_time: float, level: float = 0.5) -> float:
    """When a step curve (its values `curve` from each of `times` on) falls to `level`, as R's
    `quantile.survfit`: the first time it is below `level`; if it first sits on `level` (within
    `MEDIAN_TOL`), the midpoint between that time and the next time it drops below, or
    `last_time` (the last follow-up) if it never does. NaN where it never reaches `level`.
    NaN values (an undefined CI bound) are skipped, as R's `approx` does."""
    ok = ~np.isnan(curve)
    times, curve = np.asarray(times, dtype=float)[ok], np.asarray(curve, dtype=float)[ok]
    reached = np.flatnonzero(curve <= level + MEDIAN_TOL)
    if not len(reached):
        return np.nan
    below = np.flatnonzero(curve < level - MEDIAN_TOL)
    first = times[reached[0]]
    if len(below) and below[0] == reached[0]:
        return float(first)
    return float((first + (times[below[0]] if len(below) else last_time)) / 2)


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
    """Unweighted KM median and its CI: the medians (`median_time`, R's rule) of the curve and
    of its Greenwood bounds (the lower bound gives the lower limit); NaN where one never
    reaches 0.5."""
    curve = km_curve(time, event, alpha)
    last = _last_time(time)
    # the log-log band is undefined where S = 0 (R: NA): a bound that has not reached 0.5 by
    # then never does (lifelines would read its 0 there as reaching it)
    undefined = curve.survival == 0
    return MedianSurvival(
        median=median_time(curve.time, curve.survival, last),
        ci_low=median_time(curve.time, np.where(undefined, np.nan, curve.ci_low), last),
        ci_high=median_time(curve.time, np.where(undefined, np.nan, curve.ci_high), last),
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

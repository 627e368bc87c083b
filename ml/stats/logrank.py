"""Two-group log-rank tests: the classic one and the IPTW-weighted robust score test."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from ml.stats import coxph
from ml.stats.errors import CausalInputError


@dataclass(frozen=True)
class ScoreTest:
    """A (weighted) log-rank test as a score test of a Cox model at HR = 1."""

    statistic: float
    df: int
    p: float
    observed_minus_expected: float


def logrank(time, event, treated) -> ScoreTest:
    """The classic log-rank test of two groups (hypergeometric variance, ties as in R's survdiff).

    At each distinct event time with n at risk (n1 treated) and d deaths, the treated group
    expects d n1 / n deaths, with variance d (n1/n)(1 - n1/n)(n - d)/(n - 1).
    """
    time = np.asarray(time, dtype=float)
    event = np.asarray(event).astype(bool)
    t = np.asarray(treated, dtype=bool)
    times = np.unique(time[event])
    at_risk = len(time) - np.searchsorted(np.sort(time), times, side="left")
    at_risk_t = t.sum() - np.searchsorted(np.sort(time[t]), times, side="left")
    deaths = np.bincount(np.searchsorted(times, time[event]), minlength=len(times))
    deaths_t = np.bincount(np.searchsorted(times, time[event & t]), minlength=len(times))
    share = at_risk_t / at_risk
    ties = np.where(at_risk > 1, (at_risk - deaths) / np.maximum(at_risk - 1, 1), 1.0)
    o_minus_e = float(np.sum(deaths_t - deaths * share))
    variance = float(np.sum(deaths * share * (1 - share) * ties))
    if not variance > 0:
        raise CausalInputError("the log-rank test is undefined (no events at risk in both groups)")
    statistic = o_minus_e**2 / variance
    return ScoreTest(statistic=statistic, df=1, p=float(stats.chi2.sf(statistic, 1)),
                     observed_minus_expected=o_minus_e)


def robust_logrank(time, event, treated, weights=None) -> ScoreTest:
    """Weighted log-rank under IPTW: the robust score test of the Cox model at beta = 0.

    The score at beta = 0 with Breslow (log-rank) risk sets is the weighted observed
    minus expected events of the treated group; its variance is the robust one,
    sum_i (w_i U_i)^2, rather than the hypergeometric variance, which would treat the
    weights as frequency counts. This is R's coxph(..., weights, robust = TRUE)
    "robust score test" (Lin & Wei 1989). It treats the weights as fixed, which for
    ATE weights is conservative (Lunceford & Davidian 2004).
    """
    t = np.asarray(treated, dtype=float)[:, None]
    w = np.ones(len(t)) if weights is None else np.asarray(weights, dtype=float)
    rs = coxph.risk_sets(np.asarray(time, float), np.asarray(event).astype(bool), t, w, "breslow")
    stat, u = np.nan, np.nan
    if rs.n_events:
        at_zero = coxph.evaluate(rs, np.zeros(1), hessian=False, residuals=True)
        u = float(at_zero.gradient[0])
        var = float(np.sum((w * at_zero.residuals[:, 0]) ** 2))
        stat = u**2 / var if var > 0 else np.nan
    if not np.isfinite(stat):
        raise CausalInputError("the weighted log-rank test is undefined (no events at risk "
                               "in both groups)")
    return ScoreTest(statistic=stat, df=1, p=float(stats.chi2.sf(stat, 1)),
                     observed_minus_expected=u)

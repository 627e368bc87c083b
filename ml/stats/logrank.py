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


def robust_logrank(time, event, treated, weights=None, ties: str = "efron") -> ScoreTest:
    """Weighted log-rank under IPTW: the robust score test of the Cox model at beta = 0.

    R's `coxph(Surv(time, status) ~ arm, weights = w, robust = TRUE)$rscore`, with its
    default ties (Efron; `ties="breslow"` for Breslow's): the score at beta = 0,
    U = sum_i w_i U_i (the weighted observed minus expected events of the treated group,
    expected from the Efron or Breslow risk sets), over its robust variance
    sum_i (w_i U_i)^2 with U_i the per-patient score residuals at beta = 0 (Lin & Wei 1989),
    rather than the hypergeometric variance, which would treat the weights as counts of
    patients. It is invariant to the scale of the weights, and treats them as fixed.
    """
    t = np.asarray(treated, dtype=float)[:, None]
    w = np.ones(len(t)) if weights is None else np.asarray(weights, dtype=float)
    rs = coxph.risk_sets(np.asarray(time, float), np.asarray(event).astype(bool), t, w, ties)
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

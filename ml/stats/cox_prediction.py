"""Pointwise confidence bands for a Cox model's predicted survival curve (the delta method).

For a patient x, the Cox curve is S(t|x) = exp(-H(t|x)) with H(t|x) = H0(t) exp(x'b) and
H0 the Breslow (Aalen-type) cumulative baseline hazard: increments dN_j / S0_j, with dN_j
the weighted events at the j-th time and S0_j = sum_{at risk} w exp(x'b). Its variance is
the one of R's `survfit.coxph` (Tsiatis 1981; survival's `agsurv` with ctype = 1):

    Var H(t|x) = exp(2 x'b) [ sum_{t_j <= t} dN_j / S0_j^2  +  d(t)' V d(t) ]
    d(t)       = sum_{t_j <= t} (dN_j / S0_j) (x - xbar_j),   xbar_j = S1_j / S0_j

where V is the covariance of b (the inverse information; for a ridge-penalised fit the
inverse of the penalised information, which is also what R's `coxph(... + ridge())` reports).
The first term is the baseline's own noise, the second the coefficients' noise carried by
the derivative of H(t|x) in b. Everything is computed with x centred at the training column
means, as R does, which changes no number but keeps exp() finite.

The band is R's default `conf.type = "log"`: a normal interval on H, mapped through
exp(-H): low = S exp(-z se(H)), high = min(1, S exp(z se(H))). The median's interval is the
pair of times at which the low and the high curves first reach 0.5 (R's `quantile.survfit`).
R's default for a model fitted with Efron ties is ctype = 2 (an Efron-type baseline); the
curves here use the Breslow baseline for both tie methods, so they equal
`survfit(fit, newdata, ctype = 1)`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import norm


@dataclass(frozen=True)
class CoxCurveVariance:
    """What the delta method needs from a fitted Cox model, on its unique training times.

    hazard, var_hazard and xbar are cumulative sums over times, at x = center.
    """

    times: np.ndarray        # unique training times (events and censorings)
    center: np.ndarray       # training column means (R: fit$means)
    coef: np.ndarray
    cov: np.ndarray          # p x p covariance of coef
    hazard: np.ndarray       # H0(t) at x = center
    var_hazard: np.ndarray   # sum_{t_j <= t} dN_j / S0_j^2 (centred risk)
    xbar: np.ndarray         # times x p: sum_{t_j <= t} (dN_j / S0_j) (xbar_j - center)


def at_times(cv: CoxCurveVariance, times) -> CoxCurveVariance:
    """The same pieces read at `times` (right-continuous steps: zero before the first training
    time, the last value after the last one), so a band is computed at those times only."""
    at = np.atleast_1d(np.asarray(times, dtype=float))
    idx = np.searchsorted(cv.times, at, side="right") - 1
    before = idx < 0
    idx = np.clip(idx, 0, None)

    def read(values):
        out = values[idx].copy()
        out[before] = 0.0
        return out

    return CoxCurveVariance(times=at, center=cv.center, coef=cv.coef, cov=cv.cov, hazard=read(cv.hazard),
                            var_hazard=read(cv.var_hazard), xbar=read(cv.xbar))


def coefficient_covariance(information: np.ndarray, ridge_total: float = 0.0) -> np.ndarray:
    """Inverse of the (penalised) information I + ridge_total * Id; a pseudo-inverse if singular."""
    a = np.asarray(information, dtype=float) + ridge_total * np.eye(len(information))
    try:
        return np.linalg.inv(a)
    except np.linalg.LinAlgError:
        return np.linalg.pinv(a)


def cox_curve_variance(time, event, x, w, coef, cov) -> CoxCurveVariance:
    """The pieces of `survfit.coxph`'s variance (ctype = 1) for the fitted (coef, cov)."""
    time = np.asarray(time, dtype=float)
    x = np.asarray(x, dtype=float)
    w = np.asarray(w, dtype=float)
    center = x.mean(axis=0)
    xc = x - center
    risk = w * np.exp(xc @ coef)
    times, at = np.unique(time, return_inverse=True)

    def reverse_cumsum(values):
        per_time = np.zeros((len(times),) + values.shape[1:])
        np.add.at(per_time, at, values)
        return np.cumsum(per_time[::-1], axis=0)[::-1]

    s0 = reverse_cumsum(risk)
    s1 = reverse_cumsum(risk[:, None] * xc)
    events = np.bincount(at, weights=w * np.asarray(event, dtype=float), minlength=len(times))
    safe = np.where(s0 > 0, s0, 1.0)
    dh = np.where(s0 > 0, events / safe, 0.0)
    return CoxCurveVariance(
        times=times, center=center, coef=np.asarray(coef, dtype=float), cov=np.asarray(cov, dtype=float),
        hazard=np.cumsum(dh), var_hazard=np.cumsum(np.where(s0 > 0, events / safe**2, 0.0)),
        xbar=np.cumsum(dh[:, None] * s1 / safe[:, None], axis=0))


def cumulative_hazard_se(cv: CoxCurveVariance, x_new) -> tuple[np.ndarray, np.ndarray]:
    """(H(t|x), se of H(t|x)): patients x `cv.times`.

    d(t)'V d(t) with d(t) = H0(t) x - xbar(t) is expanded as H0^2 x'Vx - 2 H0 x'V xbar + xbar'V xbar,
    so a batch costs patients x times x p, without a times x p matrix per patient.
    """
    xc = np.atleast_2d(np.asarray(x_new, dtype=float)) - cv.center
    r = np.exp(np.clip(xc @ cv.coef, -700, 700))
    xv = xc @ cv.cov                                         # patients x p
    quad_x = np.einsum("ip,ip->i", xv, xc)                   # x'Vx
    cross = xv @ cv.xbar.T                                   # x'V xbar(t): patients x times
    quad_bar = np.einsum("tp,pq,tq->t", cv.xbar, cv.cov, cv.xbar)
    dvd = (cv.hazard**2 * quad_x[:, None] - 2 * cv.hazard * cross + quad_bar)
    var = (cv.var_hazard + dvd) * (r**2)[:, None]
    return r[:, None] * cv.hazard, np.sqrt(np.maximum(var, 0.0))


def log_band(hazard: np.ndarray, se: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, ...]:
    """(S, low, high) from H and se(H): R's conf.type = "log" (upper capped at 1)."""
    z = norm.ppf(0.5 + level / 2)
    surv = np.exp(-hazard)
    return surv, np.exp(-hazard - z * se), np.minimum(np.exp(-hazard + z * se), 1.0)


def survival_band(cv: CoxCurveVariance, x_new, level: float = 0.95) -> tuple[np.ndarray, ...]:
    """(S, low, high) on `cv.times` for each row of x_new (delta method, log scale)."""
    return log_band(*cumulative_hazard_se(cv, x_new), level=level)

"""Proportional-hazards check of a Cox fit: R's `cox.zph` (survival >= 3.0), exactly.

For a fitted Cox model with coefficients b, add the time-varying terms x_j * g(t) to the
model and test them at gamma = 0 by the score test, with b held at its estimate:

    U_g   = sum over event slots s of  g_s (w_s x_s - wbar_s xbar_s)        (the score in gamma)
    I     = sum over event slots s of  wbar_s [1, g_s; g_s, g_s^2] (x) V_s   (2p x 2p information)

with xbar_s and V_s the weighted mean and covariance of x over the slot's risk set and the
fit's tie handling (Efron: the tied events enter their slots with fractions 1, (d-1)/d, ...;
Breslow: fully), g the transformed event time centred at its mean over the events. The score
of b is zero at the MLE, so a term (or a set of columns J) gets chisq = u' I_kk^-1 u with u
= (0, U_g[J]) and kk = (all b, the gamma of J); df = |J|. GLOBAL tests every gamma at once.
This is Therneau's `zph1` in survival 3.x (the 1994 Grambsch-Therneau formula it replaced
approximated I by a product of the model variance and the variance of g).

Transforms of time (R's names): "km" (R's default) g = 1 - S(t-) with S the unweighted
Kaplan-Meier of all rows; "rank" the average rank of the time among all rows; "identity";
"log".

Weights. R's statistic scales with the weights (multiplying all weights by 5 multiplies
every chisq by 5), so a p-value would depend on an arbitrary scale. Here the weights are
first rescaled to mean 1 over the rows in the fit (rows with a zero weight are left out, as
the engine does; R refuses them): the result equals R's `cox.zph(coxph(..., weights =
w / mean(w)))`, is the same for w and c * w, and for unweighted fits is R's result. As R
does, the test uses the model-based (naive) information of the weighted fit also when the
fit reports robust SEs. The plot's scaled Schoenfeld residuals beta(t) = b + d I^-1 s_k
(d events, s_k the Schoenfeld residual) and the smooth's band follow R's `plot.cox.zph`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from features.contract import split_term
from ml.stats import coxph
from ml.stats.cox import CoxFit

TRANSFORMS = ("km", "rank", "identity", "log")


@dataclass(frozen=True)
class ZphResult:
    """The tests and what R's plot of a `cox.zph` object draws.

    table: one row per design column (level "term"), per covariate (level "covariate", the
    columns of a factor together, as R groups a factor's levels) and "GLOBAL" (level
    "global"); columns term, level, chisq, df, p. time / g: the event times in time order
    and their transform; beta_t: the scaled Schoenfeld residuals (events x columns); var:
    d I^-1, the variance R's plot uses for the smooth's band.
    """

    table: pd.DataFrame
    transform: str
    time: np.ndarray
    g: np.ndarray
    beta_t: pd.DataFrame
    var: np.ndarray


def _transform_at_events(rs: coxph.RiskSets, transform: str) -> np.ndarray:
    """g at each distinct event time (rs.uniq), over the rows with a positive weight."""
    times = rs.time[rs.w > 0]  # sorted
    left = np.searchsorted(times, rs.uniq, side="left")
    if transform == "km":
        at_risk = len(times) - left
        surv_after = np.cumprod(1.0 - rs.counts / at_risk)
        return 1.0 - np.concatenate([[1.0], surv_after[:-1]])
    if transform == "rank":
        right = np.searchsorted(times, rs.uniq, side="right")
        return left + (right - left + 1) / 2.0
    if transform == "identity":
        return rs.uniq.astype(float)
    if transform == "log":
        if np.any(rs.uniq <= 0):
            raise ValueError("the 'log' PH transform needs event times > 0")
        return np.log(rs.uniq)
    raise ValueError(f"PH transform must be one of {', '.join(TRANSFORMS)}, got {transform!r}")


def _slot_sums(rs: coxph.RiskSets, x: np.ndarray, beta: np.ndarray):
    """Per event slot: Efron risk-set sums S0 and S1 at beta; v = w exp(eta) per sorted row."""
    eta = x @ beta
    v = rs.w * np.exp(eta - eta.max())
    s0 = np.cumsum(v[::-1])[::-1][rs.first]
    s1 = np.cumsum((v[:, None] * x)[::-1], axis=0)[::-1][rs.first]
    s0d = np.add.reduceat(v[rs.ev], rs.starts)
    s1d = np.add.reduceat(v[rs.ev, None] * x[rs.ev], rs.starts, axis=0)
    den = s0[rs.group] - rs.c * s0d[rs.group]
    num = s1[rs.group] - rs.c[:, None] * s1d[rs.group]
    return v, den, num


def _information(rs: coxph.RiskSets, x, v, den, num, q) -> np.ndarray:
    """sum over slots s of q_s * (risk-set covariance of x at s), any real slot weights q.

    The second moments sum_i v_i x_i x_i' are regrouped per row: row i enters every slot up
    to its own time with q/den, less the Efron share c q/den when it is one of the tied events.
    """
    ev, group = rs.ev, rs.group
    a = np.add.reduceat(q / den, rs.starts)
    b = np.add.reduceat(q * rs.c / den, rs.starts)
    last = np.searchsorted(rs.uniq, rs.time, side="right") - 1
    cum_a = np.concatenate([[0.0], np.cumsum(a)])[last + 1]
    return ((x.T * (v * cum_a)) @ x - (x[ev].T * (v[ev] * b[group])) @ x[ev]
            - (num * (q / den**2)[:, None]).T @ num)


def _score_and_information(fit: CoxFit, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """U_g (p) and the 2p x 2p information at (b, gamma = 0), weights rescaled to mean 1."""
    rs = fit.risk_sets
    scale = rs.w[rs.w > 0].mean()
    x = rs.x - rs.x[rs.w > 0].mean(axis=0)  # centred for accuracy; the test is shift-invariant
    v, den, num = _slot_sums(rs, x, fit.coef)
    ev, wbar = rs.ev, rs.wbar
    u = (g[:, None] * (rs.w[ev, None] * x[ev] - wbar[:, None] * num / den[:, None])).sum(0)
    blocks = [_information(rs, x, v, den, num, wbar * g**k) for k in range(3)]
    info = np.block([[blocks[0], blocks[1]], [blocks[1], blocks[2]]])
    return u / scale, info / scale


def _chisq(u: np.ndarray, info: np.ndarray, cols: list[int]) -> float:
    """The score statistic of the gammas in `cols`; NaN when their information is singular
    (e.g. all events at one time: g is then constant and x * g(t) adds nothing to test)."""
    p = len(u)
    kk = list(range(p)) + [p + j for j in cols]
    vec = np.concatenate([np.zeros(p), u[cols]])
    try:
        return float(vec @ np.linalg.solve(info[np.ix_(kk, kk)], vec))
    except np.linalg.LinAlgError:
        return float("nan")


def covariate_groups(names) -> dict[str, list[int]]:
    """Design columns by covariate (`name=level` columns of one factor together), in order."""
    groups: dict[str, list[int]] = {}
    for j, name in enumerate(names):
        groups.setdefault(split_term(name)[0], []).append(j)
    return groups


def cox_zph(fit: CoxFit, transform: str = "km") -> ZphResult:
    """R's `cox.zph(fit, transform)`: per column, per covariate and GLOBAL score tests."""
    rs = fit.risk_sets
    g_uniq = _transform_at_events(rs, transform)
    g_event = g_uniq[rs.group]
    u, info = _score_and_information(fit, g_event - g_event.mean())
    p = len(fit.coef)
    rows = [(name, "term", [j]) for j, name in enumerate(fit.names)]
    rows += [(cov, "covariate", cols) for cov, cols in covariate_groups(fit.names).items()]
    rows.append(("GLOBAL", "global", list(range(p))))
    chisq = np.array([_chisq(u, info, cols) for _, _, cols in rows])
    df = np.array([len(cols) for _, _, cols in rows])
    table = pd.DataFrame({"term": [r[0] for r in rows], "level": [r[1] for r in rows],
                          "chisq": chisq, "df": df, "p": stats.chi2.sf(chisq, df)})
    var = rs.n_events * np.linalg.inv(info[:p, :p])
    resid = coxph.schoenfeld_residuals(rs, fit.coef)
    beta_t = pd.DataFrame(resid @ var + fit.coef, columns=list(fit.names))
    return ZphResult(table=table, transform=transform, time=rs.time[rs.ev], g=g_event,
                     beta_t=beta_t, var=var)


def ph_test(fit: CoxFit, alpha: float, model: str, transform: str = "km") -> pd.DataFrame:
    """`cox_zph` rows with the model's name and plain-language flags.

    Every row carries `ph_violated` (p < alpha); the note, what a reader acts on, is written
    for the covariate rows (a factor judged on all its levels at once) and the GLOBAL row (not
    when the model has one covariate: GLOBAL is then the same test).
    """
    table = cox_zph(fit, transform).table
    single = (table["level"] == "covariate").sum() == 1  # GLOBAL is then that covariate's test
    notes = []
    for r in table.itertuples():
        if not r.p < alpha or r.level == "term" or (r.level == "global" and single):
            notes.append("")
        elif r.level == "global":
            notes.append(f"GLOBAL: the global test rejects proportional hazards (p = {r.p:.3g}); "
                         "some hazard ratio of this model changes over follow-up")
        else:
            notes.append(f"{r.term}: its hazard ratio seems to change over follow-up (p = "
                         f"{r.p:.3g}); read the reported HR as an average over time, or model the "
                         "effect as time-varying")
    return table.assign(model=model, transform=transform, ph_violated=table["p"] < alpha,
                        note=notes)[["model", "term", "level", "chisq", "df", "p", "ph_violated",
                                     "note", "transform"]]


def _natural_spline_basis(x: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """Natural cubic spline basis with an intercept (Hastie, Tibshirani & Friedman, eq. 5.4-5.5):
    1, x, d_k(x) - d_{K-1}(x); it spans the same space as R's ns(x, knots, intercept = TRUE)."""
    def d(k):
        return (np.clip(x - knots[k], 0, None) ** 3
                - np.clip(x - knots[-1], 0, None) ** 3) / (knots[-1] - knots[k])
    return np.column_stack([np.ones_like(x), x] + [d(k) - d(len(knots) - 2)
                                                   for k in range(len(knots) - 2)])


def zph_smooth(g: np.ndarray, y: np.ndarray, var: float, df: int = 4,
               n_grid: int = 40) -> pd.DataFrame | None:
    """R's `plot.cox.zph` smooth of beta(t) on g: a natural cubic spline with `df` degrees of
    freedom fitted by least squares (interior knots at the quantiles of the grid and the data
    together, as R places them), and its band fit +- 2 sqrt(var * h) with h the hat value of
    the fit at each grid point and `var` the term's diagonal of `ZphResult.var`.

    None when g has too few distinct values for the spline (R skips the panel then).
    """
    g, y = np.asarray(g, dtype=float), np.asarray(y, dtype=float)
    lo, hi = g.min(), g.max()
    if hi <= lo:
        return None
    grid = np.linspace(lo, hi, n_grid)
    both = (np.concatenate([grid, g]) - lo) / (hi - lo)  # an affine map keeps the spline space
    knots = np.quantile(both, np.linspace(0, 1, df))
    basis = _natural_spline_basis(both, knots)
    at_grid, at_data = basis[:n_grid], basis[n_grid:]
    if np.linalg.matrix_rank(at_data) < df:
        return None
    q, r = np.linalg.qr(at_data)
    coef = np.linalg.solve(r, q.T @ y)
    half = at_grid @ np.linalg.inv(r)
    hat = np.sum(half**2, axis=1)
    fit = at_grid @ coef
    band = 2 * np.sqrt(var * hat)
    return pd.DataFrame({"g": grid, "fit": fit, "low": fit - band, "high": fit + band})

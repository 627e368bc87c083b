"""A smoothed calibration curve of predicted survival at one horizon (Austin, Harrell & van
Klaveren 2020, Stat Med 39:2714, the method behind their integrated calibration index).

    observed = smooth_calibration(y, s_h, h, grid)   # observed S(h) at each predicted S(h) in grid

The outcome, followed up to h (administratively censored there), is regressed by a Cox model on
a restricted cubic spline with 3 knots (10th, 50th and 90th percentiles, Harrell's default; R
rms `rcs`) of z = log(-log S(h|x)), the predicted complementary log-log; the observed S(h) at a
predicted value p is that model's exp(-H0(h) exp(f(log(-log p)))), Breslow baseline. A
well-calibrated model gives observed = predicted. It is the smooth counterpart of the
calibration slope (which fits f linear) and uses every row, without grouping; rms `calibrate`
smooths the same outcome with `hare` (polspline), which has no Python equivalent. Pure: no I/O.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from ml.evaluation.metrics import cloglog, truncate
from ml.models.cox import CoxPH

KNOT_QUANTILES = (0.10, 0.50, 0.90)
MIN_EVENTS = 5
"""Below this many events up to h the smooth (3 coefficients) is not fitted: NaN."""


def spline_knots(z: np.ndarray, quantiles=KNOT_QUANTILES) -> np.ndarray:
    """Knots at the quantiles of z (duplicates dropped, as rms does for tied quantiles)."""
    return np.unique(np.quantile(z, quantiles))


def rcs_basis(z: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """Restricted cubic spline basis (linear beyond the outer knots): the column z, then one
    column per inner knot, Harrell's form normalised by (t_k - t_1)^2 (rms `rcspline.eval`)."""
    z = np.asarray(z, dtype=float)
    columns = [z]
    k = len(knots)
    if k >= 3:
        t1, tk1, tk = knots[0], knots[-2], knots[-1]
        cube = lambda a: np.maximum(z - a, 0.0) ** 3  # noqa: E731
        for tj in knots[:-2]:
            term = cube(tj) - cube(tk1) * (tk - tj) / (tk - tk1) + cube(tk) * (tk1 - tj) / (tk - tk1)
            columns.append(term / (tk - t1) ** 2)
    return np.column_stack(columns)


def smooth_calibration(y: np.ndarray, s_h: np.ndarray, h: float, grid: np.ndarray) -> np.ndarray:
    """Observed S(h) at each predicted S(h) of `grid`, from the rows' outcome `y` and predictions
    `s_h` (see the module docstring); NaN where it cannot be estimated, and outside the range of
    `s_h` (the spline is not extrapolated, e.g. for a bootstrap model whose predictions on the
    rows span less than the apparent model's)."""
    grid, s_h = np.asarray(grid, dtype=float), np.asarray(s_h, dtype=float)
    yt = truncate(y, h)
    z = cloglog(s_h)
    if yt["event"].sum() < MIN_EVENTS or np.ptp(z) <= 1e-12:
        return np.full(len(grid), math.nan)
    knots = spline_knots(z)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            fit = CoxPH(alpha=0.0).fit(rcs_basis(z, knots), yt)
    except (ValueError, ArithmeticError, np.linalg.LinAlgError):
        return np.full(len(grid), math.nan)
    if not np.all(np.isfinite(fit.coef_)) or np.max(np.abs(fit.coef_)) > 50:
        return np.full(len(grid), math.nan)
    surv = fit.predict_survival_function(rcs_basis(cloglog(grid), knots), return_array=True)
    at = np.searchsorted(fit.unique_times_, h, side="right") - 1
    observed = surv[:, at] if at >= 0 else np.ones(len(grid))
    # no extrapolation: NaN at predicted values outside the range these rows' predictions span
    return np.where((grid >= s_h.min()) & (grid <= s_h.max()), observed, math.nan)


def prediction_grid(s_h: np.ndarray, points: int = 50) -> np.ndarray:
    """Predicted S(h) values at which a curve is drawn: evenly spaced over the 1st-99th percentiles."""
    low, high = np.quantile(s_h, [0.01, 0.99])
    return np.linspace(low, high, points)

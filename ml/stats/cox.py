"""The (weighted) Cox model as a result: coefficients, model-based and robust sandwich SEs.

`fit_cox` runs the one partial-likelihood engine (`ml.stats.coxph`) by Newton-Raphson and
adds the robust covariance I^-1 (sum_i w_i^2 U_i U_i') I^-1 (Lin & Wei 1989), what R's
coxph(robust=TRUE) reports for IPTW weights. It is cheap enough to re-fit in every
bootstrap resample and is checked against lifelines in the tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from ml.stats import coxph
from ml.stats.errors import CausalInputError

DIVERGED_LOG_HR = 20.0
"""A |log-HR| beyond this is a coefficient running off to infinity, not an estimate."""


@dataclass(frozen=True)
class CoxFit:
    """A (weighted) Cox fit: coefficients, model-based and robust (sandwich) SEs.

    `covariance_model` is the inverse information; `risk_sets` the engine's sorted data,
    kept for residual-based diagnostics (`ml.stats.ph`).
    """

    names: tuple[str, ...]
    coef: np.ndarray
    se_model: np.ndarray
    se_robust: np.ndarray
    covariance_model: np.ndarray
    covariance_robust: np.ndarray
    loglik: float
    n: int
    events: int
    iterations: int
    ties: str
    risk_sets: coxph.RiskSets

    def table(self, robust: bool = True, alpha: float = 0.05) -> pd.DataFrame:
        """Per term: log-HR, HR, SE, Wald 1-alpha CI and two-sided p."""
        se = self.se_robust if robust else self.se_model
        z = stats.norm.ppf(1 - alpha / 2)
        return pd.DataFrame({
            "term": self.names, "coef": self.coef, "hr": np.exp(self.coef), "se": se,
            "ci_low": np.exp(self.coef - z * se), "ci_high": np.exp(self.coef + z * se),
            "p": 2 * stats.norm.sf(np.abs(self.coef / se)),
        })


def _as_design(x, names) -> tuple[np.ndarray, tuple[str, ...]]:
    if isinstance(x, pd.DataFrame):
        return x.to_numpy(dtype=float), tuple(map(str, x.columns))
    arr = np.asarray(x, dtype=float)
    arr = arr[:, None] if arr.ndim == 1 else arr
    return arr, tuple(names) if names is not None else tuple(f"x{j}" for j in range(arr.shape[1]))


def _checked_weights(weights, n: int, event: np.ndarray) -> np.ndarray:
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=float)
    if not (np.all(np.isfinite(w)) and np.all(w >= 0)):
        raise CausalInputError("Cox weights must be finite and >= 0")
    if not np.any(event & (w > 0)):
        raise CausalInputError("no events: a Cox model cannot be fitted")
    return w


def _check_converged(result: coxph.NewtonResult, names: tuple[str, ...]) -> None:
    if result.singular_start:
        raise CausalInputError(f"the Cox design is singular (terms: {', '.join(names)}); a "
                               "term is constant or collinear with others")
    if result.status != "converged" or np.max(np.abs(result.coef)) > DIVERGED_LOG_HR:
        raise CausalInputError(
            f"the Cox model did not converge (terms: {', '.join(names)}; log-HR "
            f"{np.round(result.coef, 2)}): the likelihood has no finite maximum, e.g. a group "
            "without events")


def fit_cox(time, event, x, weights=None, ties: str = "efron", names=None,
            max_iter: int = 50, tol: float = 1e-10) -> CoxFit:
    """Fit a (weighted) Cox model by Newton-Raphson; robust SE from the sandwich.

    Robust covariance: I^-1 (sum_i w_i^2 U_i U_i') I^-1 with U_i the score residuals
    (Lin & Wei 1989). It treats the weights as known; the analysis's bootstrap also
    re-fits the propensity model. Raises `CausalInputError` when the likelihood has no
    finite maximum (e.g. a group without events) or the design is singular.
    """
    x, names = _as_design(x, names)
    time = np.asarray(time, dtype=float)
    event = np.asarray(event).astype(bool)
    w = _checked_weights(weights, len(time), event)
    rs = coxph.risk_sets(time, event, x, w, ties)
    result = coxph.newton_raphson(rs, max_iter=max_iter, tol=tol)
    _check_converged(result, names)
    final = coxph.evaluate(rs, result.coef, residuals=True)
    inv = np.linalg.inv(final.information)
    wu = final.residuals * w[:, None]
    robust = inv @ (wu.T @ wu) @ inv
    return CoxFit(names=names, coef=result.coef, se_model=np.sqrt(np.diag(inv)),
                  se_robust=np.sqrt(np.diag(robust)), covariance_model=inv,
                  covariance_robust=robust, loglik=final.loglik, n=len(time),
                  events=int(event.sum()), iterations=result.iterations, ties=ties, risk_sets=rs)

"""Weighted Cox models: `CoxPH` (Newton-Raphson, small default ridge) and `Coxnet` (elastic net).

scikit-survival's CoxPHSurvivalAnalysis ignores sample weights and its Coxnet has none,
so both models sit on the weighted partial likelihood of `ml.stats.coxph` (Efron or Breslow
ties, R's `coxph` weighting). Both minimise `-log PL / sum(w) + penalty`, the scale of
glmnet and scikit-survival's Coxnet, so multiplying every weight by a constant changes
nothing, and a zero weight is the same as removing the row.
"""

from __future__ import annotations

import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.base import _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from ml.models.base import BreslowMixin, SurvivalEstimator, SurvivalInputError, as_target, check_weights
from ml.stats import cox_prediction, coxph

_COMMON_CONSTRAINTS = {
    "alpha": [Interval(Real, 0, None, closed="left")],
    "ties": [StrOptions({"efron", "breslow"})],
    "max_iter": [Interval(Integral, 1, None, closed="left")],
    "tol": [Interval(Real, 0, None, closed="left")],
}


class SeparationWarning(RuntimeWarning):
    """A Cox coefficient runs off to infinity (monotone likelihood, e.g. a level without events)."""


SEPARATION_LOG_HR = 10.0
DEFAULT_RIDGE = 0.01
"""CoxPH's (and IPTWCox's) default alpha: a ridge small enough to leave a well-posed fit almost
unchanged and large enough to keep a separated one finite (see CoxPH)."""


def _warn_separation(beta: np.ndarray, est) -> None:
    big = np.flatnonzero(np.abs(beta) > SEPARATION_LOG_HR)
    if len(big):
        names = getattr(est, "feature_names_in_", None)
        terms = [str(names[j]) if names is not None else f"x{j}" for j in big]
        warnings.warn(f"|log HR| > {SEPARATION_LOG_HR:g} for {', '.join(terms)}: the partial likelihood "
                      "has no finite maximum (separation); set alpha > 0 to shrink", SeparationWarning,
                      stacklevel=4)


class _CoxBase(BreslowMixin, SurvivalEstimator):
    """Shared by CoxPH and Coxnet: data preparation, baseline, prediction."""

    def _prepare(self, X, y, sample_weight) -> tuple[coxph.RiskSets, np.ndarray, np.ndarray, np.ndarray]:
        x = self._design(X, reset=True)
        event, time = as_target(y)
        w = check_weights(sample_weight, len(time))
        if not np.any(event & (w > 0)):
            raise SurvivalInputError("no events with a positive weight: the Cox model cannot be fitted")
        return coxph.risk_sets(x=x, time=time, event=event, w=w, ties=self.ties), x, time, event

    def _design(self, X, *, reset: bool) -> np.ndarray:
        x = self._check_X(X, reset=reset, ensure_all_finite=False)
        if not np.all(np.isfinite(x)):
            raise SurvivalInputError("X must be a 2-d array of finite numbers (impute missing values first)")
        return x

    def _finish(self, beta, x, time, event, sample_weight) -> None:
        self.coef_ = beta
        w = check_weights(sample_weight, len(time))
        self._fit_baseline(time, event, x @ beta, w)

    def _log_hazard(self, X) -> np.ndarray:
        return self._design(X, reset=False) @ self.coef_

    def predict(self, X) -> np.ndarray:
        """Log hazard ratio x'b (higher = worse)."""
        return self._log_hazard(X)


class CoxPH(_CoxBase):
    """Multivariable Cox model fitted by Newton-Raphson on the weighted partial likelihood.

    alpha: ridge penalty 0.5 * alpha * ||b||^2 on the per-unit-weight scale (the objective is
    -log PL / sum(w) + penalty; scikit-survival's CoxPHSurvivalAnalysis(alpha=a) puts a on
    -log PL itself, i.e. a / sum(w) here). The default `DEFAULT_RIDGE` = 0.01 is small: on
    the benchmark's real tables the held-out C moves by less than 0.003 from scikit-survival's
    alpha=0.1, except where the plain fit separates. A training fold separates when a level
    (or a combination) has no events, or only events: the partial likelihood then has no
    finite maximum, and the ridge keeps those coefficients finite and shrinks them toward 0.
    alpha=0 is the plain maximum partial likelihood fit (lifelines' CoxPHFitter gives the same
    coefficients); on separation its iterations stop when the log likelihood stops improving
    and a `SeparationWarning` names the diverging coefficients. Standardised features (the
    preprocessor scales them) make one alpha mean the same for every column.
    """

    _parameter_constraints: dict = dict(_COMMON_CONSTRAINTS)

    def __init__(self, *, alpha: float = DEFAULT_RIDGE, ties: str = "efron", max_iter: int = 100,
                 tol: float = 1e-9):
        self.alpha = alpha
        self.ties = ties
        self.max_iter = max_iter
        self.tol = tol

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        data, x, time, event = self._prepare(X, y, sample_weight)
        result = coxph.newton_raphson(data, ridge=self.alpha, max_iter=self.max_iter, tol=self.tol)
        beta, self.n_iter_ = result.coef, result.iterations
        if result.status == "max_iter":
            warnings.warn(f"CoxPH did not converge in {self.max_iter} iterations", RuntimeWarning,
                          stacklevel=3)
        _warn_separation(beta, self)
        self._finish(beta, x, time, event, sample_weight)
        return self

    # --- pointwise uncertainty of a predicted curve (delta method, as R's survfit.coxph)

    STATIONARY_TOL = 1e-10
    """Largest Newton decrement g'H^-1 g of the penalised objective (per unit weight; invariant to
    the scale of the columns) at which the fit counts as at its optimum."""

    def _fitted_ridge(self) -> float | None:
        """The ridge the coefficients were fitted with: `alpha_` (a subclass that chooses it,
        scikit-learn's naming, e.g. RidgeCV) or else `alpha`; None if neither is a number."""
        ridge = getattr(self, "alpha_", None)
        if ridge is None:
            ridge = self.alpha
        return float(ridge) if isinstance(ridge, Real) and ridge >= 0 else None

    def _finish(self, beta, x, time, event, sample_weight) -> None:
        super()._finish(beta, x, time, event, sample_weight)
        self.curve_variance_ = None
        ridge = self._fitted_ridge()
        w = check_weights(sample_weight, len(time))
        if ridge is None:
            return
        pl = coxph.evaluate(coxph.risk_sets(x=x, time=time, event=event, w=w, ties=self.ties), beta)
        scale = float(w.sum())
        cov = cox_prediction.coefficient_covariance(pl.information, ridge * scale)
        gradient = -pl.gradient / scale + ridge * beta
        if not scale * gradient @ cov @ gradient <= self.STATIONARY_TOL:
            return  # not at the optimum of that objective (stopped early): no delta method
        self.curve_variance_ = cox_prediction.cox_curve_variance(time, event, x, w, beta, cov)

    def predict_survival_ci(self, X, times=None, alpha: float = 0.05) -> tuple[np.ndarray, ...]:
        """(S, low, high): patients x `times` (default `unique_times_`), pointwise 1 - alpha band.

        Delta method on the cumulative hazard, log scale: R's `survfit.coxph(fit, newdata,
        ctype = 1, conf.type = "log")` (see `ml.stats.cox_prediction`), with the covariance of
        the coefficients = the inverse of the information, penalised by the ridge when
        alpha > 0. Right-continuous steps: S = low = high = 1 before the first training time,
        NaN after the last. Raises ValueError when the fit stopped short of the optimum of its
        objective, where the delta method does not apply. (A separated fit, alpha = 0, is at
        its flat limit: its band is honest and very wide.)
        """
        check_is_fitted(self)
        if getattr(self, "curve_variance_", None) is None:
            raise ValueError("this Cox fit stopped short of the optimum of its objective (no convergence): "
                             "the delta method does not apply; use a bootstrap")
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {alpha}")
        cv = self.curve_variance_
        x = self._design(X, reset=False)
        if times is None:
            return cox_prediction.survival_band(cv, x, level=1 - alpha)
        at = cox_prediction.at_times(cv, times)
        bands = cox_prediction.survival_band(at, x, level=1 - alpha)
        for band in bands:
            band[:, at.times > cv.times[-1]] = np.nan
        return bands


def _soft_threshold(z: float, gamma: float) -> float:
    return np.sign(z) * max(abs(z) - gamma, 0.0)


class Coxnet(_CoxBase):
    """Elastic-net Cox on the weighted partial likelihood (proximal Newton + coordinate descent).

    Minimises -log PL / sum(w) + alpha * (l1_ratio * ||b||_1 + 0.5 * (1 - l1_ratio) * ||b||^2):
    the objective of glmnet and scikit-survival's CoxnetSurvivalAnalysis at one alpha
    (their `ties` is Breslow's), here with case weights.
    """

    _parameter_constraints: dict = {**_COMMON_CONSTRAINTS, "l1_ratio": [Interval(Real, 0, 1, closed="both")]}

    def __init__(self, *, alpha: float = 0.05, l1_ratio: float = 0.5, ties: str = "efron",
                 max_iter: int = 200, tol: float = 1e-8):
        self.alpha = alpha
        self.l1_ratio = l1_ratio
        self.ties = ties
        self.max_iter = max_iter
        self.tol = tol

    def _penalty(self, b: np.ndarray) -> float:
        return self.alpha * (self.l1_ratio * np.abs(b).sum() + 0.5 * (1 - self.l1_ratio) * b @ b)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        data, x, time, event = self._prepare(X, y, sample_weight)
        scale = data.total_weight
        lam1, lam2 = self.alpha * self.l1_ratio, self.alpha * (1 - self.l1_ratio)
        beta = np.zeros(x.shape[1])

        def smooth(b, hessian=True):
            pl = coxph.evaluate(data, b, hessian)
            h = pl.information
            return -pl.loglik / scale, -pl.gradient / scale, None if h is None else h / scale

        f, g, h = smooth(beta)
        self.n_iter_ = 0
        for iteration in range(1, self.max_iter + 1):
            self.n_iter_ = iteration
            target = self._quadratic_step(beta, g + lam2 * beta, h + lam2 * np.eye(len(beta)), lam1)
            direction = target - beta
            total = f + 0.5 * lam2 * beta @ beta + lam1 * np.abs(beta).sum()
            t = 1.0
            for _ in range(40):
                cand = beta + t * direction
                f_new = smooth(cand, hessian=False)[0]
                if np.isfinite(f_new) and f_new + self._penalty(cand) <= total + 1e-12:
                    break
                t /= 2
            beta = beta + t * direction
            f, g, h = smooth(beta)
            if np.max(np.abs(t * direction)) < self.tol:
                break
        else:
            warnings.warn(f"Coxnet did not converge in {self.max_iter} iterations", RuntimeWarning,
                          stacklevel=3)
        self._finish(beta, x, time, event, sample_weight)
        return self

    def _quadratic_step(self, b0, grad, hess, lam1, sweeps: int = 200) -> np.ndarray:
        """Minimise grad'(b-b0) + 0.5 (b-b0)' hess (b-b0) + lam1 ||b||_1 by coordinate descent."""
        b = b0.copy()
        r = grad.copy()  # gradient of the quadratic part at b
        diag = np.maximum(np.diag(hess), 1e-12)
        for _ in range(sweeps):
            largest = 0.0
            for j in range(len(b)):
                new = _soft_threshold(diag[j] * b[j] - r[j], lam1) / diag[j]
                delta = new - b[j]
                if delta != 0.0:
                    r += hess[:, j] * delta
                    b[j] = new
                    largest = max(largest, abs(delta))
            if largest < self.tol * 0.1:
                break
        return b

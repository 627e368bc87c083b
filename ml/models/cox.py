"""Weighted Cox models: `CoxPH` (Newton-Raphson, tiny ridge) and `Coxnet` (elastic net).

scikit-survival's CoxPHSurvivalAnalysis ignores sample weights and its Coxnet has none,
so the weighted partial likelihood is implemented here (numpy). With case weights w,
ties handled by Efron's method (or Breslow's):

    log PL(b) = sum_j [ sum_{i in D_j} w_i eta_i
                        - wbar_j sum_{l<d_j} log( S0(R_j) - l/d_j S0(D_j) ) ]

with D_j the d_j events at the j-th event time, R_j its risk set, S0(A) = sum_A w e^eta
and wbar_j the mean weight of D_j (R's `coxph` convention). Both models minimise
`-log PL / sum(w) + penalty`, the scale of glmnet and scikit-survival's Coxnet, so
multiplying every weight by a constant changes nothing, and a zero weight is the same
as removing the row. The gradient and information matrix are exact and cost
O(n p^2) per iteration (risk-set sums by reverse cumulative sums).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ml.models.base import BreslowMixin, SurvivalEstimator, SurvivalInputError, as_target, check_weights


@dataclass
class _CoxData:
    """Rows sorted by time, with the event-time groups precomputed once per fit."""

    x: np.ndarray
    time: np.ndarray
    w: np.ndarray
    ev: np.ndarray          # indices (into sorted rows) of weighted events, in time order
    group: np.ndarray       # event-time group of each of those events
    first: np.ndarray       # first sorted row at risk at each event time
    starts: np.ndarray      # start of each group within `ev`
    uniq: np.ndarray        # unique event times
    c: np.ndarray           # Efron fraction l/d_j per event row (0 for Breslow)
    wbar: np.ndarray        # mean event weight of the row's group
    total_weight: float


def _prepare(x: np.ndarray, time: np.ndarray, event: np.ndarray, w: np.ndarray, ties: str) -> _CoxData:
    order = np.argsort(time, kind="stable")
    x, time, event, w = x[order], time[order], event[order], w[order]
    ev = np.flatnonzero(event & (w > 0))
    if len(ev) == 0:
        raise SurvivalInputError("no events with a positive weight: the Cox model cannot be fitted")
    uniq, starts, counts = np.unique(time[ev], return_index=True, return_counts=True)
    group = np.repeat(np.arange(len(uniq)), counts)
    wbar = (np.add.reduceat(w[ev], starts) / counts)[group]
    within = np.arange(len(ev)) - starts[group]
    c = within / counts[group] if ties == "efron" else np.zeros(len(ev))
    first = np.searchsorted(time, uniq, side="left")
    return _CoxData(x=x, time=time, w=w, ev=ev, group=group, first=first, starts=starts, uniq=uniq,
                    c=c, wbar=wbar, total_weight=float(w.sum()))


def _partial_likelihood(beta: np.ndarray, data: _CoxData, hessian: bool = True):
    """(log PL, gradient, information = -Hessian) at beta."""
    x, w, ev, group, c, wbar = data.x, data.w, data.ev, data.group, data.c, data.wbar
    eta = x @ beta
    eta = eta - eta.max()  # log PL is invariant to a shift of eta
    v = w * np.exp(eta)
    s0 = np.cumsum(v[::-1])[::-1][data.first]
    s1 = np.cumsum((v[:, None] * x)[::-1], axis=0)[::-1][data.first]
    s0d = np.add.reduceat(v[ev], data.starts)
    s1d = np.add.reduceat(v[ev, None] * x[ev], data.starts, axis=0)
    den = s0[group] - c * s0d[group]
    num = s1[group] - c[:, None] * s1d[group]
    loglik = float(np.sum(w[ev] * eta[ev]) - np.sum(wbar * np.log(den)))
    grad = (w[ev, None] * x[ev]).sum(0) - ((wbar / den)[:, None] * num).sum(0)
    if not hessian:
        return loglik, grad, None
    a = np.add.reduceat(wbar / den, data.starts)
    b = np.add.reduceat(wbar * c / den, data.starts)
    idx = np.searchsorted(data.uniq, data.time, side="right") - 1
    cum_a = np.concatenate([[0.0], np.cumsum(a)])[idx + 1]
    m = num * (np.sqrt(wbar) / den)[:, None]
    info = (x.T * (v * cum_a)) @ x - (x[ev].T * (v[ev] * b[group])) @ x[ev] - m.T @ m
    return loglik, grad, info


class SeparationWarning(RuntimeWarning):
    """A Cox coefficient runs off to infinity (monotone likelihood, e.g. a level without events)."""


SEPARATION_LOG_HR = 10.0


def _warn_separation(beta: np.ndarray, est) -> None:
    big = np.flatnonzero(np.abs(beta) > SEPARATION_LOG_HR)
    if len(big):
        names = getattr(est, "feature_names_in_", None)
        terms = [str(names[j]) if names is not None else f"x{j}" for j in big]
        warnings.warn(f"|log HR| > {SEPARATION_LOG_HR:g} for {', '.join(terms)}: the partial likelihood "
                      "has no finite maximum (separation); set alpha > 0 to shrink", SeparationWarning,
                      stacklevel=3)


class _CoxBase(BreslowMixin, SurvivalEstimator):
    """Shared by CoxPH and Coxnet: data preparation, baseline, prediction."""

    def _prepare(self, X, y, sample_weight) -> tuple[_CoxData, np.ndarray, np.ndarray, np.ndarray]:
        if self.ties not in ("efron", "breslow"):
            raise ValueError(f"ties must be 'efron' or 'breslow', got {self.ties!r}")
        x = self._as_matrix(X, fitting=True)
        event, time = as_target(y)
        w = check_weights(sample_weight, len(time))
        return _prepare(x, time, event, w, self.ties), x, time, event

    def _as_matrix(self, X, fitting: bool = False) -> np.ndarray:
        if fitting:
            self.feature_names_in_ = np.asarray(X.columns, dtype=object) if hasattr(X, "columns") else None
            self.n_features_in_ = np.shape(X)[1]
        x = np.asarray(X, dtype=float)
        if x.ndim != 2 or not np.all(np.isfinite(x)):
            raise SurvivalInputError("X must be a 2-d array of finite numbers (impute missing values first)")
        return x

    def _finish(self, beta, x, time, event, sample_weight) -> None:
        self.coef_ = beta
        w = check_weights(sample_weight, len(time))
        self._fit_baseline(time, event, x @ beta, w)

    def _log_hazard(self, X) -> np.ndarray:
        return self._as_matrix(X) @ self.coef_

    def predict(self, X) -> np.ndarray:
        """Log hazard ratio x'b (higher = worse)."""
        return self._log_hazard(X)


class CoxPH(_CoxBase):
    """Multivariable Cox model fitted by Newton-Raphson on the weighted partial likelihood.

    alpha: ridge penalty 0.5 * alpha * ||b||^2 on the per-unit-weight scale. The default 0
    is the plain maximum partial likelihood fit (lifelines' CoxPHFitter gives the same
    coefficients). When a training fold separates (e.g. a rare level without events) the
    MLE is infinite: the iterations stop when the log likelihood stops improving and a
    `SeparationWarning` names the diverging coefficients; a small alpha (e.g. 1e-3) keeps
    them finite instead.
    """

    def __init__(self, alpha: float = 0.0, ties: str = "efron", max_iter: int = 100, tol: float = 1e-9):
        self.alpha = alpha
        self.ties = ties
        self.max_iter = max_iter
        self.tol = tol

    def fit(self, X, y, sample_weight=None):
        data, x, time, event = self._prepare(X, y, sample_weight)
        beta = np.zeros(x.shape[1])
        scale = data.total_weight

        def objective(b):
            ll, g, h = _partial_likelihood(b, data)
            return -ll / scale + 0.5 * self.alpha * b @ b, -g / scale + self.alpha * b, h / scale

        f, g, h = objective(beta)
        self.n_iter_ = 0
        for iteration in range(1, self.max_iter + 1):
            self.n_iter_ = iteration
            eye = np.eye(len(beta)) * max(self.alpha, 1e-12)
            try:
                step = np.linalg.solve(h + eye, -g)
            except np.linalg.LinAlgError:
                step = np.linalg.lstsq(h + eye, -g, rcond=None)[0]
            t = 1.0
            for _ in range(40):
                f_new, g_new, h_new = objective(beta + t * step)
                if np.isfinite(f_new) and f_new <= f + 1e-12:
                    break
                t /= 2
            beta, f_old, f, g, h = beta + t * step, f, f_new, g_new, h_new
            if np.max(np.abs(t * step)) < self.tol or f_old - f < 1e-12 * max(1.0, abs(f)):
                break
        else:
            warnings.warn(f"CoxPH did not converge in {self.max_iter} iterations", RuntimeWarning,
                          stacklevel=2)
        _warn_separation(beta, self)
        self._finish(beta, x, time, event, sample_weight)
        return self


def _soft_threshold(z: float, gamma: float) -> float:
    return np.sign(z) * max(abs(z) - gamma, 0.0)


class Coxnet(_CoxBase):
    """Elastic-net Cox on the weighted partial likelihood (proximal Newton + coordinate descent).

    Minimises -log PL / sum(w) + alpha * (l1_ratio * ||b||_1 + 0.5 * (1 - l1_ratio) * ||b||^2):
    the objective of glmnet and scikit-survival's CoxnetSurvivalAnalysis at one alpha
    (their `ties` is Breslow's), here with case weights.
    """

    def __init__(self, alpha: float = 0.05, l1_ratio: float = 0.5, ties: str = "efron",
                 max_iter: int = 200, tol: float = 1e-8):
        self.alpha = alpha
        self.l1_ratio = l1_ratio
        self.ties = ties
        self.max_iter = max_iter
        self.tol = tol

    def _penalty(self, b: np.ndarray) -> float:
        return self.alpha * (self.l1_ratio * np.abs(b).sum() + 0.5 * (1 - self.l1_ratio) * b @ b)

    def fit(self, X, y, sample_weight=None):
        if not 0 <= self.l1_ratio <= 1 or self.alpha < 0:
            raise ValueError("Coxnet needs alpha >= 0 and 0 <= l1_ratio <= 1")
        data, x, time, event = self._prepare(X, y, sample_weight)
        scale = data.total_weight
        lam1, lam2 = self.alpha * self.l1_ratio, self.alpha * (1 - self.l1_ratio)
        beta = np.zeros(x.shape[1])

        def smooth(b, hessian=True):
            ll, g, h = _partial_likelihood(b, data, hessian)
            return -ll / scale, -g / scale, None if h is None else h / scale

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
                          stacklevel=2)
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

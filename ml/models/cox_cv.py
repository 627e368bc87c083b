"""`CoxPHCV`: a ridge Cox model whose penalty is chosen by cross-validation on the training rows.

The 18-column Cox model of a 101-patient cohort (about 4.5 events per column) is overfit at
CoxPH's tiny default ridge: its out-of-fold calibration slope is about 0.5, i.e. its predicted
risks are twice too extreme. Shrinking the coefficients by a ridge penalty chosen from the data
itself (le Cessie & van Houwelingen 1992; Verweij & van Houwelingen 1994) is the standard cure.

Choice of the penalty: the cross-validated partial likelihood (CVPL) of Verweij & van
Houwelingen (1993), the criterion of glmnet's `cv.glmnet(family="cox")` (type.measure
"deviance", grouped = TRUE). For fold k, with b_(-k) fitted without fold k,

    CVPL_k(alpha) = l(b_(-k)) - l_(-k)(b_(-k))

where l is the log partial likelihood of all the training rows and l_(-k) that of the rows
outside fold k: the contribution of fold k's rows, scored within the full risk sets, which
stays defined for folds of one row (a fold's own partial likelihood would not). The deviance
-2 * sum_k CVPL_k is minimised over a log-spaced grid of alphas (the `min` rule; glmnet's 1-SE
rule shrinks further). The partial likelihood was preferred to choosing the alpha whose
out-of-fold calibration slope is closest to 1: every row contributes to it (a slope per
fold of 20 patients is very noisy), it is the standard criterion, and the calibration slope
stays an honest check of the chosen model rather than the quantity it was tuned on.

Folds (`cv`): by default leave-one-out, Verweij & van Houwelingen's original CVPL, up to
LOO_MAX_ROWS rows, and 20 folds above (an int K: K folds stratified on the event, seeded by
`random_state`; K >= the rows: leave-one-out). Identical rows (the copies a bootstrap resample
makes, e.g. in `rechallenge validate`) always fall in the same fold. Few folds over-penalise
on small data, as each inner fit has only (K-1)/K of the rows: in the benchmark on the default
twin (101 patients, 5 x 5 outer folds) the out-of-fold calibration slope at 12 months is 1.24
with K = 5, 1.18 with 10, 1.11 with 20 and 1.04 with leave-one-out
(benchmarks/calibration_default.py).
Inner fits start from the fit on all the training rows at the same alpha (warm start).

Weights enter both the fits and the partial likelihoods (the objective's scale is per unit
weight, so one alpha means the same in a fold and in the whole data, as in glmnet). After the
search the model is refitted on all the training rows at `alpha_`: it is then a
`CoxPH(alpha=alpha_)` (same coefficients, baseline and any other fitted state of CoxPH).
"""

from __future__ import annotations

import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.base import _fit_context
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.utils._param_validation import Interval, StrOptions

from ml.models.base import SurvivalInputError, check_weights
from ml.models.cox import CoxPH
from ml.stats import coxph

DEFAULT_ALPHAS = tuple(float(a) for a in np.logspace(-4, 1, 26))
"""Ridge penalties tried (per unit weight, standardised columns): 1e-4 (almost none) to 10 (the
coefficients close to 0), 5 per decade."""


LOO_MAX_ROWS = 200
AUTO_FOLDS = 20
"""`cv=None`: leave-one-out up to LOO_MAX_ROWS rows (of positive weight), AUTO_FOLDS folds above."""
CV_TOL = 1e-7
"""Newton step size at which a cross-validation fit stops (the final fit uses `tol`)."""


def ridge_newton(rs: coxph.RiskSets, alpha: float, start: np.ndarray, max_iter: int,
                 tol: float) -> np.ndarray:
    """Minimise -log PL / sum(w) + 0.5 alpha ||b||^2 by Newton's method from `start` (a warm start:
    the fit on all the training rows at the same alpha), halving steps that do not descend."""
    scale, beta = rs.total_weight, np.asarray(start, dtype=float).copy()
    eye = np.eye(len(beta)) * max(alpha, 1e-12)
    pl = coxph.evaluate(rs, beta)
    f = -pl.loglik / scale + 0.5 * alpha * beta @ beta
    for _ in range(max_iter):
        grad = -pl.gradient / scale + alpha * beta
        direction = np.linalg.lstsq(pl.information / scale + eye, -grad, rcond=None)[0]
        t = 1.0
        for _ in range(30):
            candidate = beta + t * direction
            pl_new = coxph.evaluate(rs, candidate)
            f_new = -pl_new.loglik / scale + 0.5 * alpha * candidate @ candidate
            if np.isfinite(f_new) and f_new <= f + 1e-12:
                break
            t /= 2
        else:
            return beta
        beta, f, pl = candidate, f_new, pl_new
        if np.max(np.abs(t * direction), initial=0.0) < tol:
            break
    return beta


class CoxPHCV(CoxPH):
    """Ridge Cox (Efron ties, weighted partial likelihood) with alpha chosen by K-fold
    cross-validated partial likelihood on the training rows (see the module docstring).

    Fitted attributes, besides CoxPH's: `alpha_` (the chosen penalty), `alphas_` (the grid),
    `cv_deviance_` (mean over folds of -2 CVPL_k per unit weight, per alpha), `cv_deviance_se_`
    (its standard error across folds), `cv_folds_` (the number of folds used). `alpha` reads
    `alpha_` once fitted, so CoxPH's methods see the penalty the final fit used.
    """

    _parameter_constraints: dict = {
        "alphas": ["array-like"],
        "cv": [Interval(Integral, 2, None, closed="left"), None],
        "ties": [StrOptions({"efron", "breslow"})],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(self, *, alphas=DEFAULT_ALPHAS, cv: int | None = None, ties: str = "efron",
                 max_iter: int = 100, tol: float = 1e-9, random_state=None):
        self.alphas = alphas
        self.cv = cv
        self.ties = ties
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state

    @property
    def alpha(self) -> float:
        """The penalty of the final fit (`alpha_`); not a parameter: the grid `alphas` is."""
        return self.alpha_

    def _grid(self) -> np.ndarray:
        grid = np.unique(np.asarray(self.alphas, dtype=float).ravel())
        if grid.size == 0 or not np.all(np.isfinite(grid)) or np.any(grid < 0):
            raise ValueError(f"alphas must be finite penalties >= 0, got {self.alphas!r}")
        return grid

    def _folds(self, x: np.ndarray, time: np.ndarray, event: np.ndarray, w: np.ndarray) -> list[np.ndarray]:
        """Test-row indices of each fold: one row each (leave-one-out) or K folds stratified on the
        event (see `cv`). Identical rows (same x, time and event: the copies of a bootstrap resample)
        are held out together, else a copy left in the training rows would make the held-out one
        look predictable. Rows of weight 0 contribute nothing and are never held out on their own."""
        rows = np.flatnonzero(w > 0)
        _, group = np.unique(np.column_stack([x[rows], time[rows], event[rows]]), axis=0, return_inverse=True)
        group = group.ravel()
        n_groups = int(group.max()) + 1
        k = self.cv if self.cv is not None else (n_groups if n_groups <= LOO_MAX_ROWS else AUTO_FOLDS)
        if k >= n_groups:
            return [rows[group == g] for g in range(n_groups)]
        if np.count_nonzero(event[rows]) < 2:
            raise SurvivalInputError("CoxPHCV needs at least 2 events with a positive weight to "
                                     "cross-validate")
        # stratified on the event unless there are fewer censored rows than folds
        strata = event[rows] if np.count_nonzero(~event[rows]) >= k else np.zeros(len(rows), dtype=bool)
        splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=self.random_state)
        return [rows[test] for _, test in splitter.split(np.zeros(len(rows)), strata, group)]

    def _path(self, full, x, time, event, w, grid) -> tuple[np.ndarray, np.ndarray]:
        """-2 CVPL_k for each fold k (rows) and alpha (columns), and the weight of each fold."""
        starts = [coxph.newton_raphson(full, ridge=a, max_iter=self.max_iter, tol=self.tol).coef
                  for a in grid]
        folds = self._folds(x, time, event, w)
        out = np.full((len(folds), len(grid)), np.nan)
        for i, test in enumerate(folds):
            w_out = w.copy()
            w_out[test] = 0.0
            if not np.any(event & (w_out > 0)):
                continue
            rest = coxph.risk_sets(x=x, time=time, event=event, w=w_out, ties=self.ties)
            for j, alpha in enumerate(grid):
                beta = ridge_newton(rest, alpha, starts[j], self.max_iter, CV_TOL)
                cvpl = coxph.evaluate(full, beta, False).loglik - coxph.evaluate(rest, beta, False).loglik
                out[i, j] = -2.0 * cvpl
        return out, np.array([w[test].sum() for test in folds])

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        grid = self._grid()
        full, x, time, event = self._prepare(X, y, sample_weight)
        w = check_weights(sample_weight, len(time))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # weak penalties on a separated fold
            path, fold_weight = self._path(full, x, time, event, w, grid)
        usable = np.isfinite(path).all(axis=1)
        if not usable.any():
            raise SurvivalInputError("CoxPHCV: no cross-validation fold kept an event to fit on")
        path, fold_weight = path[usable], fold_weight[usable]
        mean = path.sum(axis=0) / fold_weight.sum()
        per_weight = path / fold_weight[:, None]
        se = (per_weight.std(axis=0, ddof=1) / np.sqrt(len(path)) if len(path) > 1
              else np.full_like(mean, np.nan))
        self.alphas_, self.cv_deviance_, self.cv_deviance_se_ = grid, mean, se
        self.cv_folds_ = int(usable.sum())
        self.alpha_ = float(grid[np.nanargmin(mean)])
        final = CoxPH(alpha=self.alpha_, ties=self.ties, max_iter=self.max_iter, tol=self.tol)
        final.fit(X, y, sample_weight=sample_weight)
        for name, value in vars(final).items():  # CoxPH's fitted state (coef_, baseline, ...)
            if name.endswith("_") and not name.startswith("_") and name not in ("alpha_",):
                setattr(self, name, value)
        return self

"""XGBoost survival models: `XGBCox` (Cox partial likelihood) and `XGBAFT` (accelerated failure time).

- `XGBCox` boosts the log hazard. xgboost's built-in `survival:cox` multiplies each row's
  gradient by its weight but keeps unweighted risk sets, so the weighted Breslow partial
  likelihood is supplied as a custom objective (exact: a zero weight equals removing
  the row with tree_method="exact"; "hist" bins features on all rows, so a zero-weight
  row can still move a cut point). `predict` is the margin (log hazard; xgboost's own `predict` without
  `output_margin` would be the hazard ratio exp(margin)). Curves: weighted Breslow
  baseline on the margin.
- `XGBAFT` uses `survival:aft` (interval labels: [t, t] for events, [t, inf) for
  censored rows; weights enter its likelihood directly). The margin is the predicted
  log time, so risk = -margin; S(t|x) = 1 - F((log t - margin) / sigma) for the chosen
  error distribution, evaluated on the training times.
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
import xgboost
from scipy import stats
from sklearn.base import _fit_context
from sklearn.utils._param_validation import Interval, StrOptions

from ml.models.base import (
    BreslowMixin,
    SurvivalEstimator,
    as_target,
    check_weights,
    clean_curves,
    normalise_weights,
    step_functions,
)


def _matrix(X, booster: xgboost.Booster | None = None) -> xgboost.DMatrix:
    """X as the DMatrix a booster of this module reads: float32 values, columns by position.

    The boosters are trained without feature names: xgboost refuses names holding `[`, `]`
    or `<`, which a category label writes (`pdl1=<1%`), and the wrapper has already
    matched the columns by name (`feature_names_in_` keeps the user's names). A booster
    trained with names by an earlier version gets them back, so it still validates.
    Plain numpy also skips xgboost's pandas path (~50 ms per call on small frames).
    """
    names = None if booster is None else booster.feature_names
    return xgboost.DMatrix(np.asarray(X, dtype=np.float32), feature_names=names)


class _WeightedCoxObjective:
    """Gradient and Hessian of the weighted Breslow negative log partial likelihood."""

    def __init__(self, time: np.ndarray, event: np.ndarray, w: np.ndarray):
        self.order = np.argsort(time, kind="stable")
        t = time[self.order]
        self.first = np.searchsorted(t, t, side="left")  # first row of each row's risk set
        self.last_event_group = np.searchsorted(t, t, side="right") - 1
        self.event_w = (w * event)[self.order]
        self.w = w[self.order]

    def __call__(self, margin: np.ndarray, dtrain=None) -> tuple[np.ndarray, np.ndarray]:
        eta = margin[self.order]
        r = np.exp(eta - eta.max())
        s0 = np.cumsum((self.w * r)[::-1])[::-1][self.first]
        safe = np.where(self.event_w > 0, s0, 1.0)
        # A_k = sum over events i with t_i <= t_k of w_i / S0(t_i); B_k with S0^2
        a = np.cumsum(self.event_w / safe)[self.last_event_group]
        b = np.cumsum(self.event_w / safe**2)[self.last_event_group]
        wr = self.w * r
        grad = wr * a - self.event_w
        hess = np.maximum(wr * a - wr**2 * b, 1e-16)
        out_g, out_h = np.empty_like(grad), np.empty_like(hess)
        out_g[self.order], out_h[self.order] = grad, hess
        return out_g, out_h


_NON_NEGATIVE = Interval(Real, 0, None, closed="left")
_FRACTION = Interval(Real, 0, 1, closed="right")
_XGB_CONSTRAINTS = {
    "n_estimators": [Interval(Integral, 1, None, closed="left")],
    "learning_rate": [Interval(Real, 0, None, closed="neither")],
    "max_depth": [Interval(Integral, 0, None, closed="left")],
    "subsample": [_FRACTION],
    "colsample_bytree": [_FRACTION],
    "min_child_weight": [_NON_NEGATIVE],
    "reg_lambda": [_NON_NEGATIVE],
    "reg_alpha": [_NON_NEGATIVE],
    "tree_method": [StrOptions({"exact", "approx", "hist", "auto"})],
    "n_jobs": [Integral, None],
    "random_state": [Integral, None],  # xgboost takes an integer seed, not a RandomState
}


class _XGBBase(SurvivalEstimator):
    """Shared by the XGBoost models: booster parameters and the validated margin."""

    def _params(self) -> dict:
        return {
            "eta": self.learning_rate, "max_depth": self.max_depth, "subsample": self.subsample,
            "colsample_bytree": self.colsample_bytree, "min_child_weight": self.min_child_weight,
            "lambda": self.reg_lambda, "alpha": self.reg_alpha, "nthread": self.n_jobs,
            "seed": 0 if self.random_state is None else int(self.random_state), "verbosity": 0,
            "tree_method": self.tree_method,
        }

    def _margin(self, X) -> np.ndarray:
        X = self._check_X(X, reset=False, as_array=False)
        return self.booster_.predict(_matrix(X, self.booster_), output_margin=True).astype(float)


class XGBCox(BreslowMixin, _XGBBase):
    """Gradient-boosted log hazard (weighted Cox partial likelihood, custom objective)."""

    _parameter_constraints: dict = dict(_XGB_CONSTRAINTS)

    def __init__(self, *, n_estimators: int = 100, learning_rate: float = 0.05, max_depth: int = 2,
                 subsample: float = 0.8, colsample_bytree: float = 0.8, min_child_weight: float = 1.0,
                 reg_lambda: float = 1.0, reg_alpha: float = 0.0, tree_method: str = "hist",
                 n_jobs: int = 1, random_state: int | None = None):
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.max_depth = max_depth
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.min_child_weight = min_child_weight
        self.reg_lambda = reg_lambda
        self.reg_alpha = reg_alpha
        self.tree_method = tree_method
        self.n_jobs = n_jobs
        self.random_state = random_state

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        X = self._check_X(X, reset=True, as_array=False)
        event, time = as_target(y)
        w = check_weights(sample_weight, len(time))
        w = normalise_weights(w)  # min_child_weight / lambda keep their unweighted meaning
        objective = _WeightedCoxObjective(time, event, w)
        params = {**self._params(), "base_score": 0.0}
        self.booster_ = xgboost.train(params, _matrix(X), num_boost_round=self.n_estimators,
                                      obj=lambda margin, dtrain: objective(margin))
        self._fit_baseline(time, event, self._margin(X), w)
        return self

    def _log_hazard(self, X) -> np.ndarray:
        return self._margin(X)

    def predict(self, X) -> np.ndarray:
        """Log hazard (the boosted margin), higher = worse."""
        return self._margin(X)


_AFT_CDF = {
    "normal": stats.norm.cdf,
    "logistic": stats.logistic.cdf,
    "extreme": lambda z: -np.expm1(-np.exp(np.clip(z, -700, 700))),
}


class XGBAFT(_XGBBase):
    """Boosted accelerated failure time model; risk = minus the predicted log time."""

    _parameter_constraints: dict = {
        **_XGB_CONSTRAINTS,
        "distribution": [StrOptions(set(_AFT_CDF))],
        "sigma": [Interval(Real, 0, None, closed="neither")],
    }

    def __init__(self, *, n_estimators: int = 100, learning_rate: float = 0.05, max_depth: int = 2,
                 subsample: float = 0.8, colsample_bytree: float = 0.8, min_child_weight: float = 1.0,
                 reg_lambda: float = 1.0, reg_alpha: float = 0.0, distribution: str = "normal",
                 sigma: float = 1.0, tree_method: str = "hist", n_jobs: int = 1,
                 random_state: int | None = None):
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.max_depth = max_depth
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.min_child_weight = min_child_weight
        self.reg_lambda = reg_lambda
        self.reg_alpha = reg_alpha
        self.tree_method = tree_method
        self.distribution = distribution
        self.sigma = sigma
        self.n_jobs = n_jobs
        self.random_state = random_state

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        X = self._check_X(X, reset=True, as_array=False)
        event, time = as_target(y)
        w = check_weights(sample_weight, len(time))
        dtrain = _matrix(X)
        dtrain.set_float_info("label_lower_bound", time)
        dtrain.set_float_info("label_upper_bound", np.where(event, time, np.inf))
        dtrain.set_weight(normalise_weights(w))
        params = {**self._params(), "objective": "survival:aft", "eval_metric": "aft-nloglik",
                  "aft_loss_distribution": self.distribution,
                  "aft_loss_distribution_scale": self.sigma}
        self.booster_ = xgboost.train(params, dtrain, num_boost_round=self.n_estimators)
        self.unique_times_ = np.unique(time)
        return self

    def predict(self, X) -> np.ndarray:
        """Minus the predicted log survival time (higher = worse)."""
        return -self._margin(X)

    def predict_survival_function(self, X, return_array: bool = False):
        margin = self._margin(X)
        z = (np.log(self.unique_times_)[None, :] - margin[:, None]) / self.sigma
        surv = clean_curves(1.0 - _AFT_CDF[self.distribution](z))
        return surv if return_array else step_functions(self.unique_times_, surv)

    def predict_cumulative_hazard_function(self, X, return_array: bool = False):
        chf = -np.log(np.clip(self.predict_survival_function(X, return_array=True), 1e-300, 1))
        return chf if return_array else step_functions(self.unique_times_, chf, start=0.0)

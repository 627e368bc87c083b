"""Tree ensembles from scikit-survival, wrapped so that weights and curves follow the house rules.

- `RSF`: scikit-survival's RandomSurvivalForest. Its log-rank split criterion and leaf
  estimates use sample weights exactly (a zero weight equals removing the row, checked
  in tests), so weights are passed through. For large data the defaults scale: each
  tree sees at most `max_samples` rows, leaves hold >= `min_samples_leaf` rows, and the
  training times are binned to at most `max_times` grid points, because every tree
  node stores a curve over all unique training times (memory ~ nodes x times).
- `GBSA`: scikit-survival's GradientBoostingSurvivalAnalysis (Cox loss). Its Cox
  gradient uses unweighted risk sets, so the loss is replaced, for this fit only, by the
  gradient of the *weighted* partial likelihood; curves use a weighted Breslow baseline.
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from sklearn.base import _fit_context
from sklearn.utils._param_validation import Interval, RealNotInt, StrOptions
from sksurv.ensemble import GradientBoostingSurvivalAnalysis, RandomSurvivalForest
from sksurv.ensemble.survival_loss import CoxPH as CoxLoss
from sksurv.util import Surv

from ml.models.base import (
    BreslowMixin,
    SurvivalEstimator,
    as_target,
    breslow_baseline,
    check_weights,
    clean_curves,
    normalise_weights,
    step_functions,
)

_POSITIVE_INT = Interval(Integral, 1, None, closed="left")
_FRACTION = Interval(RealNotInt, 0, 1, closed="right")
_MAX_FEATURES = [StrOptions({"sqrt", "log2"}), _POSITIVE_INT, _FRACTION, None]


def auto_leaf_size(n: int) -> int:
    """Rows per leaf for n training rows: about n / 60, from 3 up to 15 (randomForestSRC's
    survival default), then n / 250 beyond 3,750 rows so memory stays bounded.

    Leaves of a handful of rows grow trees ~15 deep at n = 1000, which costs accuracy on the
    twin (held-out C 0.653 vs 0.657 with 15-row leaves) and makes exact TreeSHAP ~8x slower.
    """
    return max(3, min(15, n // 60), n // 250)


def bin_times(time: np.ndarray, event: np.ndarray, max_times: int | None) -> np.ndarray:
    """Times moved up to a grid of at most `max_times` event-time quantiles (None: unchanged).

    Rounding up keeps every time inside the follow-up and every event after its grid point's
    predecessor; the grid's last point is the largest time, so no row leaves the range.
    """
    if max_times is None or len(np.unique(time)) <= max_times:
        return time
    grid = np.unique(np.quantile(time[event], np.linspace(0, 1, max_times)[:-1]))
    grid = np.append(grid[grid < time.max()], time.max())
    return grid[np.searchsorted(grid, time, side="left")]


class RSF(SurvivalEstimator):
    """Random survival forest with defaults that scale with n.

    min_samples_leaf / max_samples "auto": `auto_leaf_size(n)` rows per leaf and at most
    2,000 bootstrap rows per tree; max_times: training times binned to this many grid
    points (None: exact times).
    """

    _parameter_constraints: dict = {
        "n_estimators": [_POSITIVE_INT],
        "max_features": _MAX_FEATURES,
        "min_samples_leaf": [_POSITIVE_INT, StrOptions({"auto"})],
        "max_samples": [_POSITIVE_INT, _FRACTION, StrOptions({"auto"}), None],
        "max_depth": [_POSITIVE_INT, None],
        "max_times": [_POSITIVE_INT, None],
        "n_jobs": [Integral, None],
        "random_state": ["random_state"],
    }

    def __init__(self, *, n_estimators: int = 100, max_features: str | float | int | None = "sqrt",
                 min_samples_leaf: int | str = "auto", max_samples: int | float | str | None = "auto",
                 max_depth: int | None = None, max_times: int | None = 200, n_jobs: int = 1,
                 random_state: int | None = None):
        self.n_estimators = n_estimators
        self.max_features = max_features
        self.min_samples_leaf = min_samples_leaf
        self.max_samples = max_samples
        self.max_depth = max_depth
        self.max_times = max_times
        self.n_jobs = n_jobs
        self.random_state = random_state

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        X = self._check_X(X, reset=True, as_array=False)
        event, time = as_target(y)
        w = check_weights(sample_weight, len(time))
        n = len(time)
        leaf = auto_leaf_size(n) if self.min_samples_leaf == "auto" else self.min_samples_leaf
        samples = (None if n <= 2000 else 2000) if self.max_samples == "auto" else self.max_samples
        self.model_ = RandomSurvivalForest(
            n_estimators=self.n_estimators, max_features=self.max_features, min_samples_leaf=leaf,
            min_samples_split=2 * leaf, max_samples=samples, max_depth=self.max_depth,
            n_jobs=self.n_jobs, random_state=self.random_state,
        )
        target = Surv.from_arrays(event=event, time=bin_times(time, event, self.max_times))
        self.model_.fit(X, target, sample_weight=w)
        self.unique_times_ = self.model_.unique_times_
        return self

    def predict(self, X) -> np.ndarray:
        """Ensemble mortality (the CHF summed over the training event times)."""
        X = self._check_X(X, reset=False, as_array=False)
        return self.model_.predict(X)

    def predict_survival_function(self, X, return_array: bool = False):
        X = self._check_X(X, reset=False, as_array=False)
        surv = clean_curves(self.model_.predict_survival_function(X, return_array=True))
        return surv if return_array else step_functions(self.unique_times_, surv)

    def predict_cumulative_hazard_function(self, X, return_array: bool = False):
        X = self._check_X(X, reset=False, as_array=False)
        chf = self.model_.predict_cumulative_hazard_function(X, return_array=True)
        return chf if return_array else step_functions(self.unique_times_, chf, start=0.0)


class _WeightedCoxLoss(CoxLoss):
    """scikit-survival's Cox loss with the weighted partial-likelihood gradient."""

    def __init__(self, weights: np.ndarray):
        super().__init__()
        self.weights = weights

    def __call__(self, y_true, raw_prediction, sample_weight=None):
        return _negative_log_pl(y_true["time"], y_true["event"], raw_prediction.ravel(), self.weights)

    def gradient(self, y_true, raw_prediction, sample_weight=None, **kwargs):
        eta = raw_prediction.ravel()
        risk, chf = _cumhaz_at_rows(y_true, eta, self.weights)
        # per unit weight; the tree is fitted with the sample weights themselves
        return y_true["event"].astype(float) - risk * chf


def _negative_log_pl(time, event, eta, w) -> float:
    """Weighted Breslow negative log partial likelihood per unit weight (for train_score_)."""
    order = np.argsort(time, kind="stable")
    t, d, e, ws = time[order], event[order], eta[order] - eta.max(), w[order]
    at_risk = np.cumsum((ws * np.exp(e))[::-1])[::-1][np.searchsorted(t, t, side="left")]
    keep = d & (ws > 0)
    return float(-np.sum(ws[keep] * (e[keep] - np.log(at_risk[keep]))) / ws.sum())


def _cumhaz_at_rows(y_true, eta, w) -> tuple[np.ndarray, np.ndarray]:
    """(exp(eta - max), weighted Breslow H0 at each row's time on the same shifted scale)."""
    shift = eta.max()
    times, h0 = breslow_baseline(y_true["time"], y_true["event"], eta - shift, w)
    return np.exp(eta - shift), h0[np.searchsorted(times, y_true["time"])]


class GBSA(BreslowMixin, SurvivalEstimator):
    """Gradient-boosted Cox model (scikit-survival trees) on the weighted partial likelihood."""

    _parameter_constraints: dict = {
        "n_estimators": [_POSITIVE_INT],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "max_depth": [_POSITIVE_INT, None],
        "min_samples_leaf": [_POSITIVE_INT, Interval(RealNotInt, 0, 1, closed="neither")],
        "subsample": [Interval(Real, 0, 1, closed="right")],
        "max_features": _MAX_FEATURES,
        "random_state": ["random_state"],
    }

    def __init__(self, *, n_estimators: int = 100, learning_rate: float = 0.05, max_depth: int = 2,
                 min_samples_leaf: int = 5, subsample: float = 0.8, max_features: str | float | None = None,
                 random_state: int | None = None):
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.max_depth = max_depth
        self.min_samples_leaf = min_samples_leaf
        self.subsample = subsample
        self.max_features = max_features
        self.random_state = random_state

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        X = self._check_X(X, reset=True, as_array=False)
        event, time = as_target(y)
        w = check_weights(sample_weight, len(time))
        w = normalise_weights(w)
        model = GradientBoostingSurvivalAnalysis(
            loss="coxph", n_estimators=self.n_estimators, learning_rate=self.learning_rate,
            max_depth=self.max_depth, min_samples_leaf=self.min_samples_leaf, subsample=self.subsample,
            max_features=self.max_features, random_state=self.random_state,
        )
        # swap in the weighted loss for this fit only (an instance attribute, removed after)
        model._get_loss = lambda sample_weight: _WeightedCoxLoss(w)
        try:
            model.fit(X, Surv.from_arrays(event=event, time=time), sample_weight=w)
        finally:
            del model._get_loss
        self.model_ = model
        self._fit_baseline(time, event, model.predict(X), w)
        return self

    def _log_hazard(self, X) -> np.ndarray:
        X = self._check_X(X, reset=False, as_array=False)
        return self.model_.predict(X)

    def predict(self, X) -> np.ndarray:
        """Boosted log hazard (margin)."""
        return self._log_hazard(X)

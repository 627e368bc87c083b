"""Shared pieces of every survival model: input checks, the Breslow baseline, curves.

Conventions (every model in `ml.models` follows scikit-learn / scikit-survival's):
- `__init__` only stores its keyword-only arguments; `_parameter_constraints` are checked
  when `fit` starts; fitted state ends in `_`; `fit(X, y, sample_weight=None)` returns self,
  with `y` the structured array (event: bool, time: float) built by `Surv.from_arrays`.
- Feature names: a model fitted on a DataFrame records `feature_names_in_`. A frame whose
  columns are the same but in another order is REALIGNED by name (the columns are matched,
  never their positions); a frame with missing or unexpected columns is refused with a
  ValueError naming them. `SurvivalPipeline` does the same with its raw input columns.
- A method called before `fit` raises `sklearn.exceptions.NotFittedError`.
- `predict(X)` is a risk score, higher = worse (a log hazard for the Cox-type models);
  `score(X, y)` is Harrell's concordance index of that risk (`SurvivalAnalysisMixin`).
- `predict_survival_function(X, return_array=False)` returns one
  `sksurv.functions.StepFunction` per row, defined on [0, last training time]; with
  `return_array=True` the matrix S(t | x) on `unique_times_` (rows = patients). Curves
  are in [0, 1] and non-increasing.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted, validate_data
from sksurv.base import SurvivalAnalysisMixin
from sksurv.functions import StepFunction


class SurvivalInputError(ValueError):
    """Bad outcome data or weights (no events, negative times, NaN weights...)."""


def as_target(y) -> tuple[np.ndarray, np.ndarray]:
    """(event: bool, time: float) of an incoming survival target, checked: the one place
    the models look at y. Targets are built with `sksurv.util.Surv.from_arrays`."""
    if getattr(y, "dtype", None) is None or y.dtype.names is None or len(y.dtype.names) != 2:
        raise SurvivalInputError("y must be a structured array (event: bool, time: float), "
                                 "e.g. sksurv.util.Surv.from_arrays(event, time)")
    event_name, time_name = y.dtype.names
    event = np.asarray(y[event_name]).astype(bool)
    time = np.asarray(y[time_name], dtype=float)
    if not np.all(np.isfinite(time)) or np.any(time <= 0):
        raise SurvivalInputError("survival times must be finite and > 0")
    if not event.any():
        raise SurvivalInputError("no events among the training rows: a survival model cannot be fitted")
    return event, time


def check_weights(sample_weight, n: int) -> np.ndarray:
    """Weights as a float array (ones if None), finite, >= 0, not all zero."""
    if sample_weight is None:
        return np.ones(n)
    w = np.asarray(sample_weight, dtype=float).ravel()
    if w.shape[0] != n:
        raise SurvivalInputError(f"sample_weight has {w.shape[0]} values for {n} rows")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or not np.any(w > 0):
        raise SurvivalInputError("sample weights must be finite, >= 0 and not all zero")
    return w


def normalise_weights(w: np.ndarray) -> np.ndarray:
    """Scale weights to sum to the number of rows with a positive weight.

    Regularisation on the summed-Hessian scale (xgboost's lambda, min_child_weight) then
    means the same as without weights, and a zero weight is exactly a removed row.
    """
    return w * np.count_nonzero(w) / w.sum()


def breslow_baseline(time: np.ndarray, event: np.ndarray, lp: np.ndarray,
                     weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted Breslow cumulative baseline hazard H0 at the unique training times.

    H0(t) = sum over event times u <= t of (weighted events at u) / sum_{time >= u} w exp(lp).
    Returned on every unique training time (events and censorings), so curves cover
    the whole training follow-up.
    """
    lp = np.asarray(lp, dtype=float)
    shift = lp.max()
    order = np.argsort(time, kind="stable")
    t, d, w, r = time[order], event[order], weights[order], np.exp(lp[order] - shift)
    times = np.unique(t)
    at_risk = np.cumsum((w * r)[::-1])[::-1]  # at_risk[i] = sum over rows sorted >= i
    first = np.searchsorted(t, times, side="left")
    events_w = np.bincount(np.searchsorted(times, t), weights=w * d, minlength=len(times))
    denom = at_risk[first]
    increments = np.divide(events_w, denom, out=np.zeros_like(events_w), where=denom > 0)
    return times, np.cumsum(increments) * np.exp(-shift)


def step_functions(times: np.ndarray, surv: np.ndarray, start: float = 1.0) -> np.ndarray:
    """One sksurv StepFunction per row of `surv` (S on `times`), domain [0, times[-1]].

    A point (0, start) is prepended, so S(t) = 1 before the first training time.
    """
    if times[0] > 0:
        times = np.concatenate([[0.0], times])
        surv = np.hstack([np.full((len(surv), 1), start), surv])
    return np.array([StepFunction(times, row) for row in surv], dtype=object)


def clean_curves(surv: np.ndarray) -> np.ndarray:
    """Clip to [0, 1] and force non-increasing along time (guards rounding noise)."""
    return np.minimum.accumulate(np.clip(surv, 0.0, 1.0), axis=1)


class BreslowMixin:
    """Curves for models whose risk is a log hazard: S(t|x) = exp(-H0(t) exp(lp(x))).

    Needs `unique_times_`, `cum_baseline_hazard_` and `_log_hazard(X)`.
    """

    def _fit_baseline(self, time, event, lp, weights) -> None:
        self.unique_times_, self.cum_baseline_hazard_ = breslow_baseline(time, event, lp, weights)

    def predict_cumulative_hazard_function(self, X, return_array: bool = False):
        hazard = np.exp(np.clip(self._log_hazard(X), -700, 700))[:, None] * self.cum_baseline_hazard_
        return hazard if return_array else step_functions(self.unique_times_, hazard, start=0.0)

    def predict_survival_function(self, X, return_array: bool = False):
        surv = clean_curves(np.exp(-self.predict_cumulative_hazard_function(X, return_array=True)))
        return surv if return_array else step_functions(self.unique_times_, surv)


def align_columns(X, fitted_names):
    """X with its columns in the fitted order, matched by name (the documented choice).

    `fitted_names` None (a model fitted on an array) or an X without column names: X as it
    is. Same names in another order: the columns are reordered. Missing or unexpected
    names: a ValueError naming them, so a frame is never scored by position.
    """
    if fitted_names is None or not hasattr(X, "columns"):
        return X
    expected, given = list(fitted_names), list(X.columns)
    missing = [c for c in expected if c not in set(given)]
    unexpected = [c for c in given if c not in set(expected)]
    if missing or unexpected:
        parts = [f"missing {', '.join(map(str, missing))}" if missing else "",
                 f"unexpected {', '.join(map(str, unexpected))}" if unexpected else ""]
        raise ValueError("X does not have the columns the model was fitted on: "
                         + "; ".join(p for p in parts if p))
    return X if given == expected else X[expected]


class SurvivalEstimator(SurvivalAnalysisMixin, BaseEstimator):
    """Base class: sklearn input checks, survival tags and `score` (Harrell's C)."""

    def _check_X(self, X, *, reset: bool, as_array: bool = True, **check_params):
        """Validate X: record (reset) or check feature names and their number.

        as_array: convert to a 2-d float array (else X goes on as given, e.g. a DataFrame
        for a library model that keeps the names).
        """
        if not reset:
            check_is_fitted(self)
            X = align_columns(X, getattr(self, "feature_names_in_", None))
        if not as_array:
            return validate_data(self, X, reset=reset, skip_check_array=True)
        return validate_data(self, X, reset=reset, dtype=float, **check_params)


class SurvivalPipeline(Pipeline):
    """A Pipeline (preprocessor -> survival model) whose `fit` takes `sample_weight`.

    The weights go to the final step only (preprocessing is unweighted); the
    preprocessor is fitted on the rows passed to `fit`, i.e. training folds only.
    Predictions realign the raw columns by name and refuse missing or unexpected ones
    (`align_columns`), like the models themselves.
    """

    def fit(self, X, y=None, sample_weight=None, **params):
        if sample_weight is not None:
            params[f"{self.steps[-1][0]}__sample_weight"] = sample_weight
        return super().fit(X, y, **params)

    def _aligned(self, X):
        """Raw input realigned by name to the columns the first step was fitted on."""
        return align_columns(X, getattr(self.steps[0][1], "feature_names_in_", None))

    def _transform(self, X):
        X = self._aligned(X)
        for _, step in self.steps[:-1]:
            if step is not None and step != "passthrough":
                X = step.transform(X)
        return X

    def predict(self, X, **params):
        return super().predict(self._aligned(X), **params)

    def score(self, X, y=None, sample_weight=None, **params):
        return super().score(self._aligned(X), y, sample_weight=sample_weight, **params)

    def predict_survival_function(self, X, return_array: bool = False):
        return self.steps[-1][1].predict_survival_function(self._transform(X), return_array=return_array)

    def predict_cumulative_hazard_function(self, X, return_array: bool = False):
        return self.steps[-1][1].predict_cumulative_hazard_function(self._transform(X),
                                                                    return_array=return_array)

    @property
    def unique_times_(self) -> np.ndarray:
        return self.steps[-1][1].unique_times_

    @property
    def preprocessor_(self):
        """The fitted preprocessing (every step but the model)."""
        return self[:-1]

    @property
    def model_(self):
        """The fitted survival model (the final step)."""
        return self.steps[-1][1]

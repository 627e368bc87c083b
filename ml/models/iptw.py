"""IPTW Cox: a weighted Cox model whose propensity model is fitted on the training rows only.

It is the final step of a `SurvivalPipeline`, so it sees the preprocessed training fold
(imputed, scaled, one-hot). In `fit` it (1) fits a logistic propensity model
P(treated | confounder columns) on those rows, (2) turns it into inverse probability of
treatment weights with `ml.stats.weighting.iptw_weights`, (3) fits `CoxPH` on every column with
weight = IPTW x sample_weight. Nothing of the held-out fold is seen, so cross-validation
re-estimates the propensity inside each training fold.
"""

from __future__ import annotations

from numbers import Real

import numpy as np
from sklearn.base import _fit_context
from sklearn.linear_model import LogisticRegression
from sklearn.utils._param_validation import Interval, StrOptions

from features.pipeline import ONE_HOT_SEPARATOR
from ml.models.base import SurvivalEstimator, SurvivalInputError, check_weights
from ml.models.cox import DEFAULT_RIDGE, CoxPH
from ml.stats import weighting


class IPTWCox(SurvivalEstimator):
    """Cox model fitted with IPTW weights (multivariable: treatment + every covariate).

    treatment: the transformed 0/1 column of the treated group, e.g. "treatment=CIA".
    confounders: original feature names whose columns enter the propensity model
        (None: every column except the treatment).
    propensity_C: inverse L2 strength of the logistic propensity model; a mild default
        (1.0) keeps it finite when a small training fold separates the groups.
    truncate: (low, high) percentiles at which the weights are capped, or None.
    alpha, ties: of the weighted `CoxPH` (the same small default ridge; 0 = unpenalised).
    """

    _parameter_constraints: dict = {
        "treatment": [str],
        "confounders": ["array-like", None],
        "estimand": [StrOptions({"ate", "att", "overlap"})],
        "stabilized": ["boolean"],
        "truncate": ["array-like", None],
        "propensity_C": [Interval(Real, 0, None, closed="neither")],
        **{key: CoxPH._parameter_constraints[key] for key in ("alpha", "ties")},
    }

    def __init__(self, *, treatment: str = "treatment=CIA", confounders: tuple[str, ...] | None = None,
                 estimand: str = "ate", stabilized: bool = True,
                 truncate: tuple[float, float] | None = (1.0, 99.0), propensity_C: float = 1.0,
                 alpha: float = DEFAULT_RIDGE, ties: str = "efron"):
        self.treatment = treatment
        self.confounders = confounders
        self.estimand = estimand
        self.stabilized = stabilized
        self.truncate = truncate
        self.propensity_C = propensity_C
        self.alpha = alpha
        self.ties = ties

    def _columns(self, X) -> tuple[list[str], list[str]]:
        if not hasattr(X, "columns"):
            raise SurvivalInputError("IPTWCox needs a DataFrame with named columns (use it after the "
                                     "preprocessor, whose output is a pandas DataFrame)")
        columns = [str(c) for c in X.columns]
        if self.treatment not in columns:
            raise SurvivalInputError(f"IPTWCox: no treatment column '{self.treatment}' among the "
                                     f"features ({', '.join(columns)})")
        others = [c for c in columns if c != self.treatment]
        if self.confounders is not None:
            keep = set(self.confounders)
            others = [c for c in others if c.split(ONE_HOT_SEPARATOR, 1)[0] in keep]
        return columns, others

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        _, confounders = self._columns(X)
        X = self._check_X(X, reset=True, as_array=False)
        treated = X[self.treatment].to_numpy(dtype=float) > 0.5
        if treated.all() or not treated.any():
            raise SurvivalInputError("IPTWCox: the training rows hold only one treatment group")
        w = check_weights(sample_weight, len(X))
        propensity = LogisticRegression(C=self.propensity_C, solver="newton-cholesky", max_iter=100)
        if confounders:
            propensity.fit(X[confounders].to_numpy(dtype=float), treated, sample_weight=w)
            e = propensity.predict_proba(X[confounders].to_numpy(dtype=float))[:, 1]
        else:
            e = np.full(len(X), np.average(treated, weights=w))
        e = np.clip(e, 1e-3, 1 - 1e-3)
        self.propensity_model_ = propensity
        self.confounder_columns_ = confounders
        self.iptw_ = weighting.iptw_weights(e, treated, estimand=self.estimand, stabilized=self.stabilized,
                                         truncate=self.truncate, sample_weight=w)
        self.model_ = CoxPH(alpha=self.alpha, ties=self.ties).fit(X, y, sample_weight=self.iptw_ * w)
        self.coef_ = self.model_.coef_
        self.unique_times_ = self.model_.unique_times_
        self.cum_baseline_hazard_ = self.model_.cum_baseline_hazard_
        return self

    def predict(self, X) -> np.ndarray:
        """Log hazard ratio of the IPTW-weighted Cox model (higher = worse)."""
        X = self._check_X(X, reset=False, as_array=False)
        return self.model_.predict(X)

    def predict_survival_function(self, X, return_array: bool = False):
        X = self._check_X(X, reset=False, as_array=False)
        return self.model_.predict_survival_function(X, return_array=return_array)

    def predict_cumulative_hazard_function(self, X, return_array: bool = False):
        X = self._check_X(X, reset=False, as_array=False)
        return self.model_.predict_cumulative_hazard_function(X, return_array=return_array)

"""IPTW Cox: a weighted Cox model whose propensity model is fitted on the training rows only.

It is the final step of a `SurvivalPipeline`, so it sees the preprocessed training fold
(imputed, scaled, one-hot). In `fit` it (1) fits the analysis's propensity model, the
unpenalised logistic regression at its MLE (`ml.stats.weighting.propensity_scores`, the function
the analysis's bootstrap uses), P(treated | confounder columns) on those rows, (2) turns it into
inverse probability of treatment weights with `ml.stats.weighting.iptw_weights`, with the
analysis's defaults (ATE, stabilized, no truncation: `experiments/paper.yaml`), (3) fits `CoxPH`
on every column with weight = IPTW x sample_weight. Nothing of the held-out fold is seen, so
cross-validation re-estimates the propensity inside each training fold.

Where the analysis refuses a separated propensity model, a training fold cannot be refused: its
propensities are clipped to [1e-8, 1 - 1e-8] (`PROPENSITY_EPS`) and the fit goes on. The
analysis fits its propensity on the raw confounders (imputed at the cohort's medians), this model
on the fold's preprocessed columns (imputed at the training fold's medians): the same model,
its inputs prepared per fold. `propensity_C` (default None: unpenalised) and `truncate` let a
configuration opt into an L2 penalty or capped weights.
"""

from __future__ import annotations

import warnings
from numbers import Real

import numpy as np
from sklearn.base import _fit_context
from sklearn.exceptions import ConvergenceWarning
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
    estimand, stabilized, truncate: of the weights, as the analysis's config (defaults: ATE,
        stabilized, no truncation; truncate = (low, high) percentiles at which to cap them).
    propensity_C: None (default) for the analysis's unpenalised propensity MLE; a number for
        scikit-learn's inverse L2 strength instead (a different estimator, by choice).
    alpha, ties: of the weighted `CoxPH` (the same small default ridge; 0 = unpenalised).
    """

    _parameter_constraints: dict = {
        "treatment": [str],
        "confounders": ["array-like", None],
        "estimand": [StrOptions({"ate", "att", "overlap"})],
        "stabilized": ["boolean"],
        "truncate": ["array-like", None],
        "propensity_C": [Interval(Real, 0, None, closed="neither"), None],
        **{key: CoxPH._parameter_constraints[key] for key in ("alpha", "ties")},
    }

    def __init__(self, *, treatment: str = "treatment=CIA", confounders: tuple[str, ...] | None = None,
                 estimand: str = weighting.DEFAULT_ESTIMAND, stabilized: bool = weighting.DEFAULT_STABILIZED,
                 truncate: tuple[float, float] | None = weighting.DEFAULT_TRUNCATE,
                 propensity_C: float | None = None,
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
        C = np.inf if self.propensity_C is None else self.propensity_C
        propensity = weighting.logistic_mle(C=C)
        if confounders:
            with warnings.catch_warnings():  # a separated fold: clipped, as the docstring says
                warnings.simplefilter("ignore", ConvergenceWarning)
                propensity, e = weighting.propensity_scores(X[confounders].to_numpy(dtype=float), treated,
                                                            sample_weight=w, C=C)
        else:
            e = np.full(len(X), np.average(treated, weights=w))
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

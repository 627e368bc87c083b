"""How sure a scored curve is: pointwise 95 % intervals for S(t) and the median, by model family.

- Cox models (`CoxPH` and its subclasses, at a finite optimum): the delta method on the
  cumulative hazard, log scale, as R's `survfit.coxph(fit, newdata, ctype = 1,
  conf.type = "log")` (`ml.stats.cox_prediction`); the covariance of the coefficients is
  the inverse information, penalised by the ridge when alpha > 0. Exact and cheap.
- Every other family (forests, boosting, Coxnet, IPTW-Cox, whose IPTW weights make the
  model-based covariance wrong): a percentile bootstrap. The whole pipeline (preprocessor
  and model) is refitted on B resamples of the training rows (drawn with a seeded
  generator); the band at t is the 2.5 and 97.5 percentiles of the B curves at t.

The median's interval is, for both, the pair of times at which the lower and the upper curve
first reach 0.5 (R's `quantile.survfit`). For the bootstrap this equals the percentile
interval of the B medians: S_b(t) <= 0.5 exactly when median_b <= t.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone

from ml.models.cox import CoxPH
from ml.serving.results import step_values

LEVEL = 0.95
BOOT_CHUNK = 500        # patients per block of bootstrap curves (B x rows x times in memory)
MEDIAN_RULE = "median CI: the times at which the lower and the upper curves reach 0.5 (R's quantile.survfit)"
METHODS = {
    "delta": ("pointwise 95% CI by the delta method on the cumulative hazard, log scale, as R's "
              "survfit.coxph(fit, newdata, ctype = 1, conf.type = 'log'); covariance of the coefficients "
              "= inverse {information}"),
    "bootstrap": ("pointwise 95% CI by the bootstrap percentile method: the whole pipeline refitted on "
                  "B = {used} resamples of the {n} training rows (seed {seed}{failed})"),
    "none": "no CI: {reason}",
}


def delta_model(pipeline: Any) -> CoxPH | None:
    """The pipeline's final model if the delta method applies to it (a Cox fit at an optimum)."""
    model = pipeline.steps[-1][1]
    if isinstance(model, CoxPH) and getattr(model, "curve_variance_", None) is not None:
        return model
    return None


def delta_text(model: CoxPH) -> str:
    ridge = model._fitted_ridge() or 0.0
    information = (f"information penalised by the ridge (alpha = {ridge:g})" if ridge > 0
                   else "information (unpenalised fit)")
    if getattr(model, "alpha_", None) is not None:  # a penalty the model chose from the data
        information += ", the chosen penalty treated as fixed"
    return METHODS["delta"].format(information=information) + "; " + MEDIAN_RULE


@dataclass(frozen=True)
class Refits:
    """B pipelines refitted on bootstrap resamples of the training rows."""

    pipelines: tuple[Any, ...]
    requested: int
    n_train: int
    seed: int | None

    def text(self) -> str:
        failed = self.requested - len(self.pipelines)
        note = f"; {failed} resamples could not be fitted and were left out" if failed else ""
        return METHODS["bootstrap"].format(used=len(self.pipelines), n=self.n_train, seed=self.seed,
                                           failed=note) + "; " + MEDIAN_RULE


def bootstrap_refits(pipeline: Any, X: pd.DataFrame, y: np.ndarray, n_boot: int,
                     seed: int | None) -> Refits:
    """Refit `pipeline` (unfitted clone) on `n_boot` resamples of the rows (X, y), seeded.

    A resample the model cannot be fitted on (e.g. without events, or one treatment group
    for IPTW-Cox) is left out, and counted in the method's text."""
    rng = np.random.default_rng(seed)
    fitted = []
    for _ in range(n_boot):
        rows = rng.integers(0, len(X), len(X))
        try:
            fitted.append(clone(pipeline).fit(X.iloc[rows].reset_index(drop=True), y[rows]))
        except ValueError:  # SurvivalInputError and scikit-learn's refusals of a degenerate sample
            continue
    if not fitted:
        raise ValueError(f"none of the {n_boot} bootstrap resamples could be fitted")
    return Refits(tuple(fitted), n_boot, len(X), seed)


def bootstrap_band(refits: Refits, features: pd.DataFrame, points: np.ndarray,
                   level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """(low, high): patients x points, percentiles of the refitted curves at `points`
    (step functions, S = 1 before a refit's first time, ignored after its last)."""
    tail = (1 - level) / 2
    low = np.empty((len(features), len(points)))
    high = np.empty_like(low)
    for start in range(0, len(features), BOOT_CHUNK):
        block = features.iloc[start:start + BOOT_CHUNK]
        curves = np.stack([step_values(np.asarray(p.unique_times_, dtype=float),
                                       np.asarray(p.predict_survival_function(block, return_array=True),
                                                  dtype=float), points)
                           for p in refits.pipelines])
        with warnings.catch_warnings():  # a point after every refit's last time: NaN, said so
            warnings.filterwarnings("ignore", message="All-NaN slice", category=RuntimeWarning)
            low[start:start + len(block)] = np.nanquantile(curves, tail, axis=0)
            high[start:start + len(block)] = np.nanquantile(curves, 1 - tail, axis=0)
    return low, high

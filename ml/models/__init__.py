"""Survival model zoo: name -> factory, and the Pipeline (preprocessor -> model) around it.

    from ml import models
    est = models.make_pipeline("rsf", spec, random_state=0, n_estimators=300)
    est.fit(X_train, y_train, sample_weight=w)   # preprocessing fitted on X_train only
    est.predict(X_test)                          # risk, higher = worse
    est.predict_survival_function(X_test)        # sksurv StepFunctions on [0, last train time]
    est.named_steps["pre"], est.named_steps["model"]   # fitted preprocessor / model
    # model.model_ / .booster_ : the underlying library model

A factory is any callable `(**params) -> unfitted estimator`; tuned hyperparameters are
passed as params. Add a model by adding a `ModelEntry` to `REGISTRY`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from features.pipeline import build_preprocessor
from ml.models.base import SurvivalInputError, SurvivalPipeline
from ml.models.cox import DEFAULT_RIDGE, Coxnet, CoxPH
from ml.models.cox_cv import CoxPHCV
from ml.models.iptw import IPTWCox
from ml.models.trees import GBSA, RSF
from ml.models.xgb import XGBAFT, XGBCox

PREPROCESSOR_STEP, MODEL_STEP = "pre", "model"


@dataclass(frozen=True)
class ModelEntry:
    factory: Callable[..., Any]
    description: str
    random: bool = False            # takes random_state
    needs_treatment: bool = False   # needs the treatment indicator column (IPTW)


REGISTRY: dict[str, ModelEntry] = {
    "cox": ModelEntry(CoxPH, "multivariable Cox (weighted partial likelihood, Efron ties, "
                      f"ridge {DEFAULT_RIDGE:g})"),
    "cox_ridge_cv": ModelEntry(CoxPHCV, "ridge Cox (Efron ties), penalty chosen on the training rows by "
                               "cross-validated partial likelihood (Verweij & van Houwelingen; "
                               "leave-one-out up to 200 rows, 20 folds above)",
                               random=True),
    "iptw_cox": ModelEntry(IPTWCox, "Cox with IPTW weights, propensity fitted in each training fold "
                           "(the analysis's: unpenalised logistic MLE; ATE, stabilized, untruncated)",
                           needs_treatment=True),
    "coxnet": ModelEntry(Coxnet, "elastic-net Cox (alpha 0.05, l1_ratio 0.5)"),
    "rsf": ModelEntry(RSF, "random survival forest (scikit-survival)", random=True),
    "gbsa": ModelEntry(GBSA, "gradient-boosted Cox trees (scikit-survival)", random=True),
    "xgb_cox": ModelEntry(XGBCox, "XGBoost, Cox partial likelihood, Breslow baseline", random=True),
    "xgb_aft": ModelEntry(XGBAFT, "XGBoost accelerated failure time (normal errors)", random=True),
}
MODEL_NAMES = tuple(REGISTRY)


def check_name(name: str) -> ModelEntry:
    if name not in REGISTRY:
        raise ValueError(f"unknown model '{name}'; choose from {', '.join(REGISTRY)}")
    return REGISTRY[name]


def make_estimator(name: str, random_state: int | None = None, treatment_column: str | None = None,
                   **params: Any) -> Any:
    """The unfitted model of family `name` (the final Pipeline step), params override defaults."""
    entry = check_name(name)
    if entry.random and "random_state" not in params:
        params["random_state"] = random_state
    if entry.needs_treatment:
        if treatment_column is None and "treatment" not in params:
            raise SurvivalInputError(f"model '{name}' needs a treatment column")
        params.setdefault("treatment", treatment_column)
    return entry.factory(**params)


def make_pipeline(name: str, spec, random_state: int | None = None, treatment_column: str | None = None,
                  **params: Any) -> SurvivalPipeline:
    """Unfitted SurvivalPipeline: build_preprocessor(spec) -> model `name`."""
    model = make_estimator(name, random_state=random_state, treatment_column=treatment_column, **params)
    return SurvivalPipeline([(PREPROCESSOR_STEP, build_preprocessor(spec)), (MODEL_STEP, model)])


def fit_full(name: str, spec, X, y, sample_weight=None, random_state: int | None = None,
             treatment_column: str | None = None, **params: Any) -> SurvivalPipeline:
    """Fit model `name` (with its preprocessor) on all rows, e.g. to register or explain it."""
    est = make_pipeline(name, spec, random_state=random_state, treatment_column=treatment_column, **params)
    return est.fit(X, y, sample_weight=sample_weight)


__all__ = ["REGISTRY", "MODEL_NAMES", "ModelEntry", "make_estimator", "make_pipeline", "fit_full",
           "check_name", "SurvivalPipeline", "SurvivalInputError", "CoxPH", "CoxPHCV", "Coxnet", "IPTWCox",
           "RSF", "GBSA", "XGBCox", "XGBAFT"]

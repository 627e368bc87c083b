"""SHAP explainers for every model family, and `explain`, which picks the right one.

Pure: no I/O, no MLflow, no global random state. Each explainer returns an
`Explanation` (SHAP values per transformed column, base value, and the model's own
prediction of the explained output, so additivity is checkable).

Which explainer, on which scale (higher SHAP = pushes the explained output up):

| model | risk output | S(t) at a horizon |
|---|---|---|
| sksurv RandomSurvivalForest / Extra... | ensemble mortality, exact TreeSHAP | exact TreeSHAP (tree mean) |
| sksurv GradientBoostingSurvivalAnalysis| log-hazard margin, exact TreeSHAP | permutation SHAP (approx.) |
| XGBoost survival:cox | log-hazard margin, exact TreeSHAP | permutation SHAP (approx.) |
| XGBoost survival:aft | minus log predicted time, TreeSHAP | permutation SHAP (approx.) |
| Cox / Coxnet (linear) | log-hazard, exact linear SHAP | permutation SHAP (approx.) |

The sksurv trees reach shap's C TreeSHAP through `ml.explain.trees`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import shap
import xgboost
from joblib import Parallel, delayed

from ml.explain.explanation import (
    DEFAULT_HORIZON,
    RISK,
    SURVIVAL,
    Explanation,
    as_frame,
    check_additivity,
    check_output,
)
from ml.explain.trees import BOOSTING, TREE_MODELS, is_model, time_index, tree_ensemble_dict, tree_prediction
from ml.processes import exit_with_parent

XGBOOST_MODELS = ("Booster", "XGBRegressor", "XGBModel")


# ------------------------------------------------------------------ trees


def explain_tree(estimator: Any, X: pd.DataFrame, output: str = RISK,
                 horizon: float = DEFAULT_HORIZON, background: pd.DataFrame | None = None,
                 raw: pd.DataFrame | None = None, n_jobs: int = 1) -> Explanation:
    """Exact TreeSHAP for a fitted sksurv forest, tree or gradient boosting model.

    Without `background`: path-dependent TreeSHAP (the training cover of each node
    stands in for the data distribution). With `background`: interventional TreeSHAP
    against those rows.
    """
    X = as_frame(X)
    model = tree_ensemble_dict(estimator, output, horizon)
    if background is None:
        explainer = shap.TreeExplainer(model, feature_perturbation="tree_path_dependent")
        method = "exact TreeSHAP, path-dependent (converted sksurv trees)"
    else:
        # sksurv compares float32 inputs with the thresholds: round the background the same way
        bg = as_frame(background).to_numpy(np.float32).astype(np.float64)
        explainer = shap.TreeExplainer(model, data=bg, feature_perturbation="interventional")
        method = "exact TreeSHAP, interventional (converted sksurv trees)"
    values = _tree_shap_values(explainer, X.to_numpy(np.float64), n_jobs)
    scale, name = tree_scale(estimator, output, horizon)
    return Explanation(values=values, base_value=float(np.ravel(explainer.expected_value)[0]),
                       data=X, prediction=tree_prediction(estimator, X.astype(np.float32), output, horizon),
                       output=name, scale=scale, method=method, exact=True, raw=raw)


def _shap_chunk(explainer: Any, X: np.ndarray) -> np.ndarray:
    return np.asarray(explainer.shap_values(X, check_additivity=False))


def _tree_shap_values(explainer: Any, X: np.ndarray, n_jobs: int) -> np.ndarray:
    if n_jobs <= 1 or len(X) < 2 * n_jobs:
        return _shap_chunk(explainer, X)
    # workers end with this process (a killed `explain` leaves no orphans)
    parts = Parallel(n_jobs=n_jobs, initializer=exit_with_parent, initargs=(os.getpid(),))(
        delayed(_shap_chunk)(explainer, chunk) for chunk in np.array_split(X, n_jobs))
    return np.vstack(parts)


def tree_scale(estimator: Any, output: str, horizon: float) -> tuple[str, str]:
    """(scale, output name) of a tree model's explained output."""
    if output == SURVIVAL:
        return "probability", f"S({horizon:g})"
    if is_model(estimator, BOOSTING):
        scale = "log-hazard" if estimator.loss == "coxph" else "minus log time"
        return scale, RISK
    return "expected number of events (ensemble mortality)", RISK


# ------------------------------------------------------------------ linear and XGBoost


def linear_coefficients(estimator: Any) -> np.ndarray:
    """Coefficients of a fitted linear Cox model (sksurv CoxPH / Coxnet, or lifelines)."""
    if is_model(estimator, "CoxnetSurvivalAnalysis"):
        coef, _ = estimator._get_coef(None)  # the coefficients `predict` uses
        return np.asarray(coef, dtype=np.float64).ravel()
    if hasattr(estimator, "coef_"):
        return np.asarray(estimator.coef_, dtype=np.float64).ravel()
    if hasattr(estimator, "params_"):  # lifelines CoxPHFitter
        return np.asarray(estimator.params_, dtype=np.float64).ravel()
    raise TypeError(f"{type(estimator).__name__} has no linear coefficients")


def explain_linear(coef: np.ndarray, X: pd.DataFrame, background: pd.DataFrame,
                   predict: Callable[[pd.DataFrame], np.ndarray], raw: pd.DataFrame | None = None,
                   scale: str = "log-hazard") -> Explanation:
    """Exact SHAP of a linear predictor: coef_j * (x_j - mean_background_j).

    Interventional SHAP of a linear model (independent features). `predict` gives the
    model's own output; if it is not affine in X with these coefficients, additivity
    fails and this raises rather than return a wrong explanation.
    """
    X, background = as_frame(X), as_frame(background)
    mean = background.to_numpy(np.float64).mean(0)
    values = (X.to_numpy(np.float64) - mean) * coef
    base = float(np.mean(predict(background)))
    expl = Explanation(values=values, base_value=base, data=X,
                       prediction=np.asarray(predict(X), dtype=np.float64), output=RISK, scale=scale,
                       method="exact linear SHAP (coef x (x - background mean))", exact=True, raw=raw)
    check_additivity(expl)
    return expl


def xgb_objective(booster: Any) -> str:
    return json.loads(booster.save_config())["learner"]["objective"]["name"]


def _xgb_margin(booster: Any, sign: float) -> Callable[[pd.DataFrame], np.ndarray]:
    def predict(d: pd.DataFrame) -> np.ndarray:
        dm = xgboost.DMatrix(np.asarray(d, dtype=np.float32), feature_names=booster.feature_names)
        return sign * booster.predict(dm, output_margin=True)

    return predict


def explain_xgboost(booster: Any, X: pd.DataFrame,
                    predict: Callable[[pd.DataFrame], np.ndarray] | None = None,
                    raw: pd.DataFrame | None = None) -> Explanation:
    """Exact TreeSHAP of an XGBoost survival model's margin (shap's own XGBoost support).

    Cox objectives (survival:cox or a custom partial likelihood) -> the margin is the log
    hazard ratio (xgboost's `predict` without output_margin gives the hazard ratio
    exp(margin); we explain the log). survival:aft -> the margin is the predicted log
    survival time, so it and its SHAP values are negated: higher = riskier, like every
    other risk explanation here. `predict` (default: the margin) is the model's own risk
    output, the additivity reference.
    """
    booster = booster.get_booster() if hasattr(booster, "get_booster") else booster
    aft = "aft" in xgb_objective(booster)
    sign, scale = (-1.0, "minus log time") if aft else (1.0, "log-hazard")
    X = as_frame(X)
    explainer = shap.TreeExplainer(booster, feature_perturbation="tree_path_dependent")
    # by position: xgboost refuses column names holding [, ] or < (a label such as `<1%`)
    values = np.asarray(explainer.shap_values(X.to_numpy(np.float64), check_additivity=False),
                        dtype=np.float64)
    predict = predict if predict is not None else _xgb_margin(booster, sign)
    base = float(np.ravel(explainer.expected_value)[0])
    return Explanation(values=sign * values, base_value=sign * base, data=X,
                       prediction=np.asarray(predict(X), dtype=np.float64), output=RISK, scale=scale,
                       method="exact TreeSHAP (XGBoost margin" + (", negated)" if aft else ")"),
                       exact=True, raw=raw)


# ------------------------------------------------------------------ model-agnostic


def explain_permutation(predict: Callable[[np.ndarray], np.ndarray], X: pd.DataFrame,
                        background: pd.DataFrame, output: str, scale: str,
                        random_state: int | None = None, max_background: int = 50,
                        npermutations: int = 5, raw: pd.DataFrame | None = None) -> Explanation:
    """shap's PermutationExplainer (interventional, approximate, additive by construction).

    Used for outputs that are not a sum over trees or a linear predictor, e.g. S(t) of a
    proportional-hazards model. shap seeds numpy's global generator when given a seed,
    so the global state is saved and restored around the call: nothing leaks.
    """
    X, background = as_frame(X), as_frame(background)
    rng = np.random.default_rng(random_state)
    if len(background) > max_background:
        background = background.iloc[rng.choice(len(background), max_background, replace=False)]
    masker = shap.maskers.Independent(background.to_numpy(np.float64), max_samples=max_background)
    seed = int(rng.integers(2**31 - 1))
    state = np.random.get_state()
    try:
        explainer = shap.PermutationExplainer(predict, masker, seed=seed)
        result = explainer(X.to_numpy(np.float64), max_evals=npermutations * (2 * X.shape[1] + 1),
                           silent=True)
    finally:
        np.random.set_state(state)
    base = np.ravel(result.base_values)
    return Explanation(values=np.asarray(result.values, dtype=np.float64), base_value=float(base[0]),
                       data=X, prediction=np.asarray(predict(X.to_numpy(np.float64)), dtype=np.float64),
                       output=output, scale=scale,
                       method=f"permutation SHAP ({npermutations} antithetic permutations, "
                       f"{len(background)} background rows; approximate)", exact=False, raw=raw)


def survival_at(estimator: Any, horizon: float,
                columns: Sequence[str] | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """A function X -> S(horizon | x) from any estimator with predict_survival_function.

    Reads the curves as arrays on the estimator's `unique_times_` grid when it has one
    (fast), else evaluates the step functions one by one.
    """

    def predict(X: np.ndarray) -> np.ndarray:
        X = pd.DataFrame(X, columns=columns) if columns is not None else X
        times = getattr(estimator, "unique_times_", None)
        if times is not None:
            curves = estimator.predict_survival_function(X, return_array=True)
            if curves.shape[1] == len(times):
                return np.asarray(curves[:, time_index(np.asarray(times), horizon)], dtype=np.float64)
        return np.array([float(np.ravel(fn(horizon))[0]) for fn in estimator.predict_survival_function(X)])

    return predict


def _baseline_hazard_at(model: Any, horizon: float) -> float | None:
    """H0(horizon) of a Breslow model of the zoo or of sksurv, None when unknown."""
    try:
        if hasattr(model, "cum_baseline_hazard_"):
            times = np.asarray(model.unique_times_)
            return float(model.cum_baseline_hazard_[time_index(times, horizon)])
        if hasattr(getattr(model, "_baseline_model", None), "cum_baseline_hazard_"):
            return float(np.ravel(model._baseline_model.cum_baseline_hazard_(horizon))[0])
    except ValueError:
        return None
    return None


def proportional_hazards_survival_at(model: Any, horizon: float,
                                     X: pd.DataFrame) -> Callable[[np.ndarray], np.ndarray] | None:
    """Fast S(horizon | x) = exp(-H0(horizon) exp(risk(x))) for a proportional-hazards model.

    The permutation explainer evaluates the model on thousands of masked rows per
    patient; building whole survival curves for each is what makes it slow. H0 is read
    from `cum_baseline_hazard_` on `unique_times_` (the zoo's Breslow models) or from
    sksurv's `_baseline_model`. Returned only when it reproduces the model's own
    predict_survival_function on `X`; otherwise None and the caller takes the generic path.
    """
    columns = list(X.columns)
    h0 = _baseline_hazard_at(model, horizon)
    if h0 is None:
        return None

    def predict(Z: np.ndarray) -> np.ndarray:
        risk = np.asarray(model.predict(pd.DataFrame(Z, columns=columns)), dtype=np.float64)
        return np.exp(-h0 * np.exp(risk))

    reference = survival_at(model, horizon, columns)(X.to_numpy(np.float64))
    if not np.allclose(predict(X.to_numpy(np.float64)), reference, rtol=0, atol=1e-10):
        return None
    return predict


# ------------------------------------------------------------------ dispatch


def split_pipeline(model: Any, X: pd.DataFrame) -> tuple[Any, pd.DataFrame]:
    """(final estimator, X transformed by every earlier step) for a Pipeline; else as is."""
    if hasattr(model, "steps"):
        Xt = X
        for _, step in model.steps[:-1]:
            if step is not None and step != "passthrough":
                Xt = step.transform(Xt)
        return model.steps[-1][1], as_frame(Xt)
    return model, as_frame(X)


def unwrap(estimator: Any) -> Any:
    """The fitted estimator explainers know, looking through thin wrappers.

    A wrapper (e.g. around XGBoost or an IPTW-weighted Cox) may name its fitted inner
    model `estimator_`, `model_` or `booster_`; the first one found is explained.
    """
    if is_model(estimator, *TREE_MODELS, BOOSTING) or hasattr(estimator, "coef_"):
        return estimator  # sklearn ensembles keep their template tree in `estimator_`
    for attr in ("booster_", "estimator_", "model_"):
        inner = getattr(estimator, attr, None)
        if inner is not None:
            return unwrap(inner)
    return estimator


def _own_output(final: Any) -> Callable[[pd.DataFrame], np.ndarray]:
    return lambda d: np.asarray(final.predict(d), dtype=np.float64)


def _explain_survival(final: Any, Xt: pd.DataFrame, bg: pd.DataFrame, horizon: float,
                      random_state: int | None, raw: pd.DataFrame) -> Explanation:
    predict = (proportional_hazards_survival_at(final, horizon, Xt)
               or survival_at(final, horizon, Xt.columns))
    return explain_permutation(predict, Xt, bg, output=f"S({horizon:g})", scale="probability",
                               random_state=random_state, raw=raw)


def explain(model: Any, X: pd.DataFrame, output: str = RISK, horizon: float = DEFAULT_HORIZON,
            background: pd.DataFrame | None = None, random_state: int | None = None) -> Explanation:
    """Explain a fitted model (Pipeline or bare estimator) on raw rows `X`.

    `background` (raw rows, default X) is the reference population for the linear and
    permutation explainers; tree explainers use the path-dependent training cover.
    """
    check_output(output)
    final, Xt = split_pipeline(model, X)
    _, bg = split_pipeline(model, background if background is not None else X)
    inner = unwrap(final)
    if is_model(inner, *TREE_MODELS) or (is_model(inner, BOOSTING) and output == RISK):
        return explain_tree(inner, Xt, output, horizon, raw=X)
    if output == SURVIVAL:
        return _explain_survival(final, Xt, bg, horizon, random_state, raw=X)
    if is_model(inner, *XGBOOST_MODELS):
        return explain_xgboost(inner, Xt, _own_output(final), raw=X)
    if hasattr(inner, "coef_") or hasattr(inner, "params_"):
        return explain_linear(linear_coefficients(inner), Xt, bg, _own_output(final), raw=X)
    raise TypeError(f"no explainer for {type(inner).__name__}")

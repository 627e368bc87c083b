"""SHAP explanations for every model family, summaries, and the twin signal check.

Pure: no I/O, no MLflow, no global random state. Each explainer returns an
`Explanation` (SHAP values per transformed column, base value, and the model's own
prediction of the explained output, so additivity is checkable); `summarise` folds
one-hot columns back into their original feature; `signal_check` compares the
summary with the twin's true log hazard ratios. Plots live in `ml.explain_plots`.

Which explainer, on which scale (higher SHAP = pushes the explained output up):

| model | risk output | S(t) at a horizon |
|---|---|---|
| sksurv RandomSurvivalForest / Extra... | ensemble mortality, exact TreeSHAP | exact TreeSHAP (tree mean) |
| sksurv GradientBoostingSurvivalAnalysis| log-hazard margin, exact TreeSHAP | permutation SHAP (approx.) |
| XGBoost survival:cox | log-hazard margin, exact TreeSHAP | permutation SHAP (approx.) |
| XGBoost survival:aft | minus log predicted time, TreeSHAP | permutation SHAP (approx.) |
| Cox / Coxnet (linear) | log-hazard, exact linear SHAP | permutation SHAP (approx.) |

scikit-survival's forests and boosting are not accepted by shap's TreeExplainer, so
their fitted trees are converted into shap's generic dict-of-trees format (see
`tree_ensemble_dict`); shap's C TreeSHAP then runs on them unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from features.contract import level_name, split_term
from features.pipeline import ONE_HOT_SEPARATOR, FeatureSpec, original_feature

RISK = "risk"
SURVIVAL = "survival"
TREATMENT_FEATURE = "treatment"
DEFAULT_HORIZON = 12.0
ADDITIVITY_TOL = 1e-6
_TREE_MODELS = ("RandomSurvivalForest", "ExtraSurvivalTrees", "SurvivalTree", "ExtraSurvivalTree")


@dataclass(frozen=True)
class Explanation:
    """SHAP values of one model output for a set of patients.

    `values[i, j]` is the contribution of transformed column j to patient i's output;
    `base_value + values.sum(1)` equals `prediction` (the model's own output, computed
    through the model's API, not through the explainer).
    """

    values: np.ndarray
    base_value: float
    data: pd.DataFrame
    prediction: np.ndarray
    output: str
    scale: str
    method: str
    exact: bool
    raw: pd.DataFrame | None = None

    @property
    def columns(self) -> list[str]:
        return list(self.data.columns)

    def additivity_error(self) -> float:
        """Largest |base + sum(SHAP) - model output| over the patients."""
        return float(np.max(np.abs(self.base_value + self.values.sum(1) - self.prediction)))


# ------------------------------------------------------------------ tree conversion


def _is(estimator: Any, *names: str) -> bool:
    return type(estimator).__name__ in names


def _time_index(times: np.ndarray, horizon: float) -> int:
    """Index of the step-function value at `horizon` (the last time <= horizon)."""
    if not np.isfinite(horizon) or horizon > times[-1]:
        raise ValueError(f"horizon {horizon} is beyond the last training time {times[-1]:.2f}")
    return max(int(np.searchsorted(times, horizon, side="right")) - 1, 0)


def _sklearn_tree(tree: Any, leaf_values: np.ndarray) -> dict[str, np.ndarray]:
    """One fitted sklearn/sksurv `tree_` as a shap tree dict.

    Thresholds keep sklearn's `x <= threshold goes left`, which is also the rule of
    shap's C code; missing values follow sklearn's `missing_go_to_left`. The cover
    is `weighted_n_node_samples`: the training (bootstrap / subsample, weighted)
    count in each node, which path-dependent TreeSHAP uses as the data distribution.
    """
    left = tree.children_left.astype(np.int32)
    right = tree.children_right.astype(np.int32)
    default = left.copy()
    if hasattr(tree, "missing_go_to_left"):
        default = np.where(tree.missing_go_to_left.astype(bool), left, right).astype(np.int32)
    return {
        "children_left": left,
        "children_right": right,
        "children_default": default,
        "features": tree.feature.astype(np.int32),
        "thresholds": tree.threshold.astype(np.float64),
        "values": np.asarray(leaf_values, dtype=np.float64).reshape(-1, 1),
        "node_sample_weight": tree.weighted_n_node_samples.astype(np.float64),
    }


def _forest_leaf_values(tree_estimator: Any, output: str, horizon: float,
                        times: np.ndarray, is_event_time: np.ndarray) -> np.ndarray:
    """Per-node value of one survival tree for the explained output."""
    value = tree_estimator.tree_.value
    if tree_estimator.low_memory:
        if output != RISK:
            raise ValueError("a forest fitted with low_memory=True has no survival curves; "
                             "explain output='risk' or refit with low_memory=False")
        return value[:, 0, 0]
    if output == RISK:
        # sksurv's risk score: the CHF summed over the unique event times
        return value[:, is_event_time, 0].sum(1)
    return value[:, _time_index(times, horizon), 1]


def tree_ensemble_dict(estimator: Any, output: str = RISK,
                       horizon: float = DEFAULT_HORIZON) -> dict[str, Any]:
    """A fitted sksurv tree model as shap's dict-of-trees model.

    - RandomSurvivalForest / ExtraSurvivalTrees: the forest predicts the mean of its
      trees, so each tree's leaf value is scaled by 1/n_trees. Risk = the mortality
      (CHF summed over unique event times); survival = S(horizon), both tree means.
    - SurvivalTree: the same with one tree.
    - GradientBoostingSurvivalAnalysis: margin = learning_rate * sum(scale_m * tree_m)
      (init is zero in sksurv; scale_m is the dropout scaling, 1 without dropout).
      For loss='coxph' the margin is the log hazard ratio; for 'squared'/'ipcwls' it is
      the log predicted time, negated so that higher means riskier.
    """
    if output not in (RISK, SURVIVAL):
        raise ValueError(f"output must be '{RISK}' or '{SURVIVAL}', got {output!r}")
    if _is(estimator, *_TREE_MODELS):
        trees = getattr(estimator, "estimators_", [estimator])
        times, is_event = estimator.unique_times_, estimator.is_event_time_
        weight = 1.0 / len(trees)
        converted = [
            _sklearn_tree(t.tree_, weight * _forest_leaf_values(t, output, horizon, times, is_event))
            for t in trees
        ]
        return {"trees": converted, "base_offset": 0.0, "input_dtype": np.float32,
                "tree_output": "raw_value"}
    if _is(estimator, "GradientBoostingSurvivalAnalysis"):
        if output != RISK:
            raise ValueError("boosting's S(t) = exp(-H0(t) exp(margin)) is not a sum over trees; "
                             "use explain_survival_permutation for it")
        sign = 1.0 if estimator.loss == "coxph" else -1.0
        scale = getattr(estimator, "_scale", np.ones(estimator.estimators_.shape[0]))
        converted = [
            _sklearn_tree(t.tree_, sign * estimator.learning_rate * scale[m] * t.tree_.value[:, 0, 0])
            for m, t in enumerate(estimator.estimators_[:, 0])
        ]
        return {"trees": converted, "base_offset": 0.0, "input_dtype": np.float32,
                "tree_output": "raw_value"}
    raise TypeError(f"no tree conversion for {type(estimator).__name__}")


def _tree_prediction(estimator: Any, X: np.ndarray, output: str, horizon: float) -> np.ndarray:
    """The explained output through the model's own API (the additivity reference)."""
    if output == SURVIVAL:
        curves = estimator.predict_survival_function(X, return_array=True)
        return curves[:, _time_index(estimator.unique_times_, horizon)]
    pred = np.asarray(estimator.predict(X), dtype=np.float64)
    if _is(estimator, "GradientBoostingSurvivalAnalysis") and estimator.loss != "coxph":
        return -np.log(pred)  # sksurv returns exp(margin) = predicted time for these losses
    return pred


def explain_tree(estimator: Any, X: pd.DataFrame, output: str = RISK,
                 horizon: float = DEFAULT_HORIZON, background: pd.DataFrame | None = None,
                 raw: pd.DataFrame | None = None, n_jobs: int = 1) -> Explanation:
    """Exact TreeSHAP for a fitted sksurv forest, tree or gradient boosting model.

    Without `background`: path-dependent TreeSHAP (the training cover of each node
    stands in for the data distribution). With `background`: interventional TreeSHAP
    against those rows.
    """
    import shap

    X = _frame(X)
    model = tree_ensemble_dict(estimator, output, horizon)
    if background is None:
        explainer = shap.TreeExplainer(model, feature_perturbation="tree_path_dependent")
        method = "exact TreeSHAP, path-dependent (converted sksurv trees)"
    else:
        # sksurv compares float32 inputs with the thresholds: round the background the same way
        bg = _frame(background).to_numpy(np.float32).astype(np.float64)
        explainer = shap.TreeExplainer(model, data=bg, feature_perturbation="interventional")
        method = "exact TreeSHAP, interventional (converted sksurv trees)"
    values = _tree_shap_values(explainer, X.to_numpy(np.float64), n_jobs)
    scale, name = _tree_scale(estimator, output, horizon)
    return Explanation(values=values, base_value=float(np.ravel(explainer.expected_value)[0]),
                       data=X, prediction=_tree_prediction(estimator, X.astype(np.float32), output, horizon),
                       output=name, scale=scale, method=method, exact=True, raw=raw)


def _shap_chunk(explainer: Any, X: np.ndarray) -> np.ndarray:
    return np.asarray(explainer.shap_values(X, check_additivity=False))


def _tree_shap_values(explainer: Any, X: np.ndarray, n_jobs: int) -> np.ndarray:
    if n_jobs <= 1 or len(X) < 2 * n_jobs:
        return _shap_chunk(explainer, X)
    from joblib import Parallel, delayed

    parts = Parallel(n_jobs=n_jobs)(delayed(_shap_chunk)(explainer, chunk)
                                    for chunk in np.array_split(X, n_jobs))
    return np.vstack(parts)


def _tree_scale(estimator: Any, output: str, horizon: float) -> tuple[str, str]:
    if output == SURVIVAL:
        return "probability", f"S({horizon:g})"
    if _is(estimator, "GradientBoostingSurvivalAnalysis"):
        scale = "log-hazard" if estimator.loss == "coxph" else "minus log time"
        return scale, RISK
    return "expected number of events (ensemble mortality)", RISK


# ------------------------------------------------------------------ linear and XGBoost


def linear_coefficients(estimator: Any) -> np.ndarray:
    """Coefficients of a fitted linear Cox model (sksurv CoxPH / Coxnet, or lifelines)."""
    if _is(estimator, "CoxnetSurvivalAnalysis"):
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
    X, background = _frame(X), _frame(background)
    mean = background.to_numpy(np.float64).mean(0)
    values = (X.to_numpy(np.float64) - mean) * coef
    base = float(np.mean(predict(background)))
    expl = Explanation(values=values, base_value=base, data=X,
                       prediction=np.asarray(predict(X), dtype=np.float64), output=RISK, scale=scale,
                       method="exact linear SHAP (coef x (x - background mean))", exact=True, raw=raw)
    _check_additivity(expl)
    return expl


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
    import shap
    import xgboost

    booster = booster.get_booster() if hasattr(booster, "get_booster") else booster
    aft = "aft" in _xgb_objective(booster)
    sign, scale = (-1.0, "minus log time") if aft else (1.0, "log-hazard")
    X = _frame(X)
    explainer = shap.TreeExplainer(booster, feature_perturbation="tree_path_dependent")
    values = np.asarray(explainer.shap_values(X, check_additivity=False), dtype=np.float64)
    if predict is None:
        def predict(d: pd.DataFrame) -> np.ndarray:
            dm = xgboost.DMatrix(np.asarray(d, dtype=np.float32), feature_names=list(d.columns))
            return sign * booster.predict(dm, output_margin=True)
    base = float(np.ravel(explainer.expected_value)[0])
    return Explanation(values=sign * values, base_value=sign * base, data=X,
                       prediction=np.asarray(predict(X), dtype=np.float64), output=RISK, scale=scale,
                       method="exact TreeSHAP (XGBoost margin" + (", negated)" if aft else ")"),
                       exact=True, raw=raw)


def _xgb_objective(booster: Any) -> str:
    import json

    return json.loads(booster.save_config())["learner"]["objective"]["name"]


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
    import shap

    X, background = _frame(X), _frame(background)
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
                return np.asarray(curves[:, _time_index(np.asarray(times), horizon)], dtype=np.float64)
        return np.array([float(np.ravel(fn(horizon))[0]) for fn in estimator.predict_survival_function(X)])

    return predict


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
    try:
        if hasattr(model, "cum_baseline_hazard_"):
            times = np.asarray(model.unique_times_)
            h0 = float(model.cum_baseline_hazard_[_time_index(times, horizon)])
        elif hasattr(getattr(model, "_baseline_model", None), "cum_baseline_hazard_"):
            h0 = float(np.ravel(model._baseline_model.cum_baseline_hazard_(horizon))[0])
        else:
            return None
    except ValueError:
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
        return model.steps[-1][1], _frame(Xt)
    return model, _frame(X)


def unwrap(estimator: Any) -> Any:
    """The fitted estimator explainers know, looking through thin wrappers.

    A wrapper (e.g. around XGBoost or an IPTW-weighted Cox) may name its fitted inner
    model `estimator_`, `model_` or `booster_`; the first one found is explained.
    """
    if _is(estimator, *_TREE_MODELS, "GradientBoostingSurvivalAnalysis") or hasattr(estimator, "coef_"):
        return estimator  # sklearn ensembles keep their template tree in `estimator_`
    for attr in ("booster_", "estimator_", "model_"):
        inner = getattr(estimator, attr, None)
        if inner is not None:
            return unwrap(inner)
    return estimator


def explain(model: Any, X: pd.DataFrame, output: str = RISK, horizon: float = DEFAULT_HORIZON,
            background: pd.DataFrame | None = None, random_state: int | None = None) -> Explanation:
    """Explain a fitted model (Pipeline or bare estimator) on raw rows `X`.

    `background` (raw rows, default X) is the reference population for the linear and
    permutation explainers; tree explainers use the path-dependent training cover.
    """
    if output not in (RISK, SURVIVAL):
        raise ValueError(f"output must be '{RISK}' or '{SURVIVAL}', got {output!r}")
    raw = X
    final, Xt = split_pipeline(model, X)
    _, bg = split_pipeline(model, background if background is not None else X)
    inner = unwrap(final)
    if _is(inner, *_TREE_MODELS) or (
            _is(inner, "GradientBoostingSurvivalAnalysis") and output == RISK):
        return explain_tree(inner, Xt, output, horizon, raw=raw)
    if output == SURVIVAL:
        predict = (proportional_hazards_survival_at(final, horizon, Xt)
                   or survival_at(final, horizon, Xt.columns))
        return explain_permutation(predict, Xt, bg, output=f"S({horizon:g})",
                                   scale="probability", random_state=random_state, raw=raw)
    if _is(inner, "Booster", "XGBRegressor", "XGBModel"):
        return explain_xgboost(inner, Xt, lambda d: np.asarray(final.predict(d), dtype=np.float64), raw=raw)
    if hasattr(inner, "coef_") or hasattr(inner, "params_"):
        return explain_linear(linear_coefficients(inner), Xt, bg,
                              lambda d: np.asarray(final.predict(d), dtype=np.float64), raw=raw)
    raise TypeError(f"no explainer for {type(inner).__name__}")


# ------------------------------------------------------------------ summaries


def _frame(X: Any) -> pd.DataFrame:
    if isinstance(X, pd.DataFrame):
        return X
    X = np.asarray(X)
    return pd.DataFrame(X, columns=[f"x{j}" for j in range(X.shape[1])])


def _check_additivity(expl: Explanation, tol: float = ADDITIVITY_TOL) -> None:
    err = expl.additivity_error()
    if err > tol * max(1.0, float(np.max(np.abs(expl.prediction)))):
        raise ValueError(f"SHAP additivity fails by {err:.3g} ({expl.method}); the model output is "
                         "not what this explainer assumes")


def infer_feature_spec(raw: pd.DataFrame, columns: Sequence[str]) -> FeatureSpec:
    """A FeatureSpec covering the explained columns, read off the raw table.

    A raw column is numeric if it appears as itself among `columns`, categorical if
    it appears as `column=level` one-hot columns (levels in order of first appearance
    of the raw values; the reference is the level without a column).
    """
    numeric, categorical = [], {}
    for col in raw.columns:
        if col in columns:
            numeric.append(col)
        elif any(c.startswith(f"{col}{ONE_HOT_SEPARATOR}") for c in columns):
            categorical[col] = None
    return FeatureSpec(numeric=tuple(numeric), categorical=categorical)


def feature_shap(expl: Explanation, spec: FeatureSpec | None = None) -> pd.DataFrame:
    """SHAP values per original feature (one-hot columns summed), patients x features."""
    spec = spec or infer_feature_spec(expl.raw if expl.raw is not None else expl.data, expl.columns)
    groups = [original_feature(c, spec) for c in expl.columns]
    values = pd.DataFrame(expl.values, columns=expl.columns, index=expl.data.index)
    return values.T.groupby(groups, sort=False).sum().T


def _reference_level(feature: str, spec: FeatureSpec, raw_values: pd.Series,
                     columns: Sequence[str]) -> Any:
    levels = spec.categorical.get(feature)
    if levels:
        return levels[0]
    encoded = {c.split(ONE_HOT_SEPARATOR, 1)[1] for c in columns
               if c.startswith(f"{feature}{ONE_HOT_SEPARATOR}")}
    rest = [v for v in pd.unique(raw_values.dropna()) if str(v) not in encoded]
    return rest[0] if rest else None


def _sign(x: float) -> int:
    return int(np.sign(x)) if np.isfinite(x) else 0


def level_effects(shap_feature: pd.Series, raw_values: pd.Series, reference: Any) -> dict[str, float]:
    """Mean SHAP at each non-reference level minus mean SHAP at the reference level."""
    ref = shap_feature[raw_values == reference]
    ref_mean = float(ref.mean()) if len(ref) else 0.0
    out = {}
    for level in pd.unique(raw_values.dropna()):
        if level == reference:
            continue
        out[level_name(level)] = float(shap_feature[raw_values == level].mean()) - ref_mean
    return out


def summarise(expl: Explanation, spec: FeatureSpec | None = None) -> pd.DataFrame:
    """Per original feature: mean_abs_shap, rank (1 = largest), direction, level effects.

    direction (+1 raises the explained output, -1 lowers it, 0 none):
    - numeric: sign of the Spearman correlation between the feature value and its SHAP;
    - binary categorical: sign of mean SHAP at the non-reference level minus at the
      reference level (e.g. smoking: ever vs never);
    - multi-level categorical: per level vs the reference in `direction_by_level`
      (prior_response: CR/PR and PD vs SD); `direction` is then the sign at the level
      with the largest |effect|.
    """
    raw = expl.raw if expl.raw is not None else expl.data
    spec = spec or infer_feature_spec(raw, expl.columns)
    per_feature = feature_shap(expl, spec)
    rows = []
    for feat in per_feature.columns:
        phi = per_feature[feat]
        row: dict[str, Any] = {"feature": feat, "mean_abs_shap": float(phi.abs().mean())}
        if feat in spec.categorical:
            values = raw.loc[phi.index, feat]
            ref = _reference_level(feat, spec, values, expl.columns)
            effects = level_effects(phi, values, ref)
            row["reference"] = level_name(ref) if ref is not None else None
            row["direction_by_level"] = {lvl: _sign(v) for lvl, v in effects.items()}
            row["level_effects"] = effects
            top = max(effects, key=lambda k: abs(effects[k])) if effects else None
            row["direction"] = _sign(effects[top]) if top is not None else 0
        else:
            x = raw.loc[phi.index, feat].astype(float)
            corr = x.corr(phi, method="spearman") if x.nunique() > 1 and phi.nunique() > 1 else 0.0
            row.update(reference=None, direction_by_level={}, level_effects={}, direction=_sign(corr))
        rows.append(row)
    table = pd.DataFrame(rows).sort_values("mean_abs_shap", ascending=False, kind="stable")
    table.insert(2, "rank", np.arange(1, len(table) + 1))
    return table.reset_index(drop=True)


# ------------------------------------------------------------------ signal check


def expected_directions(true_log_hr: Mapping[str, float]) -> dict[str, dict[str, int]]:
    """{feature: {level: sign of the true log HR}} from terms like 'smoking=ever'.

    Numeric terms (no '=') map to level ''. Zero effects are left out.
    """
    out: dict[str, dict[str, int]] = {}
    for term, value in true_log_hr.items():
        feature, level = split_term(term)
        level = level or ""
        if value != 0:
            out.setdefault(feature, {})[level] = _sign(value)
    return out


@dataclass(frozen=True)
class SignalCheck:
    """Whether one model's risk summary recovers the true signals."""

    model: str
    passed: bool
    features: dict[str, dict[str, Any]] = field(default_factory=dict)
    noise_ranks: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"pass": self.passed, "features": self.features, "noise_ranks": self.noise_ranks}


def signal_check(summary: pd.DataFrame, true_log_hr: Mapping[str, float], model: str = "",
                 signals: Sequence[str] = ("smoking", "prior_response"),
                 noise: Sequence[str] = (), top_k: int = 3,
                 exclude: Sequence[str] = (TREATMENT_FEATURE,)) -> SignalCheck:
    """Ranks and directions of the signal features against the truth (risk scale).

    Pass = every signal feature ranks in the top `top_k` among non-excluded features
    and each of its levels with a non-zero true effect has the true sign.
    `summary` must explain a risk output (higher = worse), like the log HRs.
    """
    truth = expected_directions(true_log_hr)
    ranked = summary[~summary["feature"].isin(exclude)].reset_index(drop=True)
    rank_of = {f: i + 1 for i, f in enumerate(ranked["feature"])}
    results, passed = {}, True
    for feat in signals:
        if feat not in rank_of:
            raise ValueError(f"signal feature '{feat}' is not among the explained features")
        row = ranked.loc[ranked["feature"] == feat].iloc[0]
        found = row["direction_by_level"] or {"": row["direction"]}
        expected = truth.get(feat, {})
        directions_ok = all(found.get(level) == sign for level, sign in expected.items())
        ok = rank_of[feat] <= top_k and directions_ok and bool(expected)
        results[feat] = {"rank": rank_of[feat], "direction_found": found,
                         "direction_true": expected, "direction_ok": directions_ok, "pass": ok}
        passed &= ok
    noise_ranks = {f: rank_of[f] for f in noise if f in rank_of}
    return SignalCheck(model=model, passed=passed, features=results, noise_ranks=noise_ranks)


def recovery_table(checks: Sequence[SignalCheck]) -> pd.DataFrame:
    """Across repeated draws: per model, how often both signals were recovered, and
    where each noise feature ranked (median rank, best rank)."""
    rows = []
    for model in dict.fromkeys(c.model for c in checks):
        mine = [c for c in checks if c.model == model]
        row: dict[str, Any] = {"model": model, "draws": len(mine),
                               "recovered": sum(c.passed for c in mine)}
        row["recovery_rate"] = row["recovered"] / len(mine)
        for feat in mine[0].features:
            row[f"{feat}_ok_rate"] = float(np.mean([c.features[feat]["pass"] for c in mine]))
        for feat in mine[0].noise_ranks:
            ranks = [c.noise_ranks[feat] for c in mine]
            row[f"{feat}_median_rank"] = float(np.median(ranks))
            row[f"{feat}_best_rank"] = int(np.min(ranks))
        rows.append(row)
    return pd.DataFrame(rows)


def summary_record(expl: Explanation, summary: pd.DataFrame) -> dict[str, Any]:
    """A JSON-ready dict of one explanation's summary."""
    features = {
        r.feature: {"mean_abs_shap": float(r.mean_abs_shap), "rank": int(r.rank),
                    "direction": int(r.direction), "direction_by_level": dict(r.direction_by_level),
                    "level_effects": {k: float(v) for k, v in r.level_effects.items()},
                    "reference": r.reference}
        for r in summary.itertuples()
    }
    return {"output": expl.output, "scale": expl.scale, "method": expl.method, "exact": expl.exact,
            "base_value": expl.base_value, "additivity_error": expl.additivity_error(),
            "n": int(len(expl.data)), "features": features}


# ------------------------------------------------------------------ workflow


@dataclass
class ModelExplanation:
    """One fitted model's explanations (risk, and S(horizon) where it has curves)."""

    model: str
    risk: Explanation
    risk_summary: pd.DataFrame
    survival: Explanation | None = None
    survival_summary: pd.DataFrame | None = None

    def record(self) -> dict[str, Any]:
        out = {RISK: summary_record(self.risk, self.risk_summary)}
        if self.survival is not None:
            out[SURVIVAL] = summary_record(self.survival, self.survival_summary)
        return out


def explain_fitted(name: str, model: Any, X: pd.DataFrame, spec: FeatureSpec,
                   horizon: float | None = DEFAULT_HORIZON,
                   random_state: int | None = None) -> ModelExplanation:
    """Risk (and, with a horizon, S(horizon)) explanations and summaries of a fitted model."""
    risk = explain(model, X, RISK, random_state=random_state)
    out = ModelExplanation(model=name, risk=risk, risk_summary=summarise(risk, spec))
    if horizon is not None and hasattr(model, "predict_survival_function"):
        surv = explain(model, X, SURVIVAL, horizon=horizon, random_state=random_state)
        out.survival, out.survival_summary = surv, summarise(surv, spec)
    return out


def fit_and_explain(data: Any, names: Sequence[str], horizon: float | None = DEFAULT_HORIZON,
                    random_state: int | None = None,
                    params: Mapping[str, Mapping[str, Any]] | None = None) -> list[ModelExplanation]:
    """Fit each model of the zoo on all rows of `data` (a features.datasets.SurvivalData)
    and explain it on the same rows."""
    from ml import models

    out = []
    for name in names:
        fitted = models.fit_full(name, data.spec, data.X, data.y, random_state=random_state,
                                 treatment_column=data.treatment_column, **dict((params or {}).get(name, {})))
        out.append(explain_fitted(name, fitted, data.X, data.spec, horizon, random_state))
    return out


def twin_data(n: int | None = None, seed: int | None = None, config: Any = None) -> Any:
    """A twin cohort as SurvivalData (PFS), drawn with any cohort config."""
    from features import datasets, schema, twin
    from features.pipeline import cohort_spec

    cohort = twin.generate(n=n, seed=seed, config=config)
    spec = cohort_spec(include_treatment=True)
    frame = cohort.data.set_index("id")[[*spec.columns, schema.PFS_TIME, schema.PFS_EVENT]]
    return datasets.SurvivalData(
        name=f"twin (n={len(frame)}, seed {cohort.seed})", frame=frame, time=schema.PFS_TIME,
        event=schema.PFS_EVENT, spec=spec, horizons=dict(datasets.TWIN_HORIZONS), tau=datasets.TWIN_TAU,
        treatment=schema.TREATMENT, treated=schema.TREATED,
        truth=cohort.truth["true_lp_pfs"].to_numpy(dtype=float),
        source=f"features.twin.generate(n={len(frame)}, seed={cohort.seed}, config {cohort.config.version})")


def check_signals(explained: Sequence[ModelExplanation], true_log_hr: Mapping[str, float],
                  noise: Sequence[str] = (), **kwargs: Any) -> list[SignalCheck]:
    """`signal_check` of each model's risk summary."""
    return [signal_check(e.risk_summary, true_log_hr, model=e.model, noise=noise, **kwargs)
            for e in explained]


def recovery_over_seeds(names: Sequence[str], seeds: Sequence[int], n: int | None = None,
                        config: Any = None, random_state: int | None = None,
                        params: Mapping[str, Mapping[str, Any]] | None = None,
                        on_draw: Callable[[int], None] | None = None,
                        ) -> tuple[list[SignalCheck], pd.DataFrame]:
    """Signal checks of every model on fresh twin draws (one per seed), and their recovery table."""
    from features import twin

    config = config if config is not None else twin.load_config()
    truth = twin.true_log_hazard_ratios(config)
    checks: list[SignalCheck] = []
    for seed in seeds:
        data = twin_data(n=n, seed=seed, config=config)
        explained = fit_and_explain(data, names, horizon=None, random_state=random_state, params=params)
        checks += check_signals(explained, truth, noise=twin.NOISE_FEATURES)
        if on_draw is not None:
            on_draw(seed)
    return checks, recovery_table(checks)


def summary_document(explained: Sequence[ModelExplanation], checks: Sequence[SignalCheck] | None = None,
                     recovery: pd.DataFrame | None = None, **meta: Any) -> dict[str, Any]:
    """The content of shap_summary.json."""
    doc: dict[str, Any] = {**meta, "models": {e.model: e.record() for e in explained}}
    if checks is not None:
        doc["signal_check"] = {c.model: c.as_dict() for c in checks}
    if recovery is not None:
        doc["recovery"] = recovery.to_dict(orient="records")
    return doc


def summary_frame(explained: Sequence[ModelExplanation], output: str = RISK) -> pd.DataFrame:
    """Long table model x feature (mean_abs_shap, rank, direction) for one output."""
    frames = []
    for e in explained:
        summary = e.risk_summary if output == RISK else e.survival_summary
        if summary is not None:
            frames.append(summary[["feature", "mean_abs_shap", "rank", "direction"]].assign(model=e.model))
    if not frames:
        return pd.DataFrame(columns=["model", "feature", "mean_abs_shap", "rank", "direction"])
    return pd.concat(frames, ignore_index=True)[["model", "feature", "mean_abs_shap", "rank", "direction"]]


def signal_frame(checks: Sequence[SignalCheck]) -> pd.DataFrame:
    """One row per model: pass/fail and, per signal feature, its rank and directions."""
    rows = []
    for c in checks:
        row: dict[str, Any] = {"model": c.model, "pass": "yes" if c.passed else "no"}
        for feat, res in c.features.items():
            found = ", ".join(f"{lvl or feat}{'+' if s > 0 else '-' if s < 0 else '0'}"
                              for lvl, s in res["direction_found"].items())
            row[f"{feat} rank"] = res["rank"]
            row[f"{feat} direction"] = found + ("" if res["direction_ok"] else " (wrong)")
        rows.append(row)
    return pd.DataFrame(rows)


def final_model_record(data: Any, name: str, params: Mapping[str, Any] | None = None,
                       random_state: int | None = None, horizon: float | None = None,
                       max_rows: int = 1000) -> dict[str, Any]:
    """SHAP summary of model `name` refitted on all rows of `data` (for the benchmark's log).

    Fitted on every row; explained on at most `max_rows` of them (a seeded random subset,
    enough for a stable summary). On the twin's PFS the signal check against the default
    cohort config is included.
    """
    from ml import models

    fitted = models.fit_full(name, data.spec, data.X, data.y, random_state=random_state,
                             treatment_column=data.treatment_column, **dict(params or {}))
    X = data.X
    if len(X) > max_rows:
        X = X.iloc[np.sort(np.random.default_rng(random_state).choice(len(X), max_rows, replace=False))]
    explained = explain_fitted(name, fitted, X, data.spec, horizon, random_state)
    record: dict[str, Any] = {"model": name, "refitted_on": int(len(data.frame)), "explained_rows": len(X),
                              **explained.record()}
    if data.name.startswith("twin") and data.time == "pfs_months":
        from features import twin

        check = signal_check(explained.risk_summary, twin.true_log_hazard_ratios(), model=name,
                             noise=twin.NOISE_FEATURES)
        record["signal_check"] = check.as_dict()
    return record

"""SHAP values of the risk score for one or many patients, with state built once at fit.

`RiskExplainer` picks the exact method the model family allows (linear, TreeSHAP on the
converted trees, XGBoost's own TreeSHAP) and falls back to permutation SHAP;
`feature_groups` sums one-hot columns back into their original feature.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from features.pipeline import original_feature
from ml.explain import explainers as explain
from ml.explain.summaries import infer_feature_spec
from ml.explain.trees import BOOSTING, TREE_MODELS, is_model

EXPLANATION_NAMES = {"linear": "exact linear SHAP", "tree": "exact TreeSHAP (path-dependent)",
                     "xgboost": "exact TreeSHAP (XGBoost)"}
"""How each kind of explainer is described to users (anything else: permutation SHAP)."""
EXACT_KINDS = tuple(EXPLANATION_NAMES)


class RiskExplainer:
    """SHAP values of the risk score for the model families of `ml.models`, built once.

    Linear Cox models: coef * (x - training mean) (exact). sksurv forests / boosting:
    exact path-dependent TreeSHAP on the trees converted by `ml.explain`. XGBoost:
    shap's TreeSHAP on the booster (AFT margins negated, so higher = riskier). Anything
    else: `ml.explain.explain` (permutation SHAP against the training background).
    """

    def __init__(self, pipeline: Any, background: pd.DataFrame, background_raw: pd.DataFrame,
                 random_state: int | None = 0):
        self.pipeline = pipeline
        self.background = background
        self.background_raw = background_raw
        self.random_state = random_state
        final = pipeline.steps[-1][1]
        inner = explain.unwrap(final)
        self.kind, self.scale = "generic", "model risk score"
        if is_model(inner, *TREE_MODELS, BOOSTING):
            self.kind = "tree"
            self.scale = explain.tree_scale(inner, explain.RISK, explain.DEFAULT_HORIZON)[0]
            self.inner = inner
        elif is_model(inner, *explain.XGBOOST_MODELS):
            self.kind = "xgboost"
            self.inner = inner.get_booster() if hasattr(inner, "get_booster") else inner
            aft = "aft" in explain.xgb_objective(self.inner)
            self.sign, self.scale = (-1.0, "minus log time") if aft else (1.0, "log-hazard")
        elif hasattr(inner, "coef_") or hasattr(inner, "params_"):
            self.kind, self.scale = "linear", "log-hazard"
            self.coef = explain.linear_coefficients(inner)
            self.mean = background.to_numpy(np.float64).mean(0)
        self._explainer = None

    @property
    def description(self) -> str:
        return EXPLANATION_NAMES.get(self.kind, "permutation SHAP (approximate)")

    @property
    def exact(self) -> bool:
        """SHAP values that add up to the model's risk exactly (up to a constant)."""
        return self.kind in EXACT_KINDS

    def center(self, Xt: pd.DataFrame) -> None:
        """Linear SHAP against the mean of all training rows `Xt`, not only the background's."""
        if self.kind == "linear":
            self.mean = Xt.to_numpy(np.float64).mean(0)

    def _shap_tree(self):
        if self._explainer is None:
            import shap  # heavy: loaded when a tree model is first explained, not at CLI start-up

            model = explain.tree_ensemble_dict(self.inner, explain.RISK)
            self._explainer = shap.TreeExplainer(model, feature_perturbation="tree_path_dependent")
        return self._explainer

    def warm(self) -> None:
        if self.kind == "tree":
            self._shap_tree()

    def values(self, Xt: pd.DataFrame, raw: pd.DataFrame) -> np.ndarray:
        if self.kind == "linear":
            return (Xt.to_numpy(np.float64) - self.mean) * self.coef
        if self.kind == "tree":
            return np.asarray(self._shap_tree().shap_values(Xt.to_numpy(np.float64), check_additivity=False))
        if self.kind == "xgboost":
            import xgboost  # heavy optional dependency: loaded only for an XGBoost model

            # nthread=1: a DMatrix with the default thread pool costs ~15 ms to build, whatever its size.
            # XGBoost's own TreeSHAP (what shap's TreeExplainer calls for a booster); last column = bias
            dm = xgboost.DMatrix(Xt.to_numpy(np.float32), feature_names=self.inner.feature_names, nthread=1)
            contributions = np.asarray(self.inner.predict(dm, pred_contribs=True), dtype=np.float64)
            return self.sign * contributions[:, :-1]
        expl = explain.explain(self.pipeline, raw, background=self.background_raw,
                               random_state=self.random_state)
        return expl.values

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_explainer"] = None  # shap's explainer is rebuilt on first use after loading
        return state


def feature_groups(columns: Sequence[str], raw: pd.DataFrame) -> pd.DataFrame:
    """0/1 matrix (transformed column x original feature): sums one-hot SHAP back."""
    spec = infer_feature_spec(raw, columns)
    origin = [original_feature(c, spec) for c in columns]
    features = list(dict.fromkeys(origin))
    matrix = np.zeros((len(columns), len(features)))
    for i, name in enumerate(origin):
        matrix[i, features.index(name)] = 1.0
    return pd.DataFrame(matrix, index=list(columns), columns=features)

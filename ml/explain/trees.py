"""scikit-survival's fitted trees in shap's generic dict-of-trees format.

scikit-survival's forests and boosting are not accepted by shap's TreeExplainer, so
their fitted trees are converted into the dict format shap documents for custom tree
models; shap's C TreeSHAP then runs on them unchanged (see `ml.explain.explainers`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ml.explain.explanation import DEFAULT_HORIZON, RISK, SURVIVAL, check_output

TREE_MODELS = ("RandomSurvivalForest", "ExtraSurvivalTrees", "SurvivalTree", "ExtraSurvivalTree")
BOOSTING = "GradientBoostingSurvivalAnalysis"


def is_model(estimator: Any, *names: str) -> bool:
    """Whether the estimator's class is one of `names` (no import of optional libraries needed)."""
    return type(estimator).__name__ in names


def time_index(times: np.ndarray, horizon: float) -> int:
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
    return value[:, time_index(times, horizon), 1]


def _ensemble(trees: list[dict[str, np.ndarray]]) -> dict[str, Any]:
    return {"trees": trees, "base_offset": 0.0, "input_dtype": np.float32, "tree_output": "raw_value"}


def _forest_dict(estimator: Any, output: str, horizon: float) -> dict[str, Any]:
    """The forest predicts the mean of its trees: each leaf value is scaled by 1/n_trees."""
    trees = getattr(estimator, "estimators_", [estimator])
    times, is_event = estimator.unique_times_, estimator.is_event_time_
    weight = 1.0 / len(trees)
    return _ensemble([
        _sklearn_tree(t.tree_, weight * _forest_leaf_values(t, output, horizon, times, is_event))
        for t in trees
    ])


def _boosting_dict(estimator: Any, output: str) -> dict[str, Any]:
    """margin = learning_rate * sum(scale_m * tree_m); sksurv's init is zero, scale_m is the
    dropout scaling (1 without dropout)."""
    if output != RISK:
        raise ValueError("boosting's S(t) = exp(-H0(t) exp(margin)) is not a sum over trees; "
                         "use explain_permutation for it")
    sign = 1.0 if estimator.loss == "coxph" else -1.0
    scale = getattr(estimator, "_scale", np.ones(estimator.estimators_.shape[0]))
    return _ensemble([
        _sklearn_tree(t.tree_, sign * estimator.learning_rate * scale[m] * t.tree_.value[:, 0, 0])
        for m, t in enumerate(estimator.estimators_[:, 0])
    ])


def tree_ensemble_dict(estimator: Any, output: str = RISK,
                       horizon: float = DEFAULT_HORIZON) -> dict[str, Any]:
    """A fitted sksurv tree model as shap's dict-of-trees model.

    - RandomSurvivalForest / ExtraSurvivalTrees: risk = the mortality (CHF summed over
      unique event times); survival = S(horizon), both tree means.
    - SurvivalTree: the same with one tree.
    - GradientBoostingSurvivalAnalysis (risk only): for loss='coxph' the margin is the log
      hazard ratio; for 'squared'/'ipcwls' it is the log predicted time, negated so that
      higher means riskier.
    """
    check_output(output)
    if is_model(estimator, *TREE_MODELS):
        return _forest_dict(estimator, output, horizon)
    if is_model(estimator, BOOSTING):
        return _boosting_dict(estimator, output)
    raise TypeError(f"no tree conversion for {type(estimator).__name__}")


def tree_prediction(estimator: Any, X: Any, output: str, horizon: float) -> np.ndarray:
    """The explained output through the model's own API (the additivity reference)."""
    if output == SURVIVAL:
        curves = estimator.predict_survival_function(X, return_array=True)
        return curves[:, time_index(estimator.unique_times_, horizon)]
    pred = np.asarray(estimator.predict(X), dtype=np.float64)
    if is_model(estimator, BOOSTING) and estimator.loss != "coxph":
        return -np.log(pred)  # sksurv returns exp(margin) = predicted time for these losses
    return pred

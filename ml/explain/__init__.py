"""SHAP explanations of the model zoo: `explain(model, X)`, summaries per original feature and
the twin signal check.

Modules, in dependency order: `explanation` (the result type), `trees` (sksurv trees in
shap's generic tree format), `explainers` (linear, tree, XGBoost, permutation; `explain`
picks one), `summaries` (one-hot columns folded back, ranks, directions), `signals` (the
check against the twin's true log hazard ratios). Pure: no I/O, no MLflow; plots live in
`ml.reporting.explain_plots`, runs in `ml.workflows.explain`.
"""

from ml.explain.explainers import (
    explain,
    explain_linear,
    explain_permutation,
    explain_tree,
    explain_xgboost,
    linear_coefficients,
    proportional_hazards_survival_at,
    split_pipeline,
    survival_at,
    unwrap,
)
from ml.explain.explanation import DEFAULT_HORIZON, RISK, SURVIVAL, Explanation
from ml.explain.signals import SignalCheck, expected_directions, recovery_table, signal_check
from ml.explain.summaries import (
    feature_codes,
    feature_shap,
    infer_feature_spec,
    level_effects,
    summarise,
    summary_record,
    to_shap,
)
from ml.explain.trees import tree_ensemble_dict

__all__ = [
    "DEFAULT_HORIZON", "RISK", "SURVIVAL", "Explanation", "SignalCheck", "expected_directions", "explain",
    "explain_linear", "explain_permutation", "explain_tree", "explain_xgboost", "feature_codes",
    "feature_shap", "infer_feature_spec", "level_effects", "linear_coefficients",
    "proportional_hazards_survival_at", "recovery_table", "signal_check", "split_pipeline", "summarise",
    "summary_record", "survival_at", "to_shap", "tree_ensemble_dict", "unwrap",
]

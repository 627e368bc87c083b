"""The public face of `ml.tracking`, the only part of the project that imports mlflow.

    from ml.tracking import mlflow_io as tracking
    with tracking.run("benchmark", "cox vs rsf", seed=0):
        tracking.log_metrics({...})

The work is done in `ml.tracking.runs` (runs, params, metrics, artifacts, data sets,
provenance), `ml.tracking.registry` (register, champion, the champion rule) and
`ml.tracking.models` (log / save / load models, the survival pyfunc) and
`ml.tracking.stale` (runs left RUNNING by killed processes, swept when a run opens). None of them imports
domain code: callers hand in plain data (frames, dicts, figures, a `PyfuncContract`).
"""

from __future__ import annotations

from ml.tracking.models import (
    MODEL_REQUIREMENTS,
    SCORING_EXPERIMENT,
    SURVIVAL_MODEL_REQUIREMENTS,
    PyfuncContract,
    load_pyfunc,
    load_survival_model,
    log_model,
    log_survival_model,
    pyfunc_signature,
    register_survival_model,
    save_survival_model,
)
from ml.tracking.registry import (
    CALIBRATION_BAND,
    CHAMPION_ALIAS,
    Decision,
    champion,
    champion_rule,
    make_champion,
    model_version,
    promote_by_rule,
    register_model,
)
from ml.tracking.runs import (
    ARTIFACT_DIR,
    DEFAULT_URI,
    EXPERIMENT_DESCRIPTIONS,
    RUN_STATUS,
    TRACKED_PACKAGES,
    active_run_id,
    command_line,
    git_commit,
    log_artifact,
    log_child_runs,
    log_dataset,
    log_figure,
    log_figures,
    log_json,
    log_metric_steps,
    log_metrics,
    log_params,
    log_table,
    mlflow_module,
    provenance_tags,
    run,
    tracking_uri,
)

_mlflow = mlflow_module  # the name tests/test_explain.py reaches for

__all__ = [
    "ARTIFACT_DIR", "CALIBRATION_BAND", "CHAMPION_ALIAS", "Decision", "champion_rule", "command_line",
    "DEFAULT_URI", "EXPERIMENT_DESCRIPTIONS", "MODEL_REQUIREMENTS", "RUN_STATUS", "SCORING_EXPERIMENT",
    "SURVIVAL_MODEL_REQUIREMENTS", "TRACKED_PACKAGES", "PyfuncContract", "active_run_id", "champion",
    "git_commit", "load_pyfunc", "load_survival_model", "log_artifact", "log_child_runs", "log_dataset",
    "log_figure", "log_figures", "log_json", "log_metric_steps", "log_metrics", "log_model", "log_params",
    "log_survival_model", "log_table", "make_champion", "mlflow_module", "model_version", "promote_by_rule",
    "provenance_tags", "pyfunc_signature", "register_model", "register_survival_model", "run",
    "save_survival_model", "tracking_uri",
]

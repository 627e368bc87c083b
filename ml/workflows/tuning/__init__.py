"""Hyperparameter tuning with optuna: search spaces, nested cross-validation, many workers.

    config = TuneConfig(model="rsf", objective="uno_c", n_trials=20)
    result = tune(data, config)                           # nested CV, pure (optuna storage only)
    result, registration = run_and_log(data, config, registered_name=..., log_model=...)

- `config`: `TuneConfig`, the objectives, `TuneError`;
- `space`: search spaces (YAML -> typed `SearchSpace`) and the estimator they configure;
- `storage`: optuna storage (journal file or RDB URL), study creation and read-back;
- `studies`: the inner-CV objective (pruned on running means) and the worker processes;
- `nested`: the outer folds, tuned vs default, and the final model refitted on all rows;
- `summary`: outer estimates with corrected-t CIs, tables and trial records;
- `record`: MLflow runs and the Model Registry (through ml.tracking). How the final model
  is logged is the caller's `log_model` (the CLI passes the survival pyfunc for cohorts).

Fold fitting and scoring is ml.evaluation's one loop (`fit_and_score`).
"""

from ml.workflows.tuning.config import OBJECTIVES, Objective, TuneConfig, TuneError
from ml.workflows.tuning.nested import TuneResult, default_study_name, prepare, slug, tune
from ml.workflows.tuning.record import (
    ModelLogger,
    Registration,
    champion_params,
    log_sklearn_model,
    registered_model_name,
    run_and_log,
)
from ml.workflows.tuning.space import (
    SEARCH_SPACE_DIR,
    CategoricalParam,
    FloatParam,
    IntParam,
    SearchSpace,
    available_models,
    check_space,
    load_search_space,
    make_model,
    search_space_path,
    with_params,
)
from ml.workflows.tuning.storage import (
    DEFAULT_STORAGE,
    best_params,
    create_studies,
    fingerprint,
    make_pruner,
    open_storage,
    redact,
    study_names,
    trials_frame,
    with_driver,
)
from ml.workflows.tuning.studies import (
    CATCH,
    InnerCVObjective,
    StudyTask,
    WorkerJob,
    cv_folds,
    quotas,
    run_workers,
    work,
)
from ml.workflows.tuning.summary import outer_metrics, summarise_outer, summary_table, trial_runs

__all__ = [
    "OBJECTIVES", "Objective", "TuneConfig", "TuneError", "TuneResult", "default_study_name",
    "prepare", "slug", "tune", "ModelLogger", "Registration", "champion_params", "log_sklearn_model",
    "registered_model_name", "run_and_log", "SEARCH_SPACE_DIR", "CategoricalParam", "FloatParam", "IntParam",
    "SearchSpace", "available_models", "check_space", "load_search_space", "make_model", "search_space_path",
    "with_params", "DEFAULT_STORAGE", "best_params", "create_studies", "fingerprint", "make_pruner",
    "open_storage", "redact", "study_names", "trials_frame", "with_driver", "CATCH", "InnerCVObjective",
    "StudyTask", "WorkerJob", "cv_folds", "quotas", "run_workers", "work", "outer_metrics", "summarise_outer",
    "summary_table", "trial_runs",
]

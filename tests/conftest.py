"""Shared fixtures, built once per session and used through public functions.

- `twin_small`: a 300-patient twin cohort (data, truth, config) with a fixed seed;
- `twin_data`: the same cohort as a `SurvivalData` (rows named by patient id);
- `fitted_scorer(model)`: the scorer of one model family fitted on `twin_data`, built once per
  session (per xdist worker) and shared by the scoring, service and page tests;
- `mlflow_store`: an isolated MLflow sqlite store per test, copied from a template whose
  schema was migrated once per session (creating a store from scratch costs seconds).
"""

from __future__ import annotations

import os
import shutil

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def twin_small():
    """A 300-patient twin cohort (data, truth, config) with a fixed seed."""
    from features import twin

    return twin.generate(n=300, seed=11)


@pytest.fixture(scope="session")
def twin_data():
    """`twin_small` as the data set the models see."""
    from features import datasets

    return datasets.twin(n=300, seed=11)


SMALL_ENSEMBLES = {"rsf": {"n_estimators": 40}, "gbsa": {"n_estimators": 60}, "xgb_cox": {"n_estimators": 60},
                   "xgb_aft": {"n_estimators": 60}}
"""Fewer trees than the defaults: the tests check behaviour, not accuracy."""


@pytest.fixture(scope="session")
def fitted_scorer(twin_data):
    """`fitted_scorer("cox")`: a SurvivalScorer fitted on `twin_data` (seed 0), cached per session."""
    from ml.serving.resolve import fit_scorer

    cache = {}

    def get(model: str):
        if model not in cache:
            cache[model] = fit_scorer(model, twin_data, random_state=0, **SMALL_ENSEMBLES.get(model, {}))
        return cache[model]

    return get


@pytest.fixture(scope="session")
def _mlflow_template(tmp_path_factory):
    """An empty, fully migrated MLflow sqlite database, made once."""
    from mlflow.tracking import MlflowClient

    folder = tmp_path_factory.mktemp("mlflow-template")
    db = folder / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{db}").search_experiments()  # runs the migrations
    return db


@pytest.fixture
def mlflow_store(tmp_path, monkeypatch, _mlflow_template):
    """An isolated MLflow store per test (so tests never touch ./mlruns); cwd is tmp_path."""
    (tmp_path / "mlruns").mkdir()
    shutil.copy(_mlflow_template, tmp_path / "mlruns" / "mlflow.db")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    return tmp_path

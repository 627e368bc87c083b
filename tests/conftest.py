"""Shared fixtures, built once per session and used through public functions.

- `twin_small`: a 300-patient twin cohort (data, truth, config) with a fixed seed;
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

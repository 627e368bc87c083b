"""Shared fixtures: small twin cohorts drawn once per session."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def twin_small():
    """A 300-patient twin cohort (data, truth, config) with a fixed seed."""
    from features import twin

    return twin.generate(n=300, seed=11)


@pytest.fixture
def mlflow_store(tmp_path, monkeypatch):
    """An isolated MLflow sqlite store per test, so tests never touch ./mlruns."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    return tmp_path

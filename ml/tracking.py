"""MLflow layout and logging. The only module of the project that imports mlflow.

Store: `sqlite:///mlruns/mlflow.db` (override with MLFLOW_TRACKING_URI), artifacts under
`mlruns/artifacts/`. Browse with `mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db`.
"""

from __future__ import annotations

import contextlib
import importlib.metadata as md
import json
import logging
import os
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

DEFAULT_URI = "sqlite:///mlruns/mlflow.db"
ARTIFACT_DIR = Path("mlruns") / "artifacts"
TRACKED_PACKAGES = ("scikit-survival", "scikit-learn", "xgboost", "shap", "optuna", "pandas",
                    "numpy", "lifelines", "mlflow")


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_URI)


def _mlflow():
    """Import mlflow lazily and point it at the project store (no work at import time)."""
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    import mlflow

    uri = tracking_uri()
    if uri.startswith("sqlite:///"):
        db_path = Path(uri.removeprefix("sqlite:///"))
        db_path.parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    return mlflow


def _experiment_id(mlflow, name: str) -> str:
    exp = mlflow.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    ARTIFACT_DIR.mkdir(parents=True, exist_ok=True)
    return mlflow.create_experiment(name, artifact_location=ARTIFACT_DIR.resolve().as_uri())


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, check=False)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def provenance_tags(seed: int | None = None) -> dict[str, str]:
    tags = {"git_commit": git_commit()}
    for pkg in TRACKED_PACKAGES:
        with contextlib.suppress(md.PackageNotFoundError):
            tags[f"version.{pkg}"] = md.version(pkg)
    if seed is not None:
        tags["seed"] = str(seed)
    return tags


@contextlib.contextmanager
def run(experiment: str, run_name: str, *, seed: int | None = None,
        tags: Mapping[str, str] | None = None, nested: bool = False) -> Iterator[Any]:
    """Start an MLflow run; mark it FAILED (never left RUNNING) if the body raises."""
    mlflow = _mlflow()
    exp_id = _experiment_id(mlflow, experiment) if not nested else None
    kwargs = {"run_name": run_name, "nested": nested}
    if exp_id is not None:
        kwargs["experiment_id"] = exp_id
    active = mlflow.start_run(**kwargs)
    try:
        mlflow.set_tags({**provenance_tags(seed), **(tags or {})})
        yield active
    except BaseException:
        mlflow.end_run(status="FAILED")
        raise
    else:
        mlflow.end_run(status="FINISHED")


def log_params(params: Mapping[str, Any]) -> None:
    _mlflow().log_params({k: str(v)[:500] for k, v in params.items()})


def log_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
    clean = {k: float(v) for k, v in metrics.items() if v is not None and pd.notna(v)}
    _mlflow().log_metrics(clean, step=step)


def log_table(df: pd.DataFrame, artifact_name: str) -> None:
    """Log a DataFrame as a CSV artifact."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / artifact_name
        df.to_csv(path, index=False)
        _mlflow().log_artifact(str(path))


def log_json(obj: Any, artifact_name: str) -> None:
    _mlflow().log_dict(json.loads(json.dumps(obj, default=str)), artifact_name)


def log_artifact(path: str | Path, artifact_path: str | None = None) -> None:
    _mlflow().log_artifact(str(path), artifact_path=artifact_path)


def log_figure(fig: Any, artifact_name: str) -> None:
    _mlflow().log_figure(fig, artifact_name)


def log_dataset(df: pd.DataFrame, name: str, source: str, context: str = "input") -> str:
    """Log the input table with its digest; returns the digest."""
    mlflow = _mlflow()
    dataset = mlflow.data.from_pandas(df, source=source, name=name)
    mlflow.log_input(dataset, context=context)
    return dataset.digest

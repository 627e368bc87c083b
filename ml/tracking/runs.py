"""MLflow runs: the store, a run context, params / metrics / tables / figures / data sets,
child runs, and the provenance tags every run carries.

Every run records the process that owns it, and opening a top-level run first closes the
runs of processes that died without closing theirs (see `ml.tracking.stale`).

Store: `sqlite:///mlruns/mlflow.db` (override with MLFLOW_TRACKING_URI), artifacts under
`mlruns/artifacts/`. Browse with `mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db`.
Every function takes plain data (dicts, frames, figures); none imports domain code.
"""

from __future__ import annotations

import contextlib
import importlib.metadata as md
import json
import logging
import os
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from ml.tracking import stale

DEFAULT_URI = "sqlite:///mlruns/mlflow.db"
ARTIFACT_DIR = Path("mlruns") / "artifacts"
TRACKED_PACKAGES = ("scikit-survival", "scikit-learn", "xgboost", "shap", "optuna", "pandas",
                    "numpy", "lifelines", "mlflow")
RUN_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED", "RUNNING": "KILLED",
              "WAITING": "KILLED"}
"""optuna trial state -> MLflow run status (a pruned trial was stopped early: KILLED)."""
MAX_BATCH_METRICS = 1000   # the REST API caps a batch at 1000 metrics


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_URI)


def mlflow_module() -> Any:
    """The mlflow module, pointed at the project store (no work at import time)."""
    # MLflow's own lines: WARNING and up, or the level in MLFLOW_LOGGING_LEVEL (the CLI sets ERROR,
    # INFO with --verbose); above WARNING, also its notices printed outside logging ("Created version")
    level = logging.getLevelName(os.environ.get("MLFLOW_LOGGING_LEVEL", "WARNING").upper())
    level = level if isinstance(level, int) else logging.WARNING
    logging.getLogger("alembic").setLevel(max(level, logging.WARNING))
    logging.getLogger("mlflow").setLevel(level)
    import mlflow  # heavy (about a second): imported when something is tracked, not at CLI start-up
    from mlflow.utils import logging_utils

    (logging_utils.enable_logging if level <= logging.WARNING else logging_utils.disable_logging)()

    uri = tracking_uri()
    if uri.startswith("sqlite:///"):
        db_path = Path(uri.removeprefix("sqlite:///"))
        db_path.parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    return mlflow


def _experiment_id(mlflow: Any, name: str) -> str:
    exp = mlflow.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    # a tracking server (http) stores artifacts where it was told (--artifacts-destination)
    remote = tracking_uri().startswith(("http://", "https://"))
    if not remote:
        ARTIFACT_DIR.mkdir(parents=True, exist_ok=True)
    try:
        location = None if remote else ARTIFACT_DIR.resolve().as_uri()
        return mlflow.create_experiment(name, artifact_location=location)
    except mlflow.exceptions.MlflowException:  # another machine created it meanwhile
        exp = mlflow.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


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
    """Start an MLflow run; mark it FAILED (never left RUNNING) if the body raises.

    A top-level run first sweeps the store's runs left RUNNING by dead processes
    (`stale.sweep`); the owner tags go in with the run's creation, so even a process
    killed at once leaves a run the next sweep can close.
    """
    mlflow = mlflow_module()
    if not nested:
        stale.sweep(mlflow.MlflowClient())
    # nested runs get the experiment id too: without it mlflow files them under 'Default'
    kwargs = {"run_name": run_name, "nested": nested, "experiment_id": _experiment_id(mlflow, experiment),
              "tags": {**provenance_tags(seed), **stale.owner_tags(), **(tags or {})}}
    active = mlflow.start_run(**kwargs)
    try:
        yield active
    except BaseException:
        mlflow.end_run(status="FAILED")
        raise
    else:
        mlflow.end_run(status="FINISHED")


def active_run_id() -> str | None:
    active = mlflow_module().active_run()
    return active.info.run_id if active is not None else None


def log_params(params: Mapping[str, Any]) -> None:
    mlflow_module().log_params({k: str(v)[:500] for k, v in params.items()})


def _known(value: Any) -> bool:
    return value is not None and bool(pd.notna(value))


def log_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
    clean = {k: float(v) for k, v in metrics.items() if _known(v)}
    mlflow_module().log_metrics(clean, step=step)


def log_metric_steps(rows: list[Mapping[str, float]], prefix: str = "") -> None:
    """Per-resample metrics as steps: row i of `rows` is logged at step i (one batch call).

    NaN / None values are skipped, so a metric undefined on one fold leaves a gap.
    """
    mlflow = mlflow_module()
    from mlflow.entities import Metric  # with mlflow itself (see mlflow_module)

    run_id = mlflow.active_run().info.run_id
    now = int(time.time() * 1000)
    entries = [Metric(key=f"{prefix}{k}", value=float(v), timestamp=now, step=step)
               for step, row in enumerate(rows) for k, v in row.items() if _known(v)]
    client = mlflow.MlflowClient()
    for start in range(0, len(entries), MAX_BATCH_METRICS):
        client.log_batch(run_id, metrics=entries[start:start + MAX_BATCH_METRICS])


def log_table(df: pd.DataFrame, artifact_name: str) -> None:
    """Log a DataFrame as a CSV artifact."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / artifact_name
        df.to_csv(path, index=False)
        mlflow_module().log_artifact(str(path))


def log_json(obj: Any, artifact_name: str) -> None:
    mlflow_module().log_dict(json.loads(json.dumps(obj, default=str)), artifact_name)


def log_artifact(path: str | Path, artifact_path: str | None = None) -> None:
    mlflow_module().log_artifact(str(path), artifact_path=artifact_path)


def log_figure(fig: Any, artifact_name: str) -> None:
    mlflow_module().log_figure(fig, artifact_name)


def log_figures(figures: Mapping[str, Any]) -> None:
    """Log matplotlib figures as artifacts, keyed by file name."""
    mlflow = mlflow_module()
    for name, fig in figures.items():
        mlflow.log_figure(fig, name)


def log_dataset(df: pd.DataFrame, name: str, source: str, context: str = "input") -> str:
    """Log the input table with its digest; returns the digest."""
    mlflow = mlflow_module()
    with warnings.catch_warnings():  # source-type and integer-schema hints, not actionable here
        warnings.simplefilter("ignore", UserWarning)
        dataset = mlflow.data.from_pandas(df, source=source, name=name)
        try:
            mlflow.log_input(dataset, context=context)
        except mlflow.exceptions.MlflowException:
            # a tracking server inserts a new data set without a lock: when two machines log the
            # same one at once, one gets a duplicate-key error; the data set is there now
            time.sleep(0.5)
            mlflow.log_input(dataset, context=context)
    return dataset.digest


def _ms(moment: Any) -> int | None:
    return None if moment is None or pd.isna(moment) else int(pd.Timestamp(moment).timestamp() * 1000)


def _child_entries(child: Mapping[str, Any], stamp: int) -> tuple[list[Any], list[Any]]:
    """(metrics, params) of one child run as MLflow entities."""
    from mlflow.entities import Metric, Param  # with mlflow itself (see mlflow_module)

    metrics = [Metric(k, float(v), stamp, 0) for k, v in child.get("metrics", {}).items() if _known(v)]
    metrics += [Metric(k, float(v), stamp, int(step))
                for k, steps in child.get("step_metrics", {}).items()
                for step, v in steps.items() if _known(v)]
    params = [Param(k, str(v)[:500]) for k, v in child.get("params", {}).items()]
    return metrics, params


def log_child_runs(children: list[Mapping[str, Any]]) -> list[str]:
    """Log finished child runs (e.g. optuna trials) under the active run; returns their ids.

    Each child: `name`, `params`, `metrics` ({key: value}), `step_metrics` ({key: {step:
    value}}), `tags`, `state` (optuna state name), `start` / `end` (datetimes or None).
    Written after the fact with the trials' own start/end times, so worker processes
    never write to the MLflow store concurrently.
    """
    mlflow = mlflow_module()
    client = mlflow.MlflowClient()
    parent = mlflow.active_run()
    if parent is None:
        raise RuntimeError("log_child_runs needs an active parent run")
    ids = []
    for child in children:
        state = child.get("state", "COMPLETE")
        tags = {k: str(v) for k, v in child.get("tags", {}).items()}
        tags.update({"mlflow.parentRunId": parent.info.run_id, "state": state, **stale.owner_tags()})
        start = _ms(child.get("start"))
        created = client.create_run(parent.info.experiment_id, start_time=start, tags=tags,
                                    run_name=str(child["name"]))
        metrics, params = _child_entries(child, start or 0)
        client.log_batch(created.info.run_id, metrics=metrics, params=params)
        client.set_terminated(created.info.run_id, status=RUN_STATUS.get(state, "FINISHED"),
                              end_time=_ms(child.get("end")))
        ids.append(created.info.run_id)
    return ids

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
import shlex
import subprocess
import sys
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
NOTE_TAG = stale.NOTE_TAG   # MLflow's description field, of a run or of an experiment
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"   # without it the UI may open an experiment on GenAI traces
EXPERIMENT_DESCRIPTIONS = {
    "cohort": "rechallenge cohort describe: Table 1 and Kaplan-Meier medians of a cohort table.",
    "analysis": "rechallenge analyze: the study's IPTW-weighted Cox analysis of PFS (and OS), "
                "with balance, weights and the unweighted side by side.",
    "benchmark": "rechallenge benchmark: every model family on the same repeated CV folds. Parent run: "
                 "the data set and the best model's metrics (tag best_model); one child run "
                 "<dataset>/<model> per model with its fold and aggregated metrics.",
    "explain": "rechallenge explain: SHAP summaries of models fitted on the whole cohort.",
    "tune": "rechallenge tune: nested-CV optuna search of one model family. Metrics under the plain "
            "names are the tuned configuration's outer-fold estimates; default.* the default "
            "configuration's, gap.* the paired tuned - default difference; one child run per trial.",
    "score": "Survival models logged and registered for scoring (rechallenge score / serve).",
    "validate": "rechallenge validate: bootstrap internal validation of one model family, one run "
                "<dataset>/<model>. Metrics under the plain names are optimism-corrected; apparent.* "
                "the apparent (all rows) figures, optimism.* their bootstrap optimism; epv.",
    "report": "rechallenge report: the self-contained HTML report of one cohort (analysis, benchmark, "
              "validation, decision curves, nomogram, SHAP, TRIPOD+AI) as the run's artifact.",
}
"""What each experiment holds, shown as its description in the MLflow UI."""


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


def experiment_tags(name: str) -> dict[str, str]:
    """The description (from EXPERIMENT_DESCRIPTIONS, if known) and kind of experiment `name`."""
    tags = {EXPERIMENT_KIND_TAG: EXPERIMENT_KIND}
    if name in EXPERIMENT_DESCRIPTIONS:
        tags[NOTE_TAG] = EXPERIMENT_DESCRIPTIONS[name]
    return tags


def _experiment_id(mlflow: Any, name: str) -> str:
    """The experiment's id, created if new; its description and kind are set when missing
    (so stores made before they existed get them too)."""
    exp = mlflow.get_experiment_by_name(name)
    if exp is None:
        created = _create_experiment(mlflow, name)
        if created is not None:
            return created
        exp = mlflow.get_experiment_by_name(name)  # another machine created it meanwhile
    client = mlflow.MlflowClient()
    for key, value in experiment_tags(name).items():
        if key not in exp.tags:
            client.set_experiment_tag(exp.experiment_id, key, value)
    return exp.experiment_id


def _create_experiment(mlflow: Any, name: str) -> str | None:
    """Create experiment `name` (with its tags); None when another process created it first.

    A tracking server (http) stores artifacts where it was told (--artifacts-destination); a
    local store keeps them under ARTIFACT_DIR."""
    remote = tracking_uri().startswith(("http://", "https://"))
    if not remote:
        ARTIFACT_DIR.mkdir(parents=True, exist_ok=True)
    location = None if remote else ARTIFACT_DIR.resolve().as_uri()
    try:
        return mlflow.create_experiment(name, artifact_location=location, tags=experiment_tags(name))
    except mlflow.exceptions.MlflowException:
        if mlflow.get_experiment_by_name(name) is None:
            raise
        return None


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, check=False)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def command_line() -> str:
    """The command that is running, shell-quoted so that it can be pasted back."""
    return shlex.join(sys.argv)


def provenance_tags(seed: int | None = None) -> dict[str, str]:
    """MLflow's own source tags (commit, the command line as the run's description), the
    versions of the packages the numbers depend on, and the seed."""
    tags = {"mlflow.source.git.commit": git_commit(), NOTE_TAG: command_line()}
    for pkg in TRACKED_PACKAGES:
        with contextlib.suppress(md.PackageNotFoundError):
            tags[f"version.{pkg}"] = md.version(pkg)
    if seed is not None:
        tags["seed"] = str(seed)
    return tags


def _start(mlflow: Any, experiment_id: str, run_name: str, tags: dict[str, str], nested: bool,
           start_time: float | None) -> Any:
    if start_time is None:
        # nested runs get the experiment id too: without it mlflow files them under 'Default'
        return mlflow.start_run(run_name=run_name, nested=nested, experiment_id=experiment_id, tags=tags)
    from mlflow.tracking.context.registry import resolve_tags  # with mlflow itself (see mlflow_module)

    parent = mlflow.active_run()
    if nested and parent is not None:
        tags = {**tags, "mlflow.parentRunId": parent.info.run_id}
    # resolve_tags adds the user and source tags start_run would (ours take precedence)
    created = mlflow.MlflowClient().create_run(experiment_id, start_time=int(start_time * 1000),
                                               tags=resolve_tags(tags), run_name=run_name)
    return mlflow.start_run(run_id=created.info.run_id, nested=nested)


@contextlib.contextmanager
def run(experiment: str, run_name: str, *, seed: int | None = None,
        tags: Mapping[str, str] | None = None, nested: bool = False,
        start_time: float | None = None) -> Iterator[Any]:
    """Start an MLflow run; mark it FAILED (never left RUNNING) if the body raises.

    A top-level run first sweeps the store's runs left RUNNING by dead processes
    (`stale.sweep`); the owner tags go in with the run's creation, so even a process
    killed at once leaves a run the next sweep can close. `start_time` (epoch seconds)
    dates a run opened after its work (e.g. a benchmark logged when done) from the
    work's start, so that its duration is the work's.
    """
    mlflow = mlflow_module()
    if not nested:
        stale.sweep(mlflow.MlflowClient())
    all_tags = {**provenance_tags(seed), **stale.owner_tags(), **(tags or {})}
    active = _start(mlflow, _experiment_id(mlflow, experiment), run_name, all_tags, nested, start_time)
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

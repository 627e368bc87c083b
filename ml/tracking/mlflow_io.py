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
    # nested runs get the experiment id too: without it mlflow files them under 'Default'
    kwargs = {"run_name": run_name, "nested": nested, "experiment_id": _experiment_id(mlflow, experiment)}
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
    import warnings

    mlflow = _mlflow()
    with warnings.catch_warnings():  # source-type and integer-schema hints, not actionable here
        warnings.simplefilter("ignore", UserWarning)
        dataset = mlflow.data.from_pandas(df, source=source, name=name)
        mlflow.log_input(dataset, context=context)
    return dataset.digest


# ======================================================================================
# Tuning (ml.tune): trials as nested runs, the refitted model, the Model Registry.
# ======================================================================================
CHAMPION_ALIAS = "champion"
MODEL_REQUIREMENTS = ("scikit-survival", "scikit-learn", "xgboost", "numpy", "pandas", "scipy")
RUN_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED", "RUNNING": "KILLED",
              "WAITING": "KILLED"}
"""optuna trial state -> MLflow run status (a pruned trial was stopped early: KILLED)."""


def _ms(moment: Any) -> int | None:
    return None if moment is None or pd.isna(moment) else int(pd.Timestamp(moment).timestamp() * 1000)


def log_child_runs(children: list[Mapping[str, Any]]) -> list[str]:
    """Log finished child runs (e.g. optuna trials) under the active run; returns their ids.

    Each child: `name`, `params`, `metrics` ({key: value}), `step_metrics` ({key: {step:
    value}}), `tags`, `state` (optuna state name), `start` / `end` (datetimes or None).
    Written after the fact with the trials' own start/end times, so worker processes
    never write to the MLflow store concurrently.
    """
    mlflow = _mlflow()
    from mlflow.entities import Metric, Param

    client = mlflow.MlflowClient()
    parent = mlflow.active_run()
    if parent is None:
        raise RuntimeError("log_child_runs needs an active parent run")
    ids = []
    for child in children:
        state = child.get("state", "COMPLETE")
        tags = {k: str(v) for k, v in child.get("tags", {}).items()}
        tags.update({"mlflow.parentRunId": parent.info.run_id, "state": state})
        start = _ms(child.get("start"))
        run = client.create_run(parent.info.experiment_id, start_time=start, tags=tags,
                                run_name=str(child["name"]))
        stamp = start or 0
        metrics = [Metric(k, float(v), stamp, 0) for k, v in child.get("metrics", {}).items()
                   if v is not None and pd.notna(v)]
        metrics += [Metric(k, float(v), stamp, int(step))
                    for k, steps in child.get("step_metrics", {}).items()
                    for step, v in steps.items() if v is not None and pd.notna(v)]
        params = [Param(k, str(v)[:500]) for k, v in child.get("params", {}).items()]
        client.log_batch(run.info.run_id, metrics=metrics, params=params)
        client.set_terminated(run.info.run_id, status=RUN_STATUS.get(state, "FINISHED"),
                              end_time=_ms(child.get("end")))
        ids.append(run.info.run_id)
    return ids


def log_model(model: Any, name: str = "model", input_example: pd.DataFrame | None = None) -> str:
    """Log a fitted estimator to the active run; returns its model URI.

    The one place that chooses the flavour (sklearn, cloudpickle): swap it here for the
    survival pyfunc. Requirements are pinned from the installed versions (no inference).
    """
    _mlflow()  # configures the store
    from mlflow import sklearn as sklearn_flavour

    pins = [f"{pkg}=={md.version(pkg)}" for pkg in MODEL_REQUIREMENTS]
    info = sklearn_flavour.log_model(model, name=name, pip_requirements=pins, input_example=input_example,
                                    serialization_format="cloudpickle")
    return info.model_uri


def register_model(model_uri: str, registered_name: str, tags: Mapping[str, Any] | None = None) -> str:
    """Register a logged model as a new version of `registered_name`; returns the version."""
    mlflow = _mlflow()
    version = mlflow.register_model(model_uri, registered_name, await_registration_for=60)
    client = mlflow.MlflowClient()
    for key, value in (tags or {}).items():
        client.set_model_version_tag(registered_name, version.version, key, str(value))
    return str(version.version)


def champion(registered_name: str) -> dict[str, Any] | None:
    """The version behind alias `champion` (version, run id, tags), or None."""
    mlflow = _mlflow()
    from mlflow.exceptions import MlflowException

    try:
        mv = mlflow.MlflowClient().get_model_version_by_alias(registered_name, CHAMPION_ALIAS)
    except MlflowException:
        return None
    return {"name": registered_name, "version": str(mv.version), "run_id": mv.run_id, "tags": dict(mv.tags),
            "uri": f"models:/{registered_name}@{CHAMPION_ALIAS}"}


def promote_if_better(registered_name: str, version: str, metric_tag: str,
                      higher_is_better: bool) -> tuple[bool, dict[str, Any] | None]:
    """Move alias `champion` to `version` if its tag `metric_tag` beats the champion's.

    The tag holds the version's outer-CV estimate. A champion without that tag (or without
    a number in it) is replaced; ties keep the current champion. Returns (moved, previous).
    """
    mlflow = _mlflow()
    client = mlflow.MlflowClient()
    new = float(client.get_model_version(registered_name, version).tags[metric_tag])
    current = champion(registered_name)
    old = None if current is None else pd.to_numeric(current["tags"].get(metric_tag), errors="coerce")
    better = bool(old is None or pd.isna(old) or (new > old if higher_is_better else new < old))
    if better:
        client.set_registered_model_alias(registered_name, CHAMPION_ALIAS, version)
    return better, current


def log_metric_steps(rows: list[Mapping[str, float]], prefix: str = "") -> None:
    """Per-resample metrics as steps: row i of `rows` is logged at step i (one batch call).

    NaN / None values are skipped, so a metric undefined on one fold leaves a gap.
    """
    import time

    from mlflow.entities import Metric

    mlflow = _mlflow()
    run_id = mlflow.active_run().info.run_id
    now = int(time.time() * 1000)
    entries = [
        Metric(key=f"{prefix}{k}", value=float(v), timestamp=now, step=step)
        for step, row in enumerate(rows)
        for k, v in row.items()
        if v is not None and pd.notna(v)
    ]
    client = mlflow.MlflowClient()
    for start in range(0, len(entries), 1000):  # the REST API caps a batch at 1000 metrics
        client.log_batch(run_id, metrics=entries[start:start + 1000])


def log_figures(figures: Mapping[str, Any]) -> None:
    """Log matplotlib figures as artifacts, keyed by file name."""
    mlflow = _mlflow()
    for name, fig in figures.items():
        mlflow.log_figure(fig, name)


def active_run_id() -> str | None:
    run = _mlflow().active_run()
    return run.info.run_id if run is not None else None


# ======================================================================================
# Survival scoring model (ml.score): the survival pyfunc, its registry entry, loading.
# The pyfunc class lives in ml.survival_pyfunc, imported only here.
# ======================================================================================
SCORING_EXPERIMENT = "score"
SURVIVAL_MODEL_REQUIREMENTS = (*MODEL_REQUIREMENTS, "shap", "pydantic", "cloudpickle")


def survival_signature() -> Any:
    """Input: the patient columns (every covariate required, null = unknown; id optional).
    Output: the columns of ml.score.OUTPUT_COLUMNS.

    Numeric inputs are typed Any: MLflow refuses to convert JSON integers (int64) to
    double, so `"age": 63` would fail its schema check; the model checks them itself
    against the cohort contract (range, type) and answers 400 naming the field."""
    _mlflow()
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema
    from mlflow.types.schema import AnyType

    from features import schema
    from ml.serving import scorer as score

    inputs = [ColSpec("string", "id", required=False)]
    inputs += [ColSpec(AnyType() if c in schema.NUMERIC_RANGES else "string", c)
               for c in score.SCORE_FEATURES]
    outputs = [ColSpec(kind, name) for name, kind in score.OUTPUT_COLUMNS.items()]
    return ModelSignature(inputs=Schema(inputs), outputs=Schema(outputs))


def _survival_model_kwargs(scorer: Any, tmp: str, input_example: pd.DataFrame | None) -> dict[str, Any]:
    """What log_model / save_model take for the survival pyfunc; the scorer is written into
    `tmp` with cloudpickle (the preprocessor holds a lambda, its one-hot column namer, that
    plain pickle cannot store)."""
    import cloudpickle

    from ml.serving import scorer as score
    from ml.tracking.pyfunc import SCORER_ARTIFACT, SurvivalPyfunc

    if input_example is None:
        input_example = pd.DataFrame([score.EXAMPLE_PATIENT])
    path = Path(tmp) / "scorer.pkl"
    with path.open("wb") as fh:
        cloudpickle.dump(scorer, fh)
    return {"python_model": SurvivalPyfunc(), "artifacts": {SCORER_ARTIFACT: str(path)},
            "signature": survival_signature(), "input_example": input_example,
            "pip_requirements": [f"{pkg}=={md.version(pkg)}" for pkg in SURVIVAL_MODEL_REQUIREMENTS]}


def log_survival_model(scorer: Any, name: str = "survival_model",
                       input_example: pd.DataFrame | None = None) -> str:
    """Log a fitted ml.score.SurvivalScorer as the survival pyfunc to the active run; returns its URI."""
    import warnings

    mlflow = _mlflow()
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        # the signature is given explicitly; MLflow's nudge towards type hints is noise here
        warnings.filterwarnings("ignore", message=".*type hint", category=UserWarning)
        info = mlflow.pyfunc.log_model(name=name, **_survival_model_kwargs(scorer, tmp, input_example))
    return info.model_uri


def save_survival_model(scorer: Any, path: str | Path, input_example: pd.DataFrame | None = None) -> str:
    """Write the survival pyfunc to a local directory (no tracking store); returns the path.

    `rechallenge serve --model PATH`, `mlflow models serve -m PATH` and load_survival_model
    all take it."""
    import warnings

    mlflow = _mlflow()
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*type hint", category=UserWarning)
        mlflow.pyfunc.save_model(path=str(path), **_survival_model_kwargs(scorer, tmp, input_example))
    return str(path)


def register_survival_model(scorer: Any, registered_name: str, *, make_champion: bool = True,
                            tags: Mapping[str, Any] | None = None,
                            experiment: str = SCORING_EXPERIMENT) -> dict[str, Any]:
    """Log `scorer` in a run of `experiment`, register it as a new version of `registered_name`
    and (by default) point alias `champion` at it. Returns name, version, run id and URI."""
    info = scorer.info()
    with run(experiment, f"register {registered_name}", tags={"model": info["model"]}) as active:
        log_params({"model": info["model"], "n_train": info["n_train"], "cutoffs": info["cutoffs"],
                    "horizons_months": info["horizons_months"], "risk_scale": info["risk_scale"]})
        uri = log_survival_model(scorer)
        version = register_model(uri, registered_name, {"flavour": "rechallenge-survival", **(tags or {})})
    if make_champion:
        _mlflow().MlflowClient().set_registered_model_alias(registered_name, CHAMPION_ALIAS, version)
    return {"name": registered_name, "version": version, "run_id": active.info.run_id,
            "uri": f"models:/{registered_name}@{CHAMPION_ALIAS}" if make_champion
            else f"models:/{registered_name}/{version}"}


def load_survival_model(model_uri: str) -> Any:
    """What a model URI (models:/NAME@ALIAS, models:/NAME/VERSION, runs:/..., or a local path)
    holds: the ml.score.SurvivalScorer of a survival pyfunc, or the fitted pipeline of a
    sklearn-flavoured model (e.g. registered by `rechallenge tune`). Raises ValueError with
    the reason when nothing loadable is there."""
    mlflow = _mlflow()
    from mlflow.exceptions import MlflowException

    try:
        flavors = mlflow.models.get_model_info(model_uri).flavors
        if flavors.get("python_function", {}).get("loader_module") == "mlflow.pyfunc.model":
            wrapped = mlflow.pyfunc.load_model(model_uri).unwrap_python_model()
            scorer = getattr(wrapped, "scorer", None)
            if scorer is None:
                raise ValueError(f"{model_uri} is a pyfunc model but not a rechallenge survival model")
            return scorer
        if "sklearn" in flavors:
            from mlflow import sklearn as sklearn_flavour

            return sklearn_flavour.load_model(model_uri)
    except (MlflowException, OSError) as exc:
        raise ValueError(f"cannot load a model from '{model_uri}': {str(exc).splitlines()[0]}") from None
    raise ValueError(f"{model_uri} holds a model of flavour(s) {', '.join(flavors)}, not a survival model")


def load_pyfunc(model_uri: str) -> Any:
    """The generic MLflow pyfunc behind a URI (what `mlflow models serve` runs), e.g. to check
    it gives the same numbers as the in-process scorer."""
    return _mlflow().pyfunc.load_model(model_uri)

"""The benchmark: every model family on one data set, same repeated CV folds, vs the Cox baseline.

    config = load_config("experiments/benchmark.yaml")     # typed; a typo fails here
    data = prepare_data(config)                             # features.datasets.SurvivalData
    result = run_benchmark(data, config, progress=callback) # pure: no I/O, no MLflow
    result.leaderboard, to_json(result)

Per fold the preprocessor (impute, scale, one-hot) is fitted once on the training rows
and shared by every model (each model's Pipeline would fit the identical transformer);
then each model is fitted on the training rows and scored on the test rows
(`ml.evaluate.score_fold`). On the twin the true linear predictor is scored on the same
folds as the `oracle` row. `log_to_mlflow` hands the records to `ml.tracking`.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from experiments import default_path
from features import datasets
from ml import models
from ml.evaluation import evaluate

DEFAULT_CONFIG = default_path("benchmark.yaml")
BASELINE, ORACLE = "cox", "oracle"
CI_METHOD = ("95 % CI across the repeats x folds resamples by the Nadeau-Bengio corrected "
             "resampled t (variance x (1/J + n_test/n_train), t with J-1 df); the paired "
             "difference to Cox uses the same correction on per-fold differences")


class BenchmarkError(ValueError):
    """Bad benchmark input: config, data or resampling."""


TUNED_SUFFIX = "_tuned"


def model_spec(name: str, config: BenchmarkConfig) -> tuple[str, dict[str, Any]]:
    """(registry family, hyperparameters) of a leaderboard row: 'rsf', or a tuned row 'rsf_tuned'."""
    family = name.removesuffix(TUNED_SUFFIX)
    if name.endswith(TUNED_SUFFIX) and family in config.tuned_params:
        return family, config.tuned_params[family]
    return name, config.model_params.get(name, {})


class Features(BaseModel):
    model_config = ConfigDict(extra="forbid")
    categorical: list[str] = Field(default_factory=list)
    numeric: list[str] = Field(default_factory=list)


class BenchmarkConfig(BaseModel):
    """experiments/benchmark.yaml; CLI options override single fields."""

    model_config = ConfigDict(extra="forbid")
    dataset: Literal["twin", "veterans", "gbsg2", "whas500", "aids", "flchain"] = "twin"
    data: Path | None = None
    time: str | None = None
    event: str | None = None
    treatment: str | None = None
    treated: str | None = None
    drop: list[str] = Field(default_factory=list)
    features: Features = Field(default_factory=Features)
    endpoint: Literal["pfs", "os"] = "pfs"
    n: int | None = Field(default=None, ge=10)
    twin_seed: int | None = Field(default=None, ge=0)
    models: list[str] = Field(default_factory=lambda: list(models.MODEL_NAMES))
    folds: int = Field(default=5, ge=2)
    repeats: int = Field(default=5, ge=1)
    seed: int = Field(default=2024, ge=0)
    horizons: dict[str, float] | None = None
    tau: float | None = Field(default=None, gt=0)
    calibration_groups: int = Field(default=3, ge=2)
    n_jobs: int = Field(default=2, ge=1)
    model_params: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # tuned rows (`benchmark --tuned`, ml.tune): family -> the champion's best params; each adds
    # a row '<family>_tuned' next to the default-hyperparameter row
    tuned_params: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("models")
    @classmethod
    def _known_models(cls, value: list[str]) -> list[str]:
        unknown = [m for m in value if m not in models.REGISTRY]
        if unknown:
            choices = ', '.join(models.REGISTRY)
            raise ValueError(f"unknown model(s) {', '.join(unknown)}; choose from {choices}")
        if not value:
            raise ValueError("at least one model")
        return list(dict.fromkeys(value))

    @model_validator(mode="after")
    def _consistent(self) -> BenchmarkConfig:
        unknown = [m for m in self.model_params if m not in models.REGISTRY]
        if unknown:
            raise ValueError(f"model_params for unknown model(s): {', '.join(unknown)}")
        if self.data is not None and (self.time is None or self.event is None):
            raise ValueError("a data file needs its time and event columns (time:, event:)")
        if self.horizons is not None and (not self.horizons or min(self.horizons.values()) <= 0):
            raise ValueError("horizons must be a non-empty mapping of label -> time > 0")
        return self


def load_config(path: str | Path | None = None, **overrides: Any) -> BenchmarkConfig:
    """Read the YAML (default experiments/benchmark.yaml) and apply non-None overrides."""
    path = Path(path) if path is not None else DEFAULT_CONFIG
    if not path.exists():
        raise BenchmarkError(f"no experiment file {path}")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise BenchmarkError(f"{path}: expected a mapping of settings")
    raw.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return BenchmarkConfig(**raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'config'}: {e['msg']}" for e in exc.errors())
        raise BenchmarkError(f"{path}: {problems}") from None


def prepare_data(config: BenchmarkConfig) -> datasets.SurvivalData:
    """The SurvivalData the config names (twin, a bundled set, or a user table)."""
    try:
        if config.data is not None:
            from features.io import read_table

            df = read_table(config.data)
            data = datasets.from_table(
                df, config.time, config.event, treatment=config.treatment, treated=config.treated,
                drop=config.drop, categorical=config.features.categorical, numeric=config.features.numeric,
                name=config.data.stem, horizons=config.horizons, tau=config.tau, source=str(config.data))
        else:
            data = datasets.load(config.dataset, n=config.n, seed=config.twin_seed, endpoint=config.endpoint)
    except (datasets.DatasetError, FileNotFoundError) as exc:
        raise BenchmarkError(str(exc)) from None
    if config.horizons is not None:
        data.horizons = dict(config.horizons)
    if config.tau is not None:
        data.tau = config.tau
    return data


@dataclass
class BenchmarkResult:
    data_name: str
    n: int
    events: int
    scores: pd.DataFrame            # one row per (model, repeat, fold)
    leaderboard: pd.DataFrame
    calibration: pd.DataFrame       # per model, fold, risk group: predicted vs observed S(h)
    risk: pd.DataFrame              # out-of-fold risk of the first repeat (for KM by risk group)
    metrics: list[str]
    horizons: dict[str, float]
    tau: float
    time_unit: str
    config: BenchmarkConfig
    skipped: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _fold_seed(seed: int, k: int) -> int:
    return int((seed * 1_000_003 + k * 7919) % (2**31 - 1))


def _run_fold(k: int, fold: evaluate.Fold, X: pd.DataFrame, y: np.ndarray, data: datasets.SurvivalData,
              names: list[str], config: BenchmarkConfig, on_model: Callable[[str], None] | None = None
              ) -> tuple[list[dict], list[pd.DataFrame], list[pd.DataFrame], list[str]]:
    from sklearn.base import clone

    pre = clone(models.make_pipeline(names[0], data.spec, treatment_column=data.treatment_column)[0])
    X_train = pre.fit_transform(X.iloc[fold.train])
    X_test = pre.transform(X.iloc[fold.test])
    y_train, y_test = y[fold.train], y[fold.test]
    records, calib, risks, notes = [], [], [], []
    cal_h = data.calibration_horizon
    common = dict(horizons=data.horizons, tau=data.tau, calibration_horizon=cal_h,
                  calibration_groups=config.calibration_groups)
    where = {"repeat": fold.repeat, "fold": fold.fold}
    for name in names:
        start = time.perf_counter()
        try:
            family, params = model_spec(name, config)
            est = models.make_estimator(family, random_state=_fold_seed(config.seed, k),
                                        treatment_column=data.treatment_column, **params)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", RuntimeWarning)
                est.fit(X_train, y_train)
            seconds = time.perf_counter() - start
            notes += [f"{name}, repeat {fold.repeat + 1} fold {fold.fold + 1}: {w.message}" for w in caught
                      if issubclass(w.category, RuntimeWarning)]
            risk = est.predict(X_test)
            fs = evaluate.score_fold(y_train, y_test, risk, surv=est.predict_survival_function(
                X_test, return_array=True), times=est.unique_times_, **common)
        except (ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
            notes.append(f"{name} failed on repeat {fold.repeat + 1} fold {fold.fold + 1}: {exc}")
            records.append({"model": name, **where, "fit_seconds": math.nan})
            if on_model:
                on_model(name)
            continue
        records.append({"model": name, **where, **fs.metrics, "fit_seconds": seconds})
        calib.append(fs.calibration.assign(model=name, **where))
        if fold.repeat == 0:
            risks.append(_risk_frame(name, fold, risk, y_test))
        notes += [f"{name}, repeat {fold.repeat + 1} fold {fold.fold + 1}: {n}" for n in fs.notes]
        if on_model:
            on_model(name)
    if data.truth is not None:
        truth = data.truth[fold.test]
        fs = evaluate.score_fold(y_train, y_test, truth, **common)
        records.append({"model": ORACLE, **where, **fs.metrics, "fit_seconds": 0.0})
        if fold.repeat == 0:
            risks.append(_risk_frame(ORACLE, fold, truth, y_test))
    return records, calib, risks, notes


def _risk_frame(name: str, fold: evaluate.Fold, risk: np.ndarray, y_test: np.ndarray) -> pd.DataFrame:
    # risk groups by tertile within the test fold (risk scales differ between folds)
    group = pd.qcut(pd.Series(risk).rank(method="first"), 3, labels=["low", "medium", "high"])
    return pd.DataFrame({"model": name, "fold": fold.fold, "row": fold.test, "risk": risk,
                         "group": group.astype(str).to_numpy(), "time": y_test["time"],
                         "event": y_test["event"]})


def run_benchmark(data: datasets.SurvivalData, config: BenchmarkConfig,
                  progress: Callable[[str, int], None] | None = None) -> BenchmarkResult:
    """Fit and score every model on every fold. `progress(model, steps_done)` is called as
    model-fold fits finish (from this process), for a progress bar."""
    started = time.perf_counter()
    y, X = data.y, data.X
    names, skipped = [], {}
    for name in config.models:
        if models.REGISTRY[name].needs_treatment and data.treatment is None:
            skipped[name] = (f"skipped: '{data.name}' has no treatment column (give --treatment COL "
                             "--treated VALUE)")
        else:
            names.append(name)
    names += [f"{m}{TUNED_SUFFIX}" for m in config.tuned_params if m in names]
    if not names:
        raise BenchmarkError("no model left to run: " + "; ".join(f"{k} {v}" for k, v in skipped.items()))
    if BASELINE not in names:
        skipped.setdefault(BASELINE, "not run: the paired differences to Cox are not available")
    try:
        folds = evaluate.make_folds(y, config.folds, config.repeats, config.seed)
    except evaluate.EvaluationError as exc:
        raise BenchmarkError(str(exc)) from None
    outputs = _map_folds(folds, X, y, data, names, config, progress)
    records = [r for out in outputs for r in out[0]]
    calib = [c for out in outputs for c in out[1]]
    risks = [r for out in outputs for r in out[2]]
    notes = list(data.notes) + [n for out in outputs for n in out[3]]
    scores = pd.DataFrame(records).sort_values(["model", "repeat", "fold"], kind="stable")
    metrics = evaluate.metric_names(data.horizons)
    for m in metrics:
        if m not in scores:
            scores[m] = math.nan
    n_test = float(np.mean([len(f.test) for f in folds]))
    n_train = float(np.mean([len(f.train) for f in folds]))
    order = {name: i for i, name in enumerate([*names, ORACLE])}
    scores = scores.sort_values(["model", "repeat", "fold"], key=lambda s: s.map(order) if s.name == "model"
                                else s, kind="stable").reset_index(drop=True)
    board = evaluate.summarise(scores, metrics, n_train, n_test,
                               baseline=BASELINE if BASELINE in names else None)
    return BenchmarkResult(
        data_name=data.name, n=len(y), events=int(y["event"].sum()), scores=scores, leaderboard=board,
        calibration=pd.concat(calib, ignore_index=True) if calib else pd.DataFrame(),
        risk=pd.concat(risks, ignore_index=True) if risks else pd.DataFrame(), metrics=metrics,
        horizons=dict(data.horizons), tau=data.tau, time_unit=data.time_unit, config=config,
        skipped=skipped, notes=notes, seconds=time.perf_counter() - started)


def _map_folds(folds, X, y, data, names, config, progress) -> list:
    """Run the folds serially or in `n_jobs` worker processes (folds are independent)."""
    done = 0

    def tick(name: str) -> None:
        nonlocal done
        done += 1
        if progress:
            progress(name, done)

    if config.n_jobs == 1 or len(folds) == 1:
        return [_run_fold(k, f, X, y, data, names, config, tick) for k, f in enumerate(folds)]
    from joblib import Parallel, delayed

    parallel = Parallel(n_jobs=config.n_jobs, return_as="generator_unordered")
    outputs = []
    for out in parallel(delayed(_run_fold_indexed)(k, f, X, y, data, names, config)
                        for k, f in enumerate(folds)):
        outputs.append(out[1])
        for name in names:
            tick(name)
    return [o for _, o in sorted(zip(range(len(outputs)), outputs, strict=True))]


def _run_fold_indexed(k, fold, X, y, data, names, config):
    return k, _run_fold(k, fold, X, y, data, names, config)


# ------------------------------------------------------------------ results as data

def _clean(value: Any) -> Any:
    if isinstance(value, float | np.floating):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def to_json(result: BenchmarkResult) -> dict[str, Any]:
    """benchmark.json: per model each metric's mean / ci_low / ci_high, delta_c_vs_cox,
    fit_seconds; NaN -> null."""
    per_model = {}
    for row in result.leaderboard.to_dict("records"):
        entry: dict[str, Any] = {}
        for m in [*result.metrics, "delta_c_vs_cox"]:
            entry[m] = {"mean": _clean(row[m]), "ci_low": _clean(row[f"{m}_ci_low"]),
                        "ci_high": _clean(row[f"{m}_ci_high"])}
        entry["fit_seconds"] = _clean(row.get("fit_seconds", math.nan))
        entry["n_resamples"] = _clean(row["n_resamples"])
        per_model[row["model"]] = entry
    cfg = result.config
    return {
        "dataset": result.data_name, "n": result.n, "events": result.events,
        "endpoint": cfg.endpoint if cfg.data is None and cfg.dataset == "twin" else None,
        "resampling": {"folds": cfg.folds, "repeats": cfg.repeats, "stratified_by": "event",
                       "seed": cfg.seed},
        "horizons": result.horizons, "tau": result.tau, "time_unit": result.time_unit,
        "calibration_horizon": max(result.horizons, key=result.horizons.get),
        "ci_method": CI_METHOD, "baseline": BASELINE, "models": per_model,
        "skipped": result.skipped, "notes": result.notes, "seconds": round(result.seconds, 2),
    }


def leaderboard_csv(result: BenchmarkResult) -> pd.DataFrame:
    return result.leaderboard.copy()


def mlflow_params(config: BenchmarkConfig, data: datasets.SurvivalData) -> dict[str, Any]:
    return {"dataset": data.name, "source": data.source, "n": len(data.frame),
            "events": int(data.y["event"].sum()), "endpoint": config.endpoint, "folds": config.folds,
            "repeats": config.repeats, "seed": config.seed, "models": ",".join(config.models),
            "horizons": data.horizons, "tau": data.tau, "time_unit": data.time_unit,
            "ci_method": "Nadeau-Bengio corrected resampled t"}


def log_to_mlflow(result: BenchmarkResult, data: datasets.SurvivalData, figures: dict[str, Any],
                  files: list[Path] = ()) -> str:
    """One parent run (experiment 'benchmark'), one nested run per model; returns the parent id."""
    from ml.tracking import mlflow_io as tracking
    from ml.workflows import explain

    cfg = result.config
    with tracking.run("benchmark", f"benchmark {data.name}", seed=cfg.seed) as parent:
        tracking.log_dataset(data.frame, name=data.name, source=data.source)
        tracking.log_params(mlflow_params(cfg, data))
        tracking.log_table(result.leaderboard, "leaderboard.csv")
        tracking.log_table(result.scores, "fold_scores.csv")
        tracking.log_json(to_json(result), "benchmark.json")
        for name, fig in figures.items():
            tracking.log_figure(fig, name)
        for path in files:
            tracking.log_artifact(path)
        for row in result.leaderboard.to_dict("records"):
            model = row["model"]
            with tracking.run("benchmark", model, seed=cfg.seed, nested=True,
                              tags={"model": model, "role": "oracle" if model == ORACLE else "model"}):
                family, row_params = model_spec(model, cfg)
                params = {"model": model, **row_params}
                if family in models.REGISTRY:
                    est = models.make_estimator(family, treatment_column=data.treatment_column or "none",
                                                **row_params)
                    params.update({f"param.{k}": v for k, v in est.get_params().items()})
                    # SHAP summary of the final model refitted on all rows (ml.explain, issue 5)
                    tracking.log_json(explain.final_model_record(data, family, row_params, cfg.seed),
                                      "shap_summary.json")
                tracking.log_params(params)
                folds = result.scores[result.scores["model"] == model]
                tracking.log_metric_steps(folds[[*result.metrics, "fit_seconds"]].to_dict("records"),
                                          prefix="fold.")
                tracking.log_metrics({k: v for k, v in row.items() if k != "model"})
    return parent.info.run_id

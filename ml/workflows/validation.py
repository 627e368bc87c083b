"""Internal validation of one model family on one data set (`rechallenge validate`).

    config = load_config(dataset="gbsg2", model="cox", bootstrap=200)   # typed; errors name the flag
    data = prepare_data(config)                                        # the benchmark's loader
    run = run_validation(data, config, progress=callback)              # pure: no I/O, no MLflow
    to_json(run); log_to_mlflow(run, data, figure)                      # through ml.tracking

The data selection (twin, a bundled set, or a table with --time/--event/--drop/--mapping) and the
model's hyperparameters (`model_params` of experiments/benchmark.yaml) are the benchmark's.
The statistics are `ml.evaluation.validation`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from features import datasets
from ml import models
from ml.evaluation import validation as stats
from ml.tracking import mlflow_io as tracking
from ml.workflows.benchmark import BenchmarkConfig, BenchmarkError, model_spec, pipeline_fitter
from ml.workflows.benchmark import load_config as load_benchmark_config
from ml.workflows.benchmark import prepare_data as prepare_benchmark_data

EXPERIMENT = "validate"
METHODS = {
    "resampling": "Harrell's bootstrap optimism correction (R rms validate): the model refitted, "
                  "preprocessing included, on each of B resamples drawn with replacement; "
                  "optimism = mean(apparent_b - test_b), test_b = the resample's model on the original rows; "
                  "corrected = apparent - optimism",
    "harrell_c": "Harrell's C of the model's risk score (sksurv concordance_index_censored)",
    "uno_c": "Uno's IPCW C truncated at tau, censoring distribution of the rows scored, tau capped just "
             "below their last time (sksurv concordance_index_ipcw)",
    "calibration_slope_<h>": "shrinkage factor: slope of the Cox regression of the outcome, followed up "
                             "to h, on log(-log S(h|x)) (the linear predictor for a PH model); 1 ideal, "
                             "< 1 predictions too extreme",
    "calibration_in_the_large_<h>": "mean predicted S(h) minus Kaplan-Meier S(h) of the rows scored; "
                                    "0 ideal, > 0 survival over-predicted",
    "calibration_curve": "Kaplan-Meier S(h) against mean predicted S(h) within quintiles of predicted "
                         "S(h), model fitted on all rows (apparent); band: 2.5-97.5 percentiles per "
                         "quintile of the B bootstrap models' curves on the original rows (test curves)",
    "calibration_smooth": "smoothed calibration curve at each horizon (Austin, Harrell & van Klaveren 2020): "
                          "Cox regression of the outcome followed up to h on a restricted cubic spline "
                          "(3 knots at the 10/50/90th percentiles) of log(-log S(h|x)); observed S(h) at 50 "
                          "predicted values over the apparent model's 1st-99th percentiles; apparent = "
                          "model fitted on all rows; corrected = apparent - mean_b(own_b - test_b) (rms "
                          "calibrate's bias correction); band: 2.5-97.5 percentiles of the B test curves",
    "epv": "events / number of model columns after imputation and one-hot encoding; warning below 10",
}
FLAGS = {"dataset": "--dataset", "data": "--data", "mapping": "--mapping", "time": "--time",
         "event": "--event", "treatment": "--treatment", "treated": "--treated", "drop": "--drop",
         "models": "--model", "seed": "--seed", "n": "--n"}


class ValidationConfig(BaseModel):
    """What to validate: the benchmark's data selection and model settings, one model, B resamples."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)
    data: BenchmarkConfig
    model: str = "cox"
    bootstrap: int = Field(default=200, ge=1)
    seed: int = Field(default=2024, ge=0)
    groups: int = Field(default=5, ge=2)


def load_config(experiment: Any = None, *, model: str = "cox", bootstrap: int = 200, seed: int = 2024,
                groups: int = 5, **data_options: Any) -> ValidationConfig:
    """The data selection as the benchmark reads it (`experiment` YAML + options), one model."""
    bench = load_benchmark_config(experiment, flags=FLAGS, models=[model], seed=seed, **data_options)
    return ValidationConfig(data=bench, model=model, bootstrap=bootstrap, seed=seed, groups=groups)


def prepare_data(config: ValidationConfig) -> datasets.SurvivalData:
    data = prepare_benchmark_data(config.data)
    if models.REGISTRY[config.model].needs_treatment and data.treatment is None:
        raise BenchmarkError(f"--model {config.model} needs a treatment column: '{data.name}' has none "
                             "(with --data, give --treatment COL --treated VALUE)")
    return data


@dataclass
class ValidationRun:
    data_name: str
    model: str
    n: int
    events: int
    n_columns: int
    epv: float
    horizons: dict[str, float]
    calibration_horizon: str
    tau: float
    time_unit: str
    result: stats.ValidationResult
    config: ValidationConfig
    params: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


def run_validation(data: datasets.SurvivalData, config: ValidationConfig,
                   progress: Callable[[int], None] | None = None) -> ValidationRun:
    """Apparent, optimism and corrected figures of `config.model` on `data` (B bootstrap refits)."""
    started = time.perf_counter()
    fit = pipeline_fitter(config.model, data, config.data, config.seed)
    y = data.y
    n_columns = fit(data.X, y).preprocessor_.transform(data.X.iloc[:1]).shape[1]
    events = int(y["event"].sum())
    epv = stats.events_per_variable(events, n_columns)
    result = stats.bootstrap_validation(fit, data.X, y, horizons=data.horizons, tau=data.tau,
                                        n_bootstrap=config.bootstrap, seed=config.seed, groups=config.groups,
                                        progress=progress)
    notes = [*data.notes, *filter(None, [stats.epv_warning(epv)]), *result.notes]
    return ValidationRun(data.name, config.model, len(y), events, n_columns, epv, dict(data.horizons),
                         data.calibration_horizon, data.tau, data.time_unit, result, config,
                         dict(model_spec(config.model, config.data)[1]), notes,
                         time.perf_counter() - started)


def metrics_block(run: ValidationRun) -> dict[str, dict[str, float]]:
    """Each metric: apparent, optimism, corrected (plus `epv`)."""
    block = {row["metric"]: {k: float(row[k]) for k in ("apparent", "optimism", "corrected")}
             for row in run.result.summary.to_dict("records")}
    return {**block, "epv": {"apparent": run.epv, "optimism": 0.0, "corrected": run.epv}}


def _records(frame: Any) -> list[dict[str, Any]]:
    """Rows as JSON records, NaN as null."""
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


def to_json(run: ValidationRun) -> dict[str, Any]:
    """validation.json: the figures, the calibration curves with their band, the methods."""
    return {"data": run.data_name, "model": run.model, "params": run.params, "n": run.n, "events": run.events,
            "model_columns": run.n_columns, "epv": run.epv, "bootstrap": run.result.n_bootstrap,
            "failed_resamples": run.result.failed, "seed": run.config.seed, "horizons": run.horizons,
            "calibration_horizon": run.calibration_horizon, "tau": run.tau, "time_unit": run.time_unit,
            "metrics": metrics_block(run), "calibration": run.result.calibration.to_dict("records"),
            "calibration_smooth": _records(run.result.smooth),
            "methods": METHODS, "notes": run.notes, "seconds": round(run.seconds, 2)}


def mlflow_metrics(run: ValidationRun) -> dict[str, float]:
    """The corrected figures under the vocabulary's names; `apparent.*` and `optimism.*` beside them."""
    out: dict[str, float] = {"epv": run.epv}
    for name, values in metrics_block(run).items():
        if name != "epv":
            out[name] = values["corrected"]
            out[f"apparent.{name}"] = values["apparent"]
            out[f"optimism.{name}"] = values["optimism"]
    return out


def log_to_mlflow(run: ValidationRun, data: datasets.SurvivalData, figures: Mapping[str, Any]) -> str:
    """One run `<dataset>/<model>` in the experiment 'validate'; returns its id."""
    with tracking.run(EXPERIMENT, f"{run.data_name}/{run.model}", seed=run.config.seed,
                      tags={"model": run.model}, start_time=time.time() - run.seconds) as active:
        tracking.log_dataset(data.frame, name=data.name, source=data.source)
        tracking.log_params({"dataset": run.data_name, "model": run.model,
                             "bootstrap": run.result.n_bootstrap, "n": run.n, "events": run.events,
                             "model_columns": run.n_columns, "tau": run.tau, "horizons": run.horizons,
                             **run.params})
        tracking.log_metrics(mlflow_metrics(run))
        tracking.log_json(to_json(run), "validation.json")
        for name, fig in figures.items():
            tracking.log_figure(fig, name)
    return active.info.run_id

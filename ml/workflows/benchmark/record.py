"""The benchmark in MLflow (through ml.tracking): one parent run with the best model's metrics,
one nested run `<dataset>/<model>` per model."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from features import datasets
from ml import models
from ml.tracking import mlflow_io as tracking
from ml.workflows import explain
from ml.workflows.benchmark import internal
from ml.workflows.benchmark.config import BenchmarkConfig, model_spec
from ml.workflows.benchmark.results import to_json
from ml.workflows.benchmark.run import ORACLE, BenchmarkResult

EXPERIMENT = "benchmark"


def mlflow_params(config: BenchmarkConfig, data: datasets.SurvivalData) -> dict[str, Any]:
    return {"dataset": data.name, "source": data.source, "n": len(data.frame),
            "events": int(data.y["event"].sum()), "endpoint": config.endpoint, "folds": config.folds,
            "repeats": config.repeats, "seed": config.seed, "models": ",".join(config.models),
            "horizons": data.horizons, "tau": data.tau, "time_unit": data.time_unit,
            "ci_method": "Nadeau-Bengio corrected resampled t",
            "validation_bootstrap": config.validation.bootstrap}


def best_row(leaderboard: pd.DataFrame) -> dict[str, Any] | None:
    """The leaderboard's best model (highest Harrell C; the oracle is a ceiling, not a model)."""
    models_only = leaderboard[leaderboard["model"] != ORACLE]
    if models_only.empty:
        return None
    return models_only.sort_values("harrell_c", ascending=False, kind="stable").iloc[0].to_dict()


def _row_metrics(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "model"}


def _log_model_row(result: BenchmarkResult, data: datasets.SurvivalData, row: Mapping[str, Any]) -> None:
    """The nested run `<dataset>/<model>` of one leaderboard row: the data set as its input, its
    parameters (every estimator parameter once), per-fold metric steps and summary metrics."""
    cfg, model = result.config, row["model"]
    with tracking.run(EXPERIMENT, f"{data.name}/{model}", seed=cfg.seed, nested=True,
                      tags={"model": model, "role": "oracle" if model == ORACLE else "model"}):
        tracking.log_dataset(data.frame, name=data.name, source=data.source)
        family, row_params = model_spec(model, cfg)
        params = {"model": model, **row_params}
        if family in models.REGISTRY:
            est = models.make_estimator(family, treatment_column=data.treatment_column or "none",
                                        **row_params)
            params.update(est.get_params())
            # SHAP summary of the final model refitted on all rows
            tracking.log_json(explain.final_model_record(data, family, row_params, cfg.seed),
                              "shap_summary.json")
        tracking.log_params(params)
        folds = result.scores[result.scores["model"] == model]
        tracking.log_metric_steps(folds[[*result.metrics, "fit_seconds"]].to_dict("records"), prefix="fold.")
        tracking.log_metrics(_row_metrics(row))
        if model in result.internal:  # bootstrap optimism-corrected figures, `internal.*`
            tracking.log_metrics(internal.mlflow_metrics(result.internal[model]))


def log_to_mlflow(result: BenchmarkResult, data: datasets.SurvivalData, figures: Mapping[str, Any],
                  files: Sequence[Path] = ()) -> str:
    """One parent run (experiment 'benchmark'), one nested run per model; returns the parent id.

    The parent carries the best model's metrics (tag `best_model`) under the same names as
    its child; it is dated from the benchmark's start (`result.seconds` before now), as it is
    opened only when the work is done."""
    cfg = result.config
    best = best_row(result.leaderboard)
    tags = {} if best is None else {"best_model": str(best["model"])}
    with tracking.run(EXPERIMENT, f"benchmark {data.name}", seed=cfg.seed, tags=tags,
                      start_time=time.time() - result.seconds) as parent:
        tracking.log_dataset(data.frame, name=data.name, source=data.source)
        tracking.log_params(mlflow_params(cfg, data))
        if best is not None:
            tracking.log_metrics(_row_metrics(best))
        tracking.log_table(result.leaderboard, "leaderboard.csv")
        tracking.log_table(result.scores, "fold_scores.csv")
        tracking.log_json(to_json(result), "benchmark.json")
        for name, fig in figures.items():
            tracking.log_figure(fig, name)
        for path in files:
            tracking.log_artifact(path)
        for row in result.leaderboard.to_dict("records"):
            _log_model_row(result, data, row)
    return parent.info.run_id

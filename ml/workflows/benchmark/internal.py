"""Internal validation inside the benchmark: Harrell's bootstrap optimism correction (R rms
`validate`, as `rechallenge validate` does for one model) of the models listed under
`validation.models` in experiments/benchmark.yaml, B = `validation.bootstrap` resamples each.

Each model is refitted, preprocessing included, on all rows and on each resample; the figures
(Harrell C, Uno C, calibration slope and calibration-in-the-large at each horizon) are
`ml.evaluation.validation.bootstrap_validation`'s. Pure: no I/O, no MLflow.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from features import datasets
from ml import models
from ml.evaluation import validation as stats
from ml.workflows.benchmark.config import BenchmarkConfig, model_spec

METHOD = ("Harrell's bootstrap optimism correction (R rms validate): each model refitted, preprocessing "
          "included, on all rows (apparent) and on B resamples drawn with replacement; optimism = "
          "mean_b(figure of model b on its resample - figure of model b on all rows); corrected = "
          "apparent - optimism; same seed for every model")


def pipeline_fitter(name: str, data: datasets.SurvivalData, config: BenchmarkConfig,
                    seed: int) -> Callable[[Any, Any], Any]:
    """`fit(X, y)`: the leaderboard row `name` (family and hyperparameters) in its pipeline, fitted."""
    family, params = model_spec(name, config)

    def fit(X: Any, y: Any) -> Any:
        pipe = models.make_pipeline(family, data.spec, random_state=seed,
                                    treatment_column=data.treatment_column, **params)
        return pipe.fit(X, y)

    return fit


def validated_models(config: BenchmarkConfig, names: list[str]) -> list[str]:
    """The leaderboard rows `names` to validate: those listed (all of them when the list is null)."""
    if config.validation.bootstrap == 0:
        return []
    wanted = config.validation.models
    return list(names) if wanted is None else [n for n in names if n in wanted]


def run_internal(data: datasets.SurvivalData, config: BenchmarkConfig, names: list[str],
                 progress: Callable[[str, int], None] | None = None) -> dict[str, stats.ValidationResult]:
    """{model: its bootstrap validation} for the validated rows; `progress(model, resamples done)`."""
    out: dict[str, stats.ValidationResult] = {}
    done = 0
    for name in validated_models(config, names):
        def tick(_: int, name: str = name) -> None:
            nonlocal done
            done += 1
            if progress is not None:
                progress(name, done)

        out[name] = stats.bootstrap_validation(
            pipeline_fitter(name, data, config, config.seed), data.X, data.y, horizons=data.horizons,
            tau=data.tau, n_bootstrap=config.validation.bootstrap, seed=config.seed, progress=tick)
    return out


def summary_block(result: stats.ValidationResult) -> dict[str, dict[str, float]]:
    """{metric: {apparent, optimism, corrected}} of one model."""
    return {row["metric"]: {k: float(row[k]) for k in ("apparent", "optimism", "corrected")}
            for row in result.summary.to_dict("records")}


def mlflow_metrics(result: stats.ValidationResult) -> dict[str, float]:
    """`internal.<metric>` (corrected), `internal.apparent.<metric>`, `internal.optimism.<metric>`."""
    out: dict[str, float] = {}
    for name, values in summary_block(result).items():
        out[f"internal.{name}"] = values["corrected"]
        out[f"internal.apparent.{name}"] = values["apparent"]
        out[f"internal.optimism.{name}"] = values["optimism"]
    return out

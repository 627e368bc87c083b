"""The benchmark: every model family on one data set, same repeated CV folds, vs the Cox baseline.

    config = load_config("experiments/benchmark.yaml")     # typed; a typo fails here
    data = prepare_data(config)                             # features.datasets.SurvivalData
    result = run_benchmark(data, config, progress=callback) # pure: no I/O, no MLflow
    result.leaderboard, to_json(result), km_by_risk(result.risk)
    log_to_mlflow(result, data, figures)                    # through ml.tracking

- `config`: the typed config (pydantic) and the data set it names;
- `run`: the folds (ml.evaluation's fit-and-score loop), the scores and the leaderboard;
- `internal`: bootstrap internal validation (optimism correction) of the listed models;
- `results`: benchmark.json, the leaderboard table, KM curves by risk tertile (plain data);
- `record`: the MLflow runs.
"""

from ml.workflows.benchmark.config import (
    DEFAULT_CONFIG,
    TUNED_SUFFIX,
    BenchmarkConfig,
    BenchmarkError,
    Features,
    load_config,
    model_spec,
    prepare_data,
)
from ml.workflows.benchmark.internal import pipeline_fitter, run_internal, validated_models
from ml.workflows.benchmark.record import log_to_mlflow, mlflow_params
from ml.workflows.benchmark.results import CI_METHOD, km_by_risk, leaderboard_csv, to_json
from ml.workflows.benchmark.run import BASELINE, ORACLE, BenchmarkResult, FoldRunner, run_benchmark

__all__ = ["DEFAULT_CONFIG", "TUNED_SUFFIX", "BenchmarkConfig", "BenchmarkError", "Features", "load_config",
           "model_spec", "prepare_data", "log_to_mlflow", "mlflow_params", "CI_METHOD", "km_by_risk",
           "leaderboard_csv", "to_json", "BASELINE", "ORACLE", "BenchmarkResult", "FoldRunner",
           "run_benchmark", "pipeline_fitter", "run_internal", "validated_models"]

"""`rechallenge benchmark`: every model family on the same folds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from ml.cli.runner import (
    DataOpt,
    DropOpt,
    EventOpt,
    JsonOpt,
    MappingOpt,
    TimeOpt,
    TreatedOpt,
    TreatmentOpt,
    app,
    check_output_dir,
    check_tracking_store,
    console,
    err_console,
    fail,
    figure_writer,
    input_errors,
    json_stdout,
    print_json,
    print_logged,
    progress_bar,
    split_names,
    text_writer,
    working,
    write_outputs,
)
from ml.reporting import benchmark_display

if TYPE_CHECKING:
    from ml.workflows.benchmark import BenchmarkConfig, BenchmarkResult

FLAGS = {"dataset": "--dataset", "data": "--data", "mapping": "--mapping", "time": "--time",
         "event": "--event", "treatment": "--treatment", "treated": "--treated", "drop": "--drop",
         "endpoint": "--endpoint", "models": "--models", "repeats": "--repeats", "folds": "--folds",
         "seed": "--seed", "n": "--n", "n_jobs": "--n-jobs"}
"""Config field -> the option that sets it, so that an error blames what the user typed."""


@app.command("benchmark")
def benchmark(
    dataset: str = typer.Option(None, "--dataset", help="twin | veterans | gbsg2 | whas500 | aids | flchain "
                                "[default: the experiment's, twin]."),
    data: DataOpt = None,
    mapping: MappingOpt = None,
    time: TimeOpt = None,
    event: EventOpt = None,
    treatment: TreatmentOpt = None,
    treated: TreatedOpt = None,
    drop: DropOpt = None,
    endpoint: str = typer.Option(None, "--endpoint", help="Twin endpoint: pfs | os."),
    models: str = typer.Option(None, "--models", help="Comma-separated models [default: all]: cox, "
                               "cox_ridge_cv, iptw_cox, coxnet, rsf, gbsa, xgb_cox, xgb_aft."),
    repeats: int = typer.Option(None, "--repeats", min=1, help="CV repeats [default 5]."),
    folds: int = typer.Option(None, "--folds", min=2, help="CV folds [default 5]."),
    seed: int = typer.Option(None, "--seed", min=0, help="Seed of folds and models."),
    n: int = typer.Option(None, "--n", min=10, help="Twin size [default: 101, like the study]."),
    n_jobs: int = typer.Option(None, "--n-jobs", min=1, help="Processes for the folds [default 2]."),
    experiment: Path = typer.Option(None, "--experiment", help="Benchmark YAML [default: "
                                    "experiments/benchmark.yaml]."),
    out: Path = typer.Option(Path("out/benchmark"), "--out", help="Directory for leaderboard.csv, "
                             "benchmark.json, fold_scores.csv and the figures."),
    mlflow: bool = typer.Option(True, "--mlflow/--no-mlflow", help="Log to MLflow (experiment 'benchmark')."),
    tuned: bool = typer.Option(False, "--tuned", help="Also a '<model>_tuned' row per model with a "
                               "registered champion (rechallenge tune), refitted with its best params."),
    as_json: JsonOpt = False,
) -> None:
    """Every model family on the same repeated CV folds: leaderboard with CIs and the difference to Cox."""
    # heavy (the model zoo, pyplot): imported here, off the path of `--help`
    from ml.reporting import benchmark_plots
    from ml.workflows import benchmark as bench

    overrides = dict(dataset=dataset, data=data, mapping=mapping, time=time, event=event, treatment=treatment,
                     treated=treated, drop=split_names(drop), endpoint=endpoint, models=split_names(models),
                     repeats=repeats, folds=folds, seed=seed, n=n, n_jobs=n_jobs)
    check_output_dir("--out", out)
    if mlflow:
        check_tracking_store()
    with json_stdout(as_json):
        with input_errors(bench.BenchmarkError):
            config = bench.load_config(experiment, flags=FLAGS, **overrides)
            prepared = bench.prepare_data(config)
        if tuned:
            config = _with_tuned_rows(config)
        total = (len(config.models) + len(config.tuned_params)) * config.folds * config.repeats
        total += len(bench.validated_models(config, config.models)) * config.validation.bootstrap
        bar = progress_bar("models x folds", total)
        with input_errors(bench.BenchmarkError, generic=False), bar as update:
            result = bench.run_benchmark(prepared, config, lambda name, done: update(done, f"{name:>9}"))
        summary = bench.to_json(result)
        if not as_json:
            benchmark_display.print_benchmark(console, result.leaderboard, summary)
            _print_internal(summary)
        figures = benchmark_plots.benchmark_figures(
            result.leaderboard, result.calibration, bench.km_by_risk(result.risk), data_name=result.data_name,
            calibration_horizon=summary["calibration_horizon"], time_unit=result.time_unit)
        _write_outputs(out, result, summary, figures)
        if mlflow:
            with working("logging to MLflow (final models and their SHAP summaries)"):
                run_id = bench.log_to_mlflow(result, prepared, figures)
            print_logged(console, run_id, "benchmark", "one nested run per model")
        benchmark_plots.close_figures(figures)
    if as_json:
        print_json(summary)


def _print_internal(summary: dict) -> None:
    """The internally validated models: apparent -> optimism-corrected figures."""
    from ml.reporting.validation_plots import internal_validation_table

    block = {m: entry["internal_validation"] for m, entry in summary["models"].items()
             if "internal_validation" in entry}
    if block:
        b = summary["internal_validation"]["bootstrap"]
        console.print(internal_validation_table(
            block, f"internal validation (bootstrap optimism correction, B {b}): apparent -> corrected"))


def _with_tuned_rows(config: BenchmarkConfig) -> BenchmarkConfig:
    """The config plus a '<model>_tuned' row per model with a registered champion (rechallenge tune)."""
    from ml.workflows import tuning  # heavy (optuna, MLflow): only with --tuned

    if config.data is not None:
        fail("--tuned needs --dataset (tuned models are registered per endpoint or data set)")
    # champions of `rechallenge tune` on the same data: rechallenge-<endpoint|dataset>-<model>
    label = config.endpoint if config.dataset == "twin" else config.dataset
    found, missing = tuning.champion_params(label, config.models)
    if missing:
        err_console.print(f"no tuned champion for {', '.join(missing)} (rechallenge tune --model ...)")
    if found:
        err_console.print("note: '_tuned' rows reuse hyperparameters searched on all rows of this data, "
                          "so they are optimistic here; the honest figure is the tune run's outer CV")
    return config.model_copy(update={"tuned_params": found})


def _write_outputs(out: Path, result: BenchmarkResult, summary: dict, figures: dict) -> None:
    writers = {out / "leaderboard.csv": lambda p: result.leaderboard.to_csv(p, index=False),
               out / "fold_scores.csv": lambda p: result.scores.to_csv(p, index=False),
               out / "benchmark.json": text_writer(json.dumps(summary, indent=2))}
    writers |= {out / name: figure_writer(fig, dpi=150) for name, fig in figures.items()}
    write_outputs("--out", writers)
    console.print(f"[green]wrote[/] {out}/leaderboard.csv, benchmark.json, fold_scores.csv, "
                  f"{', '.join(figures)} ({result.seconds:.1f} s)", soft_wrap=True)

"""`rechallenge benchmark`: every model family on the same folds."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ml.cli.runner import (
    DataOpt,
    DropOpt,
    EventOpt,
    TimeOpt,
    TreatedOpt,
    TreatmentOpt,
    app,
    console,
    err_console,
    fail,
)
from ml.reporting import benchmark_display

if TYPE_CHECKING:
    from ml.workflows.benchmark import BenchmarkConfig, BenchmarkResult

T = TypeVar("T")


@app.command("benchmark")
def benchmark(
    dataset: str = typer.Option(None, "--dataset", help="twin | veterans | gbsg2 | whas500 | aids | flchain "
                                "[default: the experiment's, twin]."),
    data: DataOpt = None,
    time: TimeOpt = None,
    event: EventOpt = None,
    treatment: TreatmentOpt = None,
    treated: TreatedOpt = None,
    drop: DropOpt = None,
    endpoint: str = typer.Option(None, "--endpoint", help="Twin endpoint: pfs | os."),
    models: str = typer.Option(None, "--models", help="Comma-separated models [default: all]: cox, "
                               "iptw_cox, coxnet, rsf, gbsa, xgb_cox, xgb_aft."),
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
) -> None:
    """Every model family on the same repeated CV folds: leaderboard with CIs and the difference to Cox."""
    # heavy (the model zoo, pyplot): imported here, off the path of `--help`
    from ml.reporting import benchmark_plots
    from ml.workflows import benchmark as bench

    overrides = dict(dataset=dataset, data=data, time=time, event=event, treatment=treatment,
                     treated=treated, drop=_names(drop), endpoint=endpoint, models=_names(models),
                     repeats=repeats, folds=folds, seed=seed, n=n, n_jobs=n_jobs)
    try:
        config = bench.load_config(experiment, **overrides)
        prepared = bench.prepare_data(config)
        if tuned:
            config = _with_tuned_rows(config)
        result = _run_with_progress(lambda progress: bench.run_benchmark(prepared, config, progress),
                                    total=(len(config.models) + len(config.tuned_params)) * config.folds
                                    * config.repeats)
    except bench.BenchmarkError as exc:
        fail(str(exc))
    summary = bench.to_json(result)
    benchmark_display.print_benchmark(console, result.leaderboard, summary)
    figures = benchmark_plots.benchmark_figures(
        result.leaderboard, result.calibration, bench.km_by_risk(result.risk), data_name=result.data_name,
        calibration_horizon=summary["calibration_horizon"], time_unit=result.time_unit)
    _write_outputs(out, result, summary, figures)
    if mlflow:
        run_id = bench.log_to_mlflow(result, prepared, figures)
        console.print(f"logged to MLflow run {run_id} (experiment 'benchmark', one nested run per model)")
    benchmark_plots.close_figures(figures)


def _names(text: str | None) -> list[str] | None:
    """A comma-separated option as a list (None when not given)."""
    return [v.strip() for v in text.split(",") if v.strip()] if text else None


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


def _run_with_progress(run: Callable[[Callable[[str, int], None]], T], total: int) -> T:
    """`run(progress)` under a transient progress bar of model x fold fits on stderr."""
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err_console, transient=True) as bar:
        task = bar.add_task("models x folds", total=total)
        return run(lambda name, done: bar.update(task, completed=done, description=f"{name:>9}"))


def _write_outputs(out: Path, result: BenchmarkResult, summary: dict, figures: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    result.leaderboard.to_csv(out / "leaderboard.csv", index=False)
    result.scores.to_csv(out / "fold_scores.csv", index=False)
    (out / "benchmark.json").write_text(json.dumps(summary, indent=2))
    for file_name, fig in figures.items():
        fig.savefig(out / file_name, dpi=150)
    console.print(f"[green]wrote[/] {out}/leaderboard.csv, benchmark.json, fold_scores.csv, "
                  f"{', '.join(figures)} ({result.seconds:.1f} s)")

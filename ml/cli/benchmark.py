"""`rechallenge benchmark`: every model family on the same folds."""

from __future__ import annotations

from pathlib import Path

import typer

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
    import json

    import matplotlib.pyplot as plt
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ml.reporting import benchmark_plots
    from ml.workflows import benchmark as bench

    split = (lambda text: [v.strip() for v in text.split(",") if v.strip()])  # noqa: E731
    try:
        config = bench.load_config(
            experiment, dataset=dataset, data=data, time=time, event=event, treatment=treatment,
            treated=treated, drop=split(drop) if drop else None, endpoint=endpoint,
            models=split(models) if models else None, repeats=repeats, folds=folds, seed=seed, n=n,
            n_jobs=n_jobs)
        prepared = bench.prepare_data(config)
    except bench.BenchmarkError as exc:
        fail(str(exc))
    if tuned:  # champions of `rechallenge tune` on the same data: rechallenge-<endpoint|dataset>-<model>
        from ml.workflows import tune

        if config.data is not None:
            fail("--tuned needs --dataset (tuned models are registered per endpoint or data set)")
        found, missing = tune.champion_params(config.endpoint if config.dataset == "twin" else config.dataset,
                                              config.models)
        config = config.model_copy(update={"tuned_params": found})
        if missing:
            err_console.print(f"no tuned champion for {', '.join(missing)} (rechallenge tune --model ...)")
        if found:
            err_console.print("note: '_tuned' rows reuse hyperparameters searched on all rows of this data, "
                              "so they are optimistic here; the honest figure is the tune run's outer CV")
    total = (len(config.models) + len(config.tuned_params)) * config.folds * config.repeats
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=err_console, transient=True) as bar:
            task = bar.add_task("models x folds", total=total)
            result = bench.run_benchmark(
                prepared, config, progress=lambda name, done: bar.update(task, completed=done,
                                                                          description=f"{name:>9}"))
    except bench.BenchmarkError as exc:
        fail(str(exc))
    benchmark_display.print_benchmark(console, result)
    out.mkdir(parents=True, exist_ok=True)
    result.leaderboard.to_csv(out / "leaderboard.csv", index=False)
    result.scores.to_csv(out / "fold_scores.csv", index=False)
    (out / "benchmark.json").write_text(json.dumps(bench.to_json(result), indent=2))
    figures = benchmark_plots.benchmark_figures(result)
    for file_name, fig in figures.items():
        fig.savefig(out / file_name, dpi=150)
    console.print(f"[green]wrote[/] {out}/leaderboard.csv, benchmark.json, fold_scores.csv, "
                  f"{', '.join(figures)} ({result.seconds:.1f} s)")
    if mlflow:
        run_id = bench.log_to_mlflow(result, prepared, figures)
        console.print(f"logged to MLflow run {run_id} (experiment 'benchmark', one nested run per model)")
    plt.close("all")

"""`rechallenge tune`: nested-CV tuning with optuna."""

from __future__ import annotations

from pathlib import Path

import typer

from ml.cli.runner import app, console, fail, load_cohort
from ml.reporting import display


@app.command("tune")
def tune_command(
    model: str = typer.Option(..., "--model", help="Model family with a search space in "
                              "experiments/search_spaces/ (rsf, gbsa, xgb_cox, xgb_aft, coxnet)."),
    dataset: str = typer.Option("twin", "--dataset", help="twin, veterans, gbsg2, whas500, aids, flchain "
                                "(ignored with --data)."),
    data: Path = typer.Option(None, "--data", help="A cohort table (.csv/.parquet) instead of a data set."),
    mapping: Path = typer.Option(None, "--mapping", help="Column-mapping YAML for --data."),
    endpoint: str = typer.Option("pfs", "--endpoint", help="pfs or os (twin and cohort tables)."),
    n: int = typer.Option(None, "--n", min=20, help="Twin size [default 101, like the study]."),
    trials: int = typer.Option(20, "--trials", min=0, help="Trials this command adds to each study "
                               "(outer folds and final), split over --workers."),
    timeout: float = typer.Option(None, "--timeout", min=1, help="Wall-clock budget in seconds for all "
                                  "studies of this command."),
    objective: str = typer.Option("uno_c", "--objective", help="uno_c, harrell_c or ibs."),
    outer: int = typer.Option(3, "--outer-folds", min=2, help="Outer CV folds (honest estimate)."),
    inner: int = typer.Option(3, "--inner-folds", min=2, help="Inner CV folds (the search)."),
    storage: str = typer.Option(None, "--storage", help="Optuna storage: an RDB URL (postgresql://..., "
                                "sqlite:///...) or a journal file [default: mlruns/optuna/journal.log]."),
    study: str = typer.Option(None, "--study", help="Study name [default: <data>-<model>-<objective>-"
                              "<fingerprint of data and settings>]."),
    space: Path = typer.Option(None, "--space", help="Search-space YAML [default: "
                               "experiments/search_spaces/<model>.yaml]."),
    workers: int = typer.Option(1, "--workers", min=1, help="Local worker processes on the study."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of folds, samplers and models."),
) -> None:
    """Tune a model family with nested CV (optuna), log trials to MLflow, register the best model."""
    import optuna

    from features import datasets, schema
    from ml.workflows import tune

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        config = tune.TuneConfig(model=model, objective=objective, n_trials=trials, timeout=timeout,
                                 outer_folds=outer, inner_folds=inner, workers=workers, seed=seed,
                                 storage=storage, study=study, space_path=space and str(space))
        if data is not None:
            if endpoint not in schema.ENDPOINTS:
                fail(f"unknown endpoint '{endpoint}'; choose from {', '.join(schema.ENDPOINTS)}")
            cohort = load_cohort(data, mapping)
            surv, label = tune.cohort_data(cohort, endpoint, data.stem, str(data)), endpoint
        elif dataset == "twin":
            surv, label = datasets.twin(n=n, endpoint=endpoint), endpoint
        else:
            surv, label = datasets.public(dataset), dataset
        result, reg = tune.run_and_log(surv, config, registered_name=tune.registered_model_name(label, model))
    except (tune.TuneError, datasets.DatasetError) as exc:
        fail(str(exc))
    display.print_frame(console, tune.summary_table(result), digits=3,
                        title=f"{model} on {surv.name}: outer {outer}-fold estimates, tuned vs default "
                        f"({trials} trials x {inner} inner folds per study)")
    console.print(f"best configuration (refitted on all rows): {result.best_params}")
    moved = "moved to this version" if reg.promoted else (
        f"stays on version {reg.previous_champion['version']}" if reg.previous_champion else "unset")
    console.print(f"registered [bold]{reg.name}[/] version {reg.version}; alias champion {moved}. "
                  f"Study '{result.study}', MLflow run {reg.run_id} (experiment 'tune'), "
                  f"{result.seconds:.0f} s")

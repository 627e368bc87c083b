"""`rechallenge tune`: nested-CV tuning with optuna."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from ml.cli.runner import (
    MappingOpt,
    app,
    check_output_file,
    check_tracking_store,
    console,
    fail,
    input_errors,
    load_cohort,
    one_source,
    progress_bar,
    tracking_store,
)
from ml.reporting import display


@app.command("tune")
def tune_command(
    model: str = typer.Option(..., "--model", help="Model family with a search space in "
                              "experiments/search_spaces/ (rsf, gbsa, xgb_cox, xgb_aft, coxnet)."),
    dataset: str = typer.Option(None, "--dataset", help="twin, veterans, gbsg2, whas500, aids, flchain "
                                "[default: twin]."),
    data: Path = typer.Option(None, "--data", help="A cohort table (.csv/.parquet) instead of a data set."),
    mapping: MappingOpt = None,
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
    # heavy (optuna, the model zoo, pandera): imported here, off the path of `--help`
    import optuna

    from features import datasets
    from ml.workflows import tuning

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    one_source(dataset, data)
    if storage is not None and "://" not in storage:  # a journal file: written by every trial
        check_output_file("--storage", Path(storage))
    elif storage is None:
        check_output_file("--storage (default)", tuning.DEFAULT_STORAGE)
    check_tracking_store()
    with input_errors(tuning.TuneError, datasets.DatasetError, generic=False):
        config = tuning.TuneConfig(model=model, objective=objective, n_trials=trials, timeout=timeout,
                                   outer_folds=outer, inner_folds=inner, workers=workers, seed=seed,
                                   storage=storage, study=study, space_path=space and str(space))
        surv, label = _survival_data(dataset or "twin", data, mapping, endpoint, n)
    with input_errors(tuning.TuneError, datasets.DatasetError, generic=False), \
            progress_bar("trials", trials * (outer + 1)) as update:
        result, reg = tuning.run_and_log(surv, config,
                                         registered_name=tuning.registered_model_name(label, model),
                                         log_model=survival_model_logger(model, seed),
                                         progress=lambda done, total: update(done, total=total))
    display.print_frame(console, tuning.summary_table(result.summary, objective), digits=3,
                        title=f"{model} on {surv.name}: outer {outer}-fold estimates, tuned vs default "
                        f"({trials} trials x {inner} inner folds per study)")
    console.print(f"best configuration (refitted on all rows): {result.best_params}")
    moved = "moved to this version" if reg.promoted else (
        f"stays on version {reg.previous_champion['version']}" if reg.previous_champion else "unset")
    moved = f"{moved} ({reg.reason})"  # the champion rule's figures
    console.print(f"registered [bold]{reg.name}[/] version {reg.version}; alias champion {moved}. "
                  f"Study '{result.study}', MLflow run {reg.run_id} (experiment 'tune') in "
                  f"{tracking_store()}, {result.seconds:.0f} s", highlight=False, soft_wrap=True)


def _survival_data(dataset: str, data: Path | None, mapping: Path | None, endpoint: str,
                   n: int | None) -> tuple[Any, str]:
    """The SurvivalData to tune on and its label (the endpoint, or the data set's name)."""
    from features import datasets, schema  # heavy (pandera): see tune_command

    if endpoint not in schema.ENDPOINTS:
        fail(f"--endpoint: unknown endpoint '{endpoint}'; choose from {', '.join(schema.ENDPOINTS)}")
    if mapping is not None and data is None:
        fail("--mapping applies only to a table given with --data, and there is none")
    if data is None and dataset == "twin":
        return datasets.twin(n=n, endpoint=endpoint), endpoint
    if data is None:
        try:
            return datasets.public(dataset), dataset
        except datasets.DatasetError as exc:
            fail(f"--dataset: {exc}")
    return datasets.from_cohort(load_cohort(data, mapping), endpoint, data.stem, str(data)), endpoint


def survival_model_logger(model_name: str, random_state: int) -> Callable[[Any, Any], str]:
    """How `rechallenge tune` logs the refitted model (the tuning workflow's `log_model`).

    On a rechallenge cohort (the contract's features) it is logged as the survival pyfunc
    (risk-group cut-offs fixed on these training rows, curves, explanations), so a tuned
    champion serves `rechallenge score` and `serve` like the default model. Other tables
    (e.g. GBSG2) lack the patient contract and keep the sklearn flavour.
    """
    # serving sits above the workflows: the CLI wires it in (heavy: off the path of `--help`)
    from ml.serving.scorer import SCORE_FEATURES, SurvivalScorer
    from ml.tracking import mlflow_io as tracking
    from ml.workflows.tuning import log_sklearn_model

    def log_model(model: Any, data: Any) -> str:
        if set(SCORE_FEATURES) <= set(data.X.columns):
            scorer = SurvivalScorer(model, model_name=model_name, random_state=random_state)
            scorer.fit(data.X, data.y)  # with y: a non-Cox model keeps its rows for a bootstrap band
            return tracking.log_survival_model(scorer)
        return log_sklearn_model(model, data)

    return log_model

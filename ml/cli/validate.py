"""`rechallenge validate`: internal validation of one model family (bootstrap optimism correction)."""

from __future__ import annotations

import json
from pathlib import Path

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
    figure_writer,
    input_errors,
    json_stdout,
    one_source,
    print_json,
    print_logged,
    progress_bar,
    split_names,
    text_writer,
    working,
    write_outputs,
)


@app.command("validate")
def validate(
    dataset: str = typer.Option(None, "--dataset", help="twin | veterans | gbsg2 | whas500 | aids | flchain "
                                "[default: twin]."),
    data: DataOpt = None,
    mapping: MappingOpt = None,
    time: TimeOpt = None,
    event: EventOpt = None,
    treatment: TreatmentOpt = None,
    treated: TreatedOpt = None,
    drop: DropOpt = None,
    model: str = typer.Option("cox", "--model", help="Model family: cox, cox_ridge_cv, iptw_cox, coxnet, "
                              "rsf, gbsa, xgb_cox, xgb_aft."),
    bootstrap: int = typer.Option(200, "--bootstrap", min=1, help="Bootstrap resamples B."),
    seed: int = typer.Option(2024, "--seed", min=0, help="Seed of the resamples and the model."),
    n: int = typer.Option(None, "--n", min=10, help="Twin size [default: 101, like the study]."),
    experiment: Path = typer.Option(None, "--experiment", help="Benchmark YAML for the data set's settings "
                                    "and model_params [default: experiments/benchmark.yaml]."),
    out: Path = typer.Option(Path("out/validate"), "--out", help="Directory for validation.json and "
                             "calibration.png."),
    mlflow: bool = typer.Option(True, "--mlflow/--no-mlflow", help="Log to MLflow (experiment 'validate')."),
    as_json: JsonOpt = False,
) -> None:
    """Internal validation (R rms validate/calibrate): bootstrap optimism-corrected Harrell and Uno C,
    calibration slope (shrinkage) and calibration-in-the-large, calibration curves (quintiles and a
    smooth: Cox on a restricted cubic spline of log(-log S(h))) with a bootstrap band, events per
    variable."""
    # heavy (the model zoo, pyplot): imported here, off the path of `--help`
    from ml.reporting import validation_plots
    from ml.workflows import validation as wf
    from ml.workflows.benchmark import BenchmarkError

    one_source(dataset, data)
    check_output_dir("--out", out)
    if mlflow:
        check_tracking_store()
    with json_stdout(as_json):
        with input_errors(BenchmarkError):
            config = wf.load_config(experiment, model=model, bootstrap=bootstrap, seed=seed,
                                    dataset=dataset, data=data, mapping=mapping, time=time, event=event,
                                    treatment=treatment, treated=treated, drop=split_names(drop), n=n)
            prepared = wf.prepare_data(config)
        with progress_bar("bootstrap resamples", bootstrap) as update:
            run = wf.run_validation(prepared, config, update)
        summary = wf.to_json(run)
        for note in run.notes:
            err_console.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)
        if not as_json:
            console.print(validation_plots.validation_table(
                summary["metrics"], f"{run.data_name}/{run.model}: n {run.n}, events {run.events}, "
                f"B {bootstrap}"))
        unit = f" {run.time_unit}" if run.time_unit else ""
        figure = validation_plots.calibration_figure(run.result.calibration, list(run.horizons),
                                                     title=f"{run.data_name}/{run.model}", unit=unit,
                                                     smooth=run.result.smooth)
        write_outputs("--out", {out / "validation.json": text_writer(json.dumps(summary, indent=2)),
                                out / "calibration.png": figure_writer(figure, dpi=150)})
        console.print(f"[green]wrote[/] {out}/validation.json, calibration.png ({run.seconds:.1f} s)",
                      soft_wrap=True)
        if mlflow:
            with working("logging to MLflow"):
                run_id = wf.log_to_mlflow(run, prepared, {"calibration.png": figure})
            print_logged(console, run_id, wf.EXPERIMENT)
    if as_json:
        print_json(summary)

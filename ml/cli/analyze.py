"""`rechallenge analyze`: the study's IPTW analysis."""

from __future__ import annotations

from pathlib import Path

import typer

from ml.cli.runner import (
    JsonOpt,
    app,
    check_output_dir,
    check_tracking_store,
    console,
    fail,
    figure_writer,
    input_errors,
    json_stdout,
    load_cohort,
    print_logged,
    progress_bar,
    text_writer,
    working,
    write_outputs,
)


@app.command("analyze")
def analyze(
    data: Path = typer.Option(None, "--data", help="Cohort table (.csv or .parquet); without it, "
                              "the default twin cohort."),
    mapping: Path = typer.Option(None, "--mapping", help="Column-mapping YAML for a user table."),
    experiment: Path = typer.Option(None, "--experiment", help="Analysis YAML; without it, "
                                    "experiments/paper.yaml."),
    out: Path = typer.Option(Path("out/analysis"), "--out", help="Directory for analysis.json, "
                             "weights.csv and the figures."),
    mlflow: bool = typer.Option(True, "--mlflow/--no-mlflow", help="Log to MLflow (experiment 'analysis')."),
    as_json: JsonOpt = False,
) -> None:
    """The study's analysis: IPTW balance, KM medians and log-rank, Cox tables, side by side."""
    # imported here, not at the top: `rechallenge --help` should not load the statistics stack
    import matplotlib.pyplot as plt
    import yaml

    from features import twin
    from ml.stats.errors import CausalInputError
    from ml.workflows import analysis, analysis_report

    check_output_dir("--out", out)
    if mlflow:
        check_tracking_store()
    with input_errors(foreign=(yaml.YAMLError,), prefix=str(experiment or "")):
        config = analysis.load_config(experiment)
    if mapping is not None and data is None:
        fail("--mapping applies only to a table given with --data, and there is none")
    df = twin.generate().data if data is None else load_cohort(data, mapping)
    with json_stdout(as_json):
        with input_errors(CausalInputError, generic=False), progress_bar("bootstrap resamples",
                                                                         config.bootstrap) as update:
            result = analysis.run_analysis(
                df, config, progress=lambda done, total: update(done),
                causal_progress=lambda label, done, total: update(done, description=label, total=total))
        if not as_json:
            analysis_report.print_analysis(console, result)
        weights = result.weights_frame(df["id"])
        figures = analysis_report.analysis_figures(result, df)
        analysis_json = analysis.to_json(result)
        _write_outputs(out, analysis_json, weights, figures)
        if mlflow:
            _log_run(result, df, data, out, weights, figures)
        plt.close("all")
    if as_json:
        typer.echo(analysis_json)


def _write_outputs(out: Path, analysis_json: str, weights, figures: dict) -> None:
    from features import io  # pandas / pyarrow: loaded with the command, as above

    writers = {out / "analysis.json": text_writer(analysis_json),
               out / "weights.csv": lambda target: io.write_table(weights, target)}
    writers |= {out / name: figure_writer(fig, dpi=150) for name, fig in figures.items()}
    write_outputs("--out", writers)
    console.print(f"[green]wrote[/] {out}/analysis.json, weights.csv, {', '.join(figures)}", soft_wrap=True)


def _log_run(result, df, data: Path | None, out: Path, weights, figures: dict) -> None:
    # MLflow is slow to import: only when the run is logged
    from ml.tracking import mlflow_io as tracking
    from ml.workflows import analysis

    name = "twin-default" if data is None else data.stem
    with working("logging to MLflow"), tracking.run("analysis", f"analyze {name}",
                                                    seed=result.config.seed) as active:
        tracking.log_dataset(df, name=name, source=str(data or "features.twin.generate()"))
        tracking.log_params(analysis.mlflow_params(result.config))
        tracking.log_metrics(analysis.key_metrics(result))
        tracking.log_json(analysis.to_dict(result), "analysis.json")
        tracking.log_table(weights, "weights.csv")
        tracking.log_table(result.side_by_side, "side_by_side.csv")
        for file_name in figures:
            tracking.log_artifact(out / file_name)  # the PNGs already written: no re-render
    print_logged(console, active.info.run_id, "analysis")

"""`rechallenge analyze`: the study's IPTW analysis."""

from __future__ import annotations

from pathlib import Path

import typer

from ml.cli.runner import app, console, fail, load_cohort


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
) -> None:
    """The study's analysis: IPTW balance, KM medians and log-rank, Cox tables, side by side."""
    # imported here, not at the top: `rechallenge --help` should not load the statistics stack
    import matplotlib.pyplot as plt

    from features import twin
    from ml.stats.errors import CausalInputError
    from ml.workflows import analysis, analysis_report

    try:
        config = analysis.load_config(experiment)
    except (ValueError, FileNotFoundError) as exc:
        fail(str(exc))
    df = twin.generate().data if data is None else load_cohort(data, mapping)
    try:
        result = analysis.run_analysis(df, config)
    except CausalInputError as exc:
        fail(str(exc))
    analysis_report.print_analysis(console, result)
    weights = result.weights_frame(df["id"])
    figures = analysis_report.analysis_figures(result, df)
    _write_outputs(out, analysis.to_json(result), weights, figures)
    if mlflow:
        _log_run(result, df, data, out, weights, figures)
    plt.close("all")


def _write_outputs(out: Path, analysis_json: str, weights, figures: dict) -> None:
    from features import io  # pandas / pyarrow: loaded with the command, as above

    out.mkdir(parents=True, exist_ok=True)
    (out / "analysis.json").write_text(analysis_json)
    io.write_table(weights, out / "weights.csv")
    for file_name, fig in figures.items():
        fig.savefig(out / file_name, dpi=150)
    console.print(f"[green]wrote[/] {out}/analysis.json, weights.csv, {', '.join(figures)}")


def _log_run(result, df, data: Path | None, out: Path, weights, figures: dict) -> None:
    # MLflow is slow to import: only when the run is logged
    from ml.tracking import mlflow_io as tracking
    from ml.workflows import analysis

    name = "twin-default" if data is None else data.stem
    with tracking.run("analysis", f"analyze {name}", seed=result.config.seed) as active:
        tracking.log_dataset(df, name=name, source=str(data or "features.twin.generate()"))
        tracking.log_params(analysis.mlflow_params(result.config))
        tracking.log_metrics(analysis.key_metrics(result))
        tracking.log_json(analysis.to_dict(result), "analysis.json")
        tracking.log_table(weights, "weights.csv")
        tracking.log_table(result.side_by_side, "side_by_side.csv")
        for file_name in figures:
            tracking.log_artifact(out / file_name)  # the PNGs already written: no re-render
    console.print(f"logged to MLflow run {active.info.run_id} (experiment 'analysis')")

"""`rechallenge analyze`: the study's IPTW analysis."""

from __future__ import annotations

from pathlib import Path

import typer

from ml.cli.runner import app, console, fail, load_cohort
from ml.reporting import display


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
    import matplotlib.pyplot as plt

    from features import io, twin
    from ml.reporting import analysis_plots as plots
    from ml.stats import causal
    from ml.workflows import analysis

    try:
        config = analysis.load_config(experiment)
    except (ValueError, FileNotFoundError) as exc:
        fail(str(exc))
    df = twin.generate().data if data is None else load_cohort(data, mapping)
    name = "twin-default" if data is None else data.stem
    try:
        result = analysis.run_analysis(df, config)
    except causal.CausalInputError as exc:
        fail(str(exc))
    display.print_analysis(console, result)
    out.mkdir(parents=True, exist_ok=True)
    (out / "analysis.json").write_text(analysis.to_json(result))
    weights = result.weights_frame(df["id"])
    io.write_table(weights, out / "weights.csv")
    figures = plots.analysis_figures(result, df)
    for file_name, fig in figures.items():
        fig.savefig(out / file_name, dpi=150)
    console.print(f"[green]wrote[/] {out}/analysis.json, weights.csv, {', '.join(figures)}")
    if mlflow:
        from ml.tracking import mlflow_io as tracking

        with tracking.run("analysis", f"analyze {name}", seed=config.seed) as active:
            tracking.log_dataset(df, name=name, source=str(data or "features.twin.generate()"))
            tracking.log_params(analysis.mlflow_params(config))
            tracking.log_metrics(analysis.key_metrics(result))
            tracking.log_json(analysis.to_dict(result), "analysis.json")
            tracking.log_table(weights, "weights.csv")
            tracking.log_table(result.side_by_side, "side_by_side.csv")
            for file_name in figures:
                tracking.log_artifact(out / file_name)  # the PNGs already written: no re-render
        console.print(f"logged to MLflow run {active.info.run_id} (experiment 'analysis')")
    plt.close("all")

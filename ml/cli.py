"""The `rechallenge` command. Thin: parse arguments, call the library, print the result.

Every command exits 0 on success and 2 on bad input (with one clear message).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console

from ml import display

app = typer.Typer(
    name="rechallenge",
    help="Progression-free survival after immunotherapy rechallenge in advanced NSCLC: "
    "twin cohorts, IPTW analysis, survival model benchmarks, SHAP and MLflow tracking.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
cohort_app = typer.Typer(help="Draw, describe and validate cohort tables.", no_args_is_help=True)
app.add_typer(cohort_app, name="cohort")

console = Console()
err_console = Console(stderr=True)
BAD_INPUT = 2


def fail(message: str, code: int = BAD_INPUT) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(code)


def _load(path: Path, mapping: Path | None):
    """Read + map + validate a cohort file, turning bad input into a clean exit 2."""
    from features import io
    from features.schema import CohortValidationError

    try:
        return io.load_cohort(path, mapping)
    except CohortValidationError as exc:
        fail(str(exc))
    except (FileNotFoundError, io.MappingError, ValueError) as exc:
        fail(str(exc))


@cohort_app.command("generate")
def cohort_generate(
    out: Path = typer.Option(..., "--out", help="Cohort file to write (.csv or .parquet)."),
    n: int = typer.Option(None, "--n", min=1, help="Number of patients [default: the config's "
                          "default_n, 101 like the study]."),
    seed: int = typer.Option(None, "--seed", min=0, help="Random seed [default: the config's "
                             "named default seed, the n=101 draw closest to the published table]."),
    config: Path = typer.Option(None, "--config", exists=True, dir_okay=False,
                                help="Twin cohort YAML [default: experiments/cohorts/default.yaml]."),
    truth: Path = typer.Option(None, "--truth", help="Also write the ground truth per patient: "
                               "true linear predictor, propensity, potential PFS/OS under CIA and CI."),
) -> None:
    """Draw a digital-twin cohort (with known ground truth) like the study's."""
    from features import io, twin

    for target in (out, truth):
        if target is not None and target.suffix.lower() not in (".csv", ".parquet", ".pq"):
            fail(f"{target}: output must end in .csv or .parquet")
    try:
        cfg = twin.load_config(config)
    except (ValueError, FileNotFoundError) as exc:
        fail(str(exc))
    cohort = twin.generate(n=n, seed=seed, config=cfg)
    io.write_table(cohort.data, out)
    written = [str(out)]
    if truth is not None:
        try:
            io.write_table(cohort.truth, truth)
        except Exception:
            out.unlink(missing_ok=True)  # leave nothing half-written behind
            raise
        written.append(str(truth))
    n_cia = int((cohort.data["treatment"] == "CIA").sum())
    console.print(
        f"[green]wrote[/] {', '.join(written)}: {len(cohort.data)} patients "
        f"(CIA {n_cia}, CI {len(cohort.data) - n_cia}), seed {cohort.seed}, "
        f"config version {cfg.version}"
    )


@cohort_app.command("describe")
def cohort_describe(
    file: Path = typer.Argument(..., help="Cohort table (.csv or .parquet)."),
    mapping: Path = typer.Option(None, "--mapping", help="Column-mapping YAML for a user table."),
    mlflow: bool = typer.Option(False, "--mlflow/--no-mlflow",
                                help="Also log the summary to MLflow (experiment 'cohort')."),
) -> None:
    """Print Table 1 by treatment group (n/%, median [IQR], SMD) and KM medians of PFS and OS."""
    from ml import causal

    df = _load(file, mapping)
    table = causal.table_one(df)
    medians = causal.km_medians_by_group(df)
    display.print_table_one(console, table, title=f"Table 1: {file.name} ({len(df)} patients)")
    display.print_medians(console, medians)
    if mlflow:
        from ml import tracking

        with tracking.run("cohort", f"describe {file.name}") as active:
            tracking.log_dataset(df, name=file.stem, source=str(file))
            tracking.log_params({"file": str(file), "n": len(df)})
            tracking.log_metrics(display.median_metrics(medians))
            tracking.log_table(table, "table_one.csv")
            tracking.log_table(medians, "km_medians.csv")
        console.print(f"logged to MLflow run {active.info.run_id} (experiment 'cohort')")


@cohort_app.command("validate")
def cohort_validate(
    file: Path = typer.Argument(..., help="A user's cohort table (.csv or .parquet)."),
    mapping: Path = typer.Option(None, "--mapping", help="Column-mapping YAML: your column names, "
                                 "labels and time unit to ours (see README)."),
) -> None:
    """Check a table against the cohort contract and report every problem (exit 2 if any)."""
    df = _load(file, mapping)
    n_cia = int((df["treatment"] == "CIA").sum())
    missing = df.isna().sum()
    missing = missing[missing > 0]
    note = (", missing covariates (imputed later): " +
            ", ".join(f"{c} {k}" for c, k in missing.items())) if len(missing) else ""
    console.print(f"[green]valid[/]: {len(df)} patients (CIA {n_cia}, CI {len(df) - n_cia}){note}")


@app.command("analyze")
def analyze(
    data: Path = typer.Option(None, "--data", help="Cohort table (.csv or .parquet) [default: the "
                              "default twin cohort]."),
    mapping: Path = typer.Option(None, "--mapping", help="Column-mapping YAML for a user table."),
    experiment: Path = typer.Option(None, "--experiment", help="Analysis YAML [default: "
                                    "experiments/paper.yaml]."),
    out: Path = typer.Option(Path("out/analysis"), "--out", help="Directory for analysis.json, "
                             "weights.csv and the figures."),
    mlflow: bool = typer.Option(True, "--mlflow/--no-mlflow", help="Log to MLflow (experiment 'analysis')."),
) -> None:
    """The study's analysis: IPTW balance, KM medians and log-rank, Cox tables, side by side."""
    import matplotlib.pyplot as plt

    from features import io, twin
    from ml import analysis, causal, plots

    try:
        config = analysis.load_config(experiment)
    except (ValueError, FileNotFoundError) as exc:
        fail(str(exc))
    df = twin.generate().data if data is None else _load(data, mapping)
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
        from ml import tracking

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


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()

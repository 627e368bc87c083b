"""`rechallenge cohort generate | describe | validate`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from features.contract import CONTROL, TREATED, TREATMENT
from ml.cli.runner import cohort_app, console, fail, load_cohort
from ml.reporting import display

if TYPE_CHECKING:
    import pandas as pd


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
    from features import io, twin  # imported when run, so `--help` stays fast

    outputs = {path: part for path, part in ((out, "data"), (truth, "truth")) if path is not None}
    for target in outputs:
        if target.suffix.lower() not in io.TABLE_SUFFIXES:
            fail(f"{target}: output must end in .csv or .parquet")
    try:
        cfg = twin.load_config(config)
    except (ValueError, FileNotFoundError) as exc:
        fail(str(exc))
    cohort = twin.generate(n=n, seed=seed, config=cfg)
    written = io.write_tables({path: getattr(cohort, part) for path, part in outputs.items()})
    console.print(f"[green]wrote[/] {', '.join(map(str, written))}: {_arms(cohort.data)}, "
                  f"seed {cohort.seed}, config version {cfg.version}")


def _arms(df: pd.DataFrame) -> str:
    """Patients per arm, e.g. "101 patients (CIA 45, CI 56)"."""
    n_treated = int((df[TREATMENT] == TREATED).sum())
    return f"{len(df)} patients ({TREATED} {n_treated}, {CONTROL} {len(df) - n_treated})"


@cohort_app.command("describe")
def cohort_describe(
    file: Path = typer.Argument(..., help="Cohort table (.csv or .parquet)."),
    mapping: Path = typer.Option(None, "--mapping", help="Column-mapping YAML for a user table."),
    mlflow: bool = typer.Option(False, "--mlflow/--no-mlflow",
                                help="Also log the summary to MLflow (experiment 'cohort')."),
) -> None:
    """Print Table 1 by treatment group (n/%, median [IQR], SMD) and KM medians of PFS and OS."""
    from ml.stats import balance, km

    df = load_cohort(file, mapping)
    table = balance.table_one(df)
    medians = km.km_medians_by_group(df)
    display.print_table_one(console, table, title=f"Table 1: {file.name} ({len(df)} patients)")
    display.print_medians(console, medians)
    if mlflow:
        from ml.tracking import mlflow_io as tracking

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
    df = load_cohort(file, mapping)
    missing = df.isna().sum()
    missing = missing[missing > 0]
    note = (", missing covariates (imputed later): " +
            ", ".join(f"{c} {k}" for c, k in missing.items())) if len(missing) else ""
    console.print(f"[green]valid[/]: {_arms(df)}{note}")

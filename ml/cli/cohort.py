"""`rechallenge cohort generate | describe | validate`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from features.contract import CONTROL, TREATED, TREATMENT
from ml.cli.runner import (
    JsonOpt,
    check_output_file,
    check_tracking_store,
    cohort_app,
    console,
    fail,
    input_errors,
    json_stdout,
    load_cohort,
    print_logged,
)
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
    if truth is not None and truth.absolute() == out.absolute():
        fail(f"--truth {truth}: the same file as --out")
    for target, part in outputs.items():
        check_output_file("--out" if part == "data" else "--truth", target, io.TABLE_SUFFIXES[:2])
    with input_errors(prefix=str(config or "")):
        cfg = twin.load_config(config)
    cohort = twin.generate(n=n, seed=seed, config=cfg)
    with input_errors(prefix="--out"):
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

        check_tracking_store()
        with tracking.run("cohort", f"describe {file.name}") as active:
            tracking.log_dataset(df, name=file.stem, source=str(file))
            tracking.log_params({"file": str(file), "n": len(df)})
            tracking.log_metrics(display.median_metrics(medians))
            tracking.log_table(table, "table_one.csv")
            tracking.log_table(medians, "km_medians.csv")
        print_logged(console, active.info.run_id, "cohort")


@cohort_app.command("validate")
def cohort_validate(
    file: Path = typer.Argument(..., help="A user's cohort table (.csv or .parquet)."),
    mapping: Path = typer.Option(None, "--mapping", help="Column-mapping YAML: your column names, "
                                 "labels and time unit to ours (see README)."),
    as_json: JsonOpt = False,
) -> None:
    """Check a table against the cohort contract and report every problem (exit 2 if any)."""
    with json_stdout(as_json) as emit:
        df = _validated(file, mapping, emit) if as_json else load_cohort(file, mapping)
    missing = df.isna().sum()
    missing = {str(c): int(k) for c, k in missing[missing > 0].items()}
    if as_json:
        emit(_report(file, df, missing))
        return
    note = (", missing covariates (imputed later): " +
            ", ".join(f"{c} {k}" for c, k in missing.items())) if missing else ""
    console.print(f"[green]valid[/]: {_arms(df)}{note}")

def _report(file: Path, df: pd.DataFrame | None, missing: dict[str, int],
            problems: list[dict[str, object]] | None = None) -> dict[str, object]:
    """`cohort validate --json`: valid or not, the arms, missing covariates and every problem."""
    arms = {} if df is None else {TREATED: int((df[TREATMENT] == TREATED).sum()),
                                  CONTROL: int((df[TREATMENT] != TREATED).sum())}
    return {"file": str(file), "valid": not problems, "n": None if df is None else len(df), "arms": arms,
            "missing": missing, "problems": problems or []}


def _validated(file: Path, mapping: Path | None, emit: Callable[[Any], None]) -> pd.DataFrame:
    """The validated table; if the contract refuses it, the JSON report of its problems and exit 2."""
    from features.schema import CohortValidationError

    try:
        return load_cohort(file, mapping, refuse=False)
    except CohortValidationError as exc:
        problems = [{"column": p.column, "problem": p.describe(), "rows": list(p.rows)} for p in exc.problems]
        message = str(exc)
    emit(_report(file, None, {}, problems))
    fail(message)

"""`rechallenge explain`: SHAP per model and the signal check."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import typer

from ml.cli.runner import (
    DataOpt,
    DropOpt,
    EventOpt,
    MappingOpt,
    TimeOpt,
    TreatedOpt,
    TreatmentOpt,
    app,
    check_output_dir,
    check_tracking_store,
    console,
    fail,
    figure_writer,
    input_errors,
    one_source,
    print_logged,
    progress_bar,
    text_writer,
    working,
    write_outputs,
)
from ml.reporting import display


def _split(text: str | None) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",")) if text else ()


def _write(document: dict[str, Any], figures: Mapping[str, Any], out: Path, summary_file: str) -> list[Path]:
    """The summary document and the figures into `out` (each atomically); returns the figure files."""
    writers = {out / summary_file: text_writer(json.dumps(document, indent=2, default=str))}
    writers |= {out / name: figure_writer(fig, dpi=120, bbox_inches="tight") for name, fig in figures.items()}
    return write_outputs("--out", writers)[1:]


def _print(tables: Sequence[tuple[str, pd.DataFrame]]) -> None:
    for title, table in tables:
        display.print_frame(console, table, title=title)


def _check_table_flags(data: Path | None, treatment: str | None, treated: str | None,
                       **table_only: object) -> None:
    """Options describing a --data table: refused without one, or without the column they refer to."""
    if treated is not None and treatment is None:
        fail("--treated needs --treatment (the column whose value marks the treated group)")
    stray = [flag for flag, value in {"--treatment": treatment, **table_only}.items() if value]
    if data is None and stray:
        fail(f"{stray[0]} applies only to a table given with --data, and there is none")


@app.command("explain")
def explain_command(
    dataset: str = typer.Option(None, "--dataset",
                                help="twin | veterans | gbsg2 | whas500 | aids | flchain [default: twin]."),
    data: DataOpt = None,
    mapping: MappingOpt = None,
    time: TimeOpt = None,
    event: EventOpt = None,
    treatment: TreatmentOpt = None,
    treated: TreatedOpt = None,
    drop: DropOpt = None,
    models: str = typer.Option(None, "--models", help="Comma-separated models [default: all that apply]: "
                               "cox, cox_ridge_cv, iptw_cox, coxnet, rsf, gbsa, xgb_cox, xgb_aft."),
    horizon: float = typer.Option(12.0, "--horizon", min=0.0, help="Also explain S(horizon) (months on "
                                  "the twin); 0 = risk only."),
    seeds: int = typer.Option(0, "--seeds", min=0, help="Twin only: also repeat the signal check on K "
                              "fresh draws and report the recovery rate per model."),
    n: int = typer.Option(None, "--n", min=10, help="Twin size [default: the config's, 101]."),
    seed: int = typer.Option(None, "--seed", min=0, help="Twin draw [default: the config's named seed]; "
                             "the --seeds draws use seed+1 .. seed+K. Also seeds the models "
                             "[default for them: 2024]."),
    patient: str = typer.Option(None, "--patient", help="Patient id (twin, e.g. P001) or row number: "
                                "also draw a waterfall of this patient for each model."),
    config: Path = typer.Option(None, "--config", exists=True, dir_okay=False, help="Twin cohort YAML "
                                "[default: experiments/cohorts/default.yaml]; its true log HRs are the "
                                "signal check's answer key."),
    out: Path = typer.Option(Path("out/explain"), "--out", help="Directory for shap_summary.json and PNGs."),
    mlflow: bool = typer.Option(True, "--mlflow/--no-mlflow", help="Log to MLflow (experiment 'explain')."),
) -> None:
    """SHAP per model (one-hot summed back per feature): beeswarm, bar, waterfall, and on the twin
    whether smoking and prior response are recovered with the true direction."""
    import matplotlib.pyplot as plt  # slow to import: kept off the start-up path of `--help`

    from ml.workflows import explain as workflow

    one_source(dataset, data)
    _check_table_flags(data, treatment, treated, **{"--mapping": mapping, "--time": time, "--event": event,
                                                    "--drop": drop})
    check_output_dir("--out", out)
    if mlflow:
        check_tracking_store()
    cfg = workflow.ExplainConfig(
        dataset=dataset or "twin", data=data, mapping=mapping, time=time, event=event, treatment=treatment,
        treated=treated, drop=_split(drop), models=_split(models), horizon=horizon, seeds=seeds, n=n,
        seed=seed, cohort_config=config, patient=patient)
    with input_errors(workflow.ExplainError, generic=False):
        prepared = workflow.prepare(cfg)
    with progress_bar("explaining", len(prepared.names)) as update:
        result = workflow.run_explain(prepared, cfg,
                                      progress=lambda what, done, total: update(done, what, total))
    files = _write(result.document, workflow.figures(result, patient), out, workflow.SUMMARY_FILE)
    plt.close("all")
    _print(workflow.report_tables(result))
    console.print(f"[green]wrote[/] {out}/{workflow.SUMMARY_FILE} and {len(files)} figures")
    if mlflow:
        with working("logging to MLflow"):
            run_id = workflow.log_to_mlflow(result, files)
        print_logged(console, run_id, "explain")

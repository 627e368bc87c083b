"""`rechallenge explain`: SHAP per model and the signal check."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import typer

from ml.cli.runner import DataOpt, DropOpt, EventOpt, TimeOpt, TreatedOpt, TreatmentOpt, app, console, fail
from ml.reporting import display


def _split(text: str | None) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",")) if text else ()


def _write(document: dict[str, Any], figures: Mapping[str, Any], out: Path, summary_file: str) -> list[Path]:
    """The summary document and the figures into `out`; returns the figure files."""
    out.mkdir(parents=True, exist_ok=True)
    (out / summary_file).write_text(json.dumps(document, indent=2, default=str))
    for file_name, fig in figures.items():
        fig.savefig(out / file_name, dpi=120, bbox_inches="tight")
    return [out / file_name for file_name in figures]


def _print(tables: Sequence[tuple[str, pd.DataFrame]]) -> None:
    for title, table in tables:
        display.print_frame(console, table, title=title)


@app.command("explain")
def explain_command(
    dataset: str = typer.Option("twin", "--dataset",
                                help="twin | veterans | gbsg2 | whas500 | aids | flchain."),
    data: DataOpt = None,
    time: TimeOpt = None,
    event: EventOpt = None,
    treatment: TreatmentOpt = None,
    treated: TreatedOpt = None,
    drop: DropOpt = None,
    models: str = typer.Option(None, "--models", help="Comma-separated models [default: all that apply]: "
                               "cox, iptw_cox, coxnet, rsf, gbsa, xgb_cox, xgb_aft."),
    horizon: float = typer.Option(12.0, "--horizon", min=0.0, help="Also explain S(horizon) (months on "
                                  "the twin); 0 = risk only."),
    seeds: int = typer.Option(0, "--seeds", min=0, help="Twin only: also repeat the signal check on K "
                              "fresh draws and report the recovery rate per model."),
    n: int = typer.Option(None, "--n", min=10, help="Twin size [default: the config's, 101]."),
    seed: int = typer.Option(None, "--seed", min=0, help="Twin draw [default: the config's named seed]; "
                             "the --seeds draws use seed+1 .. seed+K. Also seeds the models."),
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

    cfg = workflow.ExplainConfig(
        dataset=dataset, data=data, time=time, event=event, treatment=treatment, treated=treated,
        drop=_split(drop), models=_split(models), horizon=horizon, seeds=seeds, n=n, seed=seed,
        cohort_config=config, patient=patient)
    try:
        prepared = workflow.prepare(cfg)
    except workflow.ExplainError as exc:
        fail(str(exc))
    with console.status("explaining") as status:
        result = workflow.run_explain(prepared, cfg, progress=status.update)
    files = _write(result.document, workflow.figures(result, patient), out, workflow.SUMMARY_FILE)
    plt.close("all")
    _print(workflow.report_tables(result))
    console.print(f"[green]wrote[/] {out}/{workflow.SUMMARY_FILE} and {len(files)} figures")
    if mlflow:
        run_id = workflow.log_to_mlflow(result, files)
        console.print(f"logged to MLflow run {run_id} (experiment 'explain')")

"""`rechallenge score` and `rechallenge serve`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import typer

from ml.cli.runner import app, console, fail
from ml.reporting import display
from ml.reporting.score_plots import plot_survival_curve
from ml.serving import results

MAX_ROWS_PRINTED = 20
MODEL_HELP = ("Model URI or path [default: models:/rechallenge-pfs-cox@champion; fitted on the twin and "
              "registered if the registry has none].")


@app.command("score")
def score_command(
    patient: Path = typer.Option(None, "--patient", help="One patient (a JSON object; a list for several)."),
    data: Path = typer.Option(None, "--data", help="Several patients (.csv or .parquet, contract columns)."),
    model: str = typer.Option(None, "--model", help=MODEL_HELP),
    out: Path = typer.Option(None, "--out", help="Write the results: .json (records) or .csv (table)."),
    plot: Path = typer.Option(None, "--plot", help="Survival-curve PNG for one patient [default: beside "
                              "--out, else out/score/<id>_pfs.png]."),
) -> None:
    """Score patients: risk score and group, P(PFS > 3/6/12/24 months), median PFS, top features."""
    # the scoring stack (scikit-survival, pydantic models) loads here, keeping `--help` fast
    from ml.serving import resolve

    if (patient is None) == (data is None):
        fail("give exactly one of --patient FILE.json or --data FILE.csv")
    if out is not None and out.suffix.lower() not in (".json", ".csv"):
        fail(f"{out}: --out must end in .json or .csv")
    frame = _read_patients(patient, data)
    try:
        scorer, uri, notes = resolve.resolve_scorer(model)
    except ValueError as exc:
        fail(str(exc))
    single = len(frame) == 1
    result = scorer.result_for(frame, curve=single)
    table = results.to_frame(result)
    for note in notes:
        console.print(f"[yellow]note:[/] {note}")
    _print_scores(table, f"PFS scoring with {uri} ({scorer.info()['model']}, risk groups: training tertiles)",
                  written_to=out)
    written = [_write_scores(result, table, out)] if out is not None else []
    if single:
        written.append(_write_plot(result, plot or _default_plot_path(out, result.ids[0])))
    if written:
        console.print(f"[green]wrote[/] {', '.join(written)}")


def _read_patients(patient: Path | None, data: Path | None) -> pd.DataFrame:
    """The parsed patients of --patient (JSON) or --data (a table); bad input exits 2."""
    # pydantic's patient model and the table readers load here, keeping `--help` fast
    from features import io
    from ml.serving import inputs

    source = patient or data
    try:
        if patient is not None:
            return inputs.parse_patients(json.loads(patient.read_text(encoding="utf-8")))
        return inputs.parse_patients(io.read_table(data))
    except inputs.ScoringInputError as exc:
        fail(f"{source}: {exc}")
    except json.JSONDecodeError as exc:
        fail(f"{source}: not valid JSON ({exc})")
    except (OSError, ValueError) as exc:
        fail(f"{source}: {exc}")


def _print_scores(table: pd.DataFrame, title: str, written_to: Path | None) -> None:
    if len(table) == 1:
        values = [f"{v:.3g}" if isinstance(v, float) else str(v) for v in table.iloc[0]]
        shown = pd.DataFrame({"": table.columns, str(table["id"].iloc[0]): values})
        display.print_frame(console, shown, title=title)
        return
    shown = table.drop(columns=["top_up", "top_down"]).head(MAX_ROWS_PRINTED)
    display.print_frame(console, shown, title=title, digits=3)
    if len(table) > MAX_ROWS_PRINTED:
        console.print(f"(first {MAX_ROWS_PRINTED} of {len(table)} patients shown"
                      + ("; all of them in --out)" if written_to is not None else "; write all with --out)"))


def _write_scores(result: Any, table: pd.DataFrame, out: Path) -> str:
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".json":
        out.write_text(json.dumps(results.to_records(result), indent=2), encoding="utf-8")
    else:
        table.to_csv(out, index=False)
    return str(out)


def _default_plot_path(out: Path | None, patient_id: str) -> Path:
    return out.with_suffix(".png") if out is not None else Path("out/score") / f"{patient_id}_pfs.png"


def _write_plot(result: Any, target: Path) -> str:
    """Patient 0's predicted PFS curve as a PNG."""
    import matplotlib.pyplot as plt  # heavy: only when a curve is drawn

    median = float(result.median[0])
    title = f"{result.ids[0]}: {result.group[0]} risk, median PFS {results.median_text(median)}"
    target.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    plot_survival_curve(ax, result.curve_times, result.curves[0], median=median, horizons=result.horizons,
                        horizon_survival=result.survival[0], title=title)
    fig.tight_layout()
    fig.savefig(target, dpi=110)
    plt.close(fig)
    return str(target)


@app.command("serve")
def serve_command(
    model: str = typer.Option(None, "--model", help=MODEL_HELP),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="TCP port."),
) -> None:
    """Serve the scoring API (/score, /health, /docs) and the page for one patient (/)."""
    # the web stack loads here, keeping `--help` fast
    import uvicorn

    from ml.serving import app as serve
    from ml.serving import resolve

    try:
        scorer, uri, notes = resolve.resolve_scorer(model)
    except ValueError as exc:
        fail(str(exc))
    for note in notes:
        console.print(f"[yellow]note:[/] {note}")
    console.print(f"serving {uri} on http://{host}:{port}/ (API docs: /docs)")
    uvicorn.run(serve.create_app(uri, scorer=scorer, notes=notes), host=host, port=port, log_level="warning")

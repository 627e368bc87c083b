"""`rechallenge score` and `rechallenge serve`."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import typer

from ml.cli.runner import (
    JsonOpt,
    MappingOpt,
    app,
    check_output_file,
    console,
    fail,
    figure_writer,
    input_errors,
    json_stdout,
    text_writer,
    tracking_store,
    write_outputs,
)
from ml.reporting import display
from ml.reporting.score_plots import plot_survival_curve
from ml.serving import results

MAX_ROWS_PRINTED = 20
MODEL_HELP = ("Model URI or path [default: models:/rechallenge-pfs-cox_ridge_cv@champion, a ridge Cox "
              "with its penalty chosen by cross-validation; fitted on the twin and registered if the "
              "registry has none].")
PLOT_SUFFIXES = (".png", ".pdf", ".svg")
CI_BOOTSTRAP_HELP = ("Bootstrap refits for the 95% intervals of a model other than Cox (the whole pipeline "
                     "refitted on resampled training rows; 0 = no intervals). Cox models always get the "
                     "delta-method interval of R's survfit.coxph.")


@app.command("score")
def score_command(
    patient: Path = typer.Option(None, "--patient", help="One patient (a JSON object; a list for several)."),
    data: Path = typer.Option(None, "--data", help="Several patients (.csv or .parquet, contract columns)."),
    mapping: MappingOpt = None,
    model: str = typer.Option(None, "--model", help=MODEL_HELP),
    out: Path = typer.Option(None, "--out", help="Write the results: .json (records) or .csv (table)."),
    plot: Path = typer.Option(None, "--plot", help="Survival-curve PNG for one patient [default: beside "
                              "--out, else out/score/<id>_pfs.png]."),
    as_json: JsonOpt = False,
    ci_bootstrap: int = typer.Option(50, "--ci-bootstrap", min=0, help=CI_BOOTSTRAP_HELP),
) -> None:
    """Score patients: risk score and group, P(PFS > 3/6/12/24 months) and median PFS with 95% CIs,
    top features."""
    # the scoring stack (scikit-survival, pydantic models) loads here, keeping `--help` fast
    from ml.serving import resolve

    if (patient is None) == (data is None):
        fail("give exactly one of --patient FILE.json or --data FILE.csv")
    for flag, target, suffixes in (("--out", out, (".json", ".csv")), ("--plot", plot, PLOT_SUFFIXES)):
        if target is not None:
            check_output_file(flag, target, suffixes)
    with json_stdout(as_json) as emit:
        frame = _read_patients(patient, data, mapping)
        single = len(frame) == 1
        plot = (plot or _default_plot_path(out, str(frame["id"].iloc[0]))) if single else None
        if plot is not None:
            check_output_file("--plot", plot, PLOT_SUFFIXES)
        with input_errors(generic=True, prefix="--model"):
            scorer, uri, notes = resolve.resolve_scorer(model)
        result = scorer.result_for(frame, curve=single, ci_bootstrap=ci_bootstrap)
        table = results.to_frame(result)
        for note in notes:
            console.print(f"[yellow]note:[/] {note}", soft_wrap=True)
        source = f" (MLflow store {tracking_store()})" if uri.startswith(("models:/", "runs:/")) else ""
        title = f"PFS scoring with {uri}{source} ({scorer.info()['model']}, risk groups: training tertiles)"
        if not as_json:
            _print_scores(table.drop(columns=["ci_method"]), title, written_to=out)
            console.print(f"intervals: {result.ci_method}", highlight=False, soft_wrap=True)
        else:
            console.print(title, highlight=False, soft_wrap=True)
        _write(result, table, out, plot if single else None)
    if as_json:
        emit(results.to_records(result))


def _write(result: Any, table: pd.DataFrame, out: Path | None, plot: Path | None) -> None:
    """--out (records or table) and the curve PNG, each atomically."""
    writers = {}
    if out is not None:
        records = json.dumps(results.to_records(result), indent=2)
        writers[out] = (text_writer(records) if out.suffix.lower() == ".json"
                        else lambda target: table.to_csv(target, index=False))
    if plot is not None:
        writers[plot] = figure_writer(_curve_figure(result), dpi=110)
    written = write_outputs("--out" if out is not None else "--plot", writers)
    if written:
        console.print(f"[green]wrote[/] {', '.join(map(str, written))}", soft_wrap=True)


def _read_patients(patient: Path | None, data: Path | None, mapping: Path | None) -> pd.DataFrame:
    """The parsed patients of --patient (JSON) or --data (a table), after --mapping; bad input exits 2."""
    # pydantic's patient model and the table readers load here, keeping `--help` fast
    from features import io
    from ml.serving import inputs

    source = patient or data
    try:
        if patient is None:  # a table: read with the mapping's delimiter, encoding, names and labels
            raw = io.read_mapped(data, mapping) if mapping is not None else io.read_table(data)
        else:
            raw = json.loads(patient.read_text(encoding="utf-8"))
            if mapping is not None:
                raw = io.apply_mapping(pd.DataFrame(raw if isinstance(raw, list) else [raw]),
                                       io.load_mapping(mapping), source=str(patient))
        return inputs.parse_patients(raw)
    except io.MappingError as exc:
        fail(str(exc))
    except inputs.ScoringInputError as exc:
        fail(f"{source}: {exc}")
    except json.JSONDecodeError as exc:
        fail(f"{source}: not valid JSON ({exc})")
    except (OSError, ValueError) as exc:
        fail(f"{source}: {exc}")


def _print_scores(table: pd.DataFrame, title: str, written_to: Path | None) -> None:
    if len(table) == 1:
        values = [_cell(c, v) for c, v in table.iloc[0].items()]
        shown = pd.DataFrame({"": table.columns, str(table["id"].iloc[0]): values})
        display.print_frame(console, shown, title=title)
        return
    shown = table.drop(columns=["top_up", "top_down"]).head(MAX_ROWS_PRINTED)
    display.print_frame(console, shown, title=title, digits=3)
    if len(table) > MAX_ROWS_PRINTED:
        console.print(f"(first {MAX_ROWS_PRINTED} of {len(table)} patients shown"
                      + ("; all of them in --out)" if written_to is not None else "; write all with --out)"))


def _cell(column: str, value: Any) -> str:
    """A value of the one-patient table: NaN is 'not reached' for a median, 'none' for an interval."""
    if isinstance(value, float) and value != value:
        return results.NOT_REACHED if column.startswith("median") else "none"
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _default_plot_path(out: Path | None, patient_id: str) -> Path:
    return out.with_suffix(".png") if out is not None else Path("out/score") / f"{patient_id}_pfs.png"


def _curve_figure(result: Any) -> Any:
    """Patient 0's predicted PFS curve."""
    import matplotlib.pyplot as plt  # heavy: only when a curve is drawn

    median = float(result.median[0])
    limits = (float(result.interval(k)[0]) for k in ("median_low", "median_high"))
    has_ci = bool(np.isfinite(result.interval("survival_low")[0]).any())
    median_ci = results.median_ci_text(median, *limits, interval=has_ci)
    title = f"{result.ids[0]}: {result.group[0]} risk\nmedian PFS {median_ci}"
    fig, ax = plt.subplots(figsize=(5.5, 3.9))
    low, high = (None, None) if result.curves_low is None else (result.curves_low[0], result.curves_high[0])
    plot_survival_curve(ax, result.curve_times, result.curves[0], median=median, horizons=result.horizons,
                        horizon_survival=result.survival[0], title=title, low=low, high=high,
                        band_label=_band_label(result.ci_method))
    fig.tight_layout()
    plt.close(fig)  # drawn into the file by the writer; no window
    return fig


def _band_label(method: str) -> str:
    """The legend of the plotted band: the method in a few words."""
    if "delta method" in method:
        return "95% CI (delta method, as survfit.coxph)"
    if "bootstrap" in method:
        refits = re.search(r"B = (\d+)", method)
        return "95% CI (bootstrap percentile" + (f", B = {refits[1]})" if refits else ")")
    return "95% CI"


@app.command("serve")
def serve_command(
    model: str = typer.Option(None, "--model", help=MODEL_HELP),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="TCP port."),
    ci_bootstrap: int = typer.Option(50, "--ci-bootstrap", min=0, help=CI_BOOTSTRAP_HELP + " Refitted "
                                     "once, at start."),
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
    try:
        console.print(f"intervals: {scorer.prepare_bootstrap(ci_bootstrap)}", highlight=False, soft_wrap=True)
    except ValueError as exc:
        fail(f"--ci-bootstrap: {exc}")
    source = f" from MLflow store {tracking_store()}" if uri.startswith(("models:/", "runs:/")) else ""
    console.print(f"serving {uri}{source} on http://{host}:{port}/ (API docs: /docs)", soft_wrap=True)
    uvicorn.run(serve.create_app(uri, scorer=scorer, notes=notes), host=host, port=port, log_level="warning")

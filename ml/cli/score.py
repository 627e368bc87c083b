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
BOTH_ARMS_HELP = ("Also score each patient under either regimen (CI, CIA): both curves with 95% bands "
                  "and the CIA - CI differences in S(t) and median PFS with 95% CIs (delta method for S(t) "
                  "of a Cox model, else a bootstrap of --ci-bootstrap refits).")
MODEL_HELP = ("Model URI or path [default: models:/rechallenge-pfs-cox_ridge_cv@champion, a ridge Cox "
              "with its penalty chosen by cross-validation; fitted on the twin and registered if the "
              "registry has none].")
PLOT_SUFFIXES = (".png", ".pdf", ".svg")
ARM_COLORS = ("#23395d", "#b5651d")
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
    both_arms: bool = typer.Option(False, "--both-arms", help=BOTH_ARMS_HELP),
) -> None:
    """Score patients: risk score and group, P(PFS > 3/6/12/24 months) and median PFS with 95% CIs,
    top features, and the model card (what trained the model, how well it validated)."""
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
        arms = _both_arms(scorer, frame, ci_bootstrap) if both_arms else None
        for note in notes:
            console.print(f"[yellow]note:[/] {note}", soft_wrap=True)
        source = f" (MLflow store {tracking_store()})" if uri.startswith(("models:/", "runs:/")) else ""
        title = f"PFS scoring with {uri}{source} ({scorer.info()['model']}, risk groups: training tertiles)"
        _print_card(scorer, uri)
        if not as_json:
            _print_scores(table.drop(columns=["ci_method"]), title, written_to=out)
            console.print(f"intervals: {result.ci_method}", highlight=False, soft_wrap=True)
            if single and result.clinical is not None:
                _print_clinical(result)
            if arms is not None:
                _print_both_arms(arms)
        else:
            console.print(title, highlight=False, soft_wrap=True)
        _write(result, table, out, plot if single else None, arms)
    if as_json:
        records = results.to_records(result)
        emit(records if arms is None else {"results": records, "both_arms": arms.records()})


def _both_arms(scorer: Any, frame: pd.DataFrame, n_boot: int) -> Any:
    from ml.serving import contrast

    try:
        return contrast.both_arms(scorer, frame, n_boot)
    except ValueError as exc:
        fail(f"--both-arms: {exc}")


def _print_card(scorer: Any, uri: str) -> None:
    """The model card, one fact per line."""
    from ml.serving import model_card, resolve

    card = model_card.model_card(scorer, resolve.registered_version(uri))
    console.print("[bold]model card[/]")
    for line in model_card.card_lines(card):
        console.print(f"  {line}", highlight=False, soft_wrap=True)


def _print_both_arms(arms: Any) -> None:
    """Per patient: S(t) and median under CI and CIA, and the CIA - CI difference with its CI."""
    for rec in arms.records()[:MAX_ROWS_PRINTED]:
        rows = []
        for key, diff in rec["difference"].items():
            if not isinstance(diff, dict):
                continue
            cells = [_arm_cell(rec["arms"][arm], key) for arm in rec["arms"]]
            rows.append([_row_name(key), *cells, _diff_cell(diff, key)])
        shown = pd.DataFrame(rows, columns=["", *rec["arms"], rec["difference"]["contrast"]])
        display.print_frame(console, shown, title=f"{rec['id']} under either regimen")
        console.print(f"differences: S(t) by {rec['difference']['survival_method']}; median by "
                      f"{rec['difference']['median_method']}", highlight=False, soft_wrap=True)
    console.print(rec["caveat"], highlight=False, soft_wrap=True)


def _row_name(key: str) -> str:
    return "median PFS (months)" if key.startswith("median") else f"P(PFS > {key[5:-1]} months)"


def _pct(x: float | None) -> str:
    """A probability in percent: one decimal under 10% (so that 0.2% is not shown as 0%)."""
    if x is None or x != x:
        return "n/a"
    return f"{100 * x:.1f}%" if 100 * x < 9.95 else f"{100 * x:.0f}%"


def _arm_cell(rec: dict, key: str) -> str:
    if key.startswith("median"):
        return results.median_ci_text(*(np.nan if v is None else v for v in
                                        (rec["median_pfs_months"], *rec["median_pfs_ci"])))
    low, high = rec["survival_ci"][key]
    return f"{_pct(rec['survival'][key])} (95% CI {_pct(low)} to {_pct(high)})"


def _diff_cell(diff: dict, key: str) -> str:
    def text(x: float | None) -> str:
        if x is None:
            return "not estimable"
        return f"{x:+.1f}" if key.startswith("median") else f"{100 * x:+.1f}"

    if diff["estimate"] is None:
        return "not estimable (median not reached)"
    unit = " months" if key.startswith("median") else " percentage points"
    return f"{text(diff['estimate'])}{unit} (95% CI {text(diff['low'])} to {text(diff['high'])})"


def _write(result: Any, table: pd.DataFrame, out: Path | None, plot: Path | None, arms: Any = None) -> None:
    """--out (records or table) and the curve PNG, each atomically."""
    writers = {}
    if out is not None:
        document: Any = results.to_records(result)
        if arms is not None:
            document = {"results": document, "both_arms": arms.records()}
        records = json.dumps(document, indent=2)
        writers[out] = (text_writer(records) if out.suffix.lower() == ".json"
                        else lambda target: table.to_csv(target, index=False))
    if plot is not None:
        writers[plot] = figure_writer(_curve_figure(result, arms), dpi=110)
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


def _one_patient(row: pd.Series) -> pd.DataFrame:
    """One patient's results with each number beside its 95% CI (S(t) in percent, the median in months)."""
    names, values = [], []
    horizons = [c for c in row.index if re.fullmatch(r"surv_[0-9.]+m", c)]
    for column, value in row.items():
        if column in horizons:
            names.append(f"P(PFS > {column[5:-1]} months)")
            low, high = _pct(row[column + "_low"]), _pct(row[column + "_high"])
            values.append(f"{_pct(value)} (95% CI {low} to {high})")
        elif column == "median_pfs":
            names.append("median PFS")
            values.append(results.median_ci_text(row["median_pfs_months"], row["median_pfs_months_low"],
                                                 row["median_pfs_months_high"],
                                                 interval=bool(np.isfinite(row[horizons[0] + "_low"]))))
        elif not column.startswith(("surv_", "median_pfs_months")):
            names.append(column)
            values.append(_cell(column, value))
    return pd.DataFrame({"": names, str(row["id"]): values})


def _print_clinical(result: Any) -> None:
    """Patient 0's top features in clinician units, the scale in words."""
    from ml.serving.clinical import SCALES

    up, down = result.top_features(0)
    unit = result.clinical_scale
    for words, items in (("raising the risk", up), ("lowering the risk", down)):
        shown = [f"{it['feature']}={it['value']} ({_clinical_text(it['clinical'], unit)})" for it in items]
        console.print(f"{words}: {'; '.join(shown) or 'none'}", highlight=False, soft_wrap=True)
    console.print(f"scale: {SCALES[unit]}", highlight=False, soft_wrap=True)


def _clinical_text(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    return f"hazard ratio {value:.2f}" if unit == "hazard_ratio" else f"{value:+.1f} points at 12 months"


def _print_scores(table: pd.DataFrame, title: str, written_to: Path | None) -> None:
    if len(table) == 1:
        display.print_frame(console, _one_patient(table.iloc[0]), title=title)
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


def _curve_figure(result: Any, arms: Any = None) -> Any:
    """Patient 0's predicted PFS curve (with --both-arms: under CI and under CIA, each with its band)."""
    import matplotlib.pyplot as plt  # heavy: only when a curve is drawn

    median = float(result.median[0])
    limits = (float(result.interval(k)[0]) for k in ("median_low", "median_high"))
    has_ci = bool(np.isfinite(result.interval("survival_low")[0]).any())
    median_ci = results.median_ci_text(median, *limits, interval=has_ci)
    title = f"{result.ids[0]}: {result.group[0]} risk\nmedian PFS {median_ci}"
    fig, ax = plt.subplots(figsize=(5.5, 3.9))
    low, high = (None, None) if result.curves_low is None else (result.curves_low[0], result.curves_high[0])
    if arms is None:
        plot_survival_curve(ax, result.curve_times, result.curves[0], median=median, horizons=result.horizons,
                            horizon_survival=result.survival[0], title=title, low=low, high=high,
                            band_label=_band_label(result.ci_method))
    else:
        for (arm, r), color in zip(arms.arms.items(), ARM_COLORS, strict=False):
            plot_survival_curve(ax, r.curve_times, r.curves[0], median=float(r.median[0]), color=color,
                                horizons=r.horizons, horizon_survival=r.survival[0], low=r.curves_low[0],
                                high=r.curves_high[0], title=f"{result.ids[0]}: under either regimen",
                                band_label=f"{arm} (95% CI)")
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
    application = serve.create_app(uri, scorer=scorer, notes=notes, contrast_bootstrap=ci_bootstrap)
    _print_card(scorer, uri)
    console.print(f"serving {uri}{source} on http://{host}:{port}/ (API docs: /docs; Ctrl-C stops)",
                  soft_wrap=True)
    _log_requests()
    try:
        uvicorn.run(application, host=host, port=port, log_level="warning")
    except KeyboardInterrupt:  # a second Ctrl-C during the graceful shutdown
        pass
    console.print(f"stopped serving {uri} on http://{host}:{port}/: shut down cleanly", soft_wrap=True)


def _log_requests() -> None:
    """The access log (logger rechallenge.access, one line per request) on stderr, with a timestamp."""
    import logging

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%dT%H:%M:%S"))
    access = logging.getLogger("rechallenge.access")
    access.setLevel(logging.INFO)
    access.addHandler(handler)
    access.propagate = False

"""`rechallenge score` and `rechallenge serve`."""

from __future__ import annotations

from pathlib import Path

import typer

from ml.cli.runner import app, console, fail
from ml.reporting import display

MAX_ROWS_PRINTED = 20


@app.command("score")
def score_command(
    patient: Path = typer.Option(None, "--patient", help="One patient (a JSON object; a list for several)."),
    data: Path = typer.Option(None, "--data", help="Several patients (.csv or .parquet, contract columns)."),
    model: str = typer.Option(None, "--model", help="Model URI or path [default: models:/rechallenge-pfs-cox"
                              "@champion; fitted on the twin and registered if the registry has none]."),
    out: Path = typer.Option(None, "--out", help="Write the results: .json (records) or .csv (table)."),
    plot: Path = typer.Option(None, "--plot", help="Survival-curve PNG for one patient [default: beside "
                              "--out, else out/score/<id>_pfs.png]."),
) -> None:
    """Score patients: risk score and group, P(PFS > 3/6/12/24 months), median PFS, top features."""
    import json

    import pandas as pd

    from ml.serving import scorer as score

    if (patient is None) == (data is None):
        fail("give exactly one of --patient FILE.json or --data FILE.csv")
    if out is not None and out.suffix.lower() not in (".json", ".csv"):
        fail(f"{out}: --out must end in .json or .csv")
    source = patient or data
    try:
        if patient is not None:
            records = json.loads(patient.read_text(encoding="utf-8"))
        else:
            from features import io

            records = io.read_table(data)
        frame = score.parse_patients(records)
    except score.ScoringInputError as exc:
        fail(f"{source}: {exc}")
    except json.JSONDecodeError as exc:
        fail(f"{source}: not valid JSON ({exc})")
    except (OSError, ValueError) as exc:
        fail(f"{source}: {exc}")
    try:
        scorer, uri, notes = score.resolve_scorer(model)
    except ValueError as exc:
        fail(str(exc))
    single = len(frame) == 1
    result = scorer.result_for(frame, curve=single)
    table = score.to_frame(result)
    for note in notes:
        console.print(f"[yellow]note:[/] {note}")
    title = f"PFS scoring with {uri} ({scorer.info()['model']}, risk groups: training tertiles)"
    if single:
        values = [f"{v:.3g}" if isinstance(v, float) else str(v) for v in table.iloc[0]]
        shown = pd.DataFrame({"": table.columns, str(table["id"].iloc[0]): values})
        display.print_frame(console, shown, title=title)
    else:
        shown = table.drop(columns=["top_up", "top_down"]).head(MAX_ROWS_PRINTED)
        display.print_frame(console, shown, title=title, digits=3)
        if len(table) > MAX_ROWS_PRINTED:
            console.print(f"(first {MAX_ROWS_PRINTED} of {len(table)} patients shown"
                          + ("; all of them in --out)" if out is not None else "; write all with --out)"))
    written = []
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix.lower() == ".json":
            out.write_text(json.dumps(score.to_records(result), indent=2), encoding="utf-8")
        else:
            table.to_csv(out, index=False)
        written.append(str(out))
    if single:
        import matplotlib.pyplot as plt

        target = plot or (out.with_suffix(".png") if out is not None
                          else Path("out/score") / f"{result.ids[0]}_pfs.png")
        target.parent.mkdir(parents=True, exist_ok=True)
        fig, ax = plt.subplots(figsize=(5.5, 3.6))
        score.plot_survival(result, 0, ax)
        fig.tight_layout()
        fig.savefig(target, dpi=110)
        plt.close(fig)
        written.append(str(target))
    if written:
        console.print(f"[green]wrote[/] {', '.join(written)}")


@app.command("serve")
def serve_command(
    model: str = typer.Option(None, "--model", help="Model URI or path [default: models:/rechallenge-pfs-cox"
                              "@champion; fitted and registered if the registry has none]."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="TCP port."),
) -> None:
    """Serve the scoring API (/score, /health, /docs) and the page for one patient (/)."""
    import uvicorn

    from ml.serving import app as serve
    from ml.serving import scorer as score

    try:
        scorer, uri, notes = score.resolve_scorer(model)
    except ValueError as exc:
        fail(str(exc))
    for note in notes:
        console.print(f"[yellow]note:[/] {note}")
    console.print(f"serving {uri} on http://{host}:{port}/ (API docs: /docs)")
    uvicorn.run(serve.create_app(uri, scorer=scorer, notes=notes), host=host, port=port, log_level="warning")

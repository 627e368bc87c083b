"""`rechallenge report`: one self-contained HTML report (and a PDF) of one cohort."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import typer

from ml.cli.runner import (
    app,
    check_output_file,
    check_tracking_store,
    console,
    err_console,
    fail,
    input_errors,
    load_cohort,
    print_logged,
    text_writer,
    working,
    write_outputs,
)

CHROMIUM = ("chromium", "chromium-browser", "google-chrome")


def find_chromium() -> str | None:
    return next((found for name in CHROMIUM if (found := shutil.which(name))), None)


def print_to_pdf(chromium: str, html_path: Path, pdf_path: Path) -> None:
    """Chromium's print-to-PDF of the written HTML (its print CSS: one section per page, banner kept)."""
    with tempfile.TemporaryDirectory() as profile:
        command = [chromium, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}",
                   "--no-pdf-header-footer", f"--print-to-pdf={pdf_path}", html_path.absolute().as_uri()]
        done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0 or not pdf_path.exists():
        fail(f"--pdf: Chromium could not print {html_path}: {done.stderr.strip()[-300:]}")


@app.command("report")
def report(
    data: Path = typer.Option(None, "--data", help="Cohort table (.csv or .parquet); without it, the "
                              "default twin cohort."),
    mapping: Path = typer.Option(None, "--mapping", help="Column-mapping YAML for a user table."),
    experiment: Path = typer.Option(None, "--experiment", help="Analysis YAML; without it, "
                                    "experiments/paper.yaml."),
    out: Path = typer.Option(Path("out/report.html"), "--out", help="The HTML file to write."),
    pdf: bool = typer.Option(False, "--pdf", help="Also write the PDF beside it (Chromium's print-to-PDF)."),
    analysis_bootstrap: int = typer.Option(200, "--analysis-bootstrap", min=0,
                                           help="Bootstrap resamples of the IPTW analysis and of the "
                                           "weighted KM band."),
    validate_bootstrap: int = typer.Option(50, "--validate-bootstrap", min=1,
                                           help="Bootstrap resamples of the internal validation."),
    repeats: int = typer.Option(2, "--repeats", min=1, help="Repeats of the benchmark's 5-fold CV."),
    reuse: Path = typer.Option(None, "--reuse", help="Folder of earlier outputs on the same cohort: "
                               "benchmark/benchmark.json + leaderboard.csv and validate/validation.json "
                               "are used instead of running them again (e.g. out/demo)."),
    mlflow: bool = typer.Option(True, "--mlflow/--no-mlflow", help="Log the report to MLflow (experiment "
                                "'report')."),
) -> None:
    """Table 1 to TRIPOD+AI checklist in one self-contained HTML file: analyze, benchmark, validate and
    explain run on one cohort with the settings stated in the report's methods."""
    check_output_file("--out", out, (".html", ".htm"))
    chromium = find_chromium() if pdf else None
    if pdf and chromium is None:
        fail("--pdf needs Chromium (Debian: apt-get install chromium); none found on PATH")
    if mlflow:
        check_tracking_store()
    if mapping is not None and data is None:
        fail("--mapping applies only to a table given with --data, and there is none")
    import matplotlib.pyplot as plt
    import yaml

    from features import twin
    from ml.reporting.report import render
    from ml.workflows import analysis
    from ml.workflows.report import ReportSettings, build_report

    with input_errors(foreign=(yaml.YAMLError,), prefix=str(experiment or "")):
        config = analysis.load_config(experiment)
    df = twin.generate().data if data is None else load_cohort(data, mapping)
    reused = _reused(reuse, len(df)) if reuse is not None else {}
    settings = ReportSettings(analysis_bootstrap=analysis_bootstrap, km_band_bootstrap=analysis_bootstrap,
                              validate_bootstrap=validate_bootstrap, benchmark_repeats=repeats)
    command = shlex.join(["rechallenge", *sys.argv[1:]])
    source = "twin" if data is None else data.name
    with working("running analyze, benchmark, validate and explain"):
        content = build_report(df, settings, config=config, source=source, is_twin=data is None,
                               command=command, progress=lambda part: err_console.print(f"report: {part}"),
                               reused=reused)
    from ml.tracking.runs import git_commit  # light: no mlflow import

    content.versions["git commit of this checkout"] = git_commit()
    if mlflow:
        _render_logged(content, out, source, settings.seed)
    else:
        write_outputs("--out", {out: text_writer(render(content))})
    plt.close("all")
    took = ", ".join(f"{part} {seconds:.0f} s" for part, seconds in content.timings.items())
    console.print(f"[green]wrote[/] {out} ({took})", soft_wrap=True)
    if chromium is not None:
        pdf_path = out.with_suffix(".pdf")
        print_to_pdf(chromium, out, pdf_path)
        console.print(f"[green]wrote[/] {pdf_path}", soft_wrap=True)


def _reused(folder: Path, n: int) -> dict:
    """The outputs found under --reuse (benchmark/, validate/), refused when made on another cohort."""
    import json

    import pandas as pd

    from ml.workflows.report import reuse_problems

    if not folder.is_dir():
        fail(f"--reuse {folder}: not a directory")
    found: dict = {}
    bench, board = folder / "benchmark" / "benchmark.json", folder / "benchmark" / "leaderboard.csv"
    with input_errors(prefix=f"--reuse {folder}", foreign=(json.JSONDecodeError,)):
        if bench.exists() and board.exists():
            found["benchmark"] = (json.loads(bench.read_text("utf-8")), pd.read_csv(board))
        validation = folder / "validate" / "validation.json"
        if validation.exists():
            found["validation"] = json.loads(validation.read_text("utf-8"))
    if not found:
        fail(f"--reuse {folder}: no benchmark/benchmark.json + leaderboard.csv nor validate/validation.json")
    problems = reuse_problems(found, n)
    if problems:
        fail(f"--reuse {folder}: " + "; ".join(problems))
    return found


def _render_logged(content, out: Path, source: str, seed: int) -> None:
    from ml.reporting.report import render
    from ml.tracking import mlflow_io as tracking

    with tracking.run("report", f"report {source}", seed=seed) as active:
        content.run_ids = {"report (this document)": active.info.run_id}
        write_outputs("--out", {out: text_writer(render(content))})
        tracking.log_params({k: str(v) for k, v in content.settings.items()})
        tracking.log_artifact(out)
    print_logged(console, active.info.run_id, "report")

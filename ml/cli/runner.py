"""What every command shares: the Typer apps, the consoles, `fail` (one message, exit 2),
the cohort loader that turns bad input into that exit, and the options naming a survival table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console

app = typer.Typer(
    name="rechallenge",
    help="Progression-free survival after immunotherapy rechallenge in advanced NSCLC: "
    "twin cohorts, IPTW analysis, survival model benchmarks, SHAP and MLflow tracking.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,  # help texts are plain: "[default: ...]" must print as written
)
cohort_app = typer.Typer(help="Draw, describe and validate cohort tables.", no_args_is_help=True,
                         rich_markup_mode=None)
app.add_typer(cohort_app, name="cohort")

console = Console()
err_console = Console(stderr=True)
BAD_INPUT = 2

# Options naming any survival table, shared by the commands that take one.
DataOpt = Annotated[Path | None, typer.Option(
    "--data", help="Any survival table (.csv/.parquet) instead; needs --time and --event.")]
TimeOpt = Annotated[str | None, typer.Option("--time", help="Time column of --data.")]
EventOpt = Annotated[str | None, typer.Option("--event", help="Event column of --data (0/1).")]
TreatmentOpt = Annotated[str | None, typer.Option(
    "--treatment", help="Treatment column of --data (enables iptw_cox).")]
TreatedOpt = Annotated[str | None, typer.Option(
    "--treated", help="Value of --treatment marking the treated group.")]
DropOpt = Annotated[str | None, typer.Option(
    "--drop", help="Comma-separated columns of --data that are not features.")]


def fail(message: str, code: int = BAD_INPUT) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(code)


def load_cohort(path: Path, mapping: Path | None):
    """Read + map + validate a cohort file, turning bad input into a clean exit 2."""
    from features import io
    from features.schema import CohortValidationError

    try:
        return io.load_cohort(path, mapping)
    except CohortValidationError as exc:
        fail(str(exc))
    except (FileNotFoundError, io.MappingError, ValueError) as exc:
        fail(str(exc))

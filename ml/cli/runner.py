"""What every command shares: the Typer apps and their global options (--version, --verbose), the
consoles, `fail` (one message, exit 2) and the input errors it catches, the options naming a table,
the outputs (checked before any work, written atomically), progress bars, --json and the MLflow note.
"""

from __future__ import annotations

import contextlib
import importlib.metadata as md
import json
import logging
import math
import os
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ml.reporting.display import redact_url

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
PIPED_WIDTH = 160
"""Console width when the output is a pipe or a file (rich would assume 80 and wrap mid-table)."""
DISTRIBUTION = "rechallenge"

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
MappingOpt = Annotated[Path | None, typer.Option(
    "--mapping", help="Column-mapping YAML applied to --data first: your column names, labels and "
    "time unit to the cohort contract's (see README).")]
JsonOpt = Annotated[bool, typer.Option(
    "--json", help="Print the result as JSON on stdout, nothing else (notes and progress go to stderr).")]


# ------------------------------------------------------------------ global options


def distribution_version() -> str:
    try:
        return md.version(DISTRIBUTION)
    except md.PackageNotFoundError:
        return "unknown (not installed)"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"{DISTRIBUTION} {distribution_version()}")
        raise typer.Exit()


@app.callback()
def global_options(
    version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                 help="Print the installed version and exit."),
    verbose: bool = typer.Option(False, "--verbose", help="Also show MLflow's own log lines and "
                                 "progress bars (hidden by default)."),
) -> None:
    """Progression-free survival after immunotherapy rechallenge (run a command with --help)."""
    configure_output(verbose)


def configure_output(verbose: bool = False) -> None:
    """Console widths for pipes and files, and MLflow's own chatter off unless `verbose`.

    MLflow reads MLFLOW_LOGGING_LEVEL when imported and `ml.tracking` applies it on each use;
    its artifact tqdm bars and run URLs (printed on stdout) have switches of their own.
    """
    for each in (console, err_console):
        if not each.is_terminal:
            columns = os.environ.get("COLUMNS", "")
            each.width = int(columns) if columns.isdigit() and int(columns) > 0 else PIPED_WIDTH
    level = "INFO" if verbose else "ERROR"
    os.environ["MLFLOW_LOGGING_LEVEL"] = level
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = str(verbose).lower()
    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = str(not verbose).lower()
    logging.getLogger("mlflow").setLevel(level)
    logging.getLogger("alembic").setLevel(logging.WARNING if verbose else logging.ERROR)


# ------------------------------------------------------------------ bad input: one message, exit 2


def fail(message: str, code: int = BAD_INPUT) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(code)


@contextlib.contextmanager
def input_errors(*errors: type[Exception], prefix: str = "", generic: bool = True,
                 foreign: tuple[type[Exception], ...] = (),
                 passthrough: tuple[type[Exception], ...] = ()) -> Iterator[None]:
    """Turn the project's input errors (`errors`: their messages name their source) and, if
    `generic`, a ValueError / OSError / `foreign` error (e.g. a YAML parser's) carrying a message
    (prefixed by `prefix`, the file or flag, unless it names it already) into `fail`: exit 2, no
    traceback. `passthrough` errors are left to the caller."""
    try:
        yield
    except passthrough:
        raise
    except errors as exc:
        fail(_message(exc) or repr(exc))
    except (ValueError, OSError, *foreign) as exc:
        text = _message(exc)
        if not generic or not text:
            raise
        fail(text if not prefix or prefix in text else f"{prefix}: {text}")


def _message(exc: BaseException) -> str:
    mark = getattr(exc, "problem_mark", None)  # a YAML syntax error: its one useful line
    if mark is not None:
        problem = getattr(exc, "problem", None) or exc
        return f"not valid YAML: {problem} (line {mark.line + 1}, column {mark.column + 1})"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    return str(exc).strip()


def load_cohort(path: Path, mapping: Path | None, *, refuse: bool = True):
    """Read + map + validate a cohort file, turning bad input into a clean exit 2 (with `refuse`
    False, a table the contract refuses raises its CohortValidationError for the caller to report)."""
    from features import io
    from features.schema import CohortValidationError

    left = () if refuse else (CohortValidationError,)
    with input_errors(CohortValidationError, io.MappingError, prefix=str(path), passthrough=left):
        return io.load_cohort(path, mapping)


def split_names(text: str | None) -> list[str] | None:
    """A comma-separated option as a list (None when not given)."""
    return [v.strip() for v in text.split(",") if v.strip()] if text else None


def one_source(dataset: str | None, data: Path | None) -> None:
    """--dataset and --data name the same thing: refuse both at once rather than ignore one."""
    if dataset is not None and data is not None:
        fail(f"give --dataset or --data, not both (--dataset {dataset}, --data {data})")


# ------------------------------------------------------------------ outputs


def _nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_writable(flag: str, shown: Path, folder: Path) -> None:
    """`folder` (to be created if missing) can receive files: probe its nearest existing ancestor."""
    anchor = _nearest_existing(folder)
    if not anchor.is_dir():
        fail(f"{flag} {shown}: cannot be written: {anchor} is a file, not a directory")
    probe = anchor / f".rechallenge-probe-{uuid.uuid4().hex}"
    try:
        probe.touch(exist_ok=False)
        probe.unlink()
    except OSError as exc:
        fail(f"{flag} {shown}: cannot be written in {anchor} ({exc.strerror or exc})")


def check_output_dir(flag: str, path: Path) -> Path:
    """Before any work: a directory output that can be created and written (exit 2 otherwise)."""
    if path.exists() and not path.is_dir():
        fail(f"{flag} {path}: exists and is not a directory")
    _check_writable(flag, path, path)
    return path


def check_output_file(flag: str, path: Path, suffixes: tuple[str, ...] = ()) -> Path:
    """Before any work: a file output with an allowed suffix, not a directory, in a writable place."""
    if suffixes and path.suffix.lower() not in suffixes:
        fail(f"{flag} {path}: must end in {' or '.join(suffixes)}")
    if path.is_dir():
        fail(f"{flag} {path}: is a directory; give a file name")
    _check_writable(flag, path, path.parent)
    return path


def write_atomic(path: Path, write: Callable[[Path], object]) -> Path:
    """`write(temp)` to a temporary file beside `path` (same suffix, so writers pick the format from
    it), then rename it over `path`: readers never see a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.stem}-{uuid.uuid4().hex[:8]}.partial{path.suffix}")
    try:
        write(temp)
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    return path


def write_outputs(flag: str, writers: Mapping[Path, Callable[[Path], object]]) -> list[Path]:
    """Write every output atomically, or none: a failure removes those already written (exit 2 for
    an OS error, naming the flag)."""
    written: list[Path] = []
    try:
        for path, write in writers.items():
            written.append(write_atomic(path, write))
    except BaseException as exc:
        for path in written:
            path.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            fail(f"{flag}: cannot write {exc.filename or path}: {exc.strerror or exc}")
        raise
    return written


def text_writer(text: str) -> Callable[[Path], object]:
    return lambda target: target.write_text(text, encoding="utf-8")


def figure_writer(fig: Any, **savefig: Any) -> Callable[[Path], object]:
    return lambda target: fig.savefig(target, format=target.suffix.lstrip(".") or "png", **savefig)


# ------------------------------------------------------------------ progress, --json


@contextlib.contextmanager
def progress_bar(label: str, total: int) -> Iterator[Callable[..., None]]:
    """A transient bar with ETA on stderr (none when stderr is not a terminal: a log file wants no bar);
    yields `update(done, description=None, total=None)`."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("eta"), TimeRemainingColumn())
    with Progress(*columns, console=err_console, transient=True, disable=not err_console.is_terminal) as bar:
        task = bar.add_task(label, total=total)

        def update(done: int, description: str | None = None, total: int | None = None) -> None:
            changes = {"description": description, "total": total}
            bar.update(task, completed=done, **{k: v for k, v in changes.items() if v is not None})

        yield update


@contextlib.contextmanager
def json_stdout(enabled: bool) -> Iterator[Callable[[Any], None]]:
    """With --json, everything printed meanwhile (our notes, libraries' prints) goes to stderr:
    stdout is kept for the one JSON document, which the yielded `emit(document)` writes there."""
    stdout = sys.stdout

    def emit(document: Any) -> None:
        print_json(document, file=stdout)

    if not enabled:
        yield emit
        return
    with contextlib.redirect_stdout(sys.stderr):
        yield emit


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: null instead (recursively)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def print_json(document: Any, file: Any = None) -> None:
    """One JSON document on stdout (NaN -> null; numpy scalars and paths as plain values)."""
    text = json.dumps(_finite(json.loads(json.dumps(document, default=_plain))), indent=2, allow_nan=False)
    typer.echo(text, file=file)


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else str(value)


# ------------------------------------------------------------------ MLflow


def tracking_store() -> str:
    """The MLflow store this process logs to, as an absolute, printable URI (password hidden)."""
    from ml.tracking.runs import tracking_uri  # light (no mlflow import)

    uri = tracking_uri()
    if uri.startswith("sqlite:///"):
        uri = "sqlite:///" + str(Path(uri.removeprefix("sqlite:///")).absolute())
    elif "://" not in uri:
        uri = str(Path(uri).absolute())
    return redact_url(uri)


def check_tracking_store() -> None:
    """Before any work: a local MLflow store (sqlite file) that can be written."""
    store = tracking_store()
    if store.startswith("sqlite:///"):
        _check_writable("MLflow store (MLFLOW_TRACKING_URI, or --no-mlflow)", Path(store[len("sqlite:///"):]),
                        Path(store[len("sqlite:///"):]).parent)


def print_logged(out: Console, run_id: str, experiment: str, detail: str = "") -> None:
    """Which run, experiment and store a command logged to."""
    extra = f", {detail}" if detail else ""
    out.print(f"logged to MLflow run {run_id} (experiment '{experiment}'{extra}) in {tracking_store()}",
              highlight=False, soft_wrap=True)


@contextlib.contextmanager
def working(message: str) -> Iterator[None]:
    """A transient spinner on stderr (a terminal) for a step without countable parts (e.g. logging)."""
    with err_console.status(message) if err_console.is_terminal else contextlib.nullcontext():
        yield

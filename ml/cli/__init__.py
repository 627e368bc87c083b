"""The `rechallenge` command: one small module per command, sharing `runner`.

Thin: parse arguments, call a workflow, print and write what it returns. Every command exits
0 on success and 2 on bad input (with one clear message).
"""

from __future__ import annotations

import sys
import warnings

from ml.cli import analyze, benchmark, cohort, explain, report, score, tune, validate  # noqa: F401  (registers commands)
from ml.cli.runner import app, err_console


def _warning_line(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning is a note to the user (e.g. a table read as Latin-1): one line on stderr,
    without the source line Python would print under it."""
    err_console.print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True)


def main() -> None:
    warnings.showwarning = _warning_line
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)

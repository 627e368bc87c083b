"""The `rechallenge` command: one small module per command, sharing `runner`.

Thin: parse arguments, call a workflow, print and write what it returns. Every command exits
0 on success and 2 on bad input (with one clear message).
"""

from __future__ import annotations

import sys

from ml.cli import analyze, benchmark, cohort, explain, score, tune  # noqa: F401  (registers commands)
from ml.cli.runner import app


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)

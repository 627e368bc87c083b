"""Rich rendering of result frames for the terminal (results stay apart from display)."""

from __future__ import annotations

import math

import pandas as pd
from rich.console import Console
from rich.table import Table


def _fmt(value: object, digits: int = 2) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def _nr(value: float) -> str:
    """A survival median, or NR where the curve never drops to 0.5 (not reached)."""
    return "NR" if value is None or math.isnan(value) else f"{value:.2f}"


def print_frame(console: Console, df: pd.DataFrame, title: str | None = None,
                digits: int = 2) -> None:
    """Print any DataFrame as a rich table."""
    table = Table(title=title, title_justify="left")
    for col in df.columns:
        numeric = pd.api.types.is_numeric_dtype(df[col])
        table.add_column(str(col), justify="right" if numeric else "left", overflow="fold")
    for row in df.itertuples(index=False):
        table.add_row(*(_fmt(v, digits) for v in row))
    console.print(table)


def print_table_one(console: Console, table_one: pd.DataFrame, title: str) -> None:
    shown = table_one.copy()
    shown["variable"] = shown["variable"].where(~shown["variable"].duplicated(), "")
    shown["missing"] = shown["missing"].map(lambda m: str(m) if m else "")
    shown["smd"] = shown["smd"].map(lambda v: "" if pd.isna(v) else f"{v:+.3f}")
    print_frame(console, shown, title=title)


def print_medians(console: Console, medians: pd.DataFrame) -> None:
    shown = medians.assign(
        **{"median (95% CI), months": [
            f"{_nr(r.median)} ({_nr(r.ci_low)} to {_nr(r.ci_high)})" for r in medians.itertuples()
        ]}
    )[["endpoint", "group", "n", "events", "median (95% CI), months"]]
    print_frame(console, shown, title="Kaplan-Meier medians (unweighted; 95% CI: lifelines, "
                "exponential Greenwood; NR = not reached)")


def median_metrics(medians: pd.DataFrame) -> dict[str, float]:
    """Flatten a medians frame into MLflow metric names, e.g. median_pfs_CIA."""
    return {f"median_{r.endpoint}_{r.group}": r.median for r in medians.itertuples()}

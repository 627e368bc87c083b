"""The benchmark leaderboard in the terminal: mean [95 % CI] per model and metric."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
from rich.console import Console

from ml.reporting.display import print_frame


def _ci(row: dict, metric: str, digits: int = 3) -> str:
    mean, lo, hi = row.get(metric), row.get(f"{metric}_ci_low"), row.get(f"{metric}_ci_high")
    if mean is None or pd.isna(mean):
        return "-"
    if lo is None or pd.isna(lo):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def leaderboard_table(board: pd.DataFrame, horizons: dict[str, float]) -> pd.DataFrame:
    """Discrimination: Harrell C, Uno C and the paired difference to Cox, mean [95 % CI]."""
    rows = []
    for row in board.to_dict("records"):
        rows.append({"model": row["model"], "Harrell C": _ci(row, "harrell_c"), "Uno C": _ci(row, "uno_c"),
                     "dC vs Cox": _ci(row, "delta_c_vs_cox"),
                     "fit s": "-" if pd.isna(row.get("fit_seconds")) else f"{row['fit_seconds']:.2f}"})
    return pd.DataFrame(rows)


def horizon_table(board: pd.DataFrame, horizons: dict[str, float]) -> pd.DataFrame:
    """Time-dependent metrics: AUC and Brier at each horizon, calibration slope, IBS (means)."""
    late = max(horizons, key=horizons.get)
    columns = [(f"AUC({label})", f"auc_{label}") for label in horizons]
    columns += [(f"Brier({label})", f"brier_{label}") for label in horizons]
    columns += [(f"cal. slope({late})", f"calibration_slope_{late}"), ("IBS", "ibs")]
    rows = []
    for row in board.to_dict("records"):
        out = {"model": row["model"]}
        out.update({title: "-" if pd.isna(row.get(key)) else f"{row[key]:.3f}" for title, key in columns})
        rows.append(out)
    return pd.DataFrame(rows)


def print_benchmark(console: Console, leaderboard: pd.DataFrame, summary: Mapping[str, Any]) -> None:
    """Leaderboard, CI method, skipped models and notes of a benchmark.

    `summary` is the benchmark.json document (dataset, n, events, resampling, horizons, tau,
    time_unit, skipped, notes).
    """
    cv, horizons = summary["resampling"], summary["horizons"]
    title = (f"Benchmark on {summary['dataset']}: {summary['n']} rows, {summary['events']} events; "
             f"{cv['repeats']} x {cv['folds']}-fold CV stratified by event (seed {cv['seed']})")
    print_frame(console, leaderboard_table(leaderboard, horizons), title=title)
    print_frame(console, horizon_table(leaderboard, horizons),
                title="At the horizons (means; CIs in leaderboard.csv / benchmark.json)")
    listed = ", ".join(f"{k} = {v:g}" for k, v in horizons.items())
    console.print(f"horizons ({summary['time_unit']}): {listed}; Uno C truncated at tau = {summary['tau']:g} "
                  "(capped below each training fold's last time)", highlight=False)
    console.print("mean [95 % CI] across resamples, Nadeau-Bengio corrected resampled t; dC vs Cox = "
                  "paired difference of Harrell C on the same folds, same correction", highlight=False)
    if "oracle" in set(leaderboard["model"]):
        console.print("oracle = the twin's true linear predictor scored on the same folds (no curves: "
                      "no Brier/IBS)", highlight=False)
    for name, why in summary["skipped"].items():
        console.print(f"[yellow]{name}[/]: {why}", highlight=False)
    _print_notes(console, summary["notes"])


def _print_notes(console: Console, notes: Sequence[str], shown: int = 8) -> None:
    for note in notes[:shown]:
        console.print(f"[dim]note: {note}[/]", highlight=False)
    if len(notes) > shown:
        console.print(f"[dim]... {len(notes) - shown} more notes in benchmark.json[/]", highlight=False)

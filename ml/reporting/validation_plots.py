"""Internal-validation display from plain frames: the calibration figure (one panel per horizon,
with the bootstrap band) and the terminal table. Imports pyplot: the CLI imports this module
inside its command, off the start-up path."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
from rich.table import Table


def plot_calibration_band(ax, curve: pd.DataFrame, horizon: str, unit: str = "",
                          smooth: pd.DataFrame | None = None) -> None:
    """Observed vs predicted S(h): the smoothed curve (apparent and optimism-corrected) with the
    bootstrap band of the test curves shaded, and the Kaplan-Meier points by risk group with
    their band as error bars."""
    if curve.empty and (smooth is None or smooth.empty):
        ax.text(0.5, 0.5, "no calibration data", ha="center", transform=ax.transAxes)
        return
    if smooth is not None and not smooth.empty:
        ax.fill_between(smooth["predicted"], smooth["band_low"], smooth["band_high"], color="tab:blue",
                        alpha=0.15, lw=0, label="bootstrap 95 % band (smooth, test curves)")
        ax.plot(smooth["predicted"], smooth["observed"], "-", color="tab:blue", label="smooth, apparent")
        ax.plot(smooth["predicted"], smooth["corrected"], "--", color="tab:red",
                label="smooth, optimism-corrected")
    if not curve.empty:
        below = (curve["observed"] - curve["band_low"]).clip(lower=0)
        above = (curve["band_high"] - curve["observed"]).clip(lower=0)
        ax.errorbar(curve["predicted"], curve["observed"], yerr=[below.fillna(0), above.fillna(0)], fmt="o",
                    color="0.25", ms=4, capsize=2, label="Kaplan-Meier by risk group (band: test)")
    ax.plot([0, 1], [0, 1], ls=":", c="0.6", lw=1)
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel=f"predicted S({horizon}{unit})",
           ylabel=f"observed S({horizon}{unit})", title=f"horizon {horizon}{unit}")
    ax.legend(loc="upper left", fontsize="x-small")


def calibration_figure(calibration: pd.DataFrame, horizons: list[str], *, title: str = "",
                       unit: str = "", smooth: pd.DataFrame | None = None) -> plt.Figure:
    """One panel per horizon (frame columns: horizon, predicted, observed, band_low, band_high;
    `smooth` adds the smoothed curves: horizon, predicted, observed, corrected, band_low, band_high)."""
    fig, axes = plt.subplots(1, len(horizons), figsize=(4.5 * len(horizons), 4.5), squeeze=False)
    for ax, label in zip(axes[0], horizons, strict=True):
        curve = calibration[calibration["horizon"] == label] if len(calibration) else calibration
        curve = curve.sort_values("predicted") if len(curve) else curve
        line = smooth[smooth["horizon"] == label] if smooth is not None and len(smooth) else None
        plot_calibration_band(ax, curve, label, unit, line)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def validation_table(metrics: dict[str, dict[str, float]], title: str = "") -> Table:
    """Apparent, optimism and corrected figure per metric."""
    table = Table(title=title or None)
    table.add_column("metric")
    for column in ("apparent", "optimism", "corrected"):
        table.add_column(column, justify="right")
    for name, values in metrics.items():
        table.add_row(name, *(f"{values[c]:.3f}" if values[c] == values[c] else "NA"
                              for c in ("apparent", "optimism", "corrected")))
    return table


def internal_validation_table(per_model: dict[str, dict[str, dict[str, float]]], title: str = "") -> Table:
    """One row per model, one column per metric: 'apparent -> corrected' (optimism-corrected)."""
    metrics = list(dict.fromkeys(m for block in per_model.values() for m in block))
    table = Table(title=title or None)
    table.add_column("model")
    for name in metrics:
        table.add_column(name, justify="right")

    def cell(values: dict[str, float] | None) -> str:
        if not values:
            return ""
        fmt = [f"{values[k]:.3f}" if values[k] is not None and values[k] == values[k] else "NA"
               for k in ("apparent", "corrected")]
        return f"{fmt[0]} -> {fmt[1]}"

    for model, block in per_model.items():
        table.add_row(model, *(cell(block.get(name)) for name in metrics))
    return table

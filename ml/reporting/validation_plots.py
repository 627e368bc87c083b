"""Internal-validation display from plain frames: the calibration figure (one panel per horizon,
with the bootstrap band) and the terminal table. Imports pyplot: the CLI imports this module
inside its command, off the start-up path."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
from rich.table import Table


def plot_calibration_band(ax, curve: pd.DataFrame, horizon: str, unit: str = "") -> None:
    """Observed (Kaplan-Meier) vs mean predicted S(h) by risk group, with the bootstrap band shaded."""
    if curve.empty:
        ax.text(0.5, 0.5, "no calibration data", ha="center", transform=ax.transAxes)
        return
    ax.fill_between(curve["predicted"], curve["band_low"], curve["band_high"], color="tab:blue", alpha=0.15,
                    label="bootstrap 95 % band (test curves)")
    ax.plot(curve["predicted"], curve["observed"], "o-", color="tab:blue", label="apparent (all rows)")
    ax.plot([0, 1], [0, 1], ls="--", c="0.6", lw=1)
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel=f"predicted S({horizon}{unit})",
           ylabel=f"observed S({horizon}{unit}) (Kaplan-Meier)", title=f"horizon {horizon}{unit}")
    ax.legend(loc="upper left", fontsize="small")


def calibration_figure(calibration: pd.DataFrame, horizons: list[str], *, title: str = "",
                       unit: str = "") -> plt.Figure:
    """One panel per horizon (frame columns: horizon, predicted, observed, band_low, band_high)."""
    fig, axes = plt.subplots(1, len(horizons), figsize=(4.5 * len(horizons), 4.5), squeeze=False)
    for ax, label in zip(axes[0], horizons, strict=True):
        curve = calibration[calibration["horizon"] == label] if len(calibration) else calibration
        curve = curve.sort_values("predicted") if len(curve) else curve
        plot_calibration_band(ax, curve, label, unit)
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

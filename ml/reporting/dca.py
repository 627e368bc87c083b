"""Decision curves: net benefit against threshold probability, one line per model, with the
treat-all and treat-none references labelled (as dcurves' plot_graphs draws them)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

REFERENCE_STYLE = {"treat all": ("#555555", ":"), "treat none": ("#000000", "-")}


def plot_decision_curve(ax, curves: pd.DataFrame, horizon: str, labels: dict[str, str] | None = None) -> None:
    labels = labels or {}
    top = float(curves.loc[curves["model"] == "treat all", "net_benefit"].max())
    for i, (model, part) in enumerate(curves.groupby("model", sort=False)):
        colour, style = REFERENCE_STYLE.get(model, (f"C{i}", "-"))
        ax.plot(part["threshold"], part["net_benefit"], color=colour, linestyle=style,
                linewidth=1.4 if model in REFERENCE_STYLE else 1.8, label=labels.get(model, model))
    ax.set_ylim(-0.05, max(0.05, top) * 1.15 + 0.01)
    ax.set_xlabel(f"threshold probability of an event by {horizon} months")
    ax.set_ylabel("net benefit")
    ax.set_title(f"Decision curve, horizon {horizon} months", fontsize=9, loc="left")
    ax.grid(alpha=0.2)
    ax.legend(fontsize=7, frameon=False)


def dca_figure(dca: pd.DataFrame, labels: dict[str, str] | None = None):
    horizons = list(dict.fromkeys(dca["horizon"]))
    fig, axes = plt.subplots(1, len(horizons), figsize=(5.6 * len(horizons), 4), squeeze=False)
    for ax, h in zip(axes[0], horizons, strict=True):
        plot_decision_curve(ax, dca[dca["horizon"] == h], str(h), labels)
    fig.tight_layout()
    return fig


def threshold_grid(low: float = 0.05, high: float = 0.95, step: float = 0.01) -> np.ndarray:
    return np.round(np.arange(low, high + step / 2, step), 10)

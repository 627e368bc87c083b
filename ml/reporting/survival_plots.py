"""Kaplan-Meier plots as survminer's `ggsurvplot` draws them, and the propensity overlap.

KM: step curves with their band, censoring ticks ("+") where patients were censored, median
drop lines, the test and hazard ratio printed on the plot, and a risk table underneath whose
title says that the numbers are real patients (an IPTW-weighted curve is drawn for a
pseudo-population, but the numbers at risk are the patients actually followed).
Overlap: mirrored histograms with counts on an integer axis, labelled as absolute counts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import FuncFormatter, MaxNLocator

PALETTE = ("#D55E00", "#0072B2", "#009E73", "#CC79A7")


def group_colours(labels: Sequence[str]) -> dict[str, str]:
    return {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(labels)}


def _curve_value(curve: pd.DataFrame, at: np.ndarray) -> np.ndarray:
    idx = np.searchsorted(curve["time"].to_numpy(), at, side="right") - 1
    return curve["survival"].to_numpy()[np.clip(idx, 0, None)]


def _draw_group(ax, curve: pd.DataFrame, censored: np.ndarray, median: float, colour: str,
                label: str) -> None:
    ax.step(curve["time"], curve["survival"], where="post", color=colour, label=label, linewidth=1.6)
    if curve["ci_low"].notna().any():
        ax.fill_between(curve["time"], curve["ci_low"], curve["ci_high"], step="post", color=colour,
                        alpha=0.15, linewidth=0)
    if len(censored):
        ax.plot(censored, _curve_value(curve, np.asarray(censored, float)), linestyle="none",
                marker="+", markersize=7, markeredgewidth=1.2, color=colour)
    if np.isfinite(median):
        ax.plot([0, median, median], [0.5, 0.5, 0], color=colour, linestyle="--", linewidth=0.8)


def _risk_table(ax, risk_times: np.ndarray, at_risk: Mapping[str, list[int]],
                colours: Mapping[str, str]) -> None:
    groups = list(at_risk)
    for i, group in enumerate(groups):
        y = len(groups) - 1 - i
        for t, count in zip(risk_times, at_risk[group], strict=True):
            ax.text(t, y, str(count), ha="center", va="center", fontsize=8, color=colours[group])
    ax.set_yticks(range(len(groups)), labels=list(reversed(groups)), fontsize=8)
    ax.set_ylim(-0.6, len(groups) - 0.4)
    ax.set_title("Number at risk (real patients, unweighted)", fontsize=8, loc="left")
    ax.tick_params(axis="x", labelsize=8)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def km_survminer(panel, time_unit: str = "months"):
    """One `content.KMPanel` as a figure: the curves above, the risk table below."""
    fig, (ax, table) = plt.subplots(2, 1, figsize=(6.4, 5.6), height_ratios=(4, 1.1), sharex=True)
    colours = group_colours(list(panel.curves))
    for group, curve in panel.curves.items():
        _draw_group(ax, curve, panel.censored.get(group, np.array([])), panel.medians.get(group, np.nan),
                    colours[group], group)
    ax.set_ylim(0, 1.03)
    end = float(max(c["time"].max() for c in panel.curves.values()))
    ax.set_xlim(-0.05 * end, end * 1.03)  # room for the risk table's first column beside its labels
    ax.set_ylabel(panel.ylabel)
    ax.set_title(panel.title, fontsize=10, loc="left")
    ax.text(0.98, 0.97, panel.annotation, transform=ax.transAxes, ha="right", va="top", fontsize=8,
            bbox={"facecolor": "white", "edgecolor": "#cccccc", "boxstyle": "round,pad=0.3"})
    ax.plot([], [], marker="+", linestyle="none", color="#555555", label="censored")
    ax.plot([], [], linestyle="--", color="#555555", linewidth=0.8, label="median")
    ax.legend(loc="lower left", fontsize=8, frameon=False)
    ax.text(0.0, -0.02, panel.band, transform=ax.transAxes, fontsize=7, color="#555555", va="top")
    ax.grid(alpha=0.2)
    _risk_table(table, panel.risk_times, panel.at_risk, colours)
    table.set_xlabel(f"time ({time_unit})")
    table.set_xticks(panel.risk_times)
    fig.tight_layout()
    return fig


def overlap_counts(propensity, treated, labels: tuple[str, str], weights=None, bins: int = 20,
                   ax=None):
    """Mirrored histograms of the propensity score: the treated group above the axis, the control
    group below, the y axis in (positive, whole) numbers of patients, or of weighted patients."""
    e, t = np.asarray(propensity, float), np.asarray(treated, bool)
    w = np.ones(len(e)) if weights is None else np.asarray(weights, float)
    colours = group_colours(labels)
    edges = np.linspace(0, 1, bins + 1)
    up, _ = np.histogram(e[t], edges, weights=w[t])
    down, _ = np.histogram(e[~t], edges, weights=w[~t])
    ax = ax if ax is not None else plt.subplots(figsize=(6.4, 4))[1]
    width = edges[1] - edges[0]
    ax.bar(edges[:-1], up, width=width, align="edge", color=colours[labels[0]], alpha=0.8, label=labels[0])
    ax.bar(edges[:-1], -down, width=width, align="edge", color=colours[labels[1]], alpha=0.8,
           label=labels[1])
    ax.axhline(0, color="black", linewidth=0.8)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{abs(v):g}"))
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"propensity score P({labels[0]} | confounders)")
    kind = "patients" if weights is None else "weighted patients (sum of IPTW weights)"
    ax.set_ylabel(f"{kind}\n{labels[0]} above, {labels[1]} below")
    ax.legend(fontsize=8, frameon=False)
    return ax


def overlap_figure(propensity, treated, labels: tuple[str, str], weights):
    """Unweighted and weighted overlap side by side."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    overlap_counts(propensity, treated, labels, ax=axes[0])
    axes[0].set_title("unweighted (patients)", fontsize=9)
    overlap_counts(propensity, treated, labels, weights=weights, ax=axes[1])
    axes[1].set_title("IPTW-weighted (pseudo-population)", fontsize=9)
    fig.tight_layout()
    return fig

"""Matplotlib figures of the study analysis, from plain data (frames, arrays, group labels).

Each `*_plot` draws on an `ax` it is given; each `*_figure` makes a figure of them. Nothing
is computed beyond drawing (curves come in ready-made), saved or logged here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")
"""Group colours in the order the caller lists its groups (treated first, by convention)."""


def group_colours(labels: Sequence[str]) -> dict[str, str]:
    """One colour per group label, in order."""
    return {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(labels)}


def love_plot(ax, smd: pd.DataFrame, threshold: float = 0.1, confounders_only: bool = False) -> None:
    """|SMD| per covariate term before and after weighting, with the balance threshold.

    `smd` has columns term, before, after (and confounder, used with confounders_only).
    """
    data = smd[smd["confounder"]] if confounders_only else smd
    data = data.assign(abs_before=data["before"].abs(), abs_after=data["after"].abs())
    data = data.sort_values("abs_before")
    y = np.arange(len(data))
    ax.scatter(data["abs_before"], y, marker="o", facecolors="none", edgecolors="#888888",
               label="unweighted")
    ax.scatter(data["abs_after"], y, marker="o", color=PALETTE[0], label="IPTW-weighted")
    ax.axvline(threshold, color=PALETTE[1], linestyle="--", linewidth=1, label=f"|SMD| = {threshold:g}")
    ax.set_yticks(y, data["term"], fontsize=7)
    ax.set_xlabel("absolute standardized mean difference")
    ax.set_title("Covariate balance (Love plot)")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(axis="x", alpha=0.3)


def _at_risk_rows(ax, follow_up: Mapping[str, np.ndarray], colours: Mapping[str, str]) -> None:
    """Numbers at risk (patients followed at least to each tick) as text rows under the axis."""
    lo, hi = ax.get_xlim()
    ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
    transform = ax.get_xaxis_transform()  # x in data units, y in axes units
    ax.text(-0.04, -0.16, "At risk", transform=ax.transAxes, ha="right", va="top", fontsize=8)
    for i, (label, times) in enumerate(follow_up.items()):
        y = -0.22 - 0.06 * i
        ax.text(-0.04, y, label, transform=ax.transAxes, ha="right", va="top", fontsize=8,
                color=colours[label])
        for tick in ticks:
            ax.text(tick, y, str(int(np.sum(np.asarray(times) >= tick))), transform=transform,
                    ha="center", va="top", fontsize=8)


def km_plot(ax, curves: Mapping[str, pd.DataFrame], colours: Mapping[str, str] | None = None,
            follow_up: Mapping[str, np.ndarray] | None = None, title: str = "",
            ylabel: str = "survival probability") -> None:
    """Step curves per group, each a frame (time, survival, ci_low, ci_high) from time 0.

    A band is drawn where ci_low/ci_high are given (not NaN); `follow_up` (real patients'
    follow-up times per group) adds the numbers at risk under the axis.
    """
    colours = colours or group_colours(list(curves))
    for label, curve in curves.items():
        colour = colours[label]
        ax.step(curve["time"], curve["survival"], where="post", color=colour, label=label)
        if curve["ci_low"].notna().all():
            ax.fill_between(curve["time"], curve["ci_low"], curve["ci_high"], step="post",
                            color=colour, alpha=0.2, linewidth=0)
    ax.axhline(0.5, color="#999999", linewidth=0.8, linestyle=":")
    ax.set_ylim(0, 1.02)
    ax.set_xlim(left=0)
    ax.set_xlabel("months")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    if follow_up:
        _at_risk_rows(ax, follow_up, colours)


def propensity_overlap(ax, propensity, treated, labels: tuple[str, str] = ("treated", "control"),
                       bins: int = 20) -> None:
    """Mirrored histograms of the propensity score by group (overlap / positivity).

    `labels` names the treated group (drawn above the axis), then the control group.
    """
    e = np.asarray(propensity, dtype=float)
    t = np.asarray(treated, dtype=bool)
    colours = group_colours(labels)
    edges = np.linspace(0, 1, bins + 1)
    up, _ = np.histogram(e[t], edges)
    down, _ = np.histogram(e[~t], edges)
    width = edges[1] - edges[0]
    ax.bar(edges[:-1], up, width=width, align="edge", color=colours[labels[0]], alpha=0.8,
           label=labels[0])
    ax.bar(edges[:-1], -down, width=width, align="edge", color=colours[labels[1]], alpha=0.8,
           label=labels[1])
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"propensity score P({labels[0]} | confounders)")
    ax.set_ylabel(f"patients ({labels[1]} below the axis)")
    ax.set_title("Propensity overlap")
    ax.legend(fontsize=8)


# --- figures ------------------------------------------------------------------------------------


def km_figure(panels: Sequence[tuple[str, Mapping[str, pd.DataFrame]]], ylabel: str,
              follow_up: Mapping[str, np.ndarray] | None = None):
    """KM panels side by side (sharing the y axis), each (title, curves per group)."""
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 5.5), sharey=True,
                             squeeze=False)
    for ax, (title, curves) in zip(axes[0], panels, strict=True):
        km_plot(ax, curves, follow_up=follow_up, title=title, ylabel=ylabel)
    fig.tight_layout()
    return fig


def love_figure(smd: pd.DataFrame, threshold: float):
    """The Love plot, its height growing with the number of terms."""
    fig, ax = plt.subplots(figsize=(7, max(4.0, 0.22 * len(smd) + 1.5)))
    love_plot(ax, smd, threshold)
    fig.tight_layout()
    return fig


def overlap_figure(propensity, treated, labels: tuple[str, str]):
    """The propensity overlap histogram as a figure."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    propensity_overlap(ax, propensity, treated, labels)
    fig.tight_layout()
    return fig

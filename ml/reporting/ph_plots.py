"""Scaled Schoenfeld residuals against transformed time, with a smooth: R's `plot.cox.zph`.

Each panel draws one term's beta(t) (its log-HR at each event time: scaled Schoenfeld
residual plus the fitted coefficient) against g(t), the smooth's line and its +-2 SE band,
and a dotted line at the fitted (time-constant) log-HR. A flat smooth inside its band is
what proportional hazards look like. Plain arrays and frames in; no domain imports.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd


@dataclass(frozen=True)
class SchoenfeldPanel:
    """One panel: the title, g(t) and beta(t) per event, the fitted log-HR, the smooth
    (columns g, fit, low, high; None to draw the points only), the term's PH test p and the
    event times (to label the g axis in time, as R does; None keeps g)."""

    title: str
    g: np.ndarray
    beta_t: np.ndarray
    coef: float
    smooth: pd.DataFrame | None
    p: float | None = None
    time: np.ndarray | None = None


def schoenfeld_plot(ax, panel: SchoenfeldPanel, xlabel: str) -> None:
    """Draw one term's scaled Schoenfeld residuals, smooth and band on `ax`."""
    ax.scatter(panel.g, panel.beta_t, s=6, color="0.55", alpha=0.6, linewidths=0)
    if panel.smooth is not None:
        s = panel.smooth
        ax.plot(s["g"], s["fit"], color="tab:blue", lw=1.5)
        ax.plot(s["g"], s["low"], color="tab:blue", lw=1, ls="--")
        ax.plot(s["g"], s["high"], color="tab:blue", lw=1, ls="--")
        # the band, not the scattered residuals, sets the y range (as a reader compares it to the line)
        span = np.concatenate([s["low"], s["high"], [panel.coef]])
        pad = 0.15 * (span.max() - span.min() or 1.0)
        ax.set_ylim(span.min() - pad, span.max() + pad)
    ax.axhline(panel.coef, color="tab:red", lw=1, ls=":")
    title = panel.title if panel.p is None else f"{panel.title} (p = {panel.p:.3g})"
    ax.set_title(title, fontsize=9)
    if panel.time is not None and np.ptp(panel.g) > 0:
        ticks = np.linspace(np.min(panel.g), np.max(panel.g), 5)
        order = np.argsort(panel.g, kind="stable")
        ax.set_xticks(ticks, [f"{t:.3g}" for t in np.interp(ticks, panel.g[order], panel.time[order])])
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel("beta(t)", fontsize=8)
    ax.tick_params(labelsize=7)


def schoenfeld_figure(panels: Sequence[SchoenfeldPanel], xlabel: str, suptitle: str = "",
                      ncols: int = 4):
    """All panels in a grid; returns the figure."""
    ncols = max(1, min(ncols, len(panels)))
    nrows = max(1, math.ceil(len(panels) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.6 * nrows), squeeze=False)
    for ax, panel in zip(axes.ravel(), panels, strict=False):
        schoenfeld_plot(ax, panel, xlabel)
    for ax in axes.ravel()[len(panels):]:
        ax.set_visible(False)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    return fig

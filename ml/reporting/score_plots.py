"""One patient's predicted PFS curve (matplotlib), drawn from plain arrays on a given `ax`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

CURVE_COLOR = "#23395d"
MEDIAN_COLOR = "#c62828"


def plot_survival_curve(ax: Any, months: np.ndarray, survival: np.ndarray, *, median: float,
                        horizons: Sequence[float] = (), horizon_survival: Sequence[float] = (),
                        title: str = "", low: np.ndarray | None = None, high: np.ndarray | None = None,
                        band_label: str = "95% CI", color: str = CURVE_COLOR) -> Any:
    """S(t) as a step function on `months`, its pointwise interval (`low`, `high`, if given and
    not all NaN) as a shaded band labelled `band_label`, the median (if reached within the plot)
    as a dashed line and S at `horizons` as dots, in `color` (call twice for two curves); returns `ax`."""
    end = months[-1]
    if low is not None and high is not None and np.any(np.isfinite(low)):
        ax.fill_between(months, low, high, step="post", color=color, alpha=0.18, lw=0,
                        label=band_label)
        ax.legend(loc="upper right", fontsize=8, frameon=False)
    ax.step(months, survival, where="post", color=color, lw=2)
    ax.axhline(0.5, color="0.6", ls="--", lw=0.8)
    if np.isfinite(median) and median <= end:
        ax.axvline(median, ymax=0.5, color=MEDIAN_COLOR, ls="--", lw=0.8)
    for t, s in zip(horizons, horizon_survival, strict=True):
        if np.isfinite(s) and t <= end:
            ax.plot([t], [s], "o", color=color, ms=4)
    ax.set(xlim=(0, end), ylim=(0, 1.02), xlabel="months since start of rechallenge", ylabel="P(PFS > t)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    return ax

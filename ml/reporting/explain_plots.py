"""SHAP figures: beeswarm, mean-|SHAP| bar, one patient's waterfall.

Display only, no domain code: every function takes a `shap.Explanation` (one column per
feature; `ml.explain.to_shap` builds it from the project's explanations) and draws it
with shap's own plots. Beeswarm and bar draw on a given matplotlib `ax`; shap's waterfall
cannot, so it returns a new figure.
"""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import shap
from matplotlib.figure import Figure


def plot_beeswarm(values: shap.Explanation, ax: Any, title: str = "", max_display: int = 15,
                  random_state: int = 0) -> Any:
    """Beeswarm of per-feature SHAP values; colour = feature value (`values.data`).

    shap jitters the points with numpy's global generator: it is seeded with `random_state`
    for the call (the same figure on every run) and restored afterwards (nothing leaks).
    """
    state = np.random.get_state()
    np.random.seed(random_state)
    try:
        shap.plots.beeswarm(values, max_display=max_display, ax=ax, show=False, plot_size=None)
    finally:
        np.random.set_state(state)
    ax.set_title(title, fontsize=10)
    return ax


def plot_bar(values: shap.Explanation, ax: Any, title: str = "", max_display: int = 15) -> Any:
    """Mean |SHAP| per feature."""
    shap.plots.bar(values, max_display=max_display, ax=ax, show=False)
    ax.set_title(title, fontsize=10)
    return ax


def plot_waterfall(values: shap.Explanation, row: int, title: str = "", max_display: int = 12) -> Figure:
    """Waterfall of row `row` (a position) of `values`; returns the figure shap drew on."""
    if not 0 <= row < len(values.values):
        raise IndexError(f"row {row} is not among the {len(values.values)} explained rows")
    plt.figure(figsize=(8, 6))
    shap.plots.waterfall(values[row], max_display=max_display, show=False)
    fig = plt.gcf()
    fig.suptitle(title, fontsize=10)
    return fig

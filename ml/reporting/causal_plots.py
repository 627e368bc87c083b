"""Figures of the causal section: adjusted curves per arm with bands and their difference, the
RMST difference over tau, and the Love plot of the weighting methods (`love_plot.love_figure`).

Input is plain frames (the adjusted-curves frames of `ml.stats.causal.adjusted`): time, arm,
estimator, survival / difference, ci_low, ci_high. Nothing is computed here beyond drawing.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ml.reporting.analysis_plots import group_colours
from ml.reporting.love_plot import love_figure

ESTIMATOR_NAMES = {"iptw": "IPTW-weighted Kaplan-Meier", "gformula": "G-formula (standardised Cox)",
                   "ipcw": "IPTW with censoring weights", "aiptw": "doubly robust AIPTW"}
"""Figure labels in words for the estimator ids of `ml.stats.causal`."""


def estimator_name(est: str) -> str:
    return ESTIMATOR_NAMES.get(est, est)


def _band(ax, x, y, lo, hi, colour: str, label: str) -> None:
    ax.step(x, y, where="post", color=colour, label=label, linewidth=1.4)
    if np.isfinite(np.asarray(lo, float)).any():
        ax.fill_between(x, lo, hi, step="post", color=colour, alpha=0.18, linewidth=0)


def adjusted_curves_figure(curves: pd.DataFrame, differences: pd.DataFrame, arms: Sequence[str],
                           title: str, horizons: Sequence[float] = ()):
    """Top row: each estimator's S(t) per arm with its pointwise band; bottom row: the
    difference (arms[0] - arms[1]) on the curves' grid, with its CI as error bars at the
    horizons (`differences`: time, estimator, difference, ci_low, ci_high)."""
    estimators = list(dict.fromkeys(curves["estimator"]))
    colours = group_colours(list(arms))
    fig, axes = plt.subplots(2, len(estimators), figsize=(4.2 * len(estimators), 6.4),
                             squeeze=False, sharex=True)
    for j, est in enumerate(estimators):
        top, bottom = axes[0, j], axes[1, j]
        for arm in arms:
            c = curves[(curves["estimator"] == est) & (curves["arm"] == arm)]
            _band(top, c["time"], c["survival"], c["ci_low"], c["ci_high"], colours[arm], arm)
        one = curves[(curves["estimator"] == est) & (curves["arm"] == arms[0])]
        two = curves[(curves["estimator"] == est) & (curves["arm"] == arms[1])]
        bottom.step(one["time"], one["survival"].to_numpy() - two["survival"].to_numpy(), where="post",
                    color="#444444", linewidth=1.4, label=f"{arms[0]} - {arms[1]}")
        d = differences[differences["estimator"] == est]
        # a percentile interval need not contain the estimate: drawn as a segment, not an error bar
        bottom.vlines(d["time"], d["ci_low"], d["ci_high"], color="black", linewidth=1.2,
                      label="95% CI at the horizons")
        bottom.plot(d["time"], d["difference"], "o", color="black", markersize=3)
        bottom.axhline(0, color="black", linewidth=0.7)
        for h in horizons:
            for ax in (top, bottom):
                ax.axvline(h, color="grey", linestyle=":", linewidth=0.7)
        top.set_title(estimator_name(est), fontsize=10)
        top.set_ylim(-0.05, 1.05)
        top.set_ylabel("adjusted survival")
        bottom.set_ylabel("difference in survival")
        bottom.set_xlabel("months")
        top.legend(fontsize=7, loc="upper right")
        bottom.legend(fontsize=7, loc="upper right")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def rmst_tau_figure(by_tau: pd.DataFrame, arms: Sequence[str], title: str):
    """The RMST difference (arms[0] - arms[1]) as a function of tau, per estimator, with bands
    (columns time = tau, estimator, difference, ci_low, ci_high)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    palette = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")
    for i, (est, part) in enumerate(by_tau.groupby("estimator", sort=False)):
        ax.plot(part["time"], part["difference"], color=palette[i % 4], label=estimator_name(est),
                linewidth=1.4)
        if np.isfinite(part["ci_low"].to_numpy(float)).any():
            ax.fill_between(part["time"], part["ci_low"], part["ci_high"], color=palette[i % 4],
                            alpha=0.12, linewidth=0)
    ax.axhline(0, color="black", linewidth=0.7)
    ax.set_xlabel("tau (months)")
    ax.set_ylabel(f"RMST difference, {arms[0]} - {arms[1]} (months)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def weighting_love_figure(balance: pd.DataFrame, confounders: Sequence[str]):
    """cobalt-style Love plot (SMD, variance ratio, KS) of every weighting method side by side."""
    return love_figure(balance, confounders=confounders)

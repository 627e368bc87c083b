"""Benchmark figures (matplotlib) from plain frames. Each plot function draws on a given `ax`;
`benchmark_figures` assembles the standard set for files and MLflow. Imports pyplot: the CLI
imports this module inside its command, off the start-up path."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

RISK_COLORS = {"low": "tab:green", "medium": "tab:orange", "high": "tab:red"}


def plot_cindex(ax, board: pd.DataFrame, metric: str = "harrell_c", baseline: str = "cox") -> None:
    """Mean and 95 % CI of a C-index per model (best on top); dashed line at the baseline mean."""
    df = board.dropna(subset=[metric]).sort_values(metric)
    y = np.arange(len(df))
    lo = (df[metric] - df[f"{metric}_ci_low"]).fillna(0).clip(lower=0)
    hi = (df[f"{metric}_ci_high"] - df[metric]).fillna(0).clip(lower=0)
    colors = ["0.5" if m == "oracle" else "tab:blue" for m in df["model"]]
    for yi, x, l_, h_, c in zip(y, df[metric], lo, hi, colors, strict=True):
        ax.errorbar([x], [yi], xerr=[[l_], [h_]], fmt="o", color=c, capsize=3)
    ax.set_yticks(y, df["model"])
    if baseline in set(df["model"]):
        ax.axvline(float(df.loc[df["model"] == baseline, metric].iloc[0]), ls="--", c="0.6", lw=1)
    ax.axvline(0.5, ls=":", c="0.8", lw=1)
    ax.set_xlabel(f"{metric.replace('_', ' ')} (mean, 95 % CI, corrected resampled t)")


def plot_calibration(ax, calibration: pd.DataFrame, horizon: str, unit: str = "") -> None:
    """Observed (KM) vs mean predicted S(h) by risk group, averaged over folds, per model."""
    if calibration.empty:
        ax.text(0.5, 0.5, "no calibration data", ha="center", transform=ax.transAxes)
        return
    mean = calibration.groupby(["model", "group"], sort=False)[["predicted", "observed"]].mean().reset_index()
    for model, g in mean.groupby("model", sort=False):
        ax.plot(g["predicted"], g["observed"], marker="o", label=model)
    ax.plot([0, 1], [0, 1], ls="--", c="0.6", lw=1)
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel=f"predicted S({horizon}{unit})",
           ylabel=f"observed S({horizon}{unit}) (Kaplan-Meier)")
    ax.legend(fontsize=7)


def plot_km_by_risk(ax, km_curves: pd.DataFrame, model: str, time_unit: str = "") -> None:
    """Kaplan-Meier curves of one model's out-of-fold risk tertiles.

    `km_curves`: one row per step (model, group, n, time, survival), as the benchmark's
    `km_by_risk` gives them.
    """
    df = km_curves[km_curves["model"] == model]
    for group in ("low", "medium", "high"):
        g = df[df["group"] == group]
        if len(g):
            ax.step(g["time"], g["survival"], where="post", color=RISK_COLORS[group],
                    label=f"{group} ({int(g['n'].iloc[0])})")
    ax.set(title=model, xlabel=f"time ({time_unit})" if time_unit else "time", ylabel="S(t)", ylim=(0, 1))
    ax.legend(fontsize=7)


def benchmark_figures(leaderboard: pd.DataFrame, calibration: pd.DataFrame, km_curves: pd.DataFrame, *,
                      data_name: str, calibration_horizon: str, time_unit: str) -> dict[str, object]:
    """{'cindex.png', 'calibration.png', 'km_by_risk.png'} of a benchmark's leaderboard,
    calibration rows and KM curves by risk tertile (first repeat)."""
    figs: dict[str, object] = {}
    fig, ax = plt.subplots(figsize=(6, 0.45 * len(leaderboard) + 1.5))
    plot_cindex(ax, leaderboard)
    ax.set_title(f"Harrell C by model: {data_name}")
    fig.tight_layout()
    figs["cindex.png"] = fig
    fig, ax = plt.subplots(figsize=(5.5, 5))
    plot_calibration(ax, calibration, calibration_horizon, f" {time_unit}")
    ax.set_title(f"Calibration at {calibration_horizon} ({time_unit})")
    fig.tight_layout()
    figs["calibration.png"] = fig
    names = list(dict.fromkeys(km_curves["model"]))
    if names:
        figs["km_by_risk.png"] = _km_grid(km_curves, names, time_unit)
    return figs


def _km_grid(km_curves: pd.DataFrame, names: list[str], time_unit: str):
    cols = min(4, len(names))
    rows = int(np.ceil(len(names) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.0 * rows), squeeze=False)
    for ax, name in zip(axes.ravel(), names, strict=False):
        plot_km_by_risk(ax, km_curves, name, time_unit)
    for ax in axes.ravel()[len(names):]:
        ax.set_axis_off()
    fig.suptitle("Kaplan-Meier by out-of-fold risk tertile (first repeat)")
    fig.tight_layout()
    return fig


def close_figures(figures: dict[str, object]) -> None:
    """Free the figures' memory (pyplot keeps every open figure alive)."""
    for fig in figures.values():
        plt.close(fig)

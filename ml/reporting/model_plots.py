"""Prediction-model figures for the report: the leaderboard (readable model names, CIs, labelled
reference lines) and SHAP summaries with categorical features shown level by level."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd


def leaderboard_figure(board: pd.DataFrame, labels: dict[str, str], baseline: str = "cox"):
    """Harrell and Uno C per model (mean, 95 % CI), best on top; lines: the Cox baseline and 0.5."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.9 + 0.45 * len(board)), sharey=True)
    df = board.sort_values("harrell_c").reset_index(drop=True)
    y = np.arange(len(df))
    for ax, metric, name in zip(axes, ("harrell_c", "uno_c"), ("Harrell's C", "Uno's C (IPCW)"), strict=True):
        lo = (df[metric] - df[f"{metric}_ci_low"]).clip(lower=0).fillna(0)
        hi = (df[f"{metric}_ci_high"] - df[metric]).clip(lower=0).fillna(0)
        ax.errorbar(df[metric], y, xerr=[lo, hi], fmt="o", color="#0072B2", capsize=3)
        if baseline in set(df["model"]):
            ref = float(df.loc[df["model"] == baseline, metric].iloc[0])
            ax.axvline(ref, ls="--", c="#D55E00", lw=1, label=f"Cox baseline ({ref:.3f})")
        ax.axvline(0.5, ls=":", c="0.5", lw=1, label="0.5 = no discrimination")
        ax.set_xlabel(f"{name}: mean and 95% CI over the CV resamples")
        ax.legend(fontsize=7, loc="lower right", frameon=False)
        ax.grid(axis="x", alpha=0.2)
    axes[0].set_yticks(y, [labels.get(m, m) for m in df["model"]], fontsize=8)
    fig.tight_layout()
    return fig


def _level_rows(frame: pd.DataFrame, top: int) -> list[tuple[str, np.ndarray, np.ndarray | None]]:
    """(row label, SHAP values, numeric values or None): a categorical feature one row per level."""
    order = frame.groupby("feature", sort=False)["shap"].apply(lambda s: s.abs().mean())
    rows = []
    for feature in order.sort_values(ascending=False).index[:top]:
        part = frame[frame["feature"] == feature]
        if part["numeric"].notna().all():
            rows.append((feature, part["shap"].to_numpy(), part["numeric"].to_numpy(float)))
            continue
        for level, sub in part.groupby("level", sort=True):
            rows.append((f"{feature} = {level}", sub["shap"].to_numpy(), None))
    return rows


def shap_levels_figure(frame: pd.DataFrame, title: str, hazard_ratio: bool, top: int = 8):
    """Beeswarm-like strips: x = SHAP on the model's scale; a categorical feature gets one row per
    level (no colour scale), a numeric one a row coloured by its value (low blue, high red). With
    `hazard_ratio` the top axis reads exp(SHAP), the factor on the hazard."""
    rows = _level_rows(frame, top)
    fig, ax = plt.subplots(figsize=(8.5, 0.8 + 0.26 * len(rows)))
    rng = np.random.default_rng(0)
    for i, (_, shap, numeric) in enumerate(rows):
        y = len(rows) - 1 - i + rng.uniform(-0.18, 0.18, len(shap))
        if numeric is None:
            ax.scatter(shap, y, s=9, color="#555555", alpha=0.7)
        else:
            ax.scatter(shap, y, s=9, c=numeric, cmap="coolwarm", alpha=0.8)
    ax.set_yticks(range(len(rows)), [r[0] for r in reversed(rows)], fontsize=7.5)
    ax.axvline(0, color="0.5", lw=0.8)
    ax.set_xlabel("SHAP value (log-hazard scale: + raises the risk); numeric features coloured "
                  "by value, blue low to red high")
    ax.set_title(title, fontsize=9, loc="left")
    if hazard_ratio:
        top_axis = ax.secondary_xaxis("top", functions=(np.exp, lambda v: np.log(np.clip(v, 1e-300, None))))
        top_axis.set_xlabel("hazard ratio factor exp(SHAP)", fontsize=8)
    fig.tight_layout()
    return fig

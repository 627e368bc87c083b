"""Matplotlib figures of the study analysis. Each plot function draws on an `ax` it is given;
`analysis_figures` composes them into figures. Nothing is saved or logged here.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from features import schema

GROUP_COLOURS = {schema.TREATED: "#1f77b4", schema.CONTROL: "#d62728", "all": "#444444"}


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
    ax.scatter(data["abs_after"], y, marker="o", color="#1f77b4", label="IPTW-weighted")
    ax.axvline(threshold, color="#d62728", linestyle="--", linewidth=1, label=f"|SMD| = {threshold:g}")
    ax.set_yticks(y, data["term"], fontsize=7)
    ax.set_xlabel("absolute standardized mean difference")
    ax.set_title("Covariate balance (Love plot)")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(axis="x", alpha=0.3)


def km_plot(ax, time, event, group, weights=None, at_risk: bool = True, title: str = "",
            ylabel: str = "survival probability") -> None:
    """Kaplan-Meier curves per group, optionally IPTW-weighted, with numbers at risk.

    Weighted curves are drawn without a pointwise band (Greenwood bands would treat the
    weights as patient counts); the numbers at risk are real patients, not weights.
    """
    from lifelines import KaplanMeierFitter
    from lifelines.exceptions import StatisticalWarning
    from lifelines.plotting import add_at_risk_counts

    time = np.asarray(time, dtype=float)
    event = np.asarray(event).astype(bool)
    group = np.asarray(group)
    counted = []
    for label in (schema.TREATED, schema.CONTROL):
        m = group == label
        if not m.any():
            continue
        w = None if weights is None else np.asarray(weights, dtype=float)[m]
        with warnings.catch_warnings():
            # lifelines warns that its variance is naive under IPTW weights: no band is drawn
            warnings.simplefilter("ignore", StatisticalWarning)
            kmf = KaplanMeierFitter(label=label).fit(time[m], event[m], weights=w)
        kmf.plot_survival_function(ax=ax, ci_show=weights is None, color=GROUP_COLOURS[label])
        counted.append(KaplanMeierFitter(label=label).fit(time[m], event[m]))
    ax.axhline(0.5, color="#999999", linewidth=0.8, linestyle=":")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("months")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if at_risk and counted:
        add_at_risk_counts(*counted, ax=ax, rows_to_show=["At risk"])


def propensity_overlap(ax, propensity, treated, bins: int = 20) -> None:
    """Mirrored histograms of the propensity score by group (overlap / positivity)."""
    e = np.asarray(propensity, dtype=float)
    t = np.asarray(treated, dtype=bool)
    edges = np.linspace(0, 1, bins + 1)
    up, _ = np.histogram(e[t], edges)
    down, _ = np.histogram(e[~t], edges)
    width = edges[1] - edges[0]
    ax.bar(edges[:-1], up, width=width, align="edge", color=GROUP_COLOURS[schema.TREATED],
           alpha=0.8, label=schema.TREATED)
    ax.bar(edges[:-1], -down, width=width, align="edge", color=GROUP_COLOURS[schema.CONTROL],
           alpha=0.8, label=schema.CONTROL)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"propensity score P({schema.TREATED} | confounders)")
    ax.set_ylabel("patients (CI below the axis)")
    ax.set_title("Propensity overlap")
    ax.legend(fontsize=8)


def analysis_figures(result, df: pd.DataFrame) -> dict[str, object]:
    """The analysis figures by file name: KM PFS / OS (unweighted | IPTW), Love plot, overlap."""
    import matplotlib.pyplot as plt

    figures = {}
    group = df[schema.TREATMENT].to_numpy()
    for endpoint, (tcol, ecol) in schema.ENDPOINTS.items():
        name = endpoint.upper()
        fig, axes = plt.subplots(1, 2, figsize=(12, 5.5), sharey=True)
        km_plot(axes[0], df[tcol], df[ecol], group, title=f"{name}, unweighted (95% Greenwood band)",
                ylabel=f"{name} probability")
        km_plot(axes[1], df[tcol], df[ecol], group, weights=result.iptw.weights,
                title=f"{name}, IPTW-weighted ({result.iptw.estimand.upper()})",
                ylabel=f"{name} probability")
        fig.tight_layout()
        figures[f"km_{endpoint}.png"] = fig
    fig, ax = plt.subplots(figsize=(7, max(4.0, 0.22 * len(result.smd) + 1.5)))
    love_plot(ax, result.smd, result.config.balance_threshold)
    fig.tight_layout()
    figures["love_plot.png"] = fig
    fig, ax = plt.subplots(figsize=(7, 4.5))
    propensity_overlap(ax, result.iptw.propensity, result.iptw.treated)
    fig.tight_layout()
    figures["propensity_overlap.png"] = fig
    return figures

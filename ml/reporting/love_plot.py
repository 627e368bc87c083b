"""Love plots in the style of R cobalt's `love.plot`: one row per covariate term, one marker per
weighting (unadjusted, IPTW, entropy balancing, ...), the balance threshold as a dashed line.

Input is the long frame of `ml.stats.balance_metrics.balance_comparison` (columns `sample`,
`term`, `confounder` and one column per statistic), so nothing is computed here beyond
ordering and drawing. Terms of the confounders the weights were built on are marked with a
`*` and bold labels; other covariates are shown for their balance only.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import FixedLocator, NullFormatter, ScalarFormatter

MARKERS = ("o", "^", "s", "D", "v")
COLOURS = ("#7f7f7f", "#1f77b4", "#d62728", "#2ca02c", "#9467bd")
"""Per sample, in the order the frame lists them (the unadjusted sample first, by convention)."""

THRESHOLDS = {"smd": 0.1, "variance_ratio": 2.0, "ks": None}
"""Default balance thresholds (cobalt has none by default; 0.1 for SMD is Austin's rule, 2 for
the variance ratio Rubin's); None draws no threshold line."""

LABELS = {"smd": "standardized mean difference", "variance_ratio": "variance ratio (treated / control)",
          "ks": "Kolmogorov-Smirnov statistic"}


def _wide(balance: pd.DataFrame, stat: str, absolute: bool) -> pd.DataFrame:
    """Terms as rows, samples as columns (in the frame's order), ordered by the first sample."""
    samples = list(dict.fromkeys(balance["sample"]))
    terms = list(dict.fromkeys(balance["term"]))
    wide = balance.pivot(index="term", columns="sample", values=stat).reindex(index=terms,
                                                                              columns=samples)
    wide = wide.dropna(how="all")
    if absolute and stat == "smd":
        wide = wide.abs()
    key = np.abs(np.log(wide[samples[0]])) if stat == "variance_ratio" else wide[samples[0]].abs()
    return wide.loc[key.sort_values(kind="stable", na_position="first").index]


def _threshold_lines(ax, stat: str, threshold: float | None, absolute: bool) -> None:
    if stat == "variance_ratio":
        ax.axvline(1.0, color="black", linewidth=0.8)
        if threshold is not None:
            for x in (threshold, 1 / threshold):
                ax.axvline(x, color="black", linestyle="--", linewidth=0.8)
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(FixedLocator([0.25, 0.5, 1, 2, 4]))
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        return
    ax.axvline(0.0, color="black", linewidth=0.8)
    if threshold is not None:
        xs = (threshold,) if absolute or stat == "ks" else (-threshold, threshold)
        for x in xs:
            ax.axvline(x, color="black", linestyle="--", linewidth=0.8)


def _mark_confounders(ax, terms: Sequence[str], confounder_of: pd.Series,
                      confounders: Sequence[str] | None) -> None:
    labels = []
    for term in terms:
        marked = confounders is not None and confounder_of.get(term) in set(confounders)
        labels.append(f"{term} *" if marked else term)
    ax.set_yticks(np.arange(len(terms)), labels, fontsize=7)
    for tick, term in zip(ax.get_yticklabels(), terms, strict=True):
        if confounders is not None and confounder_of.get(term) in set(confounders):
            tick.set_fontweight("bold")


def love_plot(ax, balance: pd.DataFrame, stat: str = "smd", threshold: float | None = None,
              absolute: bool = True, confounders: Sequence[str] | None = None,
              title: str | None = None) -> None:
    """Draw one statistic's Love plot on `ax`.

    balance: long frame (sample, term, confounder, `stat`); stat: "smd", "variance_ratio"
    or "ks"; threshold: the dashed line (None: `THRESHOLDS[stat]`; the variance ratio gets it
    at t and 1/t on a log axis); absolute: |SMD|; confounders: the covariates the weights were
    built on, whose terms are marked `*`.
    """
    if stat not in LABELS:
        raise ValueError(f"stat must be one of {', '.join(LABELS)}, got '{stat}'")
    threshold = THRESHOLDS[stat] if threshold is None else threshold
    wide = _wide(balance, stat, absolute)
    y = np.arange(len(wide))
    for i, sample in enumerate(wide.columns):
        colour = COLOURS[i % len(COLOURS)]
        fill = {"facecolors": "none", "edgecolors": colour} if i == 0 else {"color": colour}
        ax.scatter(wide[sample], y, marker=MARKERS[i % len(MARKERS)], s=28, zorder=3, label=sample,
                   **fill)
    _threshold_lines(ax, stat, threshold, absolute)
    confounder_of = balance.drop_duplicates("term").set_index("term")["confounder"]
    _mark_confounders(ax, list(wide.index), confounder_of, confounders)
    ax.set_ylim(-0.7, len(wide) - 0.3)
    prefix = "absolute " if absolute and stat == "smd" else ""
    ax.set_xlabel(prefix + LABELS[stat])
    ax.grid(axis="y", alpha=0.25)
    ax.set_title(title or "Covariate balance" + (" (* confounders weighted on)" if confounders else ""),
                 fontsize=9)
    ax.legend(loc="lower right", fontsize=7)


def love_figure(balance: pd.DataFrame, stats: Sequence[str] = ("smd", "variance_ratio", "ks"),
                confounders: Sequence[str] | None = None,
                thresholds: dict[str, float | None] | None = None):
    """A figure of Love plots side by side, one panel per statistic."""
    n_terms = balance["term"].nunique()
    fig, axes = plt.subplots(1, len(stats), figsize=(4.2 * len(stats), 1.2 + 0.25 * n_terms),
                             sharey=False, squeeze=False)
    for ax, stat in zip(axes[0], stats, strict=True):
        love_plot(ax, balance, stat, (thresholds or {}).get(stat), confounders=confounders,
                  title=LABELS[stat])
    if confounders:
        fig.suptitle("Covariate balance (* the confounders the weights were built on)", fontsize=10)
    fig.tight_layout()
    return fig

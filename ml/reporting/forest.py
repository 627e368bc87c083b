"""Forest plot of a multivariable Cox model: one row per term (HR and 95 % CI on a log axis), the
terms of one covariate grouped under it with the covariate's joint test p (all its terms at
once: a multi-level factor is judged on that, not on one of its levels)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd


def _fmt_p(p: float) -> str:
    return "" if p is None or not np.isfinite(p) else ("p<0.001" if p < 0.001 else f"p={p:.3f}")


def forest_rows(terms: pd.DataFrame, joint: pd.DataFrame) -> pd.DataFrame:
    """Rows to draw: a header per covariate (joint p) then its terms (hr, ci_low, ci_high)."""
    joint_p = joint.set_index("covariate")["wald_p"] if len(joint) else pd.Series(dtype=float)
    rows = []
    for covariate, part in terms.groupby("covariate", sort=False):
        levels = len(part) > 1 or part["term"].iloc[0] != covariate
        p = joint_p.get(covariate, np.nan)
        if levels:
            rows.append({"label": covariate, "hr": np.nan, "ci_low": np.nan, "ci_high": np.nan,
                         "p": _fmt_p(p) + (" (joint)" if len(part) > 1 else ""), "header": True})
        for r in part.itertuples():
            label = "   " + r.term.split("=", 1)[-1] + " vs ref." if levels else r.term
            rows.append({"label": label, "hr": r.hr, "ci_low": r.ci_low, "ci_high": r.ci_high,
                         "p": "" if levels and len(part) > 1 else _fmt_p(p), "header": False})
    return pd.DataFrame(rows)


def forest_figure(terms: pd.DataFrame, joint: pd.DataFrame, title: str):
    rows = forest_rows(terms, joint)
    fig, ax = plt.subplots(figsize=(8.5, 0.8 + 0.24 * len(rows)))
    y = np.arange(len(rows))[::-1]
    data = rows[~rows["header"]]
    ys = y[~rows["header"].to_numpy()]
    ax.errorbar(data["hr"], ys, xerr=[data["hr"] - data["ci_low"], data["ci_high"] - data["hr"]],
                fmt="s", color="#0072B2", ecolor="#0072B2", markersize=4, capsize=2, linewidth=1)
    ax.axvline(1, color="#555555", linestyle="--", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_yticks(y, labels=rows["label"], fontsize=8)
    for yy, (text, header) in zip(y, zip(rows["p"], rows["header"], strict=True), strict=True):
        ax.text(1.01, yy, text, transform=ax.get_yaxis_transform(), va="center", fontsize=8,
                fontweight="bold" if header else "normal")
    for label, header in zip(ax.get_yticklabels(), rows["header"], strict=True):
        label.set_fontweight("bold" if header else "normal")
    ax.set_xlabel("hazard ratio (95% CI), log scale; dashed line: HR = 1")
    ax.set_title(title, fontsize=10, loc="left")
    ax.set_ylim(-0.7, len(rows) - 0.3)
    fig.tight_layout()
    return fig

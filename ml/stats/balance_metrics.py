"""Balance of the confounders under a weight vector, per term: SMD, variance ratio, KS, and ESS.

Conventions are those of R's cobalt (`bal.tab`, `col_w_smd`, `col_w_vr`, `col_w_ks`), named here
so that each number can be checked:

- a *term* is a number (`age`) or one level of a category (`ecog=2`, a 0/1 indicator); every
  level is shown, the reference included. A term is binary when its values are 0 and 1.
- variance (cobalt's `col_w_var`): binary terms p(1 - p) with p the weighted proportion;
  other terms the reliability-weighted variance sum(w)/(sum(w)^2 - sum(w^2)) * sum(w (x - m)^2),
  which is the n - 1 sample variance without weights (R `cov.wt(method = "unbiased")`).
- SMD: weighted mean of the treated minus that of the controls, over an *unweighted* SD so
  that before and after share one scale: sqrt((s1^2 + s0^2) / 2) for the ATE and ATO
  (cobalt's `s.d.denom = "pooled"`), the treated SD for the ATT. `binary = "std"` standardises
  binary terms too (Austin 2009, the convention the 0.1 threshold refers to); `binary = "raw"`
  reports their raw difference in proportions (cobalt's default in `bal.tab`).
- variance ratio: weighted variance of the treated over that of the controls, for non-binary
  terms only (NaN for binary ones, as in `bal.tab`).
- KS: largest distance between the two groups' weighted empirical CDFs, each group's weights
  normalised to sum to 1 (for a binary term, the difference in proportions).
- ESS: Kish's (sum w)^2 / sum w^2 per group.

Missing values are left out term by term (cobalt's `na.rm = TRUE`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.contract import split_term, term
from ml.stats.balance import covariate_levels

SD_DENOMINATOR = {"ate": "pooled", "ato": "pooled", "overlap": "pooled", "att": "treated"}
"""Which unweighted SD standardises the SMD for each estimand (cobalt's `s.d.denom`)."""

METHODS = {
    "smd": "weighted mean difference (treated minus control) over the unweighted SD: pooled "
           "sqrt((s1^2 + s0^2)/2) for ATE/ATO, treated SD for ATT (cobalt s.d.denom); binary terms "
           "p(1-p), other terms the n-1 sample variance",
    "variance_ratio": "weighted variance treated / control, reliability weights "
                      "sum(w)/(sum(w)^2 - sum(w^2)) (cobalt col_w_var); non-binary terms only",
    "ks": "Kolmogorov-Smirnov statistic of the weighted empirical CDFs (weights normalised per "
          "group; cobalt col_w_ks)",
    "ess": "Kish effective sample size (sum w)^2 / sum w^2 per group",
}


def term_matrix(df: pd.DataFrame, covariates: list[str] | tuple[str, ...]) -> pd.DataFrame:
    """One column per number, one 0/1 column per category level (`feature=level`); NaN kept."""
    cols: dict[str, np.ndarray] = {}
    for cov in covariates:
        values = df[cov]
        levels = covariate_levels(cov, values)
        if levels is None:
            cols[cov] = values.to_numpy(dtype=float)
            continue
        missing = values.isna().to_numpy()
        for level in levels:
            ind = (values == level).to_numpy(dtype=float)
            ind[missing] = np.nan
            cols[term(cov, level)] = ind
    return pd.DataFrame(cols, index=df.index)


def is_binary(x: np.ndarray) -> bool:
    """True when the observed values are 0 and 1 only (an indicator)."""
    v = np.asarray(x, dtype=float)
    v = v[~np.isnan(v)]
    return bool(len(v)) and bool(np.all((v == 0) | (v == 1)))


def weighted_variance(x: np.ndarray, w: np.ndarray | None = None, binary: bool = False) -> float:
    """cobalt's `col_w_var` of one term: p(1-p) if binary, else the reliability-weighted variance."""
    x = np.asarray(x, dtype=float)
    w = np.ones(len(x)) if w is None else np.asarray(w, dtype=float)
    m = np.average(x, weights=w)
    if binary:
        return float(m * (1 - m))
    sw, sw2 = w.sum(), np.sum(w**2)
    if sw**2 - sw2 <= 0:
        return np.nan
    return float(sw / (sw**2 - sw2) * np.sum(w * (x - m) ** 2))


def weighted_ks(x: np.ndarray, treated: np.ndarray, w: np.ndarray | None = None) -> float:
    """Largest gap between the treated and control weighted empirical CDFs of `x`."""
    x = np.asarray(x, dtype=float)
    t = np.asarray(treated, dtype=bool)
    w = np.ones(len(x)) if w is None else np.asarray(w, dtype=float)
    step = np.where(t, w / w[t].sum(), -w / w[~t].sum())  # F1 - F0 jumps by these
    order = np.argsort(x, kind="stable")
    xs, gap = x[order], np.cumsum(step[order])
    last_of_tie = np.append(xs[1:] != xs[:-1], True)  # the CDFs are read after every tied value
    return float(np.max(np.abs(gap[last_of_tie])))


def effective_sample_sizes(treated: np.ndarray, weights: np.ndarray | None = None,
                           labels: tuple[str, str] = ("treated", "control")) -> dict[str, float]:
    """Kish ESS per group: (sum w)^2 / sum w^2 (the group size without weights)."""
    t = np.asarray(treated, dtype=bool)
    w = np.ones(len(t)) if weights is None else np.asarray(weights, dtype=float)
    return {label: float(w[m].sum() ** 2 / np.sum(w[m] ** 2)) for label, m in ((labels[0], t),
                                                                             (labels[1], ~t))}


def _sd_denominator(x: np.ndarray, t: np.ndarray, binary: bool, estimand: str) -> float:
    v1, v0 = weighted_variance(x[t], binary=binary), weighted_variance(x[~t], binary=binary)
    if SD_DENOMINATOR[estimand] == "treated":
        return float(np.sqrt(v1))
    return float(np.sqrt((v1 + v0) / 2))


def _term_row(x: np.ndarray, t: np.ndarray, w: np.ndarray, estimand: str, binary_smd: str) -> dict:
    ok = ~np.isnan(x)
    x, t, w = x[ok], t[ok], w[ok]
    if t.sum() < 1 or (~t).sum() < 1:
        return {"type": "", "mean_treated": np.nan, "mean_control": np.nan, "smd": np.nan,
                "variance_ratio": np.nan, "ks": np.nan}
    binary = is_binary(x)
    m1, m0 = np.average(x[t], weights=w[t]), np.average(x[~t], weights=w[~t])
    if binary and binary_smd == "raw":
        smd = m1 - m0
    else:
        sd = _sd_denominator(x, t, binary, estimand)
        smd = (m1 - m0) / sd if sd > 0 else (0.0 if m1 == m0 else np.inf)
    vr = np.nan
    if not binary:
        v0 = weighted_variance(x[~t], w[~t])
        vr = weighted_variance(x[t], w[t]) / v0 if v0 > 0 else np.nan
    return {"type": "binary" if binary else "continuous", "mean_treated": float(m1),
            "mean_control": float(m0), "smd": float(smd), "variance_ratio": float(vr),
            "ks": weighted_ks(x, t, w)}


def balance_metrics(terms: pd.DataFrame, treated: np.ndarray, weights: np.ndarray | None = None,
                    estimand: str = "ate", binary: str = "std") -> pd.DataFrame:
    """Balance per term under `weights` (None: unweighted), cobalt conventions (module docstring).

    terms: one numeric column per term (`term_matrix`, or a design matrix); treated: bool mask;
    estimand: "ate", "att" or "ato"/"overlap" (picks the SMD's SD); binary: "std" or "raw".
    Columns: term, confounder, type, mean_treated, mean_control, smd, variance_ratio, ks.
    """
    if estimand not in SD_DENOMINATOR:
        raise ValueError(f"estimand must be one of {', '.join(SD_DENOMINATOR)}, got '{estimand}'")
    if binary not in ("std", "raw"):
        raise ValueError(f"binary must be 'std' or 'raw', got '{binary}'")
    t = np.asarray(treated, dtype=bool)
    w = np.ones(len(t)) if weights is None else np.asarray(weights, dtype=float)
    rows = [{"term": name, "confounder": split_term(name)[0]}
            | _term_row(terms[name].to_numpy(dtype=float), t, w, estimand, binary)
            for name in terms.columns]
    return pd.DataFrame(rows, columns=["term", "confounder", "type", "mean_treated", "mean_control",
                                       "smd", "variance_ratio", "ks"])


def balance_comparison(terms: pd.DataFrame, treated: np.ndarray,
                       weights: dict[str, np.ndarray | None], estimand: str = "ate",
                       binary: str = "std") -> pd.DataFrame:
    """`balance_metrics` for several weightings side by side, e.g. {"unadjusted": None, "ebal": w}.

    Long format: one row per (sample, term), the column `sample` naming the weighting; the
    frame a Love plot takes (`ml.reporting.love_plot`).
    """
    parts = [balance_metrics(terms, treated, w, estimand, binary).assign(sample=name)
             for name, w in weights.items()]
    return pd.concat(parts, ignore_index=True)

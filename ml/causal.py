"""Group comparisons for a cohort: Table 1, standardized mean differences, KM medians.

Weights are optional everywhere, so the same functions give the balance before and
after inverse probability of treatment weighting.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from lifelines import KaplanMeierFitter
from lifelines.utils import median_survival_times

from features import schema


def _weighted_mean_var(x: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    mean = float(np.average(x, weights=w))
    var = float(np.average((x - mean) ** 2, weights=w))
    return mean, var


def _levels(cov: str, values: pd.Series) -> list | None:
    """Category levels of a covariate, or None if it is summarised as a number."""
    if cov in schema.CATEGORIES:
        return list(schema.CATEGORIES[cov])
    if cov in schema.ORDINAL_LEVELS:
        return list(schema.ORDINAL_LEVELS[cov])
    if not pd.api.types.is_numeric_dtype(values):
        return sorted(values.dropna().unique(), key=str)
    return None


def _level_name(level: object) -> str:
    return f"{level:g}" if isinstance(level, float) else str(level)


def _indicator_columns(df: pd.DataFrame, covariates: list[str]) -> dict[str, np.ndarray]:
    """One numeric column per numeric covariate, one 0/1 column per category level.

    Missing values are left out of the comparison for that covariate (NaN).
    """
    cols: dict[str, np.ndarray] = {}
    for cov in covariates:
        values = df[cov]
        levels = _levels(cov, values)
        if levels is not None:
            for level in levels:
                ind = (values == level).astype(float).to_numpy()
                ind[values.isna().to_numpy()] = np.nan
                cols[f"{cov}[{_level_name(level)}]"] = ind
        else:
            cols[cov] = values.to_numpy(dtype=float)
    return cols


def standardized_differences(
    df: pd.DataFrame,
    covariates: list[str],
    group: str = schema.TREATMENT,
    treated: str = schema.TREATED,
    weights: np.ndarray | None = None,
) -> pd.Series:
    """SMD per covariate (and per category level): treated minus control.

    The denominator is the pooled SD of the *unweighted* groups, so before/after
    weighting numbers share one scale (the convention of R's cobalt).
    """
    w = np.ones(len(df)) if weights is None else np.asarray(weights, dtype=float)
    is_t = (df[group] == treated).to_numpy()
    out = {}
    for name, x in _indicator_columns(df, covariates).items():
        ok = ~np.isnan(x)
        t, c = ok & is_t, ok & ~is_t
        if t.sum() < 1 or c.sum() < 1:
            out[name] = np.nan
            continue
        m1, _ = _weighted_mean_var(x[t], w[t])
        m0, _ = _weighted_mean_var(x[c], w[c])
        v1, v0 = np.var(x[t]), np.var(x[c])
        sd = np.sqrt((v1 + v0) / 2)
        out[name] = 0.0 if sd == 0 and m1 == m0 else (m1 - m0) / sd if sd > 0 else np.inf
    return pd.Series(out, name="smd", dtype=float)


def _weighted_quantiles(x: np.ndarray, w: np.ndarray, qs: tuple[float, ...]) -> list[float]:
    order = np.argsort(x)
    x, w = x[order], w[order]
    cum = (np.cumsum(w) - 0.5 * w) / w.sum()
    return [float(np.interp(q, cum, x)) for q in qs]


def _summarise(values: pd.Series, w: np.ndarray, categorical: bool, level: str | None) -> str:
    ok = values.notna().to_numpy()
    if categorical:
        count = float(w[ok & (values == level).to_numpy()].sum())
        total = float(w[ok].sum())
        pct = 100 * count / total if total else float("nan")
        return f"{count:.0f} ({pct:.1f}%)" if np.allclose(w, 1) else f"{count:.1f} ({pct:.1f}%)"
    x = values.to_numpy(dtype=float)[ok]
    if len(x) == 0:
        return "-"
    q1, med, q3 = _weighted_quantiles(x, w[ok], (0.25, 0.5, 0.75))
    return f"{med:.1f} [{q1:.1f}, {q3:.1f}]"


def table_one(
    df: pd.DataFrame,
    covariates: list[str] | tuple[str, ...] = schema.COVARIATES,
    group: str = schema.TREATMENT,
    treated: str = schema.TREATED,
    control: str = schema.CONTROL,
    weights: np.ndarray | None = None,
) -> pd.DataFrame:
    """Table 1 by group: n (%) for categories, median [IQR] for numbers, SMD, missing counts.

    With `weights`, counts, percentages and quantiles are weighted (pseudo-population).
    """
    covariates = list(covariates)
    w = np.ones(len(df)) if weights is None else np.asarray(weights, dtype=float)
    smd = standardized_differences(df, covariates, group, treated, w)
    masks = {g: (df[group] == g).to_numpy() for g in (control, treated)}
    rows = []
    n_row = {"variable": "n", "level": ""}
    for g, m in masks.items():
        n_row[g] = f"{w[m].sum():.0f}" if np.allclose(w, 1) else f"{w[m].sum():.1f}"
    rows.append(n_row | {"smd": np.nan, "missing": 0})
    for cov in covariates:
        levels = _levels(cov, df[cov])
        categorical = levels is not None
        missing = int(df[cov].isna().sum())
        for level in levels or [None]:
            row = {"variable": cov, "level": "" if level is None else _level_name(level)}
            for g, m in masks.items():
                row[g] = _summarise(df.loc[m, cov], w[m], categorical, level)
            key = f"{cov}[{_level_name(level)}]" if categorical else cov
            row |= {"smd": smd.get(key, np.nan), "missing": missing}
            rows.append(row)
    return pd.DataFrame(rows, columns=["variable", "level", control, treated, "smd", "missing"])


@dataclass(frozen=True)
class MedianSurvival:
    """A Kaplan-Meier median with its 95 % CI (NaN where not reached)."""

    median: float
    ci_low: float
    ci_high: float
    n: int
    events: int


def km_median(time: np.ndarray, event: np.ndarray, weights: np.ndarray | None = None
              ) -> MedianSurvival:
    """Kaplan-Meier median survival and its 95 % CI (lifelines, exponential Greenwood)."""
    kmf = KaplanMeierFitter()
    kmf.fit(np.asarray(time, float), np.asarray(event, bool), weights=weights)
    ci = median_survival_times(kmf.confidence_interval_)
    med = float(kmf.median_survival_time_)
    return MedianSurvival(
        median=med if np.isfinite(med) else np.nan,
        ci_low=float(ci.iloc[0, 0]) if np.isfinite(ci.iloc[0, 0]) else np.nan,
        ci_high=float(ci.iloc[0, 1]) if np.isfinite(ci.iloc[0, 1]) else np.nan,
        n=int(len(time)),
        events=int(np.sum(event)),
    )


def km_medians_by_group(df: pd.DataFrame, group: str = schema.TREATMENT) -> pd.DataFrame:
    """Unweighted KM medians of PFS and OS, overall and per group, as one tidy frame."""
    rows = []
    subsets = [("all", np.ones(len(df), bool))]
    subsets += [(str(g), (df[group] == g).to_numpy()) for g in (schema.TREATED, schema.CONTROL)]
    for endpoint, (tcol, ecol) in schema.ENDPOINTS.items():
        for label, mask in subsets:
            if not mask.any():
                continue
            m = km_median(df.loc[mask, tcol], df.loc[mask, ecol])
            rows.append({"endpoint": endpoint, "group": label, "n": m.n, "events": m.events,
                         "median": m.median, "ci_low": m.ci_low, "ci_high": m.ci_high})
    return pd.DataFrame(rows)


# --- propensity and inverse probability of treatment weights ---------------------------

DEFAULT_CONFOUNDERS = ("age", "sex", "smoking", "ecog", "histology", "pdl1", "prior_response",
                       "brain_mets", "liver_mets", "bone_mets")
"""Baseline covariates that may drive the choice of an anti-angiogenic drug."""


def fit_propensity(df: pd.DataFrame, confounders: tuple[str, ...] | list[str] = DEFAULT_CONFOUNDERS,
                   group: str = schema.TREATMENT, treated: str = schema.TREATED):
    """Fit an (unpenalised) logistic propensity model P(treated | confounders).

    Returns a fitted scikit-learn Pipeline (impute, encode, scale, logistic) whose
    `predict_proba(df)[:, 1]` is the propensity. Fit it on training rows only.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    from features.pipeline import FeatureSpec, build_preprocessor, cohort_spec

    full = cohort_spec(include_treatment=False)
    spec = FeatureSpec(
        numeric=tuple(c for c in full.numeric if c in confounders),
        categorical={c: lv for c, lv in full.categorical.items() if c in confounders},
    )
    model = Pipeline([
        ("pre", build_preprocessor(spec)),
        ("logit", LogisticRegression(C=np.inf, max_iter=5000)),
    ])
    treated_mask = (df[group] == treated).to_numpy()
    return model.fit(df, treated_mask.astype(int))


def iptw_weights(propensity: np.ndarray, treated: np.ndarray, estimand: str = "ate",
                 stabilized: bool = True, truncate: tuple[float, float] | None = None
                 ) -> np.ndarray:
    """Inverse probability of treatment weights.

    estimand: "ate" (1/e, 1/(1-e)), "att" (1, e/(1-e)) or "overlap" (1-e, e).
    stabilized: multiply ATE weights by the marginal P(group), so they average ~1 per group
        (ATT and overlap weights are left as they are).
    truncate: (low, high) percentiles at which the weights are capped, e.g. (1, 99).
    """
    e = np.asarray(propensity, dtype=float)
    t = np.asarray(treated, dtype=bool)
    if estimand == "ate":
        w = np.where(t, 1 / e, 1 / (1 - e))
        if stabilized:
            p = t.mean()
            w = w * np.where(t, p, 1 - p)
    elif estimand == "att":
        w = np.where(t, 1.0, e / (1 - e))  # already on the treated group's scale
    elif estimand == "overlap":
        w = np.where(t, 1 - e, e)
    else:
        raise ValueError(f"unknown estimand '{estimand}', expected ate, att or overlap")
    if truncate is not None:
        lo, hi = np.percentile(w, truncate)
        w = np.clip(w, lo, hi)
    return w


def effective_sample_size(weights: np.ndarray) -> float:
    """Kish's effective sample size (sum w)^2 / sum w^2."""
    w = np.asarray(weights, dtype=float)
    return float(w.sum() ** 2 / np.sum(w**2))

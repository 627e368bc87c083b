"""Covariate balance between the treatment groups: standardized differences and Table 1.

Weights are optional everywhere, so the same functions give the balance before and after
inverse probability of treatment weighting.

The SMD follows R cobalt's `bal.tab` conventions (`smd_convention` says which in words): the
difference of the (weighted) means over an SD of the *unweighted* groups, so that before/after
numbers share one scale; the SD is the pooled sqrt((s_t^2 + s_c^2) / 2) for ATE and overlap
weights and the treated group's s_t for ATT (cobalt's `s.d.denom` defaults); continuous
covariates use sample variances (n - 1 denominator, R's `var`). A category level's 0/1
indicator is standardized too, with the variance p(1 - p) of each group (cobalt with
`binary = "std"`; cobalt's own default prints binaries as raw differences in proportions).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features import schema
from features.contract import level_name, term


def covariate_levels(cov: str, values: pd.Series) -> list | None:
    """Category levels of a covariate (the reference first), or None if it is a number."""
    if cov in schema.CATEGORIES:
        return list(schema.CATEGORIES[cov])
    if cov in schema.ORDINAL_LEVELS:
        return list(schema.ORDINAL_LEVELS[cov])
    if not pd.api.types.is_numeric_dtype(values):
        return sorted(values.dropna().unique(), key=str)
    return None


def _weighted_mean(x: np.ndarray, w: np.ndarray) -> float:
    return float(np.average(x, weights=w))


def _indicator_columns(df: pd.DataFrame, covariates: list[str]) -> dict[str, tuple[np.ndarray, bool]]:
    """One numeric column per numeric covariate, one 0/1 column per category level (binary).

    Missing values are left out of the comparison for that covariate (NaN).
    """
    cols: dict[str, tuple[np.ndarray, bool]] = {}
    for cov in covariates:
        values = df[cov]
        levels = covariate_levels(cov, values)
        if levels is None:
            cols[cov] = (values.to_numpy(dtype=float), False)
            continue
        for level in levels:
            ind = (values == level).astype(float).to_numpy()
            ind[values.isna().to_numpy()] = np.nan
            cols[term(cov, level)] = (ind, True)
    return cols


SD_DENOMINATORS = {"ate": "pooled", "overlap": "pooled", "att": "treated"}
"""Which unweighted SD standardizes the SMD for each estimand (cobalt's `s.d.denom` defaults)."""


def smd_convention(estimand: str = "ate") -> dict[str, str]:
    """The SMD's convention for `estimand`, in words (for analysis.json and the methods text)."""
    denominator = SD_DENOMINATORS[estimand]
    return {
        "difference": "treated minus control, weighted means after weighting",
        "sd_denominator": denominator,
        "sd": ("sqrt((s_t^2 + s_c^2) / 2) of the unweighted groups" if denominator == "pooled"
               else "s_t of the unweighted treated group"),
        "continuous_variance": "sample variance (n - 1), as R's var",
        "binary": "category levels standardized, variance p(1 - p) per group (cobalt binary = 'std'; "
                  "cobalt's default binary = 'raw' would print raw differences in proportions)",
        "reference": "R cobalt bal.tab, s.d.denom = '" + denominator + "'",
    }


def _group_variance(x: np.ndarray, binary: bool) -> float:
    if binary:
        p = float(np.mean(x))
        return p * (1 - p)
    return float(np.var(x, ddof=1)) if len(x) > 1 else np.nan


def _smd(x: np.ndarray, w: np.ndarray, is_t: np.ndarray, binary: bool, estimand: str) -> float:
    ok = ~np.isnan(x)
    t, c = ok & is_t, ok & ~is_t
    if t.sum() < 1 or c.sum() < 1:
        return np.nan
    m1, m0 = _weighted_mean(x[t], w[t]), _weighted_mean(x[c], w[c])
    v1 = _group_variance(x[t], binary)
    sd = np.sqrt(v1 if SD_DENOMINATORS[estimand] == "treated" else (v1 + _group_variance(x[c], binary)) / 2)
    if sd == 0:
        return 0.0 if m1 == m0 else np.inf
    return (m1 - m0) / sd


def standardized_differences(
    df: pd.DataFrame,
    covariates: list[str],
    group: str = schema.TREATMENT,
    treated: str = schema.TREATED,
    weights: np.ndarray | None = None,
    estimand: str = "ate",
) -> pd.Series:
    """SMD per covariate (and per category level): treated minus control.

    The denominator is an SD of the *unweighted* groups, so before/after weighting numbers
    share one scale: pooled for `estimand` "ate" and "overlap", the treated group's for "att"
    (cobalt's conventions, see the module docstring and `smd_convention`).
    """
    if estimand not in SD_DENOMINATORS:
        raise ValueError(f"unknown estimand '{estimand}', expected {', '.join(SD_DENOMINATORS)}")
    w = np.ones(len(df)) if weights is None else np.asarray(weights, dtype=float)
    is_t = (df[group] == treated).to_numpy()
    out = {name: _smd(x, w, is_t, binary, estimand)
           for name, (x, binary) in _indicator_columns(df, covariates).items()}
    return pd.Series(out, name="smd", dtype=float)


def _weighted_quantiles(x: np.ndarray, w: np.ndarray, qs: tuple[float, ...]) -> list[float]:
    order = np.argsort(x)
    x, w = x[order], w[order]
    cum = (np.cumsum(w) - 0.5 * w) / w.sum()
    return [float(np.interp(q, cum, x)) for q in qs]


def _summarise(values: pd.Series, w: np.ndarray, categorical: bool, level: object) -> str:
    ok = values.notna().to_numpy()
    if categorical:
        count = float(w[ok & (values == level).to_numpy()].sum())
        total = float(w[ok].sum())
        if not total:
            return "-"  # missing on every row of the group
        pct = 100 * count / total
        return f"{count:.0f} ({pct:.1f}%)" if np.allclose(w, 1) else f"{count:.1f} ({pct:.1f}%)"
    x = values.to_numpy(dtype=float)[ok]
    if len(x) == 0:
        return "-"
    q1, med, q3 = _weighted_quantiles(x, w[ok], (0.25, 0.5, 0.75))
    return f"{med:.1f} [{q1:.1f}, {q3:.1f}]"


def _covariate_rows(df: pd.DataFrame, cov: str, masks: dict, w: np.ndarray, smd: pd.Series
                    ) -> list[dict]:
    """Table 1 rows of one covariate: one per level, or one for a number."""
    levels = covariate_levels(cov, df[cov])
    categorical = levels is not None
    missing = int(df[cov].isna().sum())
    rows = []
    for level in levels or [None]:
        row = {"variable": cov, "level": "" if level is None else level_name(level)}
        for g, m in masks.items():
            row[g] = _summarise(df.loc[m, cov], w[m], categorical, level)
        key = term(cov, level) if categorical else cov
        rows.append(row | {"smd": smd.get(key, np.nan), "missing": missing})
    return rows


def table_one(
    df: pd.DataFrame,
    covariates: list[str] | tuple[str, ...] = schema.COVARIATES,
    group: str = schema.TREATMENT,
    treated: str = schema.TREATED,
    control: str = schema.CONTROL,
    weights: np.ndarray | None = None,
    estimand: str = "ate",
) -> pd.DataFrame:
    """Table 1 by group: n (%) for categories, median [IQR] for numbers, SMD, missing counts.

    With `weights`, counts, percentages and quantiles are weighted (pseudo-population); the SMD
    is standardized as `standardized_differences` does for `estimand`.
    """
    covariates = list(covariates)
    w = np.ones(len(df)) if weights is None else np.asarray(weights, dtype=float)
    smd = standardized_differences(df, covariates, group, treated, w, estimand)
    masks = {g: (df[group] == g).to_numpy() for g in (control, treated)}
    unit = np.allclose(w, 1)
    n_row = {"variable": "n", "level": ""}
    n_row |= {g: f"{w[m].sum():.0f}" if unit else f"{w[m].sum():.1f}" for g, m in masks.items()}
    rows = [n_row | {"smd": np.nan, "missing": 0}]
    for cov in covariates:
        rows += _covariate_rows(df, cov, masks, w, smd)
    return pd.DataFrame(rows, columns=["variable", "level", control, treated, "smd", "missing"])

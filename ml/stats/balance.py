"""Covariate balance between the treatment groups: standardized differences and Table 1.

Weights are optional everywhere, so the same functions give the balance before and after
inverse probability of treatment weighting.
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


def _indicator_columns(df: pd.DataFrame, covariates: list[str]) -> dict[str, np.ndarray]:
    """One numeric column per numeric covariate, one 0/1 column per category level.

    Missing values are left out of the comparison for that covariate (NaN).
    """
    cols: dict[str, np.ndarray] = {}
    for cov in covariates:
        values = df[cov]
        levels = covariate_levels(cov, values)
        if levels is None:
            cols[cov] = values.to_numpy(dtype=float)
            continue
        for level in levels:
            ind = (values == level).astype(float).to_numpy()
            ind[values.isna().to_numpy()] = np.nan
            cols[term(cov, level)] = ind
    return cols


def _smd(x: np.ndarray, w: np.ndarray, is_t: np.ndarray) -> float:
    ok = ~np.isnan(x)
    t, c = ok & is_t, ok & ~is_t
    if t.sum() < 1 or c.sum() < 1:
        return np.nan
    m1, m0 = _weighted_mean(x[t], w[t]), _weighted_mean(x[c], w[c])
    sd = np.sqrt((np.var(x[t]) + np.var(x[c])) / 2)
    if sd == 0:
        return 0.0 if m1 == m0 else np.inf
    return (m1 - m0) / sd


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
    out = {name: _smd(x, w, is_t) for name, x in _indicator_columns(df, covariates).items()}
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
        pct = 100 * count / total if total else float("nan")
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
) -> pd.DataFrame:
    """Table 1 by group: n (%) for categories, median [IQR] for numbers, SMD, missing counts.

    With `weights`, counts, percentages and quantiles are weighted (pseudo-population).
    """
    covariates = list(covariates)
    w = np.ones(len(df)) if weights is None else np.asarray(weights, dtype=float)
    smd = standardized_differences(df, covariates, group, treated, w)
    masks = {g: (df[group] == g).to_numpy() for g in (control, treated)}
    unit = np.allclose(w, 1)
    n_row = {"variable": "n", "level": ""}
    n_row |= {g: f"{w[m].sum():.0f}" if unit else f"{w[m].sum():.1f}" for g, m in masks.items()}
    rows = [n_row | {"smd": np.nan, "missing": 0}]
    for cov in covariates:
        rows += _covariate_rows(df, cov, masks, w, smd)
    return pd.DataFrame(rows, columns=["variable", "level", control, treated, "smd", "missing"])

"""Confounder-adjusted survival curves per arm (estimand: ATE), their difference, and RMST.

`adjusted_survival(df, times)` fits, on the whole cohort, a logistic propensity model
(`ml.stats.weighting.estimate_iptw`), a Cox outcome model on the treatment and the same
confounders (or others: `outcome_confounders`; Efron ties and baseline hazard) and a
Nelson-Aalen censoring model, and reports S(t) of each arm by IPTW-weighted Kaplan-Meier,
standardisation (G-formula) and doubly robust AIPTW (`ml.stats.causal.estimators`), the
treated-minus-control differences, and the RMST up to tau under each adjusted curve with its
difference and ratio. Pointwise percentile CIs come from a bootstrap that re-fits every model
in every resample (`ml.stats.causal.resample`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features import schema
from ml.stats.causal import rmst as rmst_mod
from ml.stats.causal.estimators import ALL_ESTIMATORS, ARMS, ESTIMATORS, CausalSample, survival_on_grid
from ml.stats.causal.resample import bootstrap_curves, stack
from ml.stats.entropy import confounder_design
from ml.stats.errors import CausalInputError
from ml.stats.positivity import check_confounders
from ml.stats.weighting import DEFAULT_CONFOUNDERS, IPTW, estimate_iptw, propensity_design

METHODS = {
    "estimand": "ATE: the whole cohort's survival had everyone received one arm, then the other",
    "iptw": ("IPTW-weighted Kaplan-Meier per arm, weights 1/e and 1/(1-e) from a logistic "
             "propensity model (Xie and Liu 2005)"),
    "gformula": ("standardisation (G-formula): mean over all patients of the Cox outcome model's "
                 "S(t | confounders, arm), Efron ties and Efron baseline hazard, S = exp(-cumulative "
                 "hazard) (R riskRegression ate(), GFORMULA)"),
    "aiptw": ("doubly robust AIPTW with censoring augmentation (Ozenne et al. 2020; R riskRegression "
              "ate(), AIPTW,AIPCW): Cox outcome model, logistic propensity, censoring survival "
              "exp(-Nelson-Aalen of the censoring times)"),
    "ipcw": ("IPTW with inverse probability of censoring weights, 1 - mean 1{arm} Y(t) / (e G(T-)) "
             "(R riskRegression ate(), IPTW,IPCW)"),
    "ci": ("pointwise bootstrap percentile interval; each resample is drawn within each arm and "
           "re-fits the propensity, outcome and censoring models"),
    "difference": "treated minus control",
}


@dataclass(frozen=True)
class AdjustedSurvival:
    """Adjusted curves, their differences and adjusted RMST, with bootstrap CIs.

    `curves`: time, arm, estimator, survival, ci_low, ci_high on every observed time up to
    the last horizon (for plots); `at_times`: the same at the requested horizons;
    `differences`: time, estimator, difference, se (bootstrap SD), ci_low, ci_high at the horizons;
    `rmst`: estimator, arm, rmst, se, ci_low, ci_high; `rmst_contrasts`: estimator, contrast,
    estimate, se, ci_low, ci_high, p; `rmst_by_tau`: time (= tau), estimator, difference,
    se, ci_low, ci_high: the RMST difference at every tau up to `tau` (the RMST-over-tau curve).
    CIs are NaN without bootstrap replicates. `confounders` are the propensity model's (those
    it could use), `outcome_confounders` the Cox outcome model's as requested (the same unless
    set apart).
    """

    curves: pd.DataFrame
    at_times: pd.DataFrame
    differences: pd.DataFrame
    rmst: pd.DataFrame
    rmst_contrasts: pd.DataFrame
    rmst_by_tau: pd.DataFrame
    tau: float
    confounders: tuple[str, ...]
    replicates: int
    failed: int
    iptw: IPTW
    outcome_confounders: tuple[str, ...] = ()


def causal_sample(df: pd.DataFrame, time: str, event: str, confounders: Sequence[str],
                  group: str, treated: str, control: str, *,
                  propensity_confounders: Sequence[str] | None = None,
                  outcome_confounders: Sequence[str] | None = None) -> tuple[CausalSample, IPTW]:
    """The cohort as arrays, with the fitted propensity model's design and 1 / P(own arm).

    The propensity model adjusts for `propensity_confounders` and the Cox outcome model for
    `outcome_confounders`; each defaults to `confounders`. When they differ, the outcome design
    is built the propensity design's way (`ml.stats.entropy.confounder_design`: imputed, scaled,
    one-hot) and kept in `CausalSample.outcome_design`.
    """
    ps_cols = tuple(confounders if propensity_confounders is None else propensity_confounders)
    out_cols = tuple(confounders if outcome_confounders is None else outcome_confounders)
    iptw = estimate_iptw(df, ps_cols, estimand="ate", stabilized=False, group=group,
                         treated=treated, control=control)
    outcome_design = None
    if out_cols != ps_cols:
        usable = check_confounders(df, out_cols, group, treated, control)
        outcome_design = confounder_design(df, usable)[1].to_numpy()
    sample = CausalSample(time=df[time].to_numpy(dtype=float), event=df[event].to_numpy().astype(bool),
                          treated=iptw.treated, design=propensity_design(iptw, df), ipw=iptw.weights,
                          outcome_design=outcome_design)
    return sample, iptw


def _grid(sample: CausalSample, times: np.ndarray, tau: float) -> np.ndarray:
    horizon = max(float(times.max()), tau)
    observed = sample.time[sample.time <= horizon]
    return np.unique(np.concatenate([observed, times, [tau]]))


def cumulative_areas(grid: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Area from 0 to each grid time under step curves `values` (..., grid) that are 1 before
    the first grid time and jump only at grid times: the RMST at every tau on the grid."""
    widths = np.diff(grid)
    steps = np.cumsum(values[..., :-1] * widths, axis=-1)
    first = np.full(values.shape[:-1] + (1,), grid[0])
    return np.concatenate([first, grid[0] + steps], axis=-1)


def _interval(reps: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    if len(reps) == 0:
        nan = np.full(reps.shape[1:], np.nan)
        return nan, nan
    return np.quantile(reps, alpha / 2, axis=0), np.quantile(reps, 1 - alpha / 2, axis=0)


def _curve_frame(grid, point, reps, estimators, labels, alpha) -> pd.DataFrame:
    low, high = _interval(reps, alpha)
    rows = []
    for i, name in enumerate(estimators):
        for j, label in enumerate(labels):
            rows.append(pd.DataFrame({"time": grid, "arm": label, "estimator": name,
                                      "survival": point[i, j], "ci_low": low[i, j], "ci_high": high[i, j]}))
    return pd.concat(rows, ignore_index=True)


def _difference_frame(times, point, reps, estimators, alpha) -> pd.DataFrame:
    diff, rep_diff = point[:, 0] - point[:, 1], reps[:, :, 0] - reps[:, :, 1]
    low, high = _interval(rep_diff, alpha)
    se = np.std(rep_diff, axis=0, ddof=1) if len(reps) > 1 else np.full(diff.shape, np.nan)
    rows = [pd.DataFrame({"time": times, "estimator": name, "difference": diff[i], "se": se[i],
                          "ci_low": low[i], "ci_high": high[i]}) for i, name in enumerate(estimators)]
    return pd.concat(rows, ignore_index=True)


def _rmst_frames(point, reps, estimators, labels, alpha) -> tuple[pd.DataFrame, pd.DataFrame]:
    low, high = _interval(reps, alpha)
    se = np.std(reps, axis=0, ddof=1) if len(reps) > 1 else np.full(point.shape, np.nan)
    arms, contrasts = [], []
    for i, name in enumerate(estimators):
        for j, label in enumerate(labels):
            arms.append({"estimator": name, "arm": label, "rmst": point[i, j], "se": se[i, j],
                         "ci_low": low[i, j], "ci_high": high[i, j]})
        c = rmst_mod.bootstrap_contrasts(point[i, 0], point[i, 1], reps[:, i, 0], reps[:, i, 1], alpha)
        contrasts.append(c.assign(estimator=name))
    cols = ["estimator", "contrast", "estimate", "se", "ci_low", "ci_high", "p"]
    return pd.DataFrame(arms), pd.concat(contrasts, ignore_index=True)[cols]


def _checked_settings(times: Sequence[float], estimators: Sequence[str]) -> tuple[np.ndarray, tuple]:
    values = np.unique(np.asarray(times, dtype=float))
    if len(values) == 0 or not np.all(np.isfinite(values)) or values.min() <= 0:
        raise CausalInputError(f"times must be one or more positive numbers of months, got {list(times)}")
    unknown = [e for e in estimators if e not in ALL_ESTIMATORS]
    if unknown or not estimators:
        raise CausalInputError(f"unknown adjusted-curve estimator(s) {unknown or list(estimators)}; "
                               f"expected some of {', '.join(ALL_ESTIMATORS)}")
    return values, tuple(estimators)


def adjusted_survival(df: pd.DataFrame, times: Sequence[float], *, tau: float | None = None,
                      confounders: Sequence[str] = DEFAULT_CONFOUNDERS, endpoint: str = "pfs",
                      estimators: Sequence[str] = ESTIMATORS, replicates: int = 200, seed: int = 2024,
                      alpha: float = 0.05, progress: Callable[[int, int], None] | None = None,
                      group: str = schema.TREATMENT, treated: str = schema.TREATED,
                      control: str = schema.CONTROL,
                      propensity_confounders: Sequence[str] | None = None,
                      outcome_confounders: Sequence[str] | None = None) -> AdjustedSurvival:
    """Adjusted S(t) per arm at `times`, differences and adjusted RMST at tau (see the module).

    tau: None for survRM2's default rule (`ml.stats.causal.rmst.tau_bound`).
    propensity_confounders / outcome_confounders: the confounders of the propensity and of the
    Cox outcome model when they should differ (each defaults to `confounders`; e.g. to show
    double robustness with one model deliberately misspecified). Raises
    `CausalInputError` for an arm without events, a time or tau beyond an arm's follow-up,
    and the propensity checks of `estimate_iptw`.
    """
    time_col, event_col = schema.ENDPOINTS[endpoint]
    labels = (treated, control)
    times, estimators = _checked_settings(times, estimators)
    sample, iptw = causal_sample(df, time_col, event_col, confounders, group, treated, control,
                                 propensity_confounders=propensity_confounders,
                                 outcome_confounders=outcome_confounders)
    used_tau = rmst_mod.check_tau(tau, sample.time, sample.event, sample.treated, "tau", labels)
    rmst_mod.check_tau(float(times.max()), sample.time, sample.event, sample.treated, "times", labels)
    grid = _grid(sample, times, used_tau)
    point = stack(survival_on_grid(sample, grid, estimators), estimators)
    reps, failed = bootstrap_curves(sample, grid, estimators, replicates, seed, progress)
    at, k_tau = np.searchsorted(grid, times), int(np.searchsorted(grid, used_tau))
    area, area_reps = cumulative_areas(grid, point), cumulative_areas(grid, reps)
    rmst_arms, rmst_contrasts = _rmst_frames(area[..., k_tau], area_reps[..., k_tau], estimators,
                                             labels, alpha)
    curves = _curve_frame(grid, point, reps, estimators, labels, alpha)
    return AdjustedSurvival(
        curves=curves, at_times=curves[curves["time"].isin(times)].reset_index(drop=True),
        differences=_difference_frame(times, point[..., at], reps[..., at], estimators, alpha),
        rmst=rmst_arms, rmst_contrasts=rmst_contrasts,
        rmst_by_tau=_difference_frame(grid[: k_tau + 1], area[..., : k_tau + 1],
                                      area_reps[..., : k_tau + 1], estimators, alpha),
        tau=used_tau,
        confounders=iptw.confounders, replicates=len(reps), failed=failed, iptw=iptw,
        outcome_confounders=tuple(confounders if outcome_confounders is None else outcome_confounders))


__all__ = ["ARMS", "METHODS", "AdjustedSurvival", "adjusted_survival", "causal_sample"]

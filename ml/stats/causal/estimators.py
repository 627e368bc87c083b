"""Marginal (ATE) survival of each arm on a grid of times, by four estimators, on arrays.

With A the arm, e(x) = P(A = a | x) the logistic propensity, S(t | a, x) the Cox outcome model,
G the censoring survival (`ml.stats.causal.nuisance`), W_i = 1{A_i = a} / e_a(X_i) and
Y_i(t) = 1{T_i <= t, event}:

- `iptw`: the Kaplan-Meier of arm a with weights W_i (Xie and Liu 2005);
- `gformula`: mean_i S(t | a, X_i) (standardisation over all patients);
- `ipcw`: 1 - mean_i W_i Y_i(t) / G(T_i-) (riskRegression's "IPTW,IPCW");
- `aiptw`: 1 - mean_i [F(t | a, X_i) + W_i (Y_i(t) / G(T_i-) - F(t | a, X_i) + aug_i(t))],
  F = 1 - S, with the censoring augmentation
  aug_i(t) = sum_{u_k <= min(t, T_i)} (F(t | X_i) - F(u_k | X_i)) dM_i(u_k) / (G(u_k-) S(u_k- | X_i))
  over the censoring jump times u_k, dM_i(u) = 1{censored at u} - dLambda_c(u) (Ozenne et al.
  2020; riskRegression's "AIPTW,AIPCW"). It is consistent when either the outcome model or
  the propensity (and censoring) model is right.

Every estimate is a right-continuous step function of t with jumps at observed times only, so
its values at every distinct observed time give the exact area under it (the RMST).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ml.stats import km
from ml.stats.causal.nuisance import CensoringModel, OutcomeModel, fit_censoring, fit_outcome

ESTIMATORS = ("iptw", "gformula", "aiptw")
"""The adjusted-curve estimators reported by default; `ipcw` is riskRegression's IPTW."""
ALL_ESTIMATORS = (*ESTIMATORS, "ipcw")
ARMS = (True, False)
"""Treated first, then control."""
CELLS_PER_BLOCK = 2_000_000
"""Patients x times per block of the AIPTW augmentation (~16 MB a matrix)."""


@dataclass(frozen=True)
class CausalSample:
    """One (re)sample: outcome, arm, the propensity model's design matrix, 1 / P(own arm | x),
    and the outcome model's design matrix (None: the propensity design, the usual case; a
    different one lets the two nuisance models adjust for different confounders)."""

    time: np.ndarray
    event: np.ndarray
    treated: np.ndarray
    design: np.ndarray
    ipw: np.ndarray
    outcome_design: np.ndarray | None = None

    @property
    def x_outcome(self) -> np.ndarray:
        """The design matrix of the Cox outcome model."""
        return self.design if self.outcome_design is None else self.outcome_design

    def take(self, idx: np.ndarray, ipw: np.ndarray) -> CausalSample:
        """The rows `idx` with new inverse propensities (re-fitted on those rows)."""
        outcome = None if self.outcome_design is None else self.outcome_design[idx]
        return CausalSample(self.time[idx], self.event[idx], self.treated[idx], self.design[idx], ipw,
                            outcome)


def iptw_km(sample: CausalSample, arm: bool, grid: np.ndarray) -> np.ndarray:
    """IPTW-weighted Kaplan-Meier of one arm at the grid times."""
    mask = sample.treated == arm
    knots, surv = km.weighted_km(sample.time[mask], sample.event[mask], sample.ipw[mask])
    return km.step_at(knots, surv, grid)


def _ipcw_risk(sample: CausalSample, w: np.ndarray, censoring: CensoringModel,
               grid: np.ndarray) -> np.ndarray:
    """mean_i W_i Y_i(t) / G(T_i-) at the grid times."""
    dead = sample.event & (w > 0)
    t = sample.time[dead]
    contrib = w[dead] / censoring.survival(t, left=True)
    order = np.argsort(t, kind="stable")
    cum = np.concatenate([[0.0], np.cumsum(contrib[order])])
    return cum[np.searchsorted(t[order], grid, side="right")] / len(sample.time)


def _augmentation(sample: CausalSample, arm: bool, rows: np.ndarray, outcome: OutcomeModel,
                  censoring: CensoringModel, grid: np.ndarray) -> np.ndarray:
    """aug_i(t) for the patients `rows` of the arm (rows x grid); see the module docstring."""
    u = censoring.knots[censoring.knots <= grid.max()]
    if len(u) == 0:
        return np.zeros((len(rows), len(grid)))
    time, design = sample.time[rows], sample.x_outcome[rows]
    censored_at = (time[:, None] == u[None, :]) & ~sample.event[rows, None]
    d_mart = censored_at - censoring.hazard[None, : len(u)]
    at_risk = u[None, :] <= time[:, None]
    g_left = censoring.survival(u, left=True)
    h = np.where(at_risk, d_mart / (g_left[None, :] * outcome.survival(arm, design, u, left=True)), 0.0)
    a_cum = np.cumsum(outcome.survival(arm, design, u) * h, axis=1)
    b_cum = np.cumsum(h, axis=1)
    k = np.searchsorted(u, grid, side="right")  # jumps at or before each grid time
    a_at = np.concatenate([np.zeros((len(rows), 1)), a_cum], axis=1)[:, k]
    b_at = np.concatenate([np.zeros((len(rows), 1)), b_cum], axis=1)[:, k]
    return a_at - outcome.survival(arm, design, grid) * b_at


def _aiptw(sample: CausalSample, arm: bool, outcome: OutcomeModel, censoring: CensoringModel,
           grid: np.ndarray, s_ctf: np.ndarray, ipcw_risk: np.ndarray) -> np.ndarray:
    rows = np.flatnonzero(sample.treated == arm)
    n = len(sample.time)
    # the augmentation is (patients x censoring times): in blocks of rows, to bound the memory
    block = max(1, CELLS_PER_BLOCK // max(len(censoring.knots), len(grid), 1))
    weighted = np.zeros(len(grid))
    for start in range(0, len(rows), block):
        part = rows[start:start + block]
        aug = _augmentation(sample, arm, part, outcome, censoring, grid)
        weighted += (sample.ipw[part, None] * (s_ctf[part] + aug)).sum(0)
    correction = weighted / n - sample.ipw[rows].sum() / n
    risk = (1 - s_ctf).mean(0) + ipcw_risk + correction
    return 1 - risk


def survival_on_grid(sample: CausalSample, grid: np.ndarray, estimators=ESTIMATORS,
                     ties: str = "efron") -> dict[str, dict[bool, np.ndarray]]:
    """{estimator: {arm: S_arm(t) at the grid times}} for the arms treated (True) and control.

    Fits the outcome and censoring models once; raises `CausalInputError` when the Cox
    outcome model cannot be fitted.
    """
    grid = np.asarray(grid, dtype=float)
    out: dict[str, dict[bool, np.ndarray]] = {name: {} for name in estimators}
    needs_outcome = {"gformula", "aiptw"} & set(estimators)
    outcome = fit_outcome(sample.time, sample.event, sample.treated, sample.x_outcome, ties) \
        if needs_outcome else None
    censoring = fit_censoring(sample.time, sample.event)
    for arm in ARMS:
        w = np.where(sample.treated == arm, sample.ipw, 0.0)
        s_ctf = outcome.survival(arm, sample.x_outcome, grid) if outcome is not None else None
        ipcw_risk = _ipcw_risk(sample, w, censoring, grid)
        for name in estimators:
            if name == "iptw":
                out[name][arm] = iptw_km(sample, arm, grid)
            elif name == "gformula":
                out[name][arm] = s_ctf.mean(0)
            elif name == "ipcw":
                out[name][arm] = 1 - ipcw_risk
            elif name == "aiptw":
                out[name][arm] = _aiptw(sample, arm, outcome, censoring, grid, s_ctf, ipcw_risk)
            else:
                raise ValueError(f"unknown estimator '{name}', expected one of {', '.join(ALL_ESTIMATORS)}")
    return out

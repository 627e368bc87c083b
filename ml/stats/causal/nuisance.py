"""The nuisance models of the adjusted estimators, on arrays: outcome Cox model and censoring.

Conventions are those of R riskRegression's `ate()` for a `coxph` outcome model and a
`coxph(Surv(time, event == 0) ~ 1)` censoring model (its default `product.limit = FALSE`):

- outcome: S(t | x) = exp(-Lambda0(t) exp(x'b)), with the Cox fit's ties rule also in the
  baseline hazard (Efron ties: the Efron increments sum_l wbar / (S0 - l/d S0(D)), which is
  what `predictCox` and `survfit.coxph` use; Breslow ties: d / S0);
- censoring: G(t) = exp(-Nelson-Aalen cumulative hazard of the censoring times), counting
  as at risk at u everyone with time >= u (events at u included); tied censoring times add
  Efron's increments, as R's null `coxph` with its default ties does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ml.stats.cox import fit_cox


def _left_index(knots: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Number of knots strictly before each `at` (cumulative sums are indexed by it)."""
    return np.searchsorted(knots, at, side="left")


def _right_index(knots: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Number of knots at or before each `at`."""
    return np.searchsorted(knots, at, side="right")


@dataclass(frozen=True)
class OutcomeModel:
    """A Cox model of the outcome on (treated, confounder design) with its baseline hazard.

    `cumhaz` is the baseline cumulative hazard at the distinct event times `knots`, on the
    scale of exp(eta - shift) (the shift keeps exp() finite; it cancels in predictions).
    """

    coef: np.ndarray
    knots: np.ndarray
    cumhaz: np.ndarray
    shift: float

    def risk_score(self, arm: bool, design: np.ndarray) -> np.ndarray:
        """exp(eta - shift) of every row with the treatment set to `arm`."""
        eta = self.coef[0] * float(arm) + design @ self.coef[1:]
        return np.exp(eta - self.shift)

    def cumulative_hazard(self, at: np.ndarray, *, left: bool = False) -> np.ndarray:
        """Baseline cumulative hazard at `at` (its left limit with `left`)."""
        idx = _left_index(self.knots, at) if left else _right_index(self.knots, at)
        return np.concatenate([[0.0], self.cumhaz])[idx]

    def survival(self, arm: bool, design: np.ndarray, at: np.ndarray, *, left: bool = False
                 ) -> np.ndarray:
        """S(at | x, arm) per row (rows x times); the left limit S(at-) with `left`."""
        score = self.risk_score(arm, design)
        return np.exp(-np.outer(score, self.cumulative_hazard(np.asarray(at, float), left=left)))


def baseline_hazard(time: np.ndarray, event: np.ndarray, eta: np.ndarray, ties: str
                    ) -> tuple[np.ndarray, np.ndarray, float]:
    """(distinct event times, baseline hazard increments, shift) of an unweighted Cox fit."""
    shift = float(eta.max())
    r = np.exp(eta - shift)
    order = np.argsort(time, kind="stable")
    t, e, r = time[order], event[order], r[order]
    at_risk = np.cumsum(r[::-1])[::-1]
    ev = np.flatnonzero(e)
    knots, starts, counts = np.unique(t[ev], return_index=True, return_counts=True)
    s0 = at_risk[np.searchsorted(t, knots, side="left")]
    if ties == "breslow":
        return knots, counts / s0, shift
    group = np.repeat(np.arange(len(knots)), counts)
    within = (np.arange(len(ev)) - starts[group]) / counts[group]
    s0_dead = np.add.reduceat(r[ev], starts)
    slots = 1.0 / (s0[group] - within * s0_dead[group])
    return knots, np.add.reduceat(slots, starts), shift


def fit_outcome(time: np.ndarray, event: np.ndarray, treated: np.ndarray, design: np.ndarray,
                ties: str = "efron") -> OutcomeModel:
    """Fit the Cox outcome model (treatment + confounders) and its baseline hazard.

    Raises `CausalInputError` (from `fit_cox`) when the model has no finite maximum.
    """
    x = np.column_stack([treated.astype(float), design])
    fit = fit_cox(time, event, x, ties=ties)
    knots, increments, shift = baseline_hazard(time, event, x @ fit.coef, ties)
    return OutcomeModel(coef=fit.coef, knots=knots, cumhaz=np.cumsum(increments), shift=shift)


@dataclass(frozen=True)
class CensoringModel:
    """Nelson-Aalen of the censoring times: jumps, hazard increments, G = exp(-cumulative)."""

    knots: np.ndarray
    hazard: np.ndarray

    def survival(self, at: np.ndarray, *, left: bool = False) -> np.ndarray:
        """G(at), or its left limit G(at-) with `left`."""
        at = np.asarray(at, float)
        idx = _left_index(self.knots, at) if left else _right_index(self.knots, at)
        return np.exp(-np.concatenate([[0.0], np.cumsum(self.hazard)])[idx])


def fit_censoring(time: np.ndarray, event: np.ndarray, ties: str = "efron") -> CensoringModel:
    """The censoring hazard of a null Cox model of the censoring times, i.e. Nelson-Aalen:
    c / Y(u) at each distinct censoring time u, Y(u) = #(time >= u); with Efron ties (R's
    default for `coxph(Surv(time, event == 0) ~ 1)`), c tied censorings add sum_l 1 / (Y - l)."""
    censored = ~np.asarray(event).astype(bool)
    if not censored.any():
        return CensoringModel(knots=np.zeros(0), hazard=np.zeros(0))
    knots, hazard, _ = baseline_hazard(np.asarray(time, float), censored, np.zeros(len(time)), ties)
    return CensoringModel(knots=knots, hazard=hazard)

"""Restricted mean survival time (RMST): the area under a survival curve from 0 to tau.

Unadjusted (`rmst2`), as R survRM2's `rmst2` (Uno et al. 2014) computes it:

- per arm, the area under the Kaplan-Meier step function up to tau, with the Greenwood-type
  variance sum_j A_j^2 d_j / (Y_j (Y_j - d_j)) over the event times t_j <= tau, A_j the area
  under the curve from t_j to tau (a time at which everyone at risk dies adds 0); this is
  also R survival's `se(rmean)` of `print(survfit(...), rmean = tau)`;
- difference (treated - control) with a normal CI and two-sided Wald p; ratio (treated /
  control) on the log scale with the delta-method SE sqrt(var_1 / rmst_1^2 + var_0 / rmst_0^2);
- tau, when not given, by survRM2's default rule (`tau_bound`); a tau beyond it is refused.

Adjusted RMST (`ml.stats.causal.adjusted`) is the same area under an adjusted curve, with a
bootstrap CI and p (`bootstrap_contrasts`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from features import schema
from ml.stats import km
from ml.stats.errors import CausalInputError

METHODS = {
    "rmst": "restricted mean survival time: area under the survival curve from 0 to tau",
    "unadjusted": ("Kaplan-Meier per arm, Greenwood-type variance of the area (survRM2 rmst2, "
                   "R survival's se(rmean)); difference: normal CI; ratio: log scale, delta method"),
    "tau_rule": ("survRM2's default: the larger of the arms' last follow-up times when the arm "
                 "that ends first ends with an event, else the smaller"),
    "when": ("RMST assumes no proportional hazards: it is the better summary than a hazard ratio "
             "when the PH test rejects, or the curves cross or plateau"),
    "adjusted": ("area under the adjusted (IPTW, G-formula or AIPTW) survival curve up to tau; "
                 "bootstrap percentile CI, Wald p from the bootstrap SE (ratio: log scale)"),
}


def area_under_step(knots: np.ndarray, values: np.ndarray, tau: float, start: float = 1.0) -> float:
    """Area from 0 to tau under a right-continuous step function equal to `start` before the
    first knot and to values[k] on [knots[k], knots[k + 1])."""
    knots = np.asarray(knots, dtype=float)
    keep = knots <= tau
    edges = np.concatenate([[0.0], knots[keep], [tau]])
    heights = np.concatenate([[start], np.asarray(values, dtype=float)[keep]])
    return float(np.sum(np.diff(edges) * heights))


def km_rmst(time, event, tau: float) -> tuple[float, float]:
    """(RMST, its variance) of one Kaplan-Meier curve up to tau (see the module docstring)."""
    curve = km.km_curve(time, event)
    keep = curve.time <= tau
    t, s = curve.time[keep], curve.survival[keep]
    y, d = curve.at_risk[keep], curve.deaths[keep]
    widths = np.diff(np.concatenate([t, [tau]]))
    tail = np.cumsum((widths * s)[::-1])[::-1]  # area from each event time to tau
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(y > d, d / (y * (y - d)), 0.0)
    return area_under_step(t, s, tau), float(np.sum(tail**2 * terms))


@dataclass(frozen=True)
class TauBound:
    """The largest tau an RMST comparison allows, and why (survRM2's rule)."""

    bound: float
    last_time: dict[str, float]
    ends_with_event: dict[str, bool]

    def describe(self) -> str:
        parts = [f"{arm}: last follow-up {t:g} ({'event' if self.ends_with_event[arm] else 'censored'})"
                 for arm, t in self.last_time.items()]
        return "; ".join(parts)


def tau_bound(time, event, treated, labels: tuple[str, str] = (schema.TREATED, schema.CONTROL)
              ) -> TauBound:
    """survRM2's rule: the arm that ends first limits tau unless its last observation is an
    event (its curve has reached 0 and stays defined), in which case the later arm's last
    time does. A tie counts as censored when any of the tied last observations is censored."""
    time = np.asarray(time, dtype=float)
    event = np.asarray(event).astype(bool)
    treated = np.asarray(treated, dtype=bool)
    last, ends = {}, {}
    for label, mask in zip(labels, (treated, ~treated), strict=True):
        t = time[mask]
        last[label] = float(t.max())
        ends[label] = bool(np.all(event[mask][t == t.max()]))
    first = min(last, key=last.get)
    bound = max(last.values()) if ends[first] else min(last.values())
    return TauBound(bound=bound, last_time=last, ends_with_event=ends)


def check_tau(tau: float | None, time, event, treated, setting: str = "tau",
              labels: tuple[str, str] = (schema.TREATED, schema.CONTROL)) -> float:
    """tau itself, or survRM2's default when None; `CausalInputError` naming the arm that
    limits it when tau lies beyond the follow-up (or is not positive)."""
    check_events(event, treated, labels)
    limit = tau_bound(time, event, treated, labels)
    if tau is None:
        return limit.bound
    if not np.isfinite(tau) or tau <= 0:
        raise CausalInputError(f"{setting} must be a positive number of months, got {tau}")
    if tau > limit.bound:
        arm = min(limit.last_time, key=lambda a: abs(limit.last_time[a] - limit.bound))
        unset = ", or leave it unset for that default" if setting == "tau" else ""
        raise CausalInputError(
            f"{setting} = {tau:g} months lies beyond the follow-up of arm {arm} (last follow-up "
            f"{limit.bound:g} months; {limit.describe()}): the survival curve is unknown there; "
            f"set {setting} to at most {limit.bound:g}{unset}")
    return float(tau)


def check_events(event, treated, labels: tuple[str, str] = (schema.TREATED, schema.CONTROL)) -> None:
    """`CausalInputError` when an arm has no events: its curve and RMST carry no information."""
    event = np.asarray(event).astype(bool)
    treated = np.asarray(treated, dtype=bool)
    for label, mask in zip(labels, (treated, ~treated), strict=True):
        if not mask.any():
            raise CausalInputError(f"arm {label} has no patients: there is nothing to compare")
        if not event[mask].any():
            raise CausalInputError(
                f"arm {label} has no events ({int(mask.sum())} patients, all censored): its "
                "survival curve stays at 1 and RMST and adjusted curves cannot be compared; "
                "use a longer follow-up or another endpoint")


@dataclass(frozen=True)
class RMSTComparison:
    """RMST per arm and the treated-vs-control difference and ratio at one tau."""

    tau: float
    tau_given: bool
    arms: pd.DataFrame          # arm, rmst, se, ci_low, ci_high
    contrasts: pd.DataFrame     # contrast (difference / ratio), estimate, se, ci_low, ci_high, p
    method: str


def rmst2(time, event, treated, tau: float | None = None, alpha: float = 0.05,
          labels: tuple[str, str] = (schema.TREATED, schema.CONTROL)) -> RMSTComparison:
    """Unadjusted RMST comparison, as survRM2's `rmst2` (see the module docstring)."""
    time = np.asarray(time, dtype=float)
    event = np.asarray(event).astype(bool)
    treated = np.asarray(treated, dtype=bool)
    used = check_tau(tau, time, event, treated, labels=labels)
    z = stats.norm.ppf(1 - alpha / 2)
    est, var, rows = {}, {}, []
    for label, mask in zip(labels, (treated, ~treated), strict=True):
        est[label], var[label] = km_rmst(time[mask], event[mask], used)
        se = np.sqrt(var[label])
        rows.append({"arm": label, "rmst": est[label], "se": se,
                     "ci_low": est[label] - z * se, "ci_high": est[label] + z * se})
    (one, zero) = labels
    diff, se_diff = est[one] - est[zero], np.sqrt(var[one] + var[zero])
    log_ratio = np.log(est[one]) - np.log(est[zero])
    se_log = np.sqrt(var[one] / est[one] ** 2 + var[zero] / est[zero] ** 2)
    contrasts = pd.DataFrame([
        {"contrast": "difference", "estimate": diff, "se": se_diff, "ci_low": diff - z * se_diff,
         "ci_high": diff + z * se_diff, "p": _wald_p(diff, se_diff)},
        {"contrast": "ratio", "estimate": np.exp(log_ratio), "se": se_log,
         "ci_low": np.exp(log_ratio - z * se_log), "ci_high": np.exp(log_ratio + z * se_log),
         "p": _wald_p(log_ratio, se_log)},
    ])
    return RMSTComparison(tau=used, tau_given=tau is not None, arms=pd.DataFrame(rows),
                          contrasts=contrasts, method=METHODS["unadjusted"])


def _wald_p(estimate: float, se: float) -> float:
    return float(2 * stats.norm.sf(abs(estimate) / se)) if se > 0 else np.nan


def _bootstrap_se(reps: np.ndarray, estimate: float, scale: str) -> float:
    """Bootstrap SE on the contrast's scale. A ratio whose replicates are not all positive (an
    AIPTW curve can leave [0, 1] in a resample with extreme weights) has no log: its SE on the
    log scale is then the delta-method SD(ratio) / ratio."""
    if len(reps) < 2:
        return np.nan
    if scale != "log":
        return float(np.std(reps, ddof=1))
    if np.all(reps > 0):
        return float(np.std(np.log(reps), ddof=1))
    return float(np.std(reps, ddof=1) / abs(estimate)) if estimate > 0 else np.nan


def bootstrap_contrasts(rmst_one: float, rmst_zero: float, reps_one: np.ndarray, reps_zero: np.ndarray,
                        alpha: float = 0.05) -> pd.DataFrame:
    """Difference and ratio of two adjusted RMSTs with bootstrap percentile CIs and Wald p
    (bootstrap SE; the ratio's on the log scale), from the paired replicates of each arm."""
    reps_one, reps_zero = np.asarray(reps_one, float), np.asarray(reps_zero, float)
    rows = []
    for name, estimate, reps, scale in (
            ("difference", rmst_one - rmst_zero, reps_one - reps_zero, "identity"),
            ("ratio", rmst_one / rmst_zero, reps_one / reps_zero, "log")):
        on_scale = np.log if scale == "log" else (lambda v: v)
        se = _bootstrap_se(reps, estimate, scale)
        lo, hi = np.quantile(reps, [alpha / 2, 1 - alpha / 2]) if len(reps) else (np.nan, np.nan)
        rows.append({"contrast": name, "estimate": estimate, "se": se, "ci_low": float(lo),
                     "ci_high": float(hi), "p": _wald_p(float(on_scale(estimate)), se)})
    return pd.DataFrame(rows)

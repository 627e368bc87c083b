"""E-values (VanderWeele & Ding 2017): how strong an unmeasured confounder would have to be.

The E-value of a risk ratio RR >= 1 is RR + sqrt(RR (RR - 1)) (for RR < 1, that of 1/RR): the
smallest risk ratio that an unmeasured confounder would need with both the treatment and the
outcome, beyond the measured confounders, to move the estimate to the null. The E-value of a
confidence interval is that of the limit closer to the null, and 1 when the interval holds the
null. Both follow R's EValue package (`evalues.RR`, `evalues.HR`); a `true` value other than 1
shifts the target as its `true` argument does (the ratio is taken as est / true).

Conversions to the risk-ratio scale:
- hazard ratio, rare outcome (< 15 % with the event at the end of follow-up): RR = HR;
- hazard ratio, common outcome (>= 15 %): RR = (1 - 0.5^sqrt(HR)) / (1 - 0.5^sqrt(1/HR))
  (VanderWeele 2020; EValue's `evalues.HR(rare = FALSE)`), applied to the estimate and to
  each confidence limit;
- ratio of restricted mean survival times: used as it is, a ratio of means. RMST(tau) is the
  mean of the non-negative outcome min(T, tau), and Ding & VanderWeele's (2016) bounding factor,
  hence the E-value, holds for a ratio of means of a non-negative outcome with the confounder's
  outcome association read as a ratio of such means. EValue has no RMST function; its nearest,
  `evalues.MD` (a standardised mean difference d, RR ~ exp(0.91 d)), would need a normal
  outcome, which min(T, tau) is not.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

RARE_OUTCOME_LIMIT = 0.15
"""EValue's rule: an outcome is rare when fewer than 15 % have it by the end of follow-up."""

METHODS = {
    "evalue": "E-value (VanderWeele & Ding 2017, R EValue conventions): RR + sqrt(RR (RR - 1)) "
              "on the risk-ratio scale (1/RR below 1); for the CI the limit closer to 1, and 1 "
              "when the CI holds 1",
    "hr_rare": "hazard ratio taken as a risk ratio (outcome rare: < 15% events by the end of "
               "follow-up)",
    "hr_common": "hazard ratio converted to a risk ratio by (1 - 0.5^sqrt(HR)) / (1 - 0.5^sqrt(1/HR)) "
                 "(outcome common: >= 15% events by the end of follow-up; EValue evalues.HR(rare = FALSE))",
    "rmst_ratio": "ratio of restricted mean survival times taken as a ratio of means of the "
                  "non-negative outcome min(T, tau), no conversion (Ding & VanderWeele 2016 "
                  "bounding factor)",
}


@dataclass(frozen=True)
class EValue:
    """An estimate and its CI on the risk-ratio scale, their E-values, and the conversion used."""

    measure: str
    estimate: float
    ci_low: float
    ci_high: float
    rr: float
    rr_low: float
    rr_high: float
    evalue: float
    evalue_ci: float
    conversion: str

    def as_dict(self) -> dict[str, float | str]:
        return asdict(self)


def evalue_rr(rr: float, true: float = 1.0) -> float:
    """E-value of a risk ratio (moved to `true`): RR + sqrt(RR (RR - 1)), RR taken >= 1."""
    if not (np.isfinite(rr) and rr > 0 and true > 0):
        raise ValueError(f"an E-value needs a positive, finite ratio, got {rr} (true = {true})")
    r = rr / true
    r = 1 / r if r < 1 else r
    return float(r + np.sqrt(r * (r - 1)))


def hr_to_rr(hr: float, rare: bool) -> float:
    """A hazard ratio on the risk-ratio scale (see the module docstring)."""
    if rare:
        return float(hr)
    return float((1 - 0.5 ** np.sqrt(hr)) / (1 - 0.5 ** np.sqrt(1 / hr)))


def is_rare(event_fraction: float) -> bool:
    """EValue's rule: rare when under 15 % of patients have the event by the end of follow-up."""
    if not 0 <= event_fraction <= 1:
        raise ValueError(f"event fraction must be within [0, 1], got {event_fraction}")
    return event_fraction < RARE_OUTCOME_LIMIT


def _ci_evalue(rr: float, lo: float, hi: float, true: float) -> float:
    if np.isnan(lo) and np.isnan(hi):
        return np.nan
    if (np.isnan(lo) or lo <= true) and (np.isnan(hi) or hi >= true):
        return 1.0  # the interval holds the null (or its limit on the estimate's side is unknown)
    limit = lo if rr > true else hi
    return evalue_rr(limit, true)


def _check_ci(est: float, lo: float, hi: float) -> None:
    if not (np.isnan(lo) or lo <= est) or not (np.isnan(hi) or est <= hi):
        raise ValueError(f"the CI [{lo}, {hi}] does not contain the estimate {est}")


def evalues_rr(est: float, lo: float = np.nan, hi: float = np.nan, true: float = 1.0,
               measure: str = "RR", conversion: str = "none (a risk ratio)") -> EValue:
    """E-values of a risk ratio and of its CI (R EValue `evalues.RR`)."""
    _check_ci(est, lo, hi)
    return EValue(measure=measure, estimate=est, ci_low=lo, ci_high=hi, rr=est, rr_low=lo,
                  rr_high=hi, evalue=evalue_rr(est, true), evalue_ci=_ci_evalue(est, lo, hi, true),
                  conversion=conversion)


def evalues_hr(est: float, lo: float = np.nan, hi: float = np.nan, *, rare: bool,
               true: float = 1.0) -> EValue:
    """E-values of a hazard ratio and its CI (R EValue `evalues.HR`), with the conversion named.

    rare: True when fewer than 15 % of patients have the event by the end of follow-up
    (`is_rare`); otherwise the common-outcome conversion is applied to the estimate, each
    limit, and `true`.
    """
    _check_ci(est, lo, hi)
    conv = (lambda v: v) if rare else (lambda v: hr_to_rr(v, rare=False) if np.isfinite(v) else v)
    rr, rr_lo, rr_hi, rr_true = conv(est), conv(lo), conv(hi), conv(true)
    return EValue(measure="HR", estimate=est, ci_low=lo, ci_high=hi, rr=rr, rr_low=rr_lo,
                  rr_high=rr_hi, evalue=evalue_rr(rr, rr_true),
                  evalue_ci=_ci_evalue(rr, rr_lo, rr_hi, rr_true),
                  conversion=METHODS["hr_rare" if rare else "hr_common"])


def evalues_rmst_ratio(est: float, lo: float = np.nan, hi: float = np.nan,
                       true: float = 1.0) -> EValue:
    """E-values of a ratio of restricted mean survival times and its CI (a ratio of means)."""
    return evalues_rr(est, lo, hi, true, measure="RMST ratio", conversion=METHODS["rmst_ratio"])

"""Decision curve analysis for a survival outcome at a horizon (Vickers & Elkin 2006; Vickers,
Cronin, Elkin & Kattan 2008 for censored outcomes), as Python dcurves' `dca(time=...)` computes it.

A patient is "treated" (classed high risk) when the predicted event probability by the horizon,
1 - S(h|x), is at least the threshold probability pt. Among the treated, the probability of an
event by h is 1 - KM(h) of those patients (censoring handled by Kaplan-Meier), so with n patients
    TP / n = P(treated) (1 - KM_treated(h)),   FP / n = P(treated) KM_treated(h),
    net benefit = TP / n - FP / n * pt / (1 - pt).
Treat all: the same with everybody treated; treat none: 0.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ml.stats import km


def _event_probability(time: np.ndarray, event: np.ndarray, horizon: float) -> float:
    return 1.0 - km.survival_at(time, event, horizon)


def net_benefit(risk: np.ndarray, time: np.ndarray, event: np.ndarray, horizon: float,
                thresholds: np.ndarray) -> np.ndarray:
    """Net benefit of treating those with `risk` (predicted P(event by horizon)) >= each threshold."""
    risk, time = np.asarray(risk, float), np.asarray(time, float)
    event = np.asarray(event, bool)
    out = np.empty(len(thresholds))
    for i, pt in enumerate(np.asarray(thresholds, float)):
        positive = risk >= pt
        share = positive.mean()
        if not positive.any():
            out[i] = 0.0
            continue
        p_event = _event_probability(time[positive], event[positive], horizon)
        out[i] = share * p_event - share * (1 - p_event) * pt / (1 - pt)
    return out


def decision_curves(risks: dict[str, np.ndarray], time, event, horizon: float,
                    thresholds: np.ndarray) -> pd.DataFrame:
    """Long frame (model, threshold, net_benefit) for each model, 'treat all' and 'treat none'."""
    time, event = np.asarray(time, float), np.asarray(event, bool)
    everyone = np.ones(len(time))
    rows = [pd.DataFrame({"model": name, "threshold": thresholds,
                          "net_benefit": net_benefit(r, time, event, horizon, thresholds)})
            for name, r in {**risks, "treat all": everyone}.items()]
    rows.append(pd.DataFrame({"model": "treat none", "threshold": thresholds, "net_benefit": 0.0}))
    return pd.concat(rows, ignore_index=True)

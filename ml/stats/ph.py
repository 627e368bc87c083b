"""Proportional-hazards check of a Cox fit: scaled Schoenfeld residuals against the rank of time.

The Grambsch-Therneau approximation that lifelines' `proportional_hazard_test` (time_transform
"rank") and R's cox.zph before 2020 use: with D events in time order (ties in row order),
scaled residuals s*_k = D * s_k V (V the inverse information) and g_k = k,

    T_j = (sum_k (g_k - mean g) s*_kj)^2 / (D * se_j^2 * sum_k (g_k - mean g)^2)  ~  chi2(1).

A small p says the term's log-HR drifts with time.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from ml.stats import coxph
from ml.stats.cox import CoxFit


def schoenfeld_test(fit: CoxFit, se: np.ndarray | None = None) -> pd.DataFrame:
    """Per term: the chi-square(1) statistic and p of the rank-of-time Schoenfeld test.

    `se` is the SE in the denominator, by default the model-based one of `fit`.
    """
    resid = coxph.schoenfeld_residuals(fit.risk_sets, fit.coef)
    n_events = len(resid)
    scaled = n_events * resid @ fit.covariance_model
    rank = np.arange(1, n_events + 1, dtype=float)
    centred = rank - rank.mean()
    se = fit.se_model if se is None else np.asarray(se, dtype=float)
    statistic = (centred @ scaled) ** 2 / (n_events * se**2 * np.sum(centred**2))
    return pd.DataFrame({"term": fit.names, "statistic": statistic,
                         "p": stats.chi2.sf(statistic, 1)})


def ph_test(fit: CoxFit, alpha: float, model: str, se: np.ndarray | None = None) -> pd.DataFrame:
    """`schoenfeld_test` with a plain-language note on each term that fails at `alpha`.

    Terms are listed by name (the order lifelines' summary used), so a report's rows stay put.
    """
    rows = []
    for r in schoenfeld_test(fit, se).sort_values("term", kind="stable").itertuples():
        fails = bool(r.p < alpha)
        note = (f"{r.term}: its hazard ratio seems to change over follow-up (p = {r.p:.3f}); read "
                "the reported HR as an average over time, or model the effect as time-varying"
                if fails else "")
        rows.append({"model": model, "term": r.term, "statistic": float(r.statistic),
                     "p": float(r.p), "ph_violated": fails, "note": note})
    return pd.DataFrame(rows)

"""Each feature's contribution in units a clinician reads.

- Cox-type models (linear on the log-hazard scale): the hazard ratio of the patient's value of
  the feature against the average training patient, exp(SHAP) (SHAP of a linear model is
  coef * (x - training mean), summed over a feature's one-hot columns).
- Other families: the change in P(PFS > 12 months), in percentage points, between the patient
  as given and the same patient with that one feature set to its typical training value (the
  median of a number, the most frequent level of a category), all else unchanged.

`clinical_effects` returns (patients x features, the scale in words); None when the batch is
larger than `MAX_PATIENTS` for the second kind (it costs one prediction per feature and patient).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from features.contract import BY_NAME

HORIZON = 12.0
MAX_PATIENTS = 200
SCALES = {
    "hazard_ratio": "hazard ratio of the patient's value against the average training patient "
                    "(above 1: a higher risk of progression or death)",
    "survival_points": "change in the chance of being progression-free at 12 months, in percentage points, "
                       "against the same patient with this feature at its typical training value",
}


def typical_values(background: pd.DataFrame) -> dict[str, Any]:
    """The median of each numeric input and the most frequent level of each category."""
    out = {}
    for column in background.columns:
        values = background[column].dropna()
        if not len(values):
            continue
        numeric = column in BY_NAME and BY_NAME[column].kind == "number"
        out[column] = float(values.median()) if numeric else values.mode().iloc[0]
    return out


def clinical_effects(kind: str, contributions: pd.DataFrame, features: pd.DataFrame, typical: dict[str, Any],
                     survival_at: Callable[[pd.DataFrame], np.ndarray]) -> tuple[pd.DataFrame | None, str]:
    """(the clinician-unit effects, patients x features; the scale's key in `SCALES`).

    kind: the explainer's kind ("linear" = a Cox-type model); survival_at(rows) -> P(PFS > 12)."""
    if kind == "linear":
        return np.exp(contributions), "hazard_ratio"
    names = [c for c in contributions.columns if c in typical]
    if not names or len(features) > MAX_PATIENTS or contributions.shape[1] == 0:
        return None, "survival_points"
    base = survival_at(features)
    rows = []
    for name in names:
        changed = features.copy()
        changed[name] = typical[name]
        rows.append(changed)
    changed_surv = survival_at(pd.concat(rows, ignore_index=True)).reshape(len(names), len(features))
    effects = 100.0 * (base[None, :] - changed_surv)
    return pd.DataFrame(effects.T, index=contributions.index, columns=names).reindex(
        columns=contributions.columns), "survival_points"

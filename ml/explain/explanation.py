"""The result type of every explainer: `Explanation`, and the names of the explained outputs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

RISK = "risk"
SURVIVAL = "survival"
OUTPUTS = (RISK, SURVIVAL)
DEFAULT_HORIZON = 12.0
ADDITIVITY_TOL = 1e-6


@dataclass(frozen=True)
class Explanation:
    """SHAP values of one model output for a set of patients.

    `values[i, j]` is the contribution of transformed column j to patient i's output;
    `base_value + values.sum(1)` equals `prediction` (the model's own output, computed
    through the model's API, not through the explainer).
    """

    values: np.ndarray
    base_value: float
    data: pd.DataFrame
    prediction: np.ndarray
    output: str
    scale: str
    method: str
    exact: bool
    raw: pd.DataFrame | None = None

    @property
    def columns(self) -> list[str]:
        return list(self.data.columns)

    @property
    def raw_or_data(self) -> pd.DataFrame:
        """The raw feature rows when known, else the transformed ones."""
        return self.raw if self.raw is not None else self.data

    def additivity_error(self) -> float:
        """Largest |base + sum(SHAP) - model output| over the patients."""
        return float(np.max(np.abs(self.base_value + self.values.sum(1) - self.prediction)))


def check_output(output: str) -> None:
    if output not in OUTPUTS:
        raise ValueError(f"output must be '{RISK}' or '{SURVIVAL}', got {output!r}")


def check_additivity(expl: Explanation, tol: float = ADDITIVITY_TOL) -> None:
    """Refuse an explanation whose values do not add up to the model's own output."""
    err = expl.additivity_error()
    if err > tol * max(1.0, float(np.max(np.abs(expl.prediction)))):
        raise ValueError(f"SHAP additivity fails by {err:.3g} ({expl.method}); the model output is "
                         "not what this explainer assumes")


def as_frame(X: Any) -> pd.DataFrame:
    """A frame as given, or an array with columns named x0, x1, ..."""
    if isinstance(X, pd.DataFrame):
        return X
    X = np.asarray(X)
    return pd.DataFrame(X, columns=[f"x{j}" for j in range(X.shape[1])])

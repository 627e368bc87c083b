"""What scoring computes for a batch of patients, apart from how it is shown.

`ScoreResult` holds the arrays (risk, percentile, group, survival at the horizons, median,
SHAP contributions per original feature, optional curves); `to_frame` makes the flat table
(the pyfunc output, the CLI's CSV) and `to_records` the JSON-ready records (the HTTP
service, the CLI's JSON). `step_values` and `medians` read survival curves.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ml.serving.clinical import SCALES

HORIZONS: tuple[float, ...] = (3.0, 6.0, 12.0, 24.0)
RISK_GROUPS = ("low", "intermediate", "high")
NOT_REACHED = "not reached"
EFFECT_EPS = 1e-12         # |SHAP| below this pushes nowhere
TOP_K = 3


def horizon_column(t: float) -> str:
    return f"surv_{t:g}m"


def horizon_columns(t: float) -> tuple[str, str, str]:
    """S(t) and the limits of its pointwise 95 % interval: surv_12m, surv_12m_low, surv_12m_high."""
    return horizon_column(t), f"{horizon_column(t)}_low", f"{horizon_column(t)}_high"


def output_columns(horizons: Sequence[float] = HORIZONS) -> dict[str, str]:
    """The columns of `to_frame` for these horizons, with their MLflow types."""
    return {
        "id": "string", "risk_score": "double", "risk_percentile": "double", "risk_group": "string",
        **{column: "double" for t in horizons for column in horizon_columns(t)},
        "median_pfs_months": "double", "median_pfs_months_low": "double", "median_pfs_months_high": "double",
        "median_pfs": "string", "top_up": "string", "top_down": "string",
        "imputed": "string", "ci_method": "string",
    }


OUTPUT_COLUMNS: dict[str, str] = output_columns(HORIZONS)
"""The columns of `to_frame` (`SurvivalScorer.score`) at the default horizons."""


@dataclass
class ScoreResult:
    """Everything computed for a batch of patients (arrays aligned with `ids`)."""

    ids: np.ndarray
    risk: np.ndarray
    percentile: np.ndarray
    group: np.ndarray
    horizons: tuple[float, ...]
    survival: np.ndarray            # patients x horizons, P(PFS > t)
    median: np.ndarray              # NaN = not reached
    contributions: pd.DataFrame     # patients x original features, SHAP on the risk scale
    values: pd.DataFrame            # the patients' input values (before imputation)
    imputed: list[list[str]]
    curve_times: np.ndarray | None = None
    curves: np.ndarray | None = None   # patients x curve_times
    notes: list[str] = field(default_factory=list)
    # pointwise 95 % intervals (NaN when there is none) and how they were computed
    survival_low: np.ndarray | None = None    # patients x horizons
    survival_high: np.ndarray | None = None
    median_low: np.ndarray | None = None      # NaN = the limit is not reached
    median_high: np.ndarray | None = None
    curves_low: np.ndarray | None = None      # patients x curve_times
    curves_high: np.ndarray | None = None
    ci_method: str = ""
    # each feature's effect in clinician units (`ml.serving.clinical`): patients x features, or None
    clinical: pd.DataFrame | None = None
    clinical_scale: str = ""

    def interval(self, name: str) -> np.ndarray:
        """One of the interval arrays, NaN-filled when the result has none."""
        value = getattr(self, name)
        if value is not None:
            return value
        shape = (len(self.ids), len(self.horizons)) if name.startswith("survival") else (len(self.ids),)
        return np.full(shape, np.nan)

    def top_indices(self, k: int = TOP_K) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(up columns, up effects, down columns, down effects): each patients x k, largest
        first; effects of the wrong sign (fewer than k features push that way) are NaN."""
        c = self.contributions.to_numpy(np.float64)
        k = min(k, c.shape[1])
        up = np.argsort(-c, axis=1, kind="stable")[:, :k]
        down = np.argsort(c, axis=1, kind="stable")[:, :k]
        up_eff = np.take_along_axis(c, up, 1)
        down_eff = np.take_along_axis(c, down, 1)
        return up, np.where(up_eff > EFFECT_EPS, up_eff, np.nan), down, np.where(down_eff < -EFFECT_EPS,
                                                                                 down_eff, np.nan)

    def top_features(self, i: int, k: int = TOP_K) -> tuple[list[dict], list[dict]]:
        """(pushing risk up, pushing risk down) for patient i, largest first."""
        return self.all_top_features(k, rows=[i])[0]

    def all_top_features(self, k: int = TOP_K, rows: Sequence[int] | None = None) -> list[tuple[list, list]]:
        up, up_eff, down, down_eff = self.top_indices(k)
        names = list(self.contributions.columns)
        values = self.values[names].to_numpy(dtype=object)
        clinical = (self.clinical[names].to_numpy(np.float64) if self.clinical is not None
                    else np.full(values.shape, np.nan))
        out = []
        for i in range(len(up)) if rows is None else rows:
            pair = []
            for cols, effs in ((up[i], up_eff[i]), (down[i], down_eff[i])):
                pair.append([{"feature": names[j], "value": value_text(values[i, j]), "effect": float(e),
                              "clinical": _finite(clinical[i, j])}
                             for j, e in zip(cols, effs, strict=True) if np.isfinite(e)])
            out.append((pair[0], pair[1]))
        return out

    def top_text(self, k: int = TOP_K) -> tuple[np.ndarray, np.ndarray]:
        """`feature=value (+effect); ...` per patient, up and down (vectorised for big batches)."""
        up, up_eff, down, down_eff = self.top_indices(k)
        names = np.asarray(self.contributions.columns, dtype=object)
        values = self.values[list(names)].to_numpy(dtype=object)
        rows = np.arange(len(up))
        texts = []
        for cols, effs in ((up, up_eff), (down, down_eff)):
            joined = np.full(len(rows), "", dtype=object)
            for r in range(cols.shape[1]):
                j, e = cols[:, r], effs[:, r]
                shown = np.isfinite(e)
                if not shown.any():
                    break
                vals = values[rows[shown], j[shown]]
                items = zip(names[j[shown]], vals, e[shown], strict=True)
                part = np.array([f"{n}={value_text(v)} ({x:+.3f})" for n, v, x in items], dtype=object)
                sep = np.where(joined[shown] == "", "", "; ")
                joined[shown] = joined[shown] + sep + part
            texts.append(joined)
        return texts[0], texts[1]


def value_text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "missing (imputed)"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def median_text(median: float) -> str:
    return NOT_REACHED if not np.isfinite(median) else f"{median:.1f} months"


def median_ci_text(median: float, low: float, high: float, interval: bool = True) -> str:
    """'14.5 months (95% CI 10.9 to 26.8)'; a limit that is not reached is said so; without an
    interval (`interval` False), the median alone."""
    if not interval:
        return median_text(median)
    limits = [f"{x:.1f}" if np.isfinite(x) else NOT_REACHED for x in (low, high)]
    return f"{median_text(median)} (95% CI {limits[0]} to {limits[1]})"


def to_frame(result: ScoreResult) -> pd.DataFrame:
    """The flat table: one row per patient (the pyfunc output, the CLI's CSV)."""
    top_up, top_down = result.top_text()
    out = pd.DataFrame({
        "id": result.ids.astype(str),
        "risk_score": result.risk,
        "risk_percentile": result.percentile,
        "risk_group": result.group.astype(str),
        **{column: values[:, j] for j, t in enumerate(result.horizons)
           for column, values in zip(horizon_columns(t), (result.survival, result.interval("survival_low"),
                                                          result.interval("survival_high")), strict=True)},
        "median_pfs_months": result.median,
        "median_pfs_months_low": result.interval("median_low"),
        "median_pfs_months_high": result.interval("median_high"),
        "median_pfs": [median_text(m) for m in result.median],
        "top_up": top_up,
        "top_down": top_down,
        "imputed": [", ".join(cols) for cols in result.imputed],
        "ci_method": result.ci_method,
    })
    return out


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def _rounded(x: float) -> float | None:
    return round(float(x), 6) if np.isfinite(x) else None


def to_records(result: ScoreResult) -> list[dict[str, Any]]:
    """JSON-ready records (no NaN: missing numbers are null), with structured explanations."""
    records = []
    tops = result.all_top_features()
    low, high = result.interval("survival_low"), result.interval("survival_high")
    median_low, median_high = result.interval("median_low"), result.interval("median_high")
    for i in range(len(result.ids)):
        up, down = tops[i]
        rec: dict[str, Any] = {
            "id": str(result.ids[i]),
            "risk_score": float(result.risk[i]),
            "risk_percentile": float(result.percentile[i]),
            "risk_group": str(result.group[i]),
            "survival": {horizon_column(t): _finite(result.survival[i, j])
                         for j, t in enumerate(result.horizons)},
            "survival_ci": {horizon_column(t): [_finite(low[i, j]), _finite(high[i, j])]
                            for j, t in enumerate(result.horizons)},
            "median_pfs_months": _finite(result.median[i]),
            "median_pfs_ci": [_finite(median_low[i]), _finite(median_high[i])],
            "median_pfs": median_text(result.median[i]),
            "top_up": up,
            "top_down": down,
            "imputed": result.imputed[i],
            "ci_method": result.ci_method,
            "effect_unit": result.clinical_scale or None,
            "effect_scale": SCALES.get(result.clinical_scale, ""),
        }
        if result.curves is not None:
            rec["curve"] = {"months": [round(float(t), 4) for t in result.curve_times],
                            "survival": [round(float(s), 6) for s in result.curves[i]]}
            if result.curves_low is not None:
                rec["curve"]["low"] = [_rounded(v) for v in result.curves_low[i]]
                rec["curve"]["high"] = [_rounded(v) for v in result.curves_high[i]]
        records.append(rec)
    return records


def step_values(times: np.ndarray, surv: np.ndarray, at: np.ndarray) -> np.ndarray:
    """S at `at` from curves on `times` (right-continuous steps, S = 1 before the first
    time, NaN beyond the last training time where the model knows nothing)."""
    idx = np.searchsorted(times, at, side="right") - 1
    out = np.where(idx[None, :] >= 0, surv[:, np.clip(idx, 0, None)], 1.0)
    out[:, at > times[-1]] = np.nan
    return out


def band_medians(times: np.ndarray, surv: np.ndarray, low: np.ndarray,
                 high: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(median, its lower and upper limits): the first times at which S, the lower and the upper
    curve reach 0.5 (R's `quantile.survfit`: the lower curve crosses first); NaN = not reached."""
    return medians(times, surv), medians(times, low), medians(times, high)


def medians(times: np.ndarray, surv: np.ndarray) -> np.ndarray:
    """First time at which S(t) <= 0.5; NaN if the curve never gets there (not reached)."""
    below = surv <= 0.5
    first = below.argmax(axis=1)
    return np.where(below.any(axis=1), times[first], np.nan)

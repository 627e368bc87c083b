"""Held-out metrics of one fold, and their summary across resamples with the paired
comparison against a baseline model.

Per fold (`score_fold`), on the test rows, with the censoring distribution estimated
on the training rows (IPCW):
- harrell_c: Harrell's C of the risk score.
- uno_c: Uno's IPCW C truncated at tau. tau is capped, per fold, just below the last
  training time (beyond it the censoring survival estimate is 0 and IPCW undefined);
  test rows are administratively censored at tau, which leaves every IPCW metric up
  to tau unchanged and keeps the weights finite.
- auc_<h>, brier_<h>: cumulative/dynamic AUC of 1 - S(h|x) and IPCW Brier score at each
  horizon h (a horizon past tau is clipped to tau; one outside the test follow-up is NaN).
- ibs: integrated Brier score on 50 points from the 10th percentile of test times to tau.
- calibration_slope_<h>: Cox regression, on the test rows followed up to h, of the
  event on log(-log S(h|x)) (the linear predictor for a PH model): 1 is ideal, < 1 means
  predictions too extreme. Plus observed (Kaplan-Meier) vs mean predicted S(h) by
  risk group (`calibration_table`).

Across folds (`summarise`): mean and 95 % CI by the corrected resampled t (Nadeau &
Bengio 2003): var = (1/J + n_test/n_train) s^2 over the J = repeats x folds scores,
t with J - 1 df. The naive t interval ignores that training sets overlap and is too
narrow; the correction is the standard fix for repeated K-fold CV. The paired
difference to the baseline (Cox) uses the same correction on per-fold differences.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats
from sksurv.metrics import (
    brier_score,
    concordance_index_censored,
    concordance_index_ipcw,
    cumulative_dynamic_auc,
    integrated_brier_score,
)
from sksurv.util import Surv

from ml.models.cox import CoxPH
from ml.stats import km

IBS_POINTS = 50


def curves_at(surv: np.ndarray, times: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Step-function value of each row of `surv` (S on `times`) at the points `at` (1 before times[0])."""
    idx = np.searchsorted(times, np.atleast_1d(at), side="right") - 1
    out = np.ones((surv.shape[0], len(idx)))
    ok = idx >= 0
    out[:, ok] = surv[:, idx[ok]]
    return out


def truncate(y: np.ndarray, tau: float) -> np.ndarray:
    """Administrative censoring at tau."""
    time = np.minimum(y["time"], tau)
    return Surv.from_arrays(y["event"] & (y["time"] <= tau), time)


def fold_tau(y_train: np.ndarray, tau: float) -> float:
    """tau capped below the last training time (where the IPCW censoring estimate can reach 0)."""
    times = np.unique(y_train["time"])
    cap = times[-2] if len(times) > 1 else times[-1]
    return float(min(tau, cap))


def calibration_slope(y: np.ndarray, score: np.ndarray, h: float) -> float:
    """Cox slope of the event (followed up to h) on `score`; NaN if it cannot be estimated."""
    yt = truncate(y, h)
    if yt["event"].sum() < 2 or np.ptp(score) <= 1e-12:
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        fit = CoxPH(alpha=0.0).fit(score.reshape(-1, 1), yt)
    coef = float(fit.coef_[0])
    return coef if abs(coef) < 50 else math.nan


def cloglog(s: np.ndarray) -> np.ndarray:
    s = np.clip(s, 1e-12, 1 - 1e-12)
    return np.log(-np.log(s))


def calibration_table(y: np.ndarray, s_h: np.ndarray, h: float, n_groups: int = 3) -> pd.DataFrame:
    """Observed KM vs mean predicted S(h) by group of predicted S(h) (group 1 = highest risk)."""
    ranks = pd.Series(s_h).rank(method="first").to_numpy()
    groups = np.ceil(ranks / len(s_h) * n_groups).astype(int)
    rows = []
    for g in range(1, n_groups + 1):
        m = groups == g
        if m.any():
            rows.append({"group": g, "n": int(m.sum()), "predicted": float(s_h[m].mean()),
                         "observed": km.survival_at(y["time"][m], y["event"][m], h)})
    return pd.DataFrame(rows)


@dataclass
class FoldScore:
    metrics: dict[str, float]
    calibration: pd.DataFrame
    notes: list[str] = field(default_factory=list)


def score_fold(y_train: np.ndarray, y_test: np.ndarray, risk: np.ndarray, *, horizons: dict[str, float],
               tau: float, calibration_horizon: str, surv: np.ndarray | None = None,
               times: np.ndarray | None = None, calibration_groups: int = 3) -> FoldScore:
    """Every held-out metric of one fold.

    risk: risk score per test row (higher = worse). surv/times: S(t|x) of the test rows on
    the model's time grid (None for a score without curves, e.g. the oracle: then AUC
    and the calibration slope use the risk score, Brier/IBS are NaN).
    """
    notes: list[str] = []
    risk = np.asarray(risk, dtype=float)
    out: dict[str, float] = {}
    out["harrell_c"] = float(concordance_index_censored(y_test["event"], y_test["time"], risk)[0])
    tau_k = fold_tau(y_train, tau)
    if tau_k < tau:
        notes.append(f"tau {tau:g} capped to {tau_k:g} (training follow-up)")
    yt = truncate(y_test, tau_k)
    out["uno_c"] = _safe(lambda: concordance_index_ipcw(y_train, yt, risk, tau=tau_k)[0], notes, "uno_c")
    test_max = yt["time"].max()
    for label, h in horizons.items():
        h_k = min(h, tau_k)
        if h_k < h:
            notes.append(f"horizon {label} = {h:g} clipped to {h_k:g} (tau)")
        inside = yt["time"].min() <= h_k < test_max
        s_h = curves_at(surv, times, [h_k])[:, 0] if surv is not None else None
        score = 1 - s_h if s_h is not None else risk
        out[f"auc_{label}"] = _safe(
            lambda sc=score, h=h_k: cumulative_dynamic_auc(y_train, yt, sc, [h])[0][0], notes, f"auc_{label}"
        ) if inside else math.nan
        out[f"brier_{label}"] = (_safe(lambda s=s_h, h=h_k: brier_score(y_train, yt, s, [h])[1][0], notes,
                                       f"brier_{label}") if inside and s_h is not None else math.nan)
        out[f"calibration_slope_{label}"] = calibration_slope(
            y_test, cloglog(s_h) if s_h is not None else risk, h_k)
        if not inside:
            notes.append(f"horizon {label} outside the test follow-up: AUC/Brier NaN")
    calib = pd.DataFrame()
    h_cal = min(horizons[calibration_horizon], tau_k)
    if surv is not None:
        grid_lo = np.quantile(yt["time"], 0.1)
        grid_hi = np.nextafter(min(tau_k, test_max), 0)
        grid = np.linspace(grid_lo, grid_hi, IBS_POINTS)
        out["ibs"] = (_safe(lambda: integrated_brier_score(y_train, yt, curves_at(surv, times, grid), grid),
                            notes, "ibs") if grid_hi > grid_lo else math.nan)
        calib = calibration_table(y_test, curves_at(surv, times, [h_cal])[:, 0], h_cal, calibration_groups)
    else:
        out["ibs"] = math.nan
    return FoldScore({k: float(v) for k, v in out.items()}, calib, notes)


def _safe(fn, notes: list[str], name: str) -> float:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(fn())
    except (ValueError, ZeroDivisionError, FloatingPointError) as exc:
        notes.append(f"{name}: {exc}")
        return math.nan


def corrected_t_ci(values, n_train: float, n_test: float, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and CI of resampled scores, Nadeau-Bengio corrected variance (NaNs dropped)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return math.nan, math.nan, math.nan
    mean = float(v.mean())
    if len(v) < 2:
        return mean, math.nan, math.nan
    var = v.var(ddof=1) * (1 / len(v) + n_test / n_train)
    half = float(stats.t.ppf(0.5 + level / 2, df=len(v) - 1) * math.sqrt(var))
    return mean, mean - half, mean + half


def metric_names(horizons: dict[str, float]) -> list[str]:
    names = ["harrell_c", "uno_c", "ibs"]
    for label in horizons:
        names += [f"auc_{label}", f"brier_{label}"]
    names += [f"calibration_slope_{label}" for label in horizons]
    return names


def summarise(scores: pd.DataFrame, metrics: list[str], n_train: float, n_test: float,
              baseline: str | None = "cox", level: float = 0.95) -> pd.DataFrame:
    """Leaderboard: per model, each metric's mean / ci_low / ci_high and the paired
    difference of Harrell's C to `baseline` (same folds), sorted by mean Harrell C.

    `scores` has one row per (model, repeat, fold) with the metric columns.
    """
    rows = []
    base = None
    if baseline is not None and baseline in set(scores["model"]):
        base = scores[scores["model"] == baseline].set_index(["repeat", "fold"])["harrell_c"]
    for model, group in scores.groupby("model", sort=False):
        row: dict[str, object] = {"model": model}
        for m in metrics:
            mean, lo, hi = corrected_t_ci(group[m], n_train, n_test, level) if m in group else (math.nan,) * 3
            row[m], row[f"{m}_ci_low"], row[f"{m}_ci_high"] = mean, lo, hi
        if base is not None:
            diff = group.set_index(["repeat", "fold"])["harrell_c"] - base
            mean, lo, hi = corrected_t_ci(diff.dropna(), n_train, n_test, level)
        else:
            mean = lo = hi = math.nan
        row["delta_c_vs_cox"], row["delta_c_vs_cox_ci_low"], row["delta_c_vs_cox_ci_high"] = mean, lo, hi
        if "fit_seconds" in group:
            row["fit_seconds"] = float(group["fit_seconds"].mean())
        row["n_resamples"] = int(len(group))
        rows.append(row)
    board = pd.DataFrame(rows)
    return board.sort_values("harrell_c", ascending=False, kind="stable").reset_index(drop=True)

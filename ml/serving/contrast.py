"""The same patient under either regimen: both predicted curves and their difference.

    arms = both_arms(scorer, frame, n_boot=50)     # BothArms (arrays), no I/O
    arms.records()                                 # JSON-ready, one per patient

For every patient the model is asked twice, with treatment = CI and with treatment = CIA (all
other inputs as given); each answer is an ordinary score (curve, 95 % band, median and its CI).
The differences are CIA minus CI:

- S(12) (and the other horizons): for a Cox model at its optimum, the delta method with the
  covariance of the two predictions (they share the coefficients and the baseline hazard):
  Var(S1 - S2) = S1^2 Var H1 + S2^2 Var H2 - 2 S1 S2 Cov(H1, H2), with Cov(H1, H2) =
  r1 r2 [sum dN/S0^2 + d1' V d2] (the terms of `ml.stats.cox_prediction`); a normal interval on
  the difference. Other families: the bootstrap below.
- median PFS, and S(t) for the other families: percentile bootstrap of the differences; the
  pipeline refitted on B resamples of the training rows (seeded); a model that chose its ridge
  penalty from the data keeps it fixed in the refits (`model_card.refit_template`). A median not
  reached within follow-up counts as beyond every time; an interval limit that depends on one is
  null ("not estimable").

This is the model's association adjusted for the recorded covariates, not a randomised comparison.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import norm

from features.contract import CONTROL, TREATED, TREATMENT
from ml.serving.inputs import SCORE_FEATURES
from ml.serving.model_card import refit_template
from ml.serving.results import ScoreResult, horizon_column, medians, step_values, to_records
from ml.serving.uncertainty import LEVEL, bootstrap_refits, delta_model

ARMS = (CONTROL, TREATED)
CAVEAT = ("The difference between the two curves is the model's association of the regimen with PFS, "
          "adjusted for the recorded covariates; it is not a randomised comparison and does not show "
          "that either regimen causes the difference.")
METHODS = {
    "delta": "delta method with the covariance of the two Cox predictions (shared coefficients and baseline "
             "hazard), normal interval on the difference",
    "bootstrap": "percentile bootstrap of the difference, the pipeline refitted on B = {b} resamples of the "
                 "{n} training rows (seed {seed}{penalty})",
    "none": "no interval: {reason}",
}


@dataclass
class BothArms:
    """Scores of each patient under CI and CIA, and the CIA - CI differences with their CIs."""

    arms: dict[str, ScoreResult]
    survival_diff: np.ndarray          # patients x horizons
    survival_diff_low: np.ndarray
    survival_diff_high: np.ndarray
    median_diff: np.ndarray            # NaN: a median not reached
    median_diff_low: np.ndarray        # NaN: not estimable
    median_diff_high: np.ndarray
    survival_method: str
    median_method: str

    def records(self) -> list[dict[str, Any]]:
        per_arm = {arm: to_records(result) for arm, result in self.arms.items()}
        horizons = next(iter(self.arms.values())).horizons
        out = []
        for i in range(len(self.survival_diff)):
            diff = {horizon_column(t): _interval(self.survival_diff[i, j], self.survival_diff_low[i, j],
                                                 self.survival_diff_high[i, j])
                    for j, t in enumerate(horizons)}
            diff["median_pfs_months"] = _interval(self.median_diff[i], self.median_diff_low[i],
                                                  self.median_diff_high[i])
            out.append({"id": per_arm[CONTROL][i]["id"],
                        "arms": {arm: recs[i] for arm, recs in per_arm.items()},
                        "difference": {"contrast": f"{TREATED} minus {CONTROL}", **diff,
                                       "survival_method": self.survival_method,
                                       "median_method": self.median_method},
                        "caveat": CAVEAT})
        return out


def _finite(x: float) -> float | None:
    return round(float(x), 6) if np.isfinite(x) else None


def _interval(estimate: float, low: float, high: float) -> dict[str, float | None]:
    return {"estimate": _finite(estimate), "low": _finite(low), "high": _finite(high)}


def with_treatment(X: pd.DataFrame, arm: str) -> pd.DataFrame:
    out = X.copy()
    out[TREATMENT] = arm
    return out


def delta_difference(model: Any, x1: np.ndarray, x2: np.ndarray, times: np.ndarray,
                     level: float = LEVEL) -> tuple[np.ndarray, ...]:
    """(S2 - S1, low, high) at `times` for rows x1 (arm 1) and x2 (arm 2) of the model's design."""
    from ml.stats import cox_prediction

    cv = cox_prediction.at_times(model.curve_variance_, times)
    xc1, xc2 = np.atleast_2d(x1) - cv.center, np.atleast_2d(x2) - cv.center
    r1, r2 = np.exp(xc1 @ cv.coef), np.exp(xc2 @ cv.coef)
    d1 = cv.hazard[None, :, None] * xc1[:, None, :] - cv.xbar[None]    # patients x times x p
    d2 = cv.hazard[None, :, None] * xc2[:, None, :] - cv.xbar[None]
    h1, h2 = r1[:, None] * cv.hazard, r2[:, None] * cv.hazard

    def cov(da, db, ra, rb):
        return (ra * rb)[:, None] * (cv.var_hazard + np.einsum("itp,pq,itq->it", da, cv.cov, db))

    s1, s2 = np.exp(-h1), np.exp(-h2)
    var = s1**2 * cov(d1, d1, r1, r1) + s2**2 * cov(d2, d2, r2, r2) - 2 * s1 * s2 * cov(d1, d2, r1, r2)
    se = np.sqrt(np.maximum(var, 0.0))
    z = norm.ppf(0.5 + level / 2)
    diff = s2 - s1
    out = (diff, diff - z * se, diff + z * se)
    for a in out:
        a[:, np.asarray(times) > cv.times[-1]] = np.nan
    return out


def contrast_refits(scorer: Any, n_boot: int) -> tuple[Any, str]:
    """(refits for the bootstrap of the differences, kept on the scorer; the method's words)."""
    train = getattr(scorer, "train_", None)
    if n_boot <= 0:
        return None, METHODS["none"].format(reason="the bootstrap was turned off (B = 0)")
    if train is None:
        return None, METHODS["none"].format(reason="the scorer keeps no training rows to resample")
    template, penalty = refit_template(scorer.pipeline)
    cached = getattr(scorer, "contrast_refits_", None)
    if cached is None or cached.requested != n_boot or cached.seed != scorer.random_state:
        cached = bootstrap_refits(template, *train, n_boot, scorer.random_state)
        scorer.contrast_refits_ = cached
    text = METHODS["bootstrap"].format(b=len(cached.pipelines), n=cached.n_train, seed=cached.seed,
                                       penalty=penalty)
    return cached, text


def _quantiles(values: np.ndarray, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """Percentile limits over axis 0 (no interpolation: +-inf stay +-inf, NaN = not estimable)."""
    tail = (1 - level) / 2
    ordered = np.sort(values, axis=0)   # NaN (inf - inf) sorts last
    b = len(values)
    lo = ordered[max(int(np.ceil(tail * b)) - 1, 0)]
    hi = ordered[min(int(np.ceil((1 - tail) * b)) - 1, b - 1)]
    return np.where(np.isfinite(lo), lo, np.nan), np.where(np.isfinite(hi), hi, np.nan)


def bootstrap_differences(refits: Any, frames: dict[str, pd.DataFrame],
                          horizons: np.ndarray) -> tuple[np.ndarray, ...]:
    """(S low, S high, median low, median high) of the CIA - CI differences over the refits."""
    surv, med = [], []
    n = len(frames[CONTROL])
    both = pd.concat([frames[CONTROL], frames[TREATED]], ignore_index=True)[list(SCORE_FEATURES)]
    for p in refits.pipelines:
        times = np.asarray(p.unique_times_, dtype=float)
        stacked = np.asarray(p.predict_survival_function(both, return_array=True), dtype=float)
        curves = {CONTROL: stacked[:n], TREATED: stacked[n:]}  # one call per refit: the transform dominates
        surv.append(step_values(times, curves[TREATED], horizons)
                    - step_values(times, curves[CONTROL], horizons))
        m = {a: np.nan_to_num(medians(times, c), nan=np.inf) for a, c in curves.items()}
        with np.errstate(invalid="ignore"):
            med.append(m[TREATED] - m[CONTROL])
    s_low, s_high = _quantiles(np.stack(surv))
    m_low, m_high = _quantiles(np.stack(med))
    return s_low, s_high, m_low, m_high


def both_arms(scorer: Any, X: pd.DataFrame, n_boot: int = 50) -> BothArms:
    """Each patient of the parsed frame `X` scored under CI and under CIA, and the differences."""
    frames = {arm: with_treatment(X, arm) for arm in ARMS}
    arms = {arm: scorer.result_for(frame, curve=True, explain=False) for arm, frame in frames.items()}
    horizons = np.asarray(scorer.horizons, dtype=float)
    s_diff = arms[TREATED].survival - arms[CONTROL].survival
    m_diff = arms[TREATED].median - arms[CONTROL].median
    refits, median_method = contrast_refits(scorer, n_boot)
    nan = np.full_like(s_diff, np.nan)
    s_low, s_high, m_low, m_high = nan, nan.copy(), np.full(len(X), np.nan), np.full(len(X), np.nan)
    survival_method = median_method
    if refits is not None:
        s_low, s_high, m_low, m_high = bootstrap_differences(refits, frames, horizons)
    model = delta_model(scorer.pipeline)
    if model is not None:
        design = {a: scorer.pipeline.preprocessor_.transform(f[list(SCORE_FEATURES)]).to_numpy(float)
                  for a, f in frames.items()}
        _, s_low, s_high = delta_difference(model, design[CONTROL], design[TREATED], horizons)
        survival_method = METHODS["delta"]
    return BothArms(arms, s_diff, s_low, s_high, m_diff, m_low, m_high, survival_method, median_method)

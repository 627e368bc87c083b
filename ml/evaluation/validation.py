"""Internal validation of one model by the bootstrap (Harrell's optimism correction, as R rms
`validate` / `calibrate` report it). Pure: no I/O, no MLflow; the model comes as a callable.

    result = bootstrap_validation(fit, X, y, horizons=..., tau=..., n_bootstrap=200, seed=2024)
    result.summary      # metric, apparent, optimism, corrected
    result.resamples    # per resample b: every metric on the resample (apparent) and on the rows (test)
    result.calibration  # per horizon and risk group: apparent curve and the band of the test curves

`fit(X, y)` returns a fitted survival estimator (`predict`, `predict_survival_function(X,
return_array=True)`, `unique_times_`), refitting everything (preprocessing included) on its rows.

- Apparent: the model fitted on all rows, scored on them.
- For b = 1..B: fitted on a bootstrap resample, scored on that resample (apparent_b) and on the
  original rows (test_b). optimism = mean_b(apparent_b - test_b); corrected = apparent - optimism.
- Metrics: `harrell_c`; `uno_c` (IPCW, truncated at tau, the censoring distribution of the rows
  scored, tau capped below their last time as in the benchmark's folds); `calibration_slope_<h>`
  (`metrics.calibration_slope`: Cox slope of the outcome followed up to h on log(-log S(h|x)), the
  shrinkage factor); `calibration_in_the_large_<h>` = mean predicted S(h) - Kaplan-Meier S(h)
  (0 ideal, > 0: survival over-predicted).
- Calibration curve at each horizon: rows in `groups` groups of predicted S(h) (quantiles),
  Kaplan-Meier S(h) of each group against its mean predicted S(h); the band is the 2.5-97.5
  percentiles, per group rank, of the B bootstrap models' curves on the original rows (test curves).
- Smoothed calibration curve at each horizon (`result.smooth`, `ml.evaluation.smooth_calibration`:
  Cox regression of the outcome up to h on a 3-knot restricted cubic spline of log(-log S(h|x)),
  Austin, Harrell & van Klaveren 2020) at 50 predicted values spanning the apparent model's 1st-99th
  percentiles of S(h): apparent curve; optimism = mean_b(curve of model b on its resample - curve of
  model b on the rows), corrected = apparent - optimism (rms `calibrate`'s bias-corrected curve);
  band = 2.5-97.5 percentiles of the test curves.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sksurv.metrics import concordance_index_censored, concordance_index_ipcw

from ml.evaluation.metrics import calibration_slope, cloglog, curves_at, fold_tau, truncate
from ml.evaluation.smooth_calibration import prediction_grid, smooth_calibration
from ml.stats import km

EPV_THRESHOLD = 10.0
FAILURES = (ValueError, ArithmeticError, np.linalg.LinAlgError)
"""A resample whose fit or scoring fails numerically: its row is NaN and it is counted in `failed`."""
BAND = (2.5, 97.5)


def metric_names(horizons: Mapping[str, float]) -> list[str]:
    """The validated metrics, named as the shared vocabulary (benchmark, tuning) names them."""
    return ["harrell_c", "uno_c", *(f"calibration_slope_{h}" for h in horizons),
            *(f"calibration_in_the_large_{h}" for h in horizons)]


def events_per_variable(events: int, n_columns: int) -> float:
    """Events / number of model columns (after one-hot encoding)."""
    return events / n_columns if n_columns else math.nan


def epv_warning(epv: float, threshold: float = EPV_THRESHOLD) -> str | None:
    """A warning when there are fewer than `threshold` events per model column."""
    if math.isfinite(epv) and epv < threshold:
        return (f"events per variable {epv:.1f} < {threshold:g}: the model has too many columns for "
                "its events; unpenalised, it is likely overfit (expect a calibration slope well below 1)")
    return None


def _harrell(y: np.ndarray, risk: np.ndarray) -> float:
    return float(concordance_index_censored(y["event"], y["time"], risk)[0])


def _uno(y: np.ndarray, risk: np.ndarray, tau: float) -> float:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(concordance_index_ipcw(y, truncate(y, tau), risk, tau=tau)[0])
    except (ValueError, ZeroDivisionError):
        return math.nan


def calibration_groups(y: np.ndarray, s_h: np.ndarray, h: float, groups: int) -> pd.DataFrame:
    """Kaplan-Meier S(h) vs mean predicted S(h) by quantile group of predicted S(h) (1 = lowest S)."""
    ranks = pd.Series(s_h).rank(method="first").to_numpy()
    group = np.ceil(ranks / len(s_h) * groups).astype(int)
    rows = [{"group": g, "n": int((group == g).sum()), "predicted": float(s_h[group == g].mean()),
             "observed": km.survival_at(y["time"][group == g], y["event"][group == g], h)}
            for g in range(1, groups + 1) if (group == g).any()]
    return pd.DataFrame(rows)


@dataclass
class Scored:
    """One model scored on one set of rows: the metrics, the grouped calibration curve and the
    smoothed one (horizon, predicted, observed) per horizon."""

    metrics: dict[str, float]
    curves: pd.DataFrame
    smooth: pd.DataFrame = field(default_factory=pd.DataFrame)


def _smooth_frame(y: np.ndarray, s_h: np.ndarray, h: float, label: str,
                  grids: Mapping[str, np.ndarray] | None) -> pd.DataFrame:
    grid = grids[label] if grids is not None else prediction_grid(s_h)
    return pd.DataFrame({"horizon": label, "predicted": grid,
                         "observed": smooth_calibration(y, s_h, h, grid)})


def score_rows(estimator: Any, X: pd.DataFrame, y: np.ndarray, *, horizons: Mapping[str, float],
               tau: float, groups: int = 5, grids: Mapping[str, np.ndarray] | None = None) -> Scored:
    """Every validated metric of a fitted `estimator` on the rows (X, y); the smoothed curve at the
    predicted values `grids[horizon]` (None: a grid over these rows' predictions)."""
    risk = np.asarray(estimator.predict(X), dtype=float)
    surv = estimator.predict_survival_function(X, return_array=True)
    tau_k = fold_tau(y, tau)
    out = {"harrell_c": _harrell(y, risk), "uno_c": _uno(y, risk, tau_k)}
    curves, smooth = [], []
    for label, h in horizons.items():
        h_k = min(h, tau_k)
        s_h = curves_at(surv, estimator.unique_times_, [h_k])[:, 0]
        out[f"calibration_slope_{label}"] = calibration_slope(y, cloglog(s_h), h_k)
        observed = km.survival_at(y["time"], y["event"], h_k)
        out[f"calibration_in_the_large_{label}"] = float(s_h.mean()) - observed
        curves.append(calibration_groups(y, s_h, h_k, groups).assign(horizon=label))
        smooth.append(_smooth_frame(y, s_h, h_k, label, grids))
    return Scored(out, pd.concat(curves, ignore_index=True), pd.concat(smooth, ignore_index=True))


@dataclass
class ValidationResult:
    summary: pd.DataFrame           # metric, apparent, optimism, corrected
    resamples: pd.DataFrame         # b, metric, apparent, test (one row per resample and metric)
    calibration: pd.DataFrame       # horizon, group, n, predicted, observed, band_low, band_high
    apparent: dict[str, float]
    n_bootstrap: int
    failed: int = 0
    notes: list[str] = field(default_factory=list)
    smooth: pd.DataFrame = field(default_factory=pd.DataFrame)
    # horizon, predicted, observed (apparent), optimism, corrected, band_low, band_high


def optimism_summary(apparent: Mapping[str, float], resamples: pd.DataFrame) -> pd.DataFrame:
    """optimism = mean over resamples of (apparent_b - test_b) (NaN resamples dropped);
    corrected = apparent - optimism."""
    gap = resamples.assign(gap=resamples["apparent"] - resamples["test"])
    optimism = gap.groupby("metric", sort=False)["gap"].mean()
    rows = [{"metric": m, "apparent": a, "optimism": float(optimism.get(m, math.nan)),
             "corrected": a - float(optimism.get(m, math.nan))} for m, a in apparent.items()]
    return pd.DataFrame(rows)


def _band(apparent_curves: pd.DataFrame, test_curves: list[pd.DataFrame]) -> pd.DataFrame:
    """The apparent curve with the percentile band of the test curves, per horizon and group."""
    if not test_curves:
        return apparent_curves.assign(band_low=math.nan, band_high=math.nan)
    tests = pd.concat(test_curves, ignore_index=True)
    band = tests.groupby(["horizon", "group"])["observed"].quantile([BAND[0] / 100, BAND[1] / 100])
    band = band.unstack().set_axis(["band_low", "band_high"], axis=1).reset_index()
    return apparent_curves.merge(band, on=["horizon", "group"], how="left")


def smooth_summary(apparent: pd.DataFrame, own: list[pd.DataFrame], test: list[pd.DataFrame]) -> pd.DataFrame:
    """The apparent smoothed curve with its optimism, corrected value and band, per horizon and
    grid point: optimism = mean_b(own_b - test_b) (rms `calibrate`'s bias correction), corrected =
    apparent - optimism, band = 2.5-97.5 percentiles of the test curves test_b."""
    out = apparent.assign(optimism=math.nan, corrected=math.nan, band_low=math.nan, band_high=math.nan)
    if not test:
        return out
    keys = ["horizon", "predicted"]
    own_b = pd.concat(own, ignore_index=True).set_index([*keys, "b"])["observed"]
    test_b = pd.concat(test, ignore_index=True).set_index([*keys, "b"])["observed"]
    gap = (own_b - test_b).groupby(level=keys, sort=False).mean()
    band = test_b.groupby(level=keys, sort=False).quantile([BAND[0] / 100, BAND[1] / 100]).unstack()
    index = pd.MultiIndex.from_frame(apparent[keys])
    out["optimism"] = gap.reindex(index).to_numpy()
    out["corrected"] = out["observed"] - out["optimism"]
    out["band_low"] = band.iloc[:, 0].reindex(index).to_numpy()
    out["band_high"] = band.iloc[:, 1].reindex(index).to_numpy()
    return out


def _resample(fit, X, y, rows, settings, grids) -> tuple[Scored, Scored]:
    """The model fitted on the resample `rows`, scored on it (own) and on all the rows (test)."""
    X_b, y_b = X.iloc[rows].reset_index(drop=True), y[rows]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        model = fit(X_b, y_b)
        return (score_rows(model, X_b, y_b, grids=grids, **settings),
                score_rows(model, X, y, grids=grids, **settings))


def bootstrap_validation(fit: Callable[[pd.DataFrame, np.ndarray], Any], X: pd.DataFrame, y: np.ndarray, *,
                         horizons: Mapping[str, float], tau: float, n_bootstrap: int = 200, seed: int = 2024,
                         groups: int = 5, progress: Callable[[int], None] | None = None) -> ValidationResult:
    """Apparent, optimism and optimism-corrected performance of the model `fit` makes (see module)."""
    if n_bootstrap < 1:
        raise ValueError("the number of bootstrap resamples must be at least 1")
    settings = {"horizons": dict(horizons), "tau": tau, "groups": groups}
    full = score_rows(fit(X, y), X, y, **settings)
    grids = {label: g["predicted"].to_numpy() for label, g in full.smooth.groupby("horizon", sort=False)}
    rng = np.random.default_rng(seed)
    records, tests, smooth_own, smooth_test, failed = [], [], [], [], 0
    for b in range(n_bootstrap):
        rows = rng.integers(0, len(y), len(y))
        try:
            own, test = _resample(fit, X, y, rows, settings, grids)
        except FAILURES:
            failed += 1
            own = test = Scored({m: math.nan for m in full.metrics}, pd.DataFrame())
        records += [{"b": b, "metric": m, "apparent": own.metrics[m], "test": test.metrics[m]}
                    for m in full.metrics]
        if not test.curves.empty:
            tests.append(test.curves.assign(b=b))
            smooth_own.append(own.smooth.assign(b=b))
            smooth_test.append(test.smooth.assign(b=b))
        if progress is not None:
            progress(b + 1)
    resamples = pd.DataFrame(records)
    notes = [f"{failed} of {n_bootstrap} resamples failed to fit and were left out"] if failed else []
    return ValidationResult(optimism_summary(full.metrics, resamples), resamples, _band(full.curves, tests),
                            full.metrics, n_bootstrap, failed, notes,
                            smooth_summary(full.smooth, smooth_own, smooth_test))

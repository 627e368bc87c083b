"""Bootstrap of the IPTW analysis: weighted KM medians and IPTW-Cox log-HRs per resample.

Each resample is drawn within each treatment group and re-fits the propensity model, so the
spread of the replicates carries the uncertainty of the estimated weights, which Greenwood's
formula and the sandwich SE (weights treated as known) leave out.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from features import schema
from ml.stats import km
from ml.stats.cox import fit_cox
from ml.stats.errors import CausalInputError
from ml.stats.weighting import IPTW, propensity_design, refit_weights, stratified_resample


def _replicate(outcomes: dict, idx: np.ndarray, t: np.ndarray, w: np.ndarray) -> dict[str, float]:
    row = {}
    for ep, (time, event) in outcomes.items():
        ti, ei = time[idx], event[idx]
        row[f"{ep}_median_all"] = km.km_median_fast(ti, ei, w)
        row[f"{ep}_median_{schema.TREATED}"] = km.km_median_fast(ti[t], ei[t], w[t])
        row[f"{ep}_median_{schema.CONTROL}"] = km.km_median_fast(ti[~t], ei[~t], w[~t])
        row[f"{ep}_log_hr"] = float(fit_cox(ti, ei, t.astype(float), w).coef[0])
    return row


def bootstrap_iptw(df: pd.DataFrame, iptw: IPTW, replicates: int, seed: int,
                   progress: Callable[[int, int], None] | None = None) -> pd.DataFrame:
    """One row per analysable resample: `{endpoint}_median_{group}` and `{endpoint}_log_hr`.

    `attrs["failed"]` counts the resamples whose propensity or Cox fit failed (left out,
    with a warning). The same seed gives the same replicates. `progress(done, replicates)`
    is called after each resample (for a progress bar).
    """
    design = propensity_design(iptw, df)
    outcomes = {ep: (df[t].to_numpy(float), df[e].to_numpy().astype(bool))
                for ep, (t, e) in schema.ENDPOINTS.items()}

    def one(idx: np.ndarray) -> dict[str, float]:
        t = iptw.treated[idx]
        w = refit_weights(design[idx], t, iptw.estimand, iptw.stabilized, iptw.truncate)
        return _replicate(outcomes, idx, t, w)

    rows, failed = run_resamples(iptw.treated, replicates, seed, one, progress,
                                 what="bootstrap resamples", unit="group")
    out = pd.DataFrame(rows)
    out.attrs["failed"] = failed
    return out


def run_resamples(treated: np.ndarray, replicates: int, seed: int, one: Callable[[np.ndarray], Any],
                  progress: Callable[[int, int], None] | None = None, *, what: str = "bootstrap resamples",
                  unit: str = "group") -> tuple[list[Any], int]:
    """The one resampling loop: `replicates` resamples drawn within each group
    (`stratified_resample`, seeded), `one(rows)` on each, quasi-separation warnings silenced.

    A resample whose propensity or Cox fit fails is left out and counted (with a warning naming
    `what`); if every one fails, `CausalInputError`. Returns (the results, the number failed).
    `progress(done, replicates)` after each resample.
    """
    rng = np.random.default_rng(seed)
    results, failed = [], 0
    for done in range(1, replicates + 1):
        idx = stratified_resample(treated, rng)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a resample may be quasi-separated: fine here
                results.append(one(idx))
        except (CausalInputError, np.linalg.LinAlgError, ValueError):
            failed += 1
        if progress is not None:
            progress(done, replicates)
    if replicates and not results:
        raise CausalInputError(f"none of the {replicates} {what} could be analysed (every "
                               f"propensity or Cox fit failed): too few events or patients per {unit}")
    if failed:
        warnings.warn(f"{failed} of {replicates} {what} could not be analysed "
                      "(Cox or propensity fit failed) and were left out", stacklevel=3)
    return results, failed


def percentile_ci(values: np.ndarray, alpha: float) -> tuple[float, float]:
    """Percentile interval of bootstrap medians; 'not reached' (NaN) counts as +infinity.

    An upper limit that falls on a not-reached replicate is itself not reached (NaN).
    """
    v = np.asarray(values, dtype=float)
    if len(v) == 0:
        return np.nan, np.nan
    v = np.where(np.isnan(v), np.inf, v)
    lo, hi = np.quantile(v, [alpha / 2, 1 - alpha / 2], method="inverted_cdf")
    return (float(lo) if np.isfinite(lo) else np.nan), (float(hi) if np.isfinite(hi) else np.nan)


def bootstrap_log_hr_summary(log_hr: float, replicates: np.ndarray, alpha: float) -> dict[str, float]:
    """Bootstrap SE of a log-HR with its Wald CI and p, and the percentile CI of the HR."""
    reps = np.asarray(replicates, dtype=float)
    se = float(np.std(reps, ddof=1))
    z = stats.norm.ppf(1 - alpha / 2)
    lo, hi = np.quantile(reps, [alpha / 2, 1 - alpha / 2])
    return {"se_log_hr_bootstrap": se,
            "ci_low_bootstrap": float(np.exp(log_hr - z * se)),
            "ci_high_bootstrap": float(np.exp(log_hr + z * se)),
            "p_bootstrap": float(2 * stats.norm.sf(abs(log_hr) / se)),
            "ci_low_bootstrap_percentile": float(np.exp(lo)),
            "ci_high_bootstrap_percentile": float(np.exp(hi))}

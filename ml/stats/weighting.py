"""Propensity model and inverse probability of treatment weights (IPTW) for a cohort.

`estimate_iptw` is the whole step in one call: check the input (`ml.stats.positivity`), fit
the logistic propensity model, weight, and report each group's effective sample size. The
bootstrap helpers (`propensity_design`, `refit_weights`, `stratified_resample`) re-run the
weighting cheaply in every resample.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from features import schema
from features.pipeline import FeatureSpec, build_preprocessor, cohort_spec
from ml.stats.errors import ExtremeWeightsWarning
from ml.stats.positivity import PROPENSITY_EPS, check_confounders, check_separation, group_sizes

DEFAULT_CONFOUNDERS = ("age", "sex", "smoking", "ecog", "histology", "pdl1", "prior_response",
                       "brain_mets", "liver_mets", "bone_mets")
"""Baseline covariates that may drive the choice of an anti-angiogenic drug."""

EXTREME_ESS_FRACTION = 0.5
"""Warn when a group's ESS falls below this fraction of its patients."""
EXTREME_WEIGHT_RATIO = 10.0
"""Warn when one weight exceeds this multiple of its group's mean weight."""
PROPENSITY_TOL = 1e-12
"""Newton-Cholesky stopping tolerance (largest gradient component): far below scikit-learn's
default 1e-4, so the fit is R's `glm(family = binomial)` MLE to ~1e-10 (tested against R)."""


DEFAULT_ESTIMAND = "ate"
DEFAULT_STABILIZED = True
DEFAULT_TRUNCATE: tuple[float, float] | None = None
"""The weights' defaults, of the analysis (experiments/paper.yaml) and of the benchmark's IPTW Cox."""


def logistic_mle(max_iter: int = 100, C: float = np.inf) -> LogisticRegression:
    """The unpenalised logistic regression of every propensity model here: Newton's method run
    to `PROPENSITY_TOL`, so the coefficients are the maximum-likelihood estimate (scikit-learn
    warns `ConvergenceWarning` when `max_iter` Newton steps do not reach it). A finite `C` adds
    scikit-learn's L2 penalty (only where a caller asks for it)."""
    return LogisticRegression(C=C, solver="newton-cholesky", tol=PROPENSITY_TOL, max_iter=max_iter)


def fit_propensity(df: pd.DataFrame, confounders: tuple[str, ...] | list[str] = DEFAULT_CONFOUNDERS,
                   group: str = schema.TREATMENT, treated: str = schema.TREATED) -> Pipeline:
    """Fit an (unpenalised) logistic propensity model P(treated | confounders).

    Returns a fitted scikit-learn Pipeline (impute, encode, scale, logistic) whose
    `predict_proba(df)[:, 1]` is the propensity. Fit it on training rows only.
    """
    full = cohort_spec(include_treatment=False)
    spec = FeatureSpec(
        numeric=tuple(c for c in full.numeric if c in confounders),
        categorical={c: lv for c, lv in full.categorical.items() if c in confounders},
    )
    model = Pipeline([
        ("pre", build_preprocessor(spec)),
        # Newton to a gradient of 1e-12: the MLE, as glm; the default tol (1e-4) stops ~1e-3 off it
        ("logit", logistic_mle(max_iter=200)),
    ])
    treated_mask = (df[group] == treated).to_numpy()
    return model.fit(df, treated_mask.astype(int))


def _estimand_weights(e: np.ndarray, t: np.ndarray, estimand: str) -> np.ndarray:
    if estimand == "ate":
        return np.where(t, 1 / e, 1 / (1 - e))
    if estimand == "att":
        return np.where(t, 1.0, e / (1 - e))  # already on the treated group's scale
    if estimand == "overlap":
        return np.where(t, 1 - e, e)
    raise ValueError(f"unknown estimand '{estimand}', expected ate, att or overlap")


def iptw_weights(propensity: np.ndarray, treated: np.ndarray, estimand: str = "ate",
                 stabilized: bool = True, truncate: tuple[float, float] | None = None,
                 *, sample_weight: np.ndarray | None = None) -> np.ndarray:
    """Inverse probability of treatment weights.

    estimand: "ate" (1/e, 1/(1-e)), "att" (1, e/(1-e)) or "overlap" (1-e, e).
    stabilized: multiply ATE weights by the marginal P(group), so they average ~1 per group
        (ATT and overlap weights are left as they are).
    truncate: (low, high) percentiles at which the weights are capped, e.g. (1, 99).
    sample_weight: prior row weights (e.g. a resampling's); the marginal P(treated) and the
        truncation percentiles are taken over the weighted rows, a zero weight being a row
        that is not there. The result is the IPTW factor only, to multiply them by.
    """
    e = np.asarray(propensity, dtype=float)
    t = np.asarray(treated, dtype=bool)
    prior = np.ones(len(t)) if sample_weight is None else np.asarray(sample_weight, dtype=float)
    w = _estimand_weights(e, t, estimand)
    if estimand == "ate" and stabilized:
        p = np.average(t, weights=prior)
        w = w * np.where(t, p, 1 - p)
    if truncate is not None:
        lo, hi = np.percentile(w[prior > 0], truncate)
        w = np.clip(w, lo, hi)
    return w


def effective_sample_size(weights: np.ndarray) -> float:
    """Kish's effective sample size (sum w)^2 / sum w^2."""
    w = np.asarray(weights, dtype=float)
    return float(w.sum() ** 2 / np.sum(w**2))


def weight_diagnostics(weights: np.ndarray, treated: np.ndarray,
                       labels: tuple[str, str] = (schema.TREATED, schema.CONTROL)) -> pd.DataFrame:
    """Per group: patients, sum of weights, Kish ESS, ESS / n, largest weight / mean weight."""
    w = np.asarray(weights, dtype=float)
    t = np.asarray(treated, dtype=bool)
    rows = []
    for label, mask in ((labels[0], t), (labels[1], ~t), ("all", np.ones_like(t))):
        wg = w[mask]
        ess = effective_sample_size(wg)
        rows.append({"group": label, "n": int(mask.sum()), "sum_weights": float(wg.sum()),
                     "ess": ess, "ess_fraction": ess / mask.sum(),
                     "max_weight": float(wg.max()), "max_to_mean": float(wg.max() / wg.mean())})
    return pd.DataFrame(rows)


IPTW_ADVICE = "consider truncation (e.g. truncate: [1, 99]) or overlap weights"


def warn_extreme_weights(diagnostics: pd.DataFrame, kind: str = "IPTW", advice: str = IPTW_ADVICE,
                         stacklevel: int = 2) -> None:
    """Warn (with the ESS) when a group's weights are dominated by a few patients: the one rule
    (ESS below EXTREME_ESS_FRACTION of the group, or a weight above EXTREME_WEIGHT_RATIO times
    its mean) for every weighting method; `kind` names the weights and `advice` what to do."""
    groups = diagnostics[diagnostics["group"] != "all"]
    bad = groups[(groups["ess_fraction"] < EXTREME_ESS_FRACTION)
                 | (groups["max_to_mean"] > EXTREME_WEIGHT_RATIO)]
    if len(bad):
        parts = [f"{r.group}: ESS {r.ess:.1f} of {r.n} patients ({100 * r.ess_fraction:.0f}%), "
                 f"largest weight {r.max_to_mean:.1f}x the group mean" for r in bad.itertuples()]
        warnings.warn(f"extreme {kind} weights, the weighted estimates rest on few patients ("
                      + "; ".join(parts) + f"); {advice}", ExtremeWeightsWarning, stacklevel=stacklevel + 1)


@dataclass(frozen=True)
class IPTW:
    """Fitted propensity model, propensity scores and weights of one cohort."""

    propensity: np.ndarray
    weights: np.ndarray
    treated: np.ndarray
    confounders: tuple[str, ...]
    estimand: str
    stabilized: bool
    truncate: tuple[float, float] | None
    diagnostics: pd.DataFrame
    model: Pipeline


def estimate_iptw(df: pd.DataFrame, confounders: tuple[str, ...] | list[str] = DEFAULT_CONFOUNDERS,
                  estimand: str = DEFAULT_ESTIMAND, stabilized: bool = DEFAULT_STABILIZED,
                  truncate: tuple[float, float] | None = DEFAULT_TRUNCATE, group: str = schema.TREATMENT,
                  treated: str = schema.TREATED, control: str = schema.CONTROL) -> IPTW:
    """Check the input, fit the logistic propensity model, and weight (see `iptw_weights`).

    Raises `CausalInputError` for a single group, a confounder constant within a group
    or perfect separation; warns `ExtremeWeightsWarning` with the ESS per group.
    """
    group_sizes(df, group, treated, control)
    usable = check_confounders(df, confounders, group, treated, control)
    model = fit_propensity(df, usable, group, treated)
    e = model.predict_proba(df)[:, 1]
    t = (df[group] == treated).to_numpy()
    check_separation(e, t)
    w = iptw_weights(e, t, estimand, stabilized, truncate)
    diagnostics = weight_diagnostics(w, t, (treated, control))
    warn_extreme_weights(diagnostics)
    return IPTW(propensity=e, weights=w, treated=t, confounders=usable, estimand=estimand,
                stabilized=stabilized, truncate=truncate, diagnostics=diagnostics, model=model)


# --- resampling ---------------------------------------------------------------------------------


def propensity_design(iptw: IPTW, df: pd.DataFrame) -> np.ndarray:
    """The propensity model's design matrix (imputed, one-hot, scaled) for `df`."""
    return np.asarray(iptw.model.named_steps["pre"].transform(df), dtype=float)


def refit_weights(design: np.ndarray, treated: np.ndarray, estimand: str, stabilized: bool,
                  truncate: tuple[float, float] | None, *, max_iter: int = 30) -> np.ndarray:
    """Re-fit the logistic propensity (`propensity_scores`) on a (resampled) design matrix and
    return new weights.

    The bootstrap uses this instead of `fit_propensity`: the unpenalised logistic MLE
    is invariant to the scaling step and the one-hot levels are fixed, so only the
    imputation medians are held at their full-cohort values (a negligible shortcut
    that makes a resample ~5x cheaper).
    """
    # few iterations: a quasi-separated resample would otherwise run the solver to its limit
    _, e = propensity_scores(design, treated, max_iter=max_iter)
    return iptw_weights(e, treated, estimand, stabilized, truncate)


def propensity_scores(design: np.ndarray, treated: np.ndarray, *, sample_weight: np.ndarray | None = None,
                      max_iter: int = 100, C: float = np.inf) -> tuple[LogisticRegression, np.ndarray]:
    """The fitted `logistic_mle` on a design matrix and its propensities, clipped to
    [PROPENSITY_EPS, 1 - PROPENSITY_EPS] (the MLE of a (quasi-)separated sample runs off to
    infinity). Shared by the bootstrap (`refit_weights`) and the benchmark's `IPTWCox`."""
    t = np.asarray(treated, dtype=bool).astype(int)
    logit = logistic_mle(max_iter=max_iter, C=C).fit(design, t, sample_weight=sample_weight)
    return logit, np.clip(logit.predict_proba(design)[:, 1], PROPENSITY_EPS, 1 - PROPENSITY_EPS)


def stratified_resample(treated: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Row indices of a bootstrap resample drawn within each group (sizes kept fixed).

    Keeping the group sizes guarantees both groups in every resample and keeps the
    stabilising factor P(group) constant.
    """
    idx = [rng.choice(np.flatnonzero(m), size=int(m.sum()), replace=True)
           for m in (treated, ~treated)]
    return np.concatenate(idx)

"""Group comparisons for a cohort: Table 1, SMD, KM medians, propensity, IPTW, weighted Cox.

Weights are optional everywhere, so the same functions give the balance before and
after inverse probability of treatment weighting. The weighted Cox model (robust
sandwich variance) and the weighted log-rank test sit on the numpy partial likelihood
of `ml.coxph`, so that they can be checked against lifelines independently and are
cheap enough to re-fit in every bootstrap resample.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from lifelines import KaplanMeierFitter
from lifelines.utils import median_survival_times

from features import schema
from features.contract import level_name, term
from ml.stats import coxph


def _weighted_mean_var(x: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    mean = float(np.average(x, weights=w))
    var = float(np.average((x - mean) ** 2, weights=w))
    return mean, var


def _levels(cov: str, values: pd.Series) -> list | None:
    """Category levels of a covariate, or None if it is summarised as a number."""
    if cov in schema.CATEGORIES:
        return list(schema.CATEGORIES[cov])
    if cov in schema.ORDINAL_LEVELS:
        return list(schema.ORDINAL_LEVELS[cov])
    if not pd.api.types.is_numeric_dtype(values):
        return sorted(values.dropna().unique(), key=str)
    return None


def _indicator_columns(df: pd.DataFrame, covariates: list[str]) -> dict[str, np.ndarray]:
    """One numeric column per numeric covariate, one 0/1 column per category level.

    Missing values are left out of the comparison for that covariate (NaN).
    """
    cols: dict[str, np.ndarray] = {}
    for cov in covariates:
        values = df[cov]
        levels = _levels(cov, values)
        if levels is not None:
            for level in levels:
                ind = (values == level).astype(float).to_numpy()
                ind[values.isna().to_numpy()] = np.nan
                cols[term(cov, level)] = ind
        else:
            cols[cov] = values.to_numpy(dtype=float)
    return cols


def standardized_differences(
    df: pd.DataFrame,
    covariates: list[str],
    group: str = schema.TREATMENT,
    treated: str = schema.TREATED,
    weights: np.ndarray | None = None,
) -> pd.Series:
    """SMD per covariate (and per category level): treated minus control.

    The denominator is the pooled SD of the *unweighted* groups, so before/after
    weighting numbers share one scale (the convention of R's cobalt).
    """
    w = np.ones(len(df)) if weights is None else np.asarray(weights, dtype=float)
    is_t = (df[group] == treated).to_numpy()
    out = {}
    for name, x in _indicator_columns(df, covariates).items():
        ok = ~np.isnan(x)
        t, c = ok & is_t, ok & ~is_t
        if t.sum() < 1 or c.sum() < 1:
            out[name] = np.nan
            continue
        m1, _ = _weighted_mean_var(x[t], w[t])
        m0, _ = _weighted_mean_var(x[c], w[c])
        v1, v0 = np.var(x[t]), np.var(x[c])
        sd = np.sqrt((v1 + v0) / 2)
        out[name] = 0.0 if sd == 0 and m1 == m0 else (m1 - m0) / sd if sd > 0 else np.inf
    return pd.Series(out, name="smd", dtype=float)


def _weighted_quantiles(x: np.ndarray, w: np.ndarray, qs: tuple[float, ...]) -> list[float]:
    order = np.argsort(x)
    x, w = x[order], w[order]
    cum = (np.cumsum(w) - 0.5 * w) / w.sum()
    return [float(np.interp(q, cum, x)) for q in qs]


def _summarise(values: pd.Series, w: np.ndarray, categorical: bool, level: str | None) -> str:
    ok = values.notna().to_numpy()
    if categorical:
        count = float(w[ok & (values == level).to_numpy()].sum())
        total = float(w[ok].sum())
        pct = 100 * count / total if total else float("nan")
        return f"{count:.0f} ({pct:.1f}%)" if np.allclose(w, 1) else f"{count:.1f} ({pct:.1f}%)"
    x = values.to_numpy(dtype=float)[ok]
    if len(x) == 0:
        return "-"
    q1, med, q3 = _weighted_quantiles(x, w[ok], (0.25, 0.5, 0.75))
    return f"{med:.1f} [{q1:.1f}, {q3:.1f}]"


def table_one(
    df: pd.DataFrame,
    covariates: list[str] | tuple[str, ...] = schema.COVARIATES,
    group: str = schema.TREATMENT,
    treated: str = schema.TREATED,
    control: str = schema.CONTROL,
    weights: np.ndarray | None = None,
) -> pd.DataFrame:
    """Table 1 by group: n (%) for categories, median [IQR] for numbers, SMD, missing counts.

    With `weights`, counts, percentages and quantiles are weighted (pseudo-population).
    """
    covariates = list(covariates)
    w = np.ones(len(df)) if weights is None else np.asarray(weights, dtype=float)
    smd = standardized_differences(df, covariates, group, treated, w)
    masks = {g: (df[group] == g).to_numpy() for g in (control, treated)}
    rows = []
    n_row = {"variable": "n", "level": ""}
    for g, m in masks.items():
        n_row[g] = f"{w[m].sum():.0f}" if np.allclose(w, 1) else f"{w[m].sum():.1f}"
    rows.append(n_row | {"smd": np.nan, "missing": 0})
    for cov in covariates:
        levels = _levels(cov, df[cov])
        categorical = levels is not None
        missing = int(df[cov].isna().sum())
        for level in levels or [None]:
            row = {"variable": cov, "level": "" if level is None else level_name(level)}
            for g, m in masks.items():
                row[g] = _summarise(df.loc[m, cov], w[m], categorical, level)
            key = term(cov, level) if categorical else cov
            row |= {"smd": smd.get(key, np.nan), "missing": missing}
            rows.append(row)
    return pd.DataFrame(rows, columns=["variable", "level", control, treated, "smd", "missing"])


@dataclass(frozen=True)
class MedianSurvival:
    """A Kaplan-Meier median with its 95 % CI (NaN where not reached)."""

    median: float
    ci_low: float
    ci_high: float
    n: int
    events: int


def km_median(time: np.ndarray, event: np.ndarray, weights: np.ndarray | None = None
              ) -> MedianSurvival:
    """Kaplan-Meier median survival and its 95 % CI (lifelines, exponential Greenwood).

    With IPTW weights the median is right but the Greenwood CI is not (it counts weights
    as patients); `ml.analysis` bootstraps weighted CIs instead.
    """
    kmf = KaplanMeierFitter()
    kmf.fit(np.asarray(time, float), np.asarray(event, bool), weights=weights)
    ci = median_survival_times(kmf.confidence_interval_)
    med = float(kmf.median_survival_time_)
    return MedianSurvival(
        median=med if np.isfinite(med) else np.nan,
        ci_low=float(ci.iloc[0, 0]) if np.isfinite(ci.iloc[0, 0]) else np.nan,
        ci_high=float(ci.iloc[0, 1]) if np.isfinite(ci.iloc[0, 1]) else np.nan,
        n=int(len(time)),
        events=int(np.sum(event)),
    )


def km_medians_by_group(df: pd.DataFrame, group: str = schema.TREATMENT) -> pd.DataFrame:
    """Unweighted KM medians of PFS and OS, overall and per group, as one tidy frame."""
    rows = []
    subsets = [("all", np.ones(len(df), bool))]
    subsets += [(str(g), (df[group] == g).to_numpy()) for g in (schema.TREATED, schema.CONTROL)]
    for endpoint, (tcol, ecol) in schema.ENDPOINTS.items():
        for label, mask in subsets:
            if not mask.any():
                continue
            m = km_median(df.loc[mask, tcol], df.loc[mask, ecol])
            rows.append({"endpoint": endpoint, "group": label, "n": m.n, "events": m.events,
                         "median": m.median, "ci_low": m.ci_low, "ci_high": m.ci_high})
    return pd.DataFrame(rows)


# --- propensity and inverse probability of treatment weights ---------------------------

DEFAULT_CONFOUNDERS = ("age", "sex", "smoking", "ecog", "histology", "pdl1", "prior_response",
                       "brain_mets", "liver_mets", "bone_mets")
"""Baseline covariates that may drive the choice of an anti-angiogenic drug."""


def fit_propensity(df: pd.DataFrame, confounders: tuple[str, ...] | list[str] = DEFAULT_CONFOUNDERS,
                   group: str = schema.TREATMENT, treated: str = schema.TREATED):
    """Fit an (unpenalised) logistic propensity model P(treated | confounders).

    Returns a fitted scikit-learn Pipeline (impute, encode, scale, logistic) whose
    `predict_proba(df)[:, 1]` is the propensity. Fit it on training rows only.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    from features.pipeline import FeatureSpec, build_preprocessor, cohort_spec

    full = cohort_spec(include_treatment=False)
    spec = FeatureSpec(
        numeric=tuple(c for c in full.numeric if c in confounders),
        categorical={c: lv for c, lv in full.categorical.items() if c in confounders},
    )
    model = Pipeline([
        ("pre", build_preprocessor(spec)),
        # newton-cholesky reaches the unpenalised MLE exactly (lbfgs stops near it)
        ("logit", LogisticRegression(C=np.inf, solver="newton-cholesky", max_iter=200)),
    ])
    treated_mask = (df[group] == treated).to_numpy()
    return model.fit(df, treated_mask.astype(int))


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
    if estimand == "ate":
        w = np.where(t, 1 / e, 1 / (1 - e))
        if stabilized:
            p = np.average(t, weights=prior)
            w = w * np.where(t, p, 1 - p)
    elif estimand == "att":
        w = np.where(t, 1.0, e / (1 - e))  # already on the treated group's scale
    elif estimand == "overlap":
        w = np.where(t, 1 - e, e)
    else:
        raise ValueError(f"unknown estimand '{estimand}', expected ate, att or overlap")
    if truncate is not None:
        lo, hi = np.percentile(w[prior > 0], truncate)
        w = np.clip(w, lo, hi)
    return w


def effective_sample_size(weights: np.ndarray) -> float:
    """Kish's effective sample size (sum w)^2 / sum w^2."""
    w = np.asarray(weights, dtype=float)
    return float(w.sum() ** 2 / np.sum(w**2))


# --- input checks: positivity, separation, extreme weights ----------------------------


class CausalInputError(ValueError):
    """A cohort on which a causal (IPTW) analysis cannot be run, with the reason."""


class ExtremeWeightsWarning(UserWarning):
    """IPTW weights so uneven that a few patients carry a group (the ESS says how few)."""


class SeparationWarning(UserWarning):
    """A confounder level seen in one group only: its propensity log-odds diverge."""


EXTREME_ESS_FRACTION = 0.5
"""Warn when a group's ESS falls below this fraction of its patients."""
EXTREME_WEIGHT_RATIO = 10.0
"""Warn when one weight exceeds this multiple of its group's mean weight."""
PROPENSITY_EPS = 1e-8


def group_sizes(df: pd.DataFrame, group: str = schema.TREATMENT, treated: str = schema.TREATED,
                control: str = schema.CONTROL) -> dict[str, int]:
    """Patients per group; raise if either group is empty (nothing to compare)."""
    sizes = {g: int((df[group] == g).sum()) for g in (treated, control)}
    if min(sizes.values()) == 0:
        found = ", ".join(f"{g}: {k}" for g, k in sizes.items())
        raise CausalInputError(
            f"a treatment comparison needs patients in both groups, found {found} "
            f"(column '{group}'); IPTW, log-rank and the treatment hazard ratio are undefined"
        )
    return sizes


def check_confounders(df: pd.DataFrame, confounders: tuple[str, ...] | list[str],
                      group: str = schema.TREATMENT, treated: str = schema.TREATED,
                      control: str = schema.CONTROL) -> tuple[str, ...]:
    """The confounders a propensity model can use; raise or warn on the ones it cannot.

    - a confounder missing from the table, or missing on every row: error;
    - constant in the whole cohort: dropped with a warning (it cannot confound);
    - constant within one group but not the other: error. The propensity model is then
      separated on it, and no weighting can make the groups comparable on it
      (positivity is violated for the patients the other group does not have);
    - a category level present in one group only (a rare level, say): warning, the
      model's log-odds for that level diverge and those patients get a propensity of
      about 0 or 1, so the estimate says nothing about them.
    """
    is_t = (df[group] == treated).to_numpy()
    usable = []
    for cov in confounders:
        if cov not in df.columns:
            raise CausalInputError(f"confounder '{cov}' is not a column of the cohort table")
        values = df[cov]
        if values.isna().all():
            raise CausalInputError(f"confounder '{cov}' is missing on every row")
        observed = values.dropna()
        if observed.nunique() < 2:
            warnings.warn(f"confounder '{cov}' has one value ({observed.iloc[0]}) for every patient; "
                          "left out of the propensity model", SeparationWarning, stacklevel=2)
            continue
        for label, mask in ((treated, is_t), (control, ~is_t)):
            in_group = values[mask].dropna()
            if len(in_group) and in_group.nunique() == 1:
                raise CausalInputError(
                    f"confounder '{cov}' is '{level_name(in_group.iloc[0])}' for every patient "
                    f"in {label} ({len(in_group)} patients) but varies in the other: the "
                    "propensity model is separated on it and no weighting can balance it "
                    "(positivity violated); drop it from the confounders or check the data"
                )
        levels = _levels(cov, values)
        for level in levels or []:
            at_level = (values == level).to_numpy()
            n_t, n_c = int((at_level & is_t).sum()), int((at_level & ~is_t).sum())
            if (n_t == 0) != (n_c == 0):
                only = treated if n_c == 0 else control
                warnings.warn(
                    f"confounder level {cov}={level_name(level)} occurs only in {only} "
                    f"({n_t + n_c} patients): its propensity log-odds diverge (quasi-complete "
                    "separation) and the weighted comparison says nothing about these patients",
                    SeparationWarning, stacklevel=2)
        usable.append(cov)
    if not usable:
        raise CausalInputError("no usable confounder left for the propensity model")
    return tuple(usable)


def check_separation(propensity: np.ndarray, treated: np.ndarray) -> None:
    """Raise if the fitted propensity separates the groups or hits 0/1 on the wrong side.

    Perfect separation makes the logistic MLE infinite: propensities collapse to 0 and
    1 and the IPTW weights of any patient 'on the wrong side' become infinite.
    """
    e = np.asarray(propensity, dtype=float)
    t = np.asarray(treated, dtype=bool)
    if not np.all(np.isfinite(e)):
        raise CausalInputError("the propensity model returned non-finite probabilities")
    complete = e[t].min() > e[~t].max() or e[t].max() < e[~t].min()
    wrong_side = np.sum(t & (e < PROPENSITY_EPS)) + np.sum(~t & (e > 1 - PROPENSITY_EPS))
    if complete or wrong_side:
        raise CausalInputError(
            "perfect separation in the propensity model: the confounders predict the treatment "
            "group exactly" + ("" if complete else f" for {int(wrong_side)} patient(s) in the "
                               "opposite group, whose weights would be infinite")
            + "; IPTW is not possible. Remove the confounder(s) that determine treatment "
            "(look at Table 1 for a covariate with no overlap between the groups)"
        )


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


def warn_extreme_weights(diagnostics: pd.DataFrame) -> None:
    """Warn (with the ESS) when a group's weights are dominated by a few patients."""
    groups = diagnostics[diagnostics["group"] != "all"]
    bad = groups[(groups["ess_fraction"] < EXTREME_ESS_FRACTION)
                 | (groups["max_to_mean"] > EXTREME_WEIGHT_RATIO)]
    if len(bad):
        parts = [f"{r.group}: ESS {r.ess:.1f} of {r.n} patients ({100 * r.ess_fraction:.0f}%), "
                 f"largest weight {r.max_to_mean:.1f}x the group mean" for r in bad.itertuples()]
        warnings.warn(
            "extreme IPTW weights, the weighted estimates rest on few patients (" + "; ".join(parts)
            + "); consider truncation (e.g. truncate: [1, 99]) or overlap weights",
            ExtremeWeightsWarning, stacklevel=2)


# --- the IPTW step as one call ----------------------------------------------------------


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
    model: object


def estimate_iptw(df: pd.DataFrame, confounders: tuple[str, ...] | list[str] = DEFAULT_CONFOUNDERS,
                  estimand: str = "ate", stabilized: bool = True,
                  truncate: tuple[float, float] | None = None, group: str = schema.TREATMENT,
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


def propensity_design(iptw: IPTW, df: pd.DataFrame) -> np.ndarray:
    """The propensity model's design matrix (imputed, one-hot, scaled) for `df`."""
    return np.asarray(iptw.model.named_steps["pre"].transform(df), dtype=float)


def refit_weights(design: np.ndarray, treated: np.ndarray, estimand: str, stabilized: bool,
                  truncate: tuple[float, float] | None) -> np.ndarray:
    """Re-fit the logistic propensity on a (resampled) design matrix and return new weights.

    The bootstrap uses this instead of `fit_propensity`: the unpenalised logistic MLE
    is invariant to the scaling step and the one-hot levels are fixed, so only the
    imputation medians are held at their full-cohort values (a negligible shortcut
    that makes a resample ~5x cheaper).
    """
    from sklearn.linear_model import LogisticRegression

    # few iterations: a quasi-separated resample would otherwise run the solver to its limit
    logit = LogisticRegression(C=np.inf, solver="newton-cholesky", max_iter=30)
    e = logit.fit(design, treated.astype(int)).predict_proba(design)[:, 1]
    e = np.clip(e, PROPENSITY_EPS, 1 - PROPENSITY_EPS)  # a resample may be (quasi-)separated
    return iptw_weights(e, treated, estimand, stabilized, truncate)


def stratified_resample(treated: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Row indices of a bootstrap resample drawn within each group (sizes kept fixed).

    Keeping the group sizes guarantees both groups in every resample and keeps the
    stabilising factor P(group) constant.
    """
    idx = [rng.choice(np.flatnonzero(m), size=int(m.sum()), replace=True)
           for m in (treated, ~treated)]
    return np.concatenate(idx)


# --- Cox proportional hazards, weighted, with a robust sandwich variance ---------------


@dataclass(frozen=True)
class CoxFit:
    """A (weighted) Cox fit: coefficients, model-based and robust (sandwich) SEs."""

    names: tuple[str, ...]
    coef: np.ndarray
    se_model: np.ndarray
    se_robust: np.ndarray
    covariance_robust: np.ndarray
    loglik: float
    n: int
    events: int
    iterations: int
    ties: str

    def table(self, robust: bool = True, alpha: float = 0.05) -> pd.DataFrame:
        """Per term: log-HR, HR, SE, Wald 1-alpha CI and two-sided p."""
        from scipy import stats

        se = self.se_robust if robust else self.se_model
        z = stats.norm.ppf(1 - alpha / 2)
        return pd.DataFrame({
            "term": self.names, "coef": self.coef, "hr": np.exp(self.coef), "se": se,
            "ci_low": np.exp(self.coef - z * se), "ci_high": np.exp(self.coef + z * se),
            "p": 2 * stats.norm.sf(np.abs(self.coef / se)),
        })


def _as_design(x, names) -> tuple[np.ndarray, tuple[str, ...]]:
    if isinstance(x, pd.DataFrame):
        return x.to_numpy(dtype=float), tuple(map(str, x.columns))
    arr = np.asarray(x, dtype=float)
    arr = arr[:, None] if arr.ndim == 1 else arr
    return arr, tuple(names) if names is not None else tuple(f"x{j}" for j in range(arr.shape[1]))


def fit_cox(time, event, x, weights=None, ties: str = "efron", names=None,
            max_iter: int = 50, tol: float = 1e-10) -> CoxFit:
    """Fit a (weighted) Cox model by Newton-Raphson; robust SE from the sandwich.

    Robust covariance: I^-1 (sum_i w_i^2 U_i U_i') I^-1 with U_i the score residuals
    (Lin & Wei 1989), which is what R's coxph(robust=TRUE) and lifelines report for
    IPTW weights. It treats the weights as known; the bootstrap in `ml.analysis`
    also re-fits the propensity model. Raises `CausalInputError` when the likelihood
    has no finite maximum (e.g. a group without events).
    """
    x, names = _as_design(x, names)
    time = np.asarray(time, dtype=float)
    event = np.asarray(event).astype(bool)
    w = np.ones(len(time)) if weights is None else np.asarray(weights, dtype=float)
    if not (np.all(np.isfinite(w)) and np.all(w >= 0)):
        raise CausalInputError("Cox weights must be finite and >= 0")
    if not np.any(event & (w > 0)):
        raise CausalInputError("no events: a Cox model cannot be fitted")
    rs = coxph.risk_sets(time, event, x, w, ties)
    result = coxph.newton_raphson(rs, max_iter=max_iter, tol=tol)
    if result.singular_start:
        raise CausalInputError(f"the Cox design is singular (terms: {', '.join(names)}); a "
                               "term is constant or collinear with others")
    beta = result.coef
    if result.status != "converged" or np.max(np.abs(beta)) > 20:
        raise CausalInputError(
            f"the Cox model did not converge (terms: {', '.join(names)}; log-HR {np.round(beta, 2)}):"
            " the likelihood has no finite maximum, e.g. a group without events")
    final = coxph.evaluate(rs, beta, residuals=True)
    inv = np.linalg.inv(final.information)
    wu = final.residuals * w[:, None]
    robust = inv @ (wu.T @ wu) @ inv
    return CoxFit(names=names, coef=beta, se_model=np.sqrt(np.diag(inv)),
                  se_robust=np.sqrt(np.diag(robust)), covariance_robust=robust,
                  loglik=final.loglik, n=len(time), events=int(event.sum()),
                  iterations=result.iterations, ties=ties)


@dataclass(frozen=True)
class ScoreTest:
    """A (weighted) log-rank test as the robust score test of a Cox model at HR = 1."""

    statistic: float
    df: int
    p: float
    observed_minus_expected: float


def robust_logrank(time, event, treated, weights=None) -> ScoreTest:
    """Weighted log-rank under IPTW: the robust score test of the Cox model at beta = 0.

    The score at beta = 0 with Breslow (log-rank) risk sets is the weighted observed
    minus expected events of the treated group; its variance is the robust one,
    sum_i (w_i U_i)^2, rather than the hypergeometric variance, which would treat the
    weights as frequency counts. This is R's coxph(..., weights, robust = TRUE)
    "robust score test" (Lin & Wei 1989). It treats the weights as fixed, which for
    ATE weights is conservative (Lunceford & Davidian 2004).
    """
    from scipy import stats

    t = np.asarray(treated, dtype=float)[:, None]
    w = np.ones(len(t)) if weights is None else np.asarray(weights, dtype=float)
    rs = coxph.risk_sets(np.asarray(time, float), np.asarray(event).astype(bool), t, w, "breslow")
    stat = np.nan
    if rs.n_events:
        at_zero = coxph.evaluate(rs, np.zeros(1), hessian=False, residuals=True)
        u = float(at_zero.gradient[0])
        var = float(np.sum((w * at_zero.residuals[:, 0]) ** 2))
        stat = u**2 / var if var > 0 else np.nan
    if not np.isfinite(stat):
        raise CausalInputError("the weighted log-rank test is undefined (no events at risk "
                               "in both groups)")
    return ScoreTest(statistic=stat, df=1, p=float(stats.chi2.sf(stat, 1)),
                     observed_minus_expected=u)

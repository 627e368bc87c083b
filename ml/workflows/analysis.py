"""The study's analysis: config -> `AnalysisResult` -> JSON.

`run_analysis(df, config)` does what the study did, on any validated cohort:
Table 1 before and after IPTW with SMDs and ESS, Kaplan-Meier medians with 95 % CIs
(unweighted and weighted), log-rank tests (unweighted and IPTW), univariable and
multivariable Cox tables with a proportional-hazards check, the IPTW-weighted Cox
for treatment, and a side-by-side table against the published figures.

Methods, and why they are valid under weights:
- Unweighted KM CIs: exponential Greenwood (log(-log)) interval.
- Weighted KM CIs: percentile bootstrap; each resample (drawn within each group)
  re-fits the propensity model and re-weights, so the CI carries the uncertainty
  of the estimated weights. Greenwood's formula would treat IPTW weights as counts
  of real patients and be too narrow or too wide depending on the weights.
- Weighted log-rank: robust score test of the weighted Cox model at HR = 1, Efron ties
  (`ml.stats.logrank.robust_logrank`, R's coxph(robust = TRUE)$rscore), i.e. weighted
  observed minus expected with a sandwich variance instead of the hypergeometric one.
- Cox tables: each covariate's terms are also tested jointly (type-III Wald and likelihood
  ratio); the independent prognostic factors are decided on the joint Wald test.
- IPTW Cox: Efron ties, robust (sandwich) SE treating the weights as known, and
  a bootstrap SE that also re-fits the propensity model.
The statistics live in `ml.stats`; no I/O and no MLflow here: the CLI writes files and logs.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import pandas as pd

from features import schema
from features.contract import split_term, term
from ml.stats import km
from ml.stats.balance import standardized_differences, table_one
from ml.stats.bootstrap import bootstrap_iptw, bootstrap_log_hr_summary, percentile_ci
from ml.stats.cox import CoxFit, fit_cox
from ml.stats.cox_tables import (
    ENDPOINT_NAMES,
    cox_multivariable,
    cox_univariable,
    joint_tests_multivariable,
    joint_tests_univariable,
    prognostic_factors,
)
from ml.stats.errors import CausalInputError
from ml.stats.logrank import logrank, robust_logrank
from ml.stats.ph import ph_test
from ml.stats.positivity import group_sizes
from ml.stats.weighting import IPTW, estimate_iptw
from ml.workflows.analysis_config import (  # noqa: F401  (re-exported: the analysis's config API)
    DEFAULT_CONFIG_PATH,
    AnalysisConfig,
    Published,
    load_config,
    mlflow_params,
)
from ml.workflows.analysis_result import (  # noqa: F401  (re-exported: the result API)
    AnalysisResult,
    key_metrics,
    median_of,
    side_by_side,
    to_dict,
    to_json,
)
from ml.workflows.causal import check_settings, run_causal

TREATMENT_TERM = term(schema.TREATMENT, schema.TREATED)

METHODS = {
    "km_ci_unweighted": "exponential Greenwood (log(-log)) 95% CI",
    "km_ci_weighted": "percentile bootstrap 95% CI: patients resampled within each group, "
                      "propensity model re-fitted and weights recomputed in every resample, so the "
                      "CI carries the uncertainty of the estimated weights (Greenwood's formula would "
                      "treat the weights as counts of real patients)",
    "logrank_unweighted": "log-rank test, hypergeometric variance",
    "logrank_weighted": "weighted log-rank as the robust score test of the IPTW Cox model at HR = 1, "
                        "Efron ties (weighted observed - expected, robust variance sum (w_i U_i)^2 of "
                        "the score residuals at HR = 1, Lin & Wei 1989; = R coxph(Surv(time, status) ~ "
                        "arm, weights = w, robust = TRUE)$rscore); weights treated as fixed",
    "iptw_cox": "IPTW-weighted Cox for treatment (numpy, Efron ties; R coxph(weights = w, robust = TRUE)), "
                "reported with two intervals: the robust sandwich I^-1 (sum w_i^2 U_i U_i') I^-1, which "
                "treats the weights as known, and the bootstrap (patients resampled within each group, "
                "propensity model re-fitted and weights recomputed per resample). The primary CI (ci_low, "
                "ci_high; primary_ci in analysis.json) is the bootstrap percentile interval when the "
                "bootstrap is run, with p from the bootstrap SE: it carries the uncertainty of the "
                "estimated weights, which the sandwich leaves out, and the sandwich is not reliably "
                "conservative here (on the default twin, n = 101, the bootstrap SE is 13-24 % larger). "
                "With bootstrap: 0 the robust CI and p are primary",
    "cox_tables": "Cox model (numpy, Efron ties), Wald CI and p from the model-based SE; complete cases",
    "ph_check": "R's cox.zph (survival >= 3.0): exact score test of adding x * g(t) to the fitted "
                "Cox model (Efron ties as the fit), per term, per covariate (a factor's levels "
                "together, df = levels - 1) and GLOBAL; g = the configured transform of time (km, "
                "R's default: 1 - KM(t-) of all patients, unweighted); model-based information, "
                "also for the IPTW Cox (as R); IPTW weights rescaled to mean 1 first, so the test "
                "does not depend on the weights' scale (= R on w / mean(w)); p < alpha on a "
                "covariate or GLOBAL flags non-proportional hazards",
    "propensity": "unpenalised logistic regression at its maximum-likelihood estimate (Newton to a gradient "
                  "of 1e-12; R glm(family = binomial))",
    "km_median": "KM median as R's quantile.survfit: first time S(t) < 0.5; on an exact 0.5 plateau the "
                 "midpoint of the plateau (to the last follow-up if the curve stays there); same rule for "
                 "the CI bounds' medians",
    "smd": "treated minus control (weighted means after weighting) over an SD of the unweighted groups, "
           "as R cobalt's bal.tab: pooled sqrt((s_t^2 + s_c^2)/2) for ATE and overlap weights, the "
           "treated group's s_t for ATT (s.d.denom defaults); sample variances (n - 1) for continuous "
           "covariates; category levels standardized too, with variance p(1 - p) (cobalt binary = 'std'; "
           "cobalt's default would print raw differences in proportions); analysis.json smd_convention",
    "ess": "Kish effective sample size (sum w)^2 / sum w^2 per group",
}


def run_analysis(df: pd.DataFrame, config: AnalysisConfig | None = None,
                 progress: Callable[[int, int], None] | None = None,
                 causal_progress: Callable[[str, int, int], None] | None = None) -> AnalysisResult:
    """Run the whole study analysis on a validated cohort frame.

    Raises `ml.stats.errors.CausalInputError` for input the analysis cannot use (one
    treatment group, an endpoint without events, unusable confounders). Warnings
    raised on the way (extreme weights, separation, non-convergence) are collected
    in `result.warnings` so that the caller can show them. `progress(done, total)` follows
    the bootstrap resamples, `causal_progress(label, done, total)` the causal section's.
    """
    config = config or AnalysisConfig()
    check_settings(df, config)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = _run(df, config, progress)
        result.causal = run_causal(df, config, causal_progress, iptw_cox=result.iptw_cox,
                                   ph_tests=result.ph_tests)
    seen = dict.fromkeys(str(w.message) for w in caught if _worth_showing(w))
    result.warnings = list(seen)
    return result


def _worth_showing(w: warnings.WarningMessage) -> bool:
    # libraries' deprecation chatter is not a finding about the cohort
    return not issubclass(w.category, DeprecationWarning | FutureWarning | PendingDeprecationWarning)


def _run(df: pd.DataFrame, config: AnalysisConfig,
         progress: Callable[[int, int], None] | None) -> AnalysisResult:
    sizes = group_sizes(df)
    _require_events(df)
    iptw = estimate_iptw(df, config.confounders, config.estimand, config.stabilized, config.truncation)
    covariates = list(schema.COVARIATES)
    smd = _smd_frame(df, covariates, iptw)
    boot = bootstrap_iptw(df, iptw, config.bootstrap, config.seed, progress) if config.bootstrap else None
    medians = _medians(df, iptw, boot, config.alpha)
    logrank_tests = _logrank(df, iptw)
    iptw_cox, crude_cox, iptw_ph = _treatment_cox(df, iptw, boot, config.alpha, config.ph_transform)
    cox_covariates = _observed_covariates(df, config.cox_covariates)
    uni, multi, ph = _cox_tables(df, cox_covariates, config.alpha, config.ph_transform)
    joint = _joint_tests(df, cox_covariates)
    ph = {ep: pd.concat([ph[ep], iptw_ph[ep]], ignore_index=True) for ep in schema.ENDPOINTS}
    result = AnalysisResult(
        config=config, n=len(df), n_by_group=sizes, iptw=iptw,
        table_one_before=table_one(df, covariates, estimand=iptw.estimand),
        table_one_after=table_one(df, covariates, weights=iptw.weights, estimand=iptw.estimand),
        smd=smd, balance=_balance(smd, config.balance_threshold), medians=medians,
        logrank=logrank_tests, cox_univariable=uni, cox_multivariable=multi, ph_tests=ph,
        iptw_cox=iptw_cox, crude_cox=crude_cox,
        prognostic_factors=prognostic_factors(joint["multivariable"]["pfs"], config.alpha),
        side_by_side=pd.DataFrame(), methods=dict(METHODS), bootstrap_replicates=config.bootstrap,
        bootstrap_failed=0 if boot is None else boot.attrs["failed"], cox_joint_tests=joint,
    )
    result.side_by_side = side_by_side(result)
    return result


def _require_events(df: pd.DataFrame) -> None:
    """Refuse an endpoint without events, overall or in one treatment group: its treatment
    hazard ratio has no finite estimate (nor, without any event, its medians and tests), and
    every bootstrap resample of it fails. One message names every such endpoint and group."""
    groups = df[schema.TREATMENT]
    problems = []
    for ep, (_, ecol) in schema.ENDPOINTS.items():
        events = df[ecol].astype(bool)
        if not events.any():
            problems.append(f"no {ENDPOINT_NAMES[ep]} events: '{ecol}' is 0 on all {len(df)} rows "
                            "(every patient censored)")
            continue
        problems += [f"no {ENDPOINT_NAMES[ep]} events in {g}: '{ecol}' is 0 for its "
                     f"{int((groups == g).sum())} patients: the treatment hazard ratio has no finite estimate"
                     for g in (schema.TREATED, schema.CONTROL) if not events[groups == g].any()]
    if problems:
        raise CausalInputError("; ".join(problems) + ". The analysis needs events on both endpoints in "
                               "both groups; check the event columns (or their mapping)")


# --- balance ------------------------------------------------------------------------------------


def _smd_frame(df: pd.DataFrame, covariates: list[str], iptw: IPTW) -> pd.DataFrame:
    before = standardized_differences(df, covariates, estimand=iptw.estimand)
    after = standardized_differences(df, covariates, weights=iptw.weights, estimand=iptw.estimand)
    covariate = [split_term(name)[0] for name in before.index]
    return pd.DataFrame({"term": before.index, "covariate": covariate,
                         "confounder": [c in iptw.confounders for c in covariate],
                         "before": before.to_numpy(), "after": after.to_numpy()})


def _balance(smd: pd.DataFrame, threshold: float) -> dict:
    conf = smd[smd["confounder"]]
    bad = conf.loc[conf["after"].abs() >= threshold, "term"].tolist()
    return {"threshold": threshold, "max_abs_smd_before": float(conf["before"].abs().max()),
            "max_abs_smd_after": float(conf["after"].abs().max()), "balanced": not bad,
            "imbalanced_after": bad}


# --- Kaplan-Meier and log-rank -------------------------------------------------------------------


def _outcome(df: pd.DataFrame, endpoint: str) -> tuple[np.ndarray, np.ndarray]:
    tcol, ecol = schema.ENDPOINTS[endpoint]
    return df[tcol].to_numpy(float), df[ecol].to_numpy().astype(bool)


def _group_masks(iptw: IPTW) -> dict[str, np.ndarray]:
    return {"all": np.ones(len(iptw.treated), bool), schema.TREATED: iptw.treated,
            schema.CONTROL: ~iptw.treated}


def _median_rows(ep: str, g: str, time, event, w, boot: pd.DataFrame | None, alpha: float
                 ) -> list[dict]:
    plain = km.km_median(time, event)
    lo, hi = (np.nan, np.nan) if boot is None else percentile_ci(boot[f"{ep}_median_{g}"], alpha)
    return [
        {"endpoint": ep, "weighting": "unweighted", "group": g, "n": plain.n, "events": plain.events,
         "median": plain.median, "ci_low": plain.ci_low, "ci_high": plain.ci_high,
         "ci_method": "greenwood"},
        {"endpoint": ep, "weighting": "iptw", "group": g, "n": len(time), "events": int(event.sum()),
         "median": km.km_median_fast(time, event, w), "ci_low": lo, "ci_high": hi,
         "ci_method": "bootstrap" if boot is not None else "none"},
    ]


def _medians(df: pd.DataFrame, iptw: IPTW, boot: pd.DataFrame | None, alpha: float) -> pd.DataFrame:
    rows = []
    for ep in schema.ENDPOINTS:
        time, event = _outcome(df, ep)
        for g, m in _group_masks(iptw).items():
            rows += _median_rows(ep, g, time[m], event[m], iptw.weights[m], boot, alpha)
    return pd.DataFrame(rows)


def _logrank(df: pd.DataFrame, iptw: IPTW) -> pd.DataFrame:
    rows = []
    for ep in schema.ENDPOINTS:
        time, event = _outcome(df, ep)
        plain = logrank(time, event, iptw.treated)
        weighted = robust_logrank(time, event, iptw.treated, iptw.weights)
        rows.append({"endpoint": ep, "weighting": "unweighted", "statistic": plain.statistic,
                     "p": plain.p, "method": "log-rank"})
        rows.append({"endpoint": ep, "weighting": "iptw", "statistic": weighted.statistic,
                     "p": weighted.p, "method": "robust score test"})
    return pd.DataFrame(rows)


# --- Cox models ----------------------------------------------------------------------------------


def _cox_row(fit: CoxFit, alpha: float, robust: bool = True) -> dict:
    row = fit.table(robust=robust, alpha=alpha).iloc[0]
    return {"hr": float(row["hr"]), "log_hr": float(row["coef"]), "se_log_hr": float(row["se"]),
            "ci_low": float(row["ci_low"]), "ci_high": float(row["ci_high"]), "p": float(row["p"]),
            "n": fit.n, "events": fit.events}


PRIMARY_CI = {
    "bootstrap_percentile": "percentile bootstrap CI (propensity re-fitted per resample), p from the "
                            "bootstrap SE",
    "robust": "robust sandwich CI and p (weights treated as known; no bootstrap was run)",
}


def _iptw_cox_row(fit: CoxFit, boot: pd.DataFrame | None, endpoint: str, alpha: float) -> dict:
    """Both intervals (robust sandwich, and bootstrap when run); `ci_low`/`ci_high`/`p` are the
    primary ones, named in `primary_ci` (see METHODS["iptw_cox"] for the choice)."""
    row = _cox_row(fit, alpha, robust=True)
    out = {"hr": row["hr"], "log_hr": row["log_hr"], "se_log_hr_robust": row["se_log_hr"],
           "se_log_hr_model": float(fit.se_model[0]), "ci_low_robust": row["ci_low"],
           "ci_high_robust": row["ci_high"], "p_robust": row["p"], "n": fit.n, "events": fit.events}
    primary = "robust"
    if boot is not None and len(boot):
        out |= bootstrap_log_hr_summary(row["log_hr"], boot[f"{endpoint}_log_hr"].to_numpy(), alpha)
        primary = "bootstrap_percentile"
    if primary == "robust":
        out |= {"ci_low": row["ci_low"], "ci_high": row["ci_high"], "p": row["p"]}
    else:
        out |= {"ci_low": out["ci_low_bootstrap_percentile"], "ci_high": out["ci_high_bootstrap_percentile"],
                "p": out["p_bootstrap"]}
    return out | {"primary_ci": primary, "primary_ci_method": PRIMARY_CI[primary]}


def _treatment_cox(df: pd.DataFrame, iptw: IPTW, boot: pd.DataFrame | None, alpha: float,
                   ph_transform: str = "km"
                   ) -> tuple[dict[str, dict], dict[str, dict], dict[str, pd.DataFrame]]:
    """Per endpoint: the IPTW Cox for treatment, the crude Cox, and the IPTW Cox's PH check."""
    iptw_cox, crude_cox, ph = {}, {}, {}
    x = iptw.treated.astype(float)
    for ep in schema.ENDPOINTS:
        time, event = _outcome(df, ep)
        weighted = fit_cox(time, event, x, iptw.weights, names=[TREATMENT_TERM])
        iptw_cox[ep] = _iptw_cox_row(weighted, boot, ep, alpha)
        crude_cox[ep] = _cox_row(fit_cox(time, event, x, names=[TREATMENT_TERM]), alpha, robust=False)
        ph[ep] = ph_test(weighted, alpha, model=f"IPTW {ENDPOINT_NAMES[ep]}", transform=ph_transform)
    return iptw_cox, crude_cox, ph


def _observed_covariates(df: pd.DataFrame, covariates: list[str]) -> list[str]:
    """The Cox tables' covariates less those missing on every row (named in a warning): complete
    cases would otherwise be none."""
    empty = [c for c in covariates if c in df.columns and df[c].isna().all()]
    if empty:
        warnings.warn(f"covariate(s) {', '.join(empty)} missing on every row: left out of the Cox tables",
                      stacklevel=3)
    return [c for c in covariates if c not in empty]


def _cox_tables(df: pd.DataFrame, covariates: list[str], alpha: float,
                ph_transform: str = "km") -> tuple[dict, dict, dict]:
    uni, multi, ph = {}, {}, {}
    for ep in schema.ENDPOINTS:
        uni[ep] = cox_univariable(df, covariates, ep, alpha)
        multi[ep], ph[ep] = cox_multivariable(df, covariates, ep, alpha, ph_transform)
    return uni, multi, ph


def _joint_tests(df: pd.DataFrame, covariates: list[str]) -> dict[str, dict[str, pd.DataFrame]]:
    """Per model ("univariable", "multivariable") and endpoint: the covariates' joint tests."""
    return {"univariable": {ep: joint_tests_univariable(df, covariates, ep) for ep in schema.ENDPOINTS},
            "multivariable": {ep: joint_tests_multivariable(df, covariates, ep) for ep in schema.ENDPOINTS}}

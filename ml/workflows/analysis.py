"""The study's analysis: config -> `AnalysisResult` -> JSON.

`run_analysis(df, config)` does what the study did, on any validated cohort:
Table 1 before and after IPTW with SMDs and ESS, Kaplan-Meier medians with 95 % CIs
(unweighted and weighted), log-rank tests (unweighted and IPTW), univariable and
multivariable Cox tables with a proportional-hazards check, the IPTW-weighted Cox
for treatment, and a side-by-side table against the published figures.

Methods, and why they are valid under weights:
- Unweighted KM CIs: lifelines' exponential Greenwood (log(-log)) interval.
- Weighted KM CIs: percentile bootstrap; each resample (drawn within each group)
  re-fits the propensity model and re-weights, so the CI carries the uncertainty
  of the estimated weights. Greenwood's formula would treat IPTW weights as counts
  of real patients and be too narrow or too wide depending on the weights.
- Weighted log-rank: robust score test of the weighted Cox model at HR = 1
  (`causal.robust_logrank`), i.e. weighted observed minus expected with a sandwich
  variance instead of the hypergeometric one.
- IPTW Cox: Efron ties, robust (sandwich) SE treating the weights as known, and
  a bootstrap SE that also re-fits the propensity model.
No I/O and no MLflow here: the CLI writes files and logs.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from experiments import default_path
from features import schema
from features.contract import split_term, term
from ml.stats import causal, km

DEFAULT_CONFIG_PATH = default_path("paper.yaml")
ENDPOINT_NAMES = {"pfs": "PFS", "os": "OS"}
GROUPS = ("all", schema.TREATED, schema.CONTROL)


# --------------------------------------------------------------------------- config


class Published(BaseModel):
    """The study's published figures (COHORT.md), shown next to this cohort's."""

    model_config = ConfigDict(extra="forbid")

    n: int
    n_cia: int
    n_ci: int
    median_os_all: float
    median_pfs_all: float
    median_pfs_cia: float
    median_pfs_ci: float
    logrank_p: float
    median_pfs_cia_iptw: float
    median_pfs_ci_iptw: float
    weighted_p: float
    prognostic_factors: list[str]


class AnalysisConfig(BaseModel):
    """experiments/paper.yaml, typed; a typo fails at load time."""

    model_config = ConfigDict(extra="forbid")

    version: str = "1"
    confounders: list[str] = Field(default_factory=lambda: list(causal.DEFAULT_CONFOUNDERS))
    estimand: Literal["ate", "att", "overlap"] = "ate"
    stabilized: bool = True
    truncate: tuple[float, float] | None = None
    balance_threshold: float = Field(0.1, gt=0)
    bootstrap: int = Field(500, ge=0)
    seed: int = Field(2024, ge=0)
    alpha: float = Field(0.05, gt=0, lt=1)
    cox_covariates: list[str] = Field(default_factory=lambda: list(schema.COVARIATES))
    published: Published | None = None

    @field_validator("confounders", "cox_covariates")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        unknown = [c for c in v if c not in schema.COVARIATES]
        if unknown:
            raise ValueError(f"unknown covariate(s) {unknown}; ours are: {', '.join(schema.COVARIATES)}")
        if not v:
            raise ValueError("needs at least one covariate")
        return v

    @model_validator(mode="after")
    def _truncation(self) -> AnalysisConfig:
        if self.truncate is not None:
            lo, hi = self.truncate
            if not 0 <= lo < hi <= 100:
                raise ValueError("truncate must be two percentiles 0 <= low < high <= 100, "
                                 f"got {self.truncate}")
        return self


def load_config(path: str | Path | None = None) -> AnalysisConfig:
    """Read an analysis YAML (default experiments/paper.yaml); ValueError names the problem."""
    path = Path(path) if path is not None else DEFAULT_CONFIG_PATH
    if not path.is_file():
        raise FileNotFoundError(f"analysis config {path} does not exist")
    raw = yaml.safe_load(path.read_text()) or {}
    try:
        return AnalysisConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '<file>'}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"{path}: {problems}") from None


# --------------------------------------------------------------------------- result


@dataclass
class AnalysisResult:
    """Everything the analysis found; `to_dict` turns it into analysis.json."""

    config: AnalysisConfig
    n: int
    n_by_group: dict[str, int]
    iptw: causal.IPTW
    table_one_before: pd.DataFrame
    table_one_after: pd.DataFrame
    smd: pd.DataFrame                  # term, covariate, confounder, before, after
    balance: dict
    medians: pd.DataFrame              # endpoint, weighting, group, n, events, median, ci_low, ci_high
    logrank: pd.DataFrame              # endpoint, weighting, statistic, p, method
    cox_univariable: dict[str, pd.DataFrame]
    cox_multivariable: dict[str, pd.DataFrame]
    ph_tests: dict[str, pd.DataFrame]
    iptw_cox: dict[str, dict]
    crude_cox: dict[str, dict]
    prognostic_factors: list[str]
    side_by_side: pd.DataFrame
    methods: dict[str, str]
    bootstrap_replicates: int
    bootstrap_failed: int
    warnings: list[str] = field(default_factory=list)

    def weights_frame(self, ids) -> pd.DataFrame:
        """Per patient: id, propensity, weight (DIR/weights.csv)."""
        return pd.DataFrame({"id": np.asarray(ids), "propensity": self.iptw.propensity,
                             "weight": self.iptw.weights})


METHODS = {
    "km_ci_unweighted": "lifelines exponential Greenwood (log(-log)) 95% CI",
    "km_ci_weighted": "percentile bootstrap 95% CI: patients resampled within each group, "
                      "propensity model re-fitted and weights recomputed in every resample, so the "
                      "CI carries the uncertainty of the estimated weights (Greenwood's formula would "
                      "treat the weights as counts of real patients)",
    "logrank_unweighted": "log-rank test (lifelines), hypergeometric variance",
    "logrank_weighted": "weighted log-rank as the robust score test of the IPTW Cox model at HR = 1 "
                        "(weighted observed - expected, sandwich variance sum (w_i U_i)^2, Lin & Wei "
                        "1989; R coxph robust score test); weights treated as fixed, conservative for "
                        "ATE weights",
    "iptw_cox": "IPTW-weighted Cox for treatment (numpy, Efron ties), robust sandwich SE "
                "I^-1 (sum w_i^2 U_i U_i') I^-1; bootstrap SE re-fits the propensity model per resample",
    "cox_tables": "lifelines CoxPHFitter (Efron ties), Wald CI and p; complete cases",
    "ph_check": "Schoenfeld residuals vs rank of time (lifelines proportional_hazard_test); "
                "p < alpha flags non-proportional hazards",
    "smd": "treated minus control, pooled SD of the unweighted groups (cobalt convention)",
    "ess": "Kish effective sample size (sum w)^2 / sum w^2 per group",
}


# ------------------------------------------------------------------------ analysis


def run_analysis(df: pd.DataFrame, config: AnalysisConfig | None = None) -> AnalysisResult:
    """Run the whole study analysis on a validated cohort frame.

    Raises `causal.CausalInputError` for input the analysis cannot use. Warnings
    raised on the way (extreme weights, separation, non-convergence) are collected
    in `result.warnings` so that the caller can show them.
    """
    config = config or AnalysisConfig()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = _run(df, config)
    seen = dict.fromkeys(str(w.message) for w in caught if _worth_showing(w))
    result.warnings = list(seen)
    return result


def _worth_showing(w: warnings.WarningMessage) -> bool:
    # libraries' deprecation chatter is not a finding about the cohort
    return not issubclass(w.category, DeprecationWarning | FutureWarning | PendingDeprecationWarning)


def _run(df: pd.DataFrame, config: AnalysisConfig) -> AnalysisResult:
    sizes = causal.group_sizes(df)
    truncate = tuple(config.truncate) if config.truncate is not None else None
    iptw = causal.estimate_iptw(df, config.confounders, config.estimand, config.stabilized, truncate)
    w = iptw.weights
    covariates = list(schema.COVARIATES)
    smd = _smd_frame(df, covariates, iptw)
    boot = _bootstrap(df, iptw, config)
    medians = _medians(df, iptw, boot, config.alpha)
    logrank = _logrank(df, iptw)
    iptw_cox, crude_cox = {}, {}
    for endpoint, (tcol, ecol) in schema.ENDPOINTS.items():
        iptw_cox[endpoint] = _iptw_cox(df[tcol], df[ecol], iptw, boot, endpoint, config.alpha)
        crude_cox[endpoint] = _cox_row(causal.fit_cox(df[tcol], df[ecol], iptw.treated.astype(float),
                                                      names=["treatment=CIA"]), config.alpha, robust=False)
    uni, multi, ph = {}, {}, {}
    for endpoint in schema.ENDPOINTS:
        uni[endpoint] = cox_univariable(df, config.cox_covariates, endpoint, config.alpha)
        multi[endpoint], ph[endpoint] = cox_multivariable(df, config.cox_covariates, endpoint, config.alpha)
        ph[endpoint] = pd.concat([ph[endpoint], _iptw_ph_test(df, iptw, endpoint, config.alpha)],
                                 ignore_index=True)
    factors = prognostic_factors(multi["pfs"], config.alpha)
    result = AnalysisResult(
        config=config, n=len(df), n_by_group=sizes, iptw=iptw,
        table_one_before=causal.table_one(df, covariates),
        table_one_after=causal.table_one(df, covariates, weights=w),
        smd=smd, balance=_balance(smd, config.balance_threshold), medians=medians, logrank=logrank,
        cox_univariable=uni, cox_multivariable=multi, ph_tests=ph, iptw_cox=iptw_cox,
        crude_cox=crude_cox, prognostic_factors=factors, side_by_side=pd.DataFrame(),
        methods=dict(METHODS), bootstrap_replicates=config.bootstrap,
        bootstrap_failed=0 if boot is None else boot.attrs["failed"],
    )
    result.side_by_side = side_by_side(result)
    return result


# --- balance --------------------------------------------------------------------------


def _smd_frame(df: pd.DataFrame, covariates: list[str], iptw: causal.IPTW) -> pd.DataFrame:
    before = causal.standardized_differences(df, covariates)
    after = causal.standardized_differences(df, covariates, weights=iptw.weights)
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


# --- bootstrap ------------------------------------------------------------------------


def _bootstrap(df: pd.DataFrame, iptw: causal.IPTW, config: AnalysisConfig) -> pd.DataFrame | None:
    """Replicates of the weighted medians and IPTW-Cox log-HRs; propensity re-fitted in each."""
    if config.bootstrap == 0:
        return None
    design = causal.propensity_design(iptw, df)
    outcomes = {ep: (df[t].to_numpy(float), df[e].to_numpy().astype(bool))
                for ep, (t, e) in schema.ENDPOINTS.items()}
    rng = np.random.default_rng(config.seed)
    truncate = tuple(config.truncate) if config.truncate is not None else None
    rows, failed = [], 0
    for _ in range(config.bootstrap):
        idx = causal.stratified_resample(iptw.treated, rng)
        t = iptw.treated[idx]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a resample may be quasi-separated: fine here
                w = causal.refit_weights(design[idx], t, iptw.estimand, iptw.stabilized, truncate)
                rows.append(_replicate(outcomes, idx, t, w))
        except (causal.CausalInputError, np.linalg.LinAlgError, ValueError):
            failed += 1
    out = pd.DataFrame(rows)
    out.attrs["failed"] = failed
    if failed:
        warnings.warn(f"{failed} of {config.bootstrap} bootstrap resamples could not be analysed "
                      "(Cox or propensity fit failed) and were left out", stacklevel=2)
    return out


def _replicate(outcomes, idx, t, w) -> dict[str, float]:
    row = {}
    for ep, (time, event) in outcomes.items():
        ti, ei = time[idx], event[idx]
        row[f"{ep}_median_all"] = km.km_median_fast(ti, ei, w)
        row[f"{ep}_median_{schema.TREATED}"] = km.km_median_fast(ti[t], ei[t], w[t])
        row[f"{ep}_median_{schema.CONTROL}"] = km.km_median_fast(ti[~t], ei[~t], w[~t])
        row[f"{ep}_log_hr"] = float(causal.fit_cox(ti, ei, t.astype(float), w).coef[0])
    return row


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


# --- Kaplan-Meier and log-rank -------------------------------------------------------


def _medians(df: pd.DataFrame, iptw: causal.IPTW, boot: pd.DataFrame | None, alpha: float
             ) -> pd.DataFrame:
    masks = {"all": np.ones(len(df), bool), schema.TREATED: iptw.treated,
             schema.CONTROL: ~iptw.treated}
    rows = []
    for ep, (tcol, ecol) in schema.ENDPOINTS.items():
        time, event = df[tcol].to_numpy(float), df[ecol].to_numpy().astype(bool)
        for g, m in masks.items():
            plain = causal.km_median(time[m], event[m])
            rows.append({"endpoint": ep, "weighting": "unweighted", "group": g, "n": plain.n,
                         "events": plain.events, "median": plain.median, "ci_low": plain.ci_low,
                         "ci_high": plain.ci_high, "ci_method": "greenwood"})
            med = km.km_median_fast(time[m], event[m], iptw.weights[m])
            lo, hi = (np.nan, np.nan) if boot is None else percentile_ci(boot[f"{ep}_median_{g}"], alpha)
            rows.append({"endpoint": ep, "weighting": "iptw", "group": g, "n": int(m.sum()),
                         "events": int(event[m].sum()), "median": med, "ci_low": lo, "ci_high": hi,
                         "ci_method": "bootstrap" if boot is not None else "none"})
    return pd.DataFrame(rows)


def _logrank(df: pd.DataFrame, iptw: causal.IPTW) -> pd.DataFrame:
    from lifelines.statistics import logrank_test

    t = iptw.treated
    rows = []
    for ep, (tcol, ecol) in schema.ENDPOINTS.items():
        time, event = df[tcol].to_numpy(float), df[ecol].to_numpy().astype(bool)
        plain = logrank_test(time[t], time[~t], event[t], event[~t])
        weighted = causal.robust_logrank(time, event, t, iptw.weights)
        rows.append({"endpoint": ep, "weighting": "unweighted", "statistic": float(plain.test_statistic),
                     "p": float(plain.p_value), "method": "log-rank"})
        rows.append({"endpoint": ep, "weighting": "iptw", "statistic": weighted.statistic,
                     "p": weighted.p, "method": "robust score test"})
    return pd.DataFrame(rows)


# --- Cox models -----------------------------------------------------------------------


def _cox_row(fit: causal.CoxFit, alpha: float, robust: bool = True) -> dict:
    row = fit.table(robust=robust, alpha=alpha).iloc[0]
    return {"hr": float(row["hr"]), "log_hr": float(row["coef"]), "se_log_hr": float(row["se"]),
            "ci_low": float(row["ci_low"]), "ci_high": float(row["ci_high"]), "p": float(row["p"]),
            "n": fit.n, "events": fit.events}


def _iptw_cox(time, event, iptw: causal.IPTW, boot: pd.DataFrame | None, endpoint: str,
              alpha: float) -> dict:
    from scipy import stats

    fit = causal.fit_cox(time, event, iptw.treated.astype(float), iptw.weights, names=["treatment=CIA"])
    row = _cox_row(fit, alpha, robust=True)
    out = {"hr": row["hr"], "log_hr": row["log_hr"], "se_log_hr_robust": row["se_log_hr"],
           "se_log_hr_model": float(fit.se_model[0]), "ci_low": row["ci_low"],
           "ci_high": row["ci_high"], "p": row["p"], "n": fit.n, "events": fit.events}
    if boot is not None and len(boot):
        reps = boot[f"{endpoint}_log_hr"].to_numpy()
        se = float(np.std(reps, ddof=1))
        z = stats.norm.ppf(1 - alpha / 2)
        lo, hi = np.quantile(reps, [alpha / 2, 1 - alpha / 2])
        out |= {"se_log_hr_bootstrap": se,
                "ci_low_bootstrap": float(np.exp(row["log_hr"] - z * se)),
                "ci_high_bootstrap": float(np.exp(row["log_hr"] + z * se)),
                "p_bootstrap": float(2 * stats.norm.sf(abs(row["log_hr"]) / se)),
                "ci_low_bootstrap_percentile": float(np.exp(lo)),
                "ci_high_bootstrap_percentile": float(np.exp(hi))}
    return out


def cox_design(df: pd.DataFrame, covariates: list[str], treatment: bool = False) -> pd.DataFrame:
    """Numeric Cox design: numbers as they are (HR per unit), categories as `name=level`
    indicators against the first (reference) level, ECOG as a category."""
    cols = {}
    if treatment:
        cols[f"{schema.TREATMENT}={schema.TREATED}"] = (df[schema.TREATMENT] == schema.TREATED).astype(float)
    for cov in covariates:
        levels = causal._levels(cov, df[cov])
        if levels is None:
            cols[cov] = df[cov].astype(float)
            continue
        missing = df[cov].isna()
        for level in levels[1:]:
            cols[term(cov, level)] = (df[cov] == level).astype(float).mask(missing)
    return pd.DataFrame(cols, index=df.index)


def _fit_lifelines(design: pd.DataFrame, df: pd.DataFrame, endpoint: str):
    """lifelines Cox on complete cases; terms constant in the data are dropped (noted)."""
    from lifelines import CoxPHFitter
    from lifelines.exceptions import ConvergenceError

    tcol, ecol = schema.ENDPOINTS[endpoint]
    constant = [c for c in design.columns if design[c].nunique(dropna=True) < 2]
    if constant:
        warnings.warn(f"{ENDPOINT_NAMES[endpoint]} Cox: term(s) {', '.join(constant)} constant in this "
                      "cohort, left out", stacklevel=3)
    data = design.drop(columns=constant).assign(_time=df[tcol], _event=df[ecol]).dropna()
    if data.shape[1] <= 2:
        return None, data
    try:
        return CoxPHFitter().fit(data, "_time", "_event"), data
    except ConvergenceError as exc:
        raise causal.CausalInputError(
            f"{ENDPOINT_NAMES[endpoint]} Cox with {', '.join(design.columns)} did not converge "
            f"({str(exc).splitlines()[0]})") from None


def _lifelines_table(cph, alpha: float, covariate_of: dict[str, str]) -> pd.DataFrame:
    from scipy import stats

    s = cph.summary
    z = stats.norm.ppf(1 - alpha / 2)
    return pd.DataFrame({
        "term": s.index, "covariate": [covariate_of[t] for t in s.index],
        "hr": np.exp(s["coef"]).to_numpy(), "ci_low": np.exp(s["coef"] - z * s["se(coef)"]).to_numpy(),
        "ci_high": np.exp(s["coef"] + z * s["se(coef)"]).to_numpy(), "p": s["p"].to_numpy(),
        "n": len(cph.durations),
    })


def _covariate_of(design: pd.DataFrame) -> dict[str, str]:
    return {c: c.split("=")[0] for c in design.columns}


def cox_univariable(df: pd.DataFrame, covariates: list[str], endpoint: str, alpha: float = 0.05
                    ) -> pd.DataFrame:
    """Each covariate (and treatment) alone: HR, CI, p per term."""
    tables = []
    for cov in [schema.TREATMENT, *covariates]:
        design = (cox_design(df, [], treatment=True) if cov == schema.TREATMENT
                  else cox_design(df, [cov]))
        cph, _ = _fit_lifelines(design, df, endpoint)
        if cph is not None:
            tables.append(_lifelines_table(cph, alpha, _covariate_of(design)))
    return pd.concat(tables, ignore_index=True)


def cox_multivariable(df: pd.DataFrame, covariates: list[str], endpoint: str, alpha: float = 0.05
                      ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Treatment + covariates in one model: the HR table and the Schoenfeld PH test."""
    design = cox_design(df, covariates, treatment=True)
    cph, data = _fit_lifelines(design, df, endpoint)
    table = _lifelines_table(cph, alpha, _covariate_of(design))
    return table, ph_test(cph, data, alpha, model=f"multivariable {ENDPOINT_NAMES[endpoint]}")


def ph_test(cph, data: pd.DataFrame, alpha: float, model: str) -> pd.DataFrame:
    """Schoenfeld-residual test per term with a plain-language flag where it fails."""
    from lifelines.statistics import proportional_hazard_test

    res = proportional_hazard_test(cph, data, time_transform="rank").summary
    rows = []
    for name, r in res.iterrows():
        name = name if isinstance(name, str) else name[0]
        fails = bool(r["p"] < alpha)
        note = (f"{name}: its hazard ratio seems to change over follow-up (p = {r['p']:.3f}); read the "
                "reported HR as an average over time, or model the effect as time-varying"
                if fails else "")
        rows.append({"model": model, "term": name, "statistic": float(r["test_statistic"]),
                     "p": float(r["p"]), "ph_violated": fails, "note": note})
    return pd.DataFrame(rows)


def _iptw_ph_test(df: pd.DataFrame, iptw: causal.IPTW, endpoint: str, alpha: float) -> pd.DataFrame:
    """PH check of the IPTW Cox for treatment (lifelines' weighted fit, for its residuals)."""
    from lifelines import CoxPHFitter

    tcol, ecol = schema.ENDPOINTS[endpoint]
    data = pd.DataFrame({"treatment=CIA": iptw.treated.astype(float), "_time": df[tcol].to_numpy(),
                         "_event": df[ecol].to_numpy(), "_w": iptw.weights})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lifelines' note on non-integer weights; we use robust SEs
        cph = CoxPHFitter().fit(data, "_time", "_event", weights_col="_w", robust=True)
        return ph_test(cph, data, alpha, model=f"IPTW {ENDPOINT_NAMES[endpoint]}")


def prognostic_factors(multivariable: pd.DataFrame, alpha: float) -> list[str]:
    """Covariates with at least one term significant (Wald p < alpha) in the multivariable Cox."""
    hits = multivariable[multivariable["p"] < alpha]
    return list(dict.fromkeys(hits["covariate"]))


# --- side by side with the study --------------------------------------------------------


def _median_of(result: AnalysisResult, endpoint: str, weighting: str, group: str) -> pd.Series:
    m = result.medians
    return m[(m.endpoint == endpoint) & (m.weighting == weighting) & (m.group == group)].iloc[0]


def _fmt_median(value: float) -> str:
    return "NR" if value is None or math.isnan(value) else f"{value:.2f}"


def _fmt_p(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def side_by_side(result: AnalysisResult) -> pd.DataFrame:
    """The published table of COHORT.md next to this cohort's numbers."""
    pub = result.config.published
    lr = result.logrank.set_index(["endpoint", "weighting"])["p"]
    med = {(w, g): _median_of(result, "pfs", w, g)["median"]
           for w in ("unweighted", "iptw") for g in (schema.TREATED, schema.CONTROL)}
    ours = [
        ("patients (CIA, CI)", f"{result.n} ({result.n_by_group[schema.TREATED]}, "
                               f"{result.n_by_group[schema.CONTROL]})"),
        ("median OS, all (months)", _fmt_median(_median_of(result, "os", "unweighted", "all")["median"])),
        ("median PFS, all (months)", _fmt_median(_median_of(result, "pfs", "unweighted", "all")["median"])),
        ("median PFS CIA vs CI, unweighted", f"{_fmt_median(med['unweighted', schema.TREATED])} vs "
                                             f"{_fmt_median(med['unweighted', schema.CONTROL])}"),
        ("log-rank p, unweighted", _fmt_p(lr["pfs", "unweighted"])),
        ("median PFS CIA vs CI, IPTW", f"{_fmt_median(med['iptw', schema.TREATED])} vs "
                                       f"{_fmt_median(med['iptw', schema.CONTROL])}"),
        ("p, IPTW-weighted", _fmt_p(lr["pfs", "iptw"])),
        ("IPTW-Cox HR for PFS, CIA vs CI (95% CI)",
         "{hr:.2f} ({ci_low:.2f}-{ci_high:.2f})".format(**result.iptw_cox["pfs"])),
        ("independent prognostic factors (multivariable PFS Cox, p < "
         f"{result.config.alpha:g})", ", ".join(result.prognostic_factors) or "none"),
    ]
    if pub is None:
        published = ["-"] * len(ours)
    else:
        published = [
            f"{pub.n} ({pub.n_cia}, {pub.n_ci})", f"{pub.median_os_all:.2f}", f"{pub.median_pfs_all:.2f}",
            f"{pub.median_pfs_cia:.2f} vs {pub.median_pfs_ci:.2f}", f"{pub.logrank_p:g}",
            f"{pub.median_pfs_cia_iptw:.2f} vs {pub.median_pfs_ci_iptw:.2f}", f"{pub.weighted_p:g}",
            "not reported", ", ".join(pub.prognostic_factors),
        ]
    return pd.DataFrame({"quantity": [q for q, _ in ours], "published": published,
                         "this cohort": [v for _, v in ours]})


# --- serialisation ----------------------------------------------------------------------


def _clean(obj):
    """JSON-safe: NaN/inf -> None, numpy scalars -> Python."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _records(df: pd.DataFrame) -> list[dict]:
    return df.to_dict(orient="records")


def _median_block(result: AnalysisResult, endpoint: str) -> dict:
    m = result.medians[result.medians.endpoint == endpoint]
    return {weighting: {r.group: {"median": r.median, "ci_low": r.ci_low, "ci_high": r.ci_high,
                                  "n": r.n, "events": r.events, "ci_method": r.ci_method}
                        for r in part.itertuples()}
            for weighting, part in m.groupby("weighting", sort=False)}


def _terms(table: pd.DataFrame) -> dict:
    return {r.term: {"hr": r.hr, "ci_low": r.ci_low, "ci_high": r.ci_high, "p": r.p}
            for r in table.itertuples()}


def to_dict(result: AnalysisResult) -> dict:
    """analysis.json as a dict (NaN -> None, so the JSON is valid)."""
    lr = result.logrank.set_index(["endpoint", "weighting"])["p"]
    diag = result.iptw.diagnostics.set_index("group")
    out = {
        "n": result.n,
        "n_by_group": result.n_by_group,
        "config": result.config.model_dump(),
        "median_pfs": _median_block(result, "pfs"),
        "median_os": _median_block(result, "os"),
        "logrank_p": {"unweighted": lr["pfs", "unweighted"], "weighted": lr["pfs", "iptw"]},
        "logrank_p_os": {"unweighted": lr["os", "unweighted"], "weighted": lr["os", "iptw"]},
        "smd_before": dict(zip(result.smd.term, result.smd.before, strict=True)),
        "smd_after": dict(zip(result.smd.term, result.smd.after, strict=True)),
        "balance": result.balance,
        "ess": {g: diag.loc[g, "ess"] for g in diag.index},
        "weights": _records(result.iptw.diagnostics),
        "confounders_used": list(result.iptw.confounders),
        "iptw_cox_pfs": result.iptw_cox["pfs"],
        "iptw_cox_os": result.iptw_cox["os"],
        "crude_cox_pfs": result.crude_cox["pfs"],
        "crude_cox_os": result.crude_cox["os"],
        "cox_multivariable_pfs": _terms(result.cox_multivariable["pfs"]),
        "cox_multivariable_os": _terms(result.cox_multivariable["os"]),
        "cox_univariable_pfs": _terms(result.cox_univariable["pfs"]),
        "cox_univariable_os": _terms(result.cox_univariable["os"]),
        "ph_tests": _records(pd.concat(result.ph_tests.values(), ignore_index=True)),
        "prognostic_factors_pfs": result.prognostic_factors,
        "side_by_side": _records(result.side_by_side),
        "bootstrap": {"replicates": result.bootstrap_replicates, "failed": result.bootstrap_failed},
        "methods": result.methods,
        "warnings": result.warnings,
    }
    return _clean(out)


def to_json(result: AnalysisResult) -> str:
    return json.dumps(to_dict(result), indent=2, allow_nan=False)


def key_metrics(result: AnalysisResult) -> dict[str, float]:
    """The headline numbers, flat, for MLflow metrics."""
    m = {f"median_{r.endpoint}_{r.group}_{r.weighting}": r.median for r in result.medians.itertuples()}
    m |= {f"logrank_p_{r.endpoint}_{r.weighting}": r.p for r in result.logrank.itertuples()}
    for ep in schema.ENDPOINTS:
        m |= {f"iptw_hr_{ep}": result.iptw_cox[ep]["hr"], f"iptw_p_{ep}": result.iptw_cox[ep]["p"],
              f"iptw_se_log_hr_robust_{ep}": result.iptw_cox[ep]["se_log_hr_robust"],
              f"crude_hr_{ep}": result.crude_cox[ep]["hr"]}
    diag = result.iptw.diagnostics
    m |= {f"ess_{r.group}": r.ess for r in diag.itertuples()}
    m |= {"max_abs_smd_before": result.balance["max_abs_smd_before"],
          "max_abs_smd_after": result.balance["max_abs_smd_after"]}
    return {k: float(v) for k, v in m.items() if v is not None and np.isfinite(v)}


def mlflow_params(config: AnalysisConfig) -> dict[str, object]:
    return {"confounders": ",".join(config.confounders), "estimand": config.estimand,
            "stabilized": config.stabilized, "truncate": config.truncate,
            "bootstrap": config.bootstrap, "seed": config.seed, "alpha": config.alpha,
            "cox_covariates": ",".join(config.cox_covariates), "config_version": config.version}

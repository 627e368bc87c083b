"""Causal survival analysis of the cohort (the `causal:` section of the analysis YAML).

`run_causal(df, config, progress)` returns a `CausalResult`: per endpoint, confounder-adjusted
survival curves per arm (IPTW-KM, G-formula, AIPTW; `ml.stats.causal.adjusted`) at the
horizons with bootstrap CIs and their differences, the RMST per arm at tau unadjusted (R
survRM2's `rmst2`) and adjusted, their difference and ratio, the RMST difference over tau, and
E-values of the IPTW Cox hazard ratio and of the RMST ratio; once for the cohort, the balance
(SMD, variance ratio, KS, ESS) of each weighting method (logistic, entropy balancing, overlap).
`causal_to_dict` is the `causal` block of analysis.json. No I/O here.

Estimands: the adjusted curves and adjusted RMST are marginal over the whole cohort (ATE);
the weighting comparison targets the configured `estimand` (overlap weights always the ATO).
Bad input raises `CausalInputError` naming the YAML setting, the arm and what to change.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features import schema
from ml.stats import evalues, km
from ml.stats.balance_metrics import METHODS as BALANCE_METHODS
from ml.stats.balance_metrics import balance_comparison, effective_sample_sizes
from ml.stats.causal import adjusted as adjusted_mod
from ml.stats.causal import rmst as rmst_mod
from ml.stats.causal.adjusted import AdjustedSurvival, adjusted_survival
from ml.stats.causal.rmst import RMSTComparison, check_events, check_tau, rmst2, tau_bound
from ml.stats.cox_tables import ENDPOINT_NAMES
from ml.stats.entropy import confounder_design
from ml.stats.errors import CausalInputError
from ml.stats.weight_methods import ESTIMANDS as METHOD_ESTIMANDS
from ml.stats.weight_methods import METHODS as WEIGHT_METHODS
from ml.stats.weight_methods import estimate_weights
from ml.workflows.analysis_config import AnalysisConfig

ARMS = (schema.TREATED, schema.CONTROL)
ESTIMAND_NAMES = {"ate": "ATE", "att": "ATT", "overlap": "ATO", "ato": "ATO"}
CURVES_ESTIMAND = "ATE"
"""`ml.stats.causal.adjusted` standardises over the whole cohort: its curves are the ATE's."""

Progress = Callable[[str, int, int], None]
"""progress(label, done, total) after each bootstrap resample."""


@dataclass(frozen=True)
class EndpointCausal:
    """One endpoint's adjusted curves, RMST (unadjusted and adjusted) and E-values."""

    endpoint: str
    adjusted: AdjustedSurvival
    unadjusted: RMSTComparison
    tau_rule: str
    tau_given: bool
    evalues: dict
    ph_p: float | None


@dataclass(frozen=True)
class WeightingBalance:
    """One weighting method's balance: the long table (term x statistic) and its summary."""

    method: str
    estimand: str
    weights: np.ndarray
    ess: dict[str, float]
    table: pd.DataFrame


@dataclass(frozen=True)
class CausalResult:
    """Everything `run_causal` found; `causal_to_dict` is its analysis.json block."""

    estimand: str
    horizons: tuple[float, ...]
    estimators: tuple[str, ...]
    bootstrap: int
    endpoints: dict[str, EndpointCausal]
    weighting: dict[str, WeightingBalance]
    balance: pd.DataFrame              # balance_comparison's long frame, "unadjusted" first
    confounders: tuple[str, ...]
    methods: dict[str, str]


# --- weighting methods --------------------------------------------------------------------------


def weighting_estimand(config: AnalysisConfig) -> str:
    """The weighting comparison's estimand: causal.weighting_estimand, else `estimand`."""
    return config.causal.weighting_estimand or config.estimand


def _setting(config: AnalysisConfig) -> str:
    return "causal.weighting_estimand" if config.causal.weighting_estimand else "estimand"


def _method_estimand(method: str, config: AnalysisConfig) -> str:
    estimand = weighting_estimand(config)
    e = "ato" if estimand == "overlap" else estimand
    if method == "overlap":
        return "ato"
    if e not in METHOD_ESTIMANDS[method]:
        raise CausalInputError(
            f"causal.weighting_methods: '{method}' cannot target the {ESTIMAND_NAMES[e]} "
            f"({_setting(config)}: {estimand}); it supports "
            f"{', '.join(x.upper() for x in METHOD_ESTIMANDS[method])}. Remove "
            f"'{method}' from causal.weighting_methods or set causal.weighting_estimand to ate or att")
    return e


def _weights(df: pd.DataFrame, config: AnalysisConfig, method: str, estimand: str):
    truncate = config.truncation if method == "logistic" else None
    try:
        return estimate_weights(df, config.confounders, method, estimand, config.stabilized, truncate)
    except CausalInputError as exc:
        other = "att" if estimand == "ate" else "ate"
        raise CausalInputError(
            f"causal.weighting_methods: '{method}' for the {ESTIMAND_NAMES[estimand]} "
            f"({_setting(config)}: {weighting_estimand(config)}) failed: {exc}. Remove '{method}' from "
            f"causal.weighting_methods, set causal.weighting_estimand: {other}, or change the "
            "confounders") from None


def compare_weightings(df: pd.DataFrame, config: AnalysisConfig
                       ) -> tuple[dict[str, WeightingBalance], pd.DataFrame, tuple[str, ...]]:
    """Each configured weighting method's weights and balance on the propensity design terms
    (the terms entropy balancing balances), cobalt conventions (`ml.stats.balance_metrics`)."""
    fitted = {}
    for method in config.causal.weighting_methods:
        e = _method_estimand(method, config)
        fitted[method] = (e, _weights(df, config, method, e))
    confounders = next(iter(fitted.values()))[1].confounders
    design = confounder_design(df, confounders)[1]
    treated = (df[schema.TREATMENT] == schema.TREATED).to_numpy()
    sd_estimand = "ato" if weighting_estimand(config) == "overlap" else weighting_estimand(config)
    samples = {"unadjusted": None} | {m: w.weights for m, (_, w) in fitted.items()}
    balance = balance_comparison(design, treated, samples, estimand=sd_estimand)
    out = {m: WeightingBalance(method=m, estimand=ESTIMAND_NAMES[e], weights=w.weights,
                               ess=effective_sample_sizes(treated, w.weights, ARMS),
                               table=balance[balance["sample"] == m].drop(columns="sample"))
           for m, (e, w) in fitted.items()}
    return out, balance, tuple(confounders)


# --- one endpoint ---------------------------------------------------------------------------------


def _arrays(df: pd.DataFrame, endpoint: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    tcol, ecol = schema.ENDPOINTS[endpoint]
    return (df[tcol].to_numpy(float), df[ecol].to_numpy().astype(bool),
            (df[schema.TREATMENT] == schema.TREATED).to_numpy())


def _with_endpoint(endpoint: str, exc: CausalInputError, hint: str = "") -> CausalInputError:
    return CausalInputError(f"{ENDPOINT_NAMES[endpoint]}: {exc}{hint}")


def checked_tau(df: pd.DataFrame, config: AnalysisConfig, endpoint: str) -> tuple[float, str]:
    """tau of one endpoint and how it was chosen; `CausalInputError` naming `causal.tau` or
    `causal.horizons` (and the arm) when it lies beyond an arm's follow-up, or for an arm
    without events (`causal.endpoints`)."""
    time, event, treated = _arrays(df, endpoint)
    try:
        check_events(event, treated, ARMS)
    except CausalInputError as exc:
        raise _with_endpoint(endpoint, exc, f"; or remove '{endpoint}' from causal.endpoints") from None
    tau = config.causal.tau
    try:
        used = check_tau(tau, time, event, treated, "causal.tau", ARMS)
        check_tau(max(config.causal.horizons), time, event, treated, "causal.horizons", ARMS)
    except CausalInputError as exc:
        hint = " (or null for survRM2's default rule)" if "causal.tau" in str(exc) else ""
        raise _with_endpoint(endpoint, exc, hint) from None
    if tau is not None:
        return used, f"set in the experiment YAML (causal.tau = {tau:g} months)"
    limit = tau_bound(time, event, treated, ARMS)
    return used, f"{rmst_mod.METHODS['tau_rule']} ({limit.describe()})"


def event_fraction(df: pd.DataFrame, endpoint: str) -> float:
    """1 - Kaplan-Meier S at the last follow-up, all patients: the share with the event by the
    end of follow-up that EValue's rare-outcome rule (< 15 %) refers to."""
    time, event, _ = _arrays(df, endpoint)
    _, surv = km.weighted_km(time, event)
    return float(1 - surv[-1]) if len(surv) else 0.0


def hr_evalue(iptw_cox: dict, fraction: float, outcome: str) -> dict:
    """E-values of the IPTW Cox hazard ratio and its primary CI, the conversion named."""
    rare = evalues.is_rare(fraction) if outcome == "auto" else outcome == "rare"
    ev = evalues.evalues_hr(iptw_cox["hr"], iptw_cox["ci_low"], iptw_cox["ci_high"], rare=rare)
    how = "EValue's rule (< 15 %)" if outcome == "auto" else f"causal.evalue_outcome = {outcome}"
    return ev.as_dict() | {
        "outcome": "rare" if rare else "common", "event_fraction": fraction,
        "outcome_rule": f"{how}; event fraction 1 - KM(last follow-up), all patients = {fraction:.1%}",
        "source": f"IPTW Cox hazard ratio with its primary CI ({iptw_cox.get('primary_ci', 'robust')})"}


def rmst_evalue(adjusted: AdjustedSurvival) -> dict:
    """E-values of the adjusted RMST ratio (AIPTW if estimated, else the first estimator)."""
    c = adjusted.rmst_contrasts
    name = "aiptw" if "aiptw" in set(c["estimator"]) else str(c["estimator"].iloc[0])
    row = c[(c["estimator"] == name) & (c["contrast"] == "ratio")].iloc[0]
    ev = evalues.evalues_rmst_ratio(float(row["estimate"]), float(row["ci_low"]), float(row["ci_high"]))
    return ev.as_dict() | {"estimator": name, "tau": adjusted.tau}


def _ph_global_p(ph_tests: dict[str, pd.DataFrame] | None, endpoint: str) -> float | None:
    if not ph_tests or endpoint not in ph_tests:
        return None
    t = ph_tests[endpoint]
    rows = t[(t["model"] == f"IPTW {ENDPOINT_NAMES[endpoint]}") & (t["level"] == "global")]
    return float(rows["p"].iloc[0]) if len(rows) else None


def check_settings(df: pd.DataFrame, config: AnalysisConfig) -> None:
    """The causal settings checked before any computation (tau, horizons, method x estimand):
    `CausalInputError` as `run_causal` would raise it, without the wait. An endpoint whose arm
    has no events is left to the analysis's own check (`analysis._require_events`)."""
    for method in config.causal.weighting_methods:
        _method_estimand(method, config)
    for ep in config.causal.endpoints:
        _, event, treated = _arrays(df, ep)
        if all(event[m].any() for m in (treated, ~treated)):
            checked_tau(df, config, ep)


def run_endpoint(df: pd.DataFrame, config: AnalysisConfig, endpoint: str,
                 progress: Progress | None = None, iptw_cox: dict | None = None,
                 ph_tests: dict[str, pd.DataFrame] | None = None) -> EndpointCausal:
    """Adjusted curves, RMST and E-values of one endpoint (see the module docstring)."""
    c = config.causal
    tau, rule = checked_tau(df, config, endpoint)
    label = f"causal bootstrap ({ENDPOINT_NAMES[endpoint]})"
    step = None if progress is None else (lambda done, total: progress(label, done, total))
    try:
        adjusted = adjusted_survival(df, c.horizons, tau=tau, confounders=config.confounders,
                                     endpoint=endpoint, estimators=c.estimators, replicates=c.bootstrap,
                                     seed=config.seed, alpha=config.alpha, progress=step)
    except CausalInputError as exc:
        raise _with_endpoint(endpoint, exc, " (adjusted curves: setting confounders)") from None
    time, event, treated = _arrays(df, endpoint)
    unadjusted = rmst2(time, event, treated, tau, config.alpha, ARMS)
    ev = {"rmst_ratio": rmst_evalue(adjusted)}
    if iptw_cox is not None:
        ev["hr"] = hr_evalue(iptw_cox, event_fraction(df, endpoint), c.evalue_outcome)
    return EndpointCausal(endpoint=endpoint, adjusted=adjusted, unadjusted=unadjusted, tau_rule=rule,
                          tau_given=c.tau is not None, evalues=ev, ph_p=_ph_global_p(ph_tests, endpoint))


def _methods(config: AnalysisConfig) -> dict[str, str]:
    m = {f"causal_{k}": v for k, v in adjusted_mod.METHODS.items()}
    m["causal_estimand"] = (f"adjusted curves and adjusted RMST: {CURVES_ESTIMAND} (whole cohort); "
                            f"weighting comparison: {ESTIMAND_NAMES[weighting_estimand(config)]} (setting "
                            f"{_setting(config)}; overlap weights always ATO); IPTW Cox: "
                            f"{ESTIMAND_NAMES[config.estimand]} (setting estimand)")
    m |= {f"rmst_{k}": v for k, v in rmst_mod.METHODS.items()}
    m |= {f"weighting_{k}": WEIGHT_METHODS[k] for k in config.causal.weighting_methods}
    m |= {f"balance_{k}": v for k, v in BALANCE_METHODS.items()}
    m |= {f"evalue_{k}": v for k, v in evalues.METHODS.items()}
    return m


def rmst_when(ep: EndpointCausal, alpha: float) -> str:
    """Which summary to read, from the PH check of the IPTW Cox (GLOBAL p)."""
    name = ENDPOINT_NAMES[ep.endpoint]
    if ep.ph_p is None:
        return f"{name}: {rmst_mod.METHODS['when']}"
    if ep.ph_p < alpha:
        return (f"{name}: the PH check of the IPTW Cox rejects (p = {ep.ph_p:.3g} < {alpha:g}): the hazard "
                f"ratio averages an effect that changes over time; the RMST difference and ratio at tau = "
                f"{ep.adjusted.tau:g} months are the better summary")
    return (f"{name}: the PH check of the IPTW Cox does not reject (p = {ep.ph_p:.3g}); the hazard ratio "
            f"and the RMST at tau = {ep.adjusted.tau:g} months both summarise the effect; RMST needs no "
            "PH assumption")


def run_causal(df: pd.DataFrame, config: AnalysisConfig, progress: Progress | None = None, *,
               iptw_cox: dict[str, dict] | None = None,
               ph_tests: dict[str, pd.DataFrame] | None = None) -> CausalResult:
    """The causal section on a validated cohort (module docstring). `iptw_cox` (per endpoint,
    the analysis's IPTW Cox row) gives the HR E-values; `ph_tests` the RMST-or-HR advice."""
    c = config.causal
    weighting, balance, confounders = compare_weightings(df, config)
    endpoints = {}
    for ep in c.endpoints:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*bootstrap resamples of the adjusted curves.*")
            endpoints[ep] = run_endpoint(df, config, ep, progress, (iptw_cox or {}).get(ep), ph_tests)
        if endpoints[ep].adjusted.failed:
            warnings.warn(f"{ENDPOINT_NAMES[ep]}: {endpoints[ep].adjusted.failed} of {c.bootstrap} causal "
                          "bootstrap resamples could not be analysed (Cox or propensity fit failed) and "
                          "were left out", stacklevel=2)
    methods = _methods(config)
    methods |= {f"rmst_when_{ep}": rmst_when(r, config.alpha) for ep, r in endpoints.items()}
    return CausalResult(estimand=ESTIMAND_NAMES[weighting_estimand(config)], horizons=tuple(c.horizons),
                        estimators=tuple(c.estimators), bootstrap=c.bootstrap, endpoints=endpoints,
                        weighting=weighting, balance=balance, confounders=confounders, methods=methods)


# --- analysis.json ------------------------------------------------------------------------------


def _at(frame: pd.DataFrame, value: str) -> dict:
    return {f"{r.time:g}": {value: getattr(r, value), "ci_low": r.ci_low, "ci_high": r.ci_high}
            for r in frame.itertuples()}


def _stats(row, keys=("estimate", "se", "ci_low", "ci_high", "p")) -> dict:
    return {k: getattr(row, k) for k in keys}


def _endpoint_dict(ep: EndpointCausal) -> dict:
    a, u = ep.adjusted, ep.unadjusted
    curves = {est: {arm: _at(part[part["arm"] == arm], "survival") for arm in ARMS}
              for est, part in a.at_times.groupby("estimator", sort=False)}
    diffs = {est: _at(part, "difference") for est, part in a.differences.groupby("estimator", sort=False)}
    keys = ("rmst", "se", "ci_low", "ci_high")
    rmst = {"unadjusted": {r.arm: _stats(r, keys) for r in u.arms.itertuples()}}
    rmst |= {est: {r.arm: _stats(r, keys) for r in part.itertuples()}
             for est, part in a.rmst.groupby("estimator", sort=False)}
    contrasts = {"unadjusted": {r.contrast: _stats(r) for r in u.contrasts.itertuples()}}
    contrasts |= {est: {r.contrast: _stats(r) for r in part.itertuples()}
                  for est, part in a.rmst_contrasts.groupby("estimator", sort=False)}
    by_tau = {est: [{"tau": r.time, "difference": r.difference, "ci_low": r.ci_low, "ci_high": r.ci_high}
                    for r in part.itertuples()]
              for est, part in a.rmst_by_tau.groupby("estimator", sort=False)}
    chosen = "config (causal.tau)" if ep.tau_given else "survRM2 rule"
    return {"estimand": CURVES_ESTIMAND, "tau": a.tau, "tau_chosen": chosen,
            "tau_rule": ep.tau_rule, "adjusted_survival": curves, "adjusted_differences": diffs,
            "difference": f"{ARMS[0]} minus {ARMS[1]}", "ratio": f"{ARMS[0]} / {ARMS[1]}",
            "rmst": rmst, "rmst_contrasts": contrasts, "rmst_by_tau": by_tau, "evalues": ep.evalues,
            "ph_global_p_iptw_cox": ep.ph_p,
            "bootstrap": {"replicates": a.replicates, "failed": a.failed}}


def _weighting_dict(w: WeightingBalance) -> dict:
    table = w.table.drop(columns=["type"]).to_dict(orient="records")
    return {"estimand": w.estimand, "ess": w.ess, "max_abs_smd": float(w.table["smd"].abs().max()),
            "max_ks": float(w.table["ks"].max()), "balance": table}


def causal_to_dict(result: CausalResult) -> dict:
    """The `causal` block of analysis.json (NaN left as NaN: the caller makes it JSON-safe)."""
    unadjusted = result.balance[result.balance["sample"] == "unadjusted"]
    return {"estimand": result.estimand, "curves_estimand": CURVES_ESTIMAND,
            "horizons": list(result.horizons), "estimators": list(result.estimators),
            "confounders": list(result.confounders), "bootstrap": result.bootstrap,
            **{ep: _endpoint_dict(r) for ep, r in result.endpoints.items()},
            "weighting": {"unadjusted": {"max_abs_smd": float(unadjusted["smd"].abs().max()),
                                         "max_ks": float(unadjusted["ks"].max()),
                                         "balance": unadjusted.drop(columns=["type", "sample"])
                                         .to_dict(orient="records")}}
            | {m: _weighting_dict(w) for m, w in result.weighting.items()},
            "methods": result.methods}


def causal_metrics(result: CausalResult) -> dict[str, float]:
    """Headline numbers for MLflow: RMST differences, S(t) differences, E-values, max |SMD|."""
    m = {}
    for ep, r in result.endpoints.items():
        d = _endpoint_dict(r)
        m |= {f"rmst_diff_{est}_{ep}": c["difference"]["estimate"] for est, c in d["rmst_contrasts"].items()}
        m |= {f"rmst_ratio_{est}_{ep}": c["ratio"]["estimate"] for est, c in d["rmst_contrasts"].items()}
        m |= {f"s{h}_diff_{est}_{ep}": v["difference"] for est, at in d["adjusted_differences"].items()
              for h, v in at.items()}
        m |= {f"evalue_{k}_{ep}": ev["evalue"] for k, ev in d["evalues"].items()}
        m |= {f"evalue_{k}_ci_{ep}": ev["evalue_ci"] for k, ev in d["evalues"].items()}
        m[f"rmst_tau_{ep}"] = r.adjusted.tau
    m |= {f"max_abs_smd_{k}": float(w.table["smd"].abs().max()) for k, w in result.weighting.items()}
    return m

"""The analysis's result shown: terminal tables and figures, made from plain data.

`ml.reporting` draws and prints without knowing the analysis; this module picks the frames,
numbers and group labels out of an `AnalysisResult` (and the cohort) and hands them over.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from rich.console import Console

from features import schema
from features.contract import term
from ml.reporting import analysis_plots as plots
from ml.reporting import causal_display, causal_plots, display, ph_plots
from ml.stats.cox import CoxFit, fit_cox
from ml.stats.cox_tables import ENDPOINT_NAMES, cox_design, fit_complete_cases
from ml.stats.km import km_frame
from ml.stats.ph import cox_zph, zph_smooth
from ml.workflows.analysis_result import AnalysisResult, json_safe
from ml.workflows.causal import causal_to_dict

GROUPS = (schema.TREATED, schema.CONTROL)


def print_analysis(console: Console, result: AnalysisResult) -> None:
    """Balance, survival, Cox models, side by side, methods and warnings, in reading order."""
    cfg, iptw = result.config, result.iptw
    display.print_propensity(console, iptw.confounders, cfg.estimand, cfg.stabilized, cfg.truncate)
    display.print_table_one(console, result.table_one_before, f"Table 1, unweighted ({result.n} patients)")
    display.print_table_one(console, result.table_one_after, "Table 1, IPTW-weighted (pseudo-population)")
    display.print_frame(console, iptw.diagnostics,
                        title="Weights per group (ESS = Kish effective sample size)")
    display.print_balance(console, result.balance)
    display.print_survival(console, result.medians, result.logrank)
    display.print_treatment_cox(console, result.crude_cox, result.iptw_cox, result.bootstrap_replicates)
    display.print_cox_tables(console, result.cox_univariable, result.cox_multivariable)
    if result.cox_joint_tests:
        display.print_joint_tests(console, result.cox_joint_tests["univariable"],
                                  result.cox_joint_tests["multivariable"])
    display.print_ph_flags(console, pd.concat(result.ph_tests.values(), ignore_index=True))
    display.print_frame(console, result.side_by_side, title="Side by side with the published study")
    if result.causal is not None:
        causal_display.print_causal(console, json_safe(causal_to_dict(result.causal)), ENDPOINT_NAMES)
    display.print_methods(console, result.methods, result.warnings)


def _curves(df: pd.DataFrame, endpoint: str, weights: np.ndarray | None) -> dict[str, pd.DataFrame]:
    tcol, ecol = schema.ENDPOINTS[endpoint]
    group = df[schema.TREATMENT].to_numpy()
    curves = {}
    for label in GROUPS:
        m = group == label
        if m.any():
            w = None if weights is None else weights[m]
            curves[label] = km_frame(df[tcol].to_numpy()[m], df[ecol].to_numpy()[m], w)
    return curves


def analysis_figures(result: AnalysisResult, df: pd.DataFrame) -> dict[str, object]:
    """The analysis figures by file name: KM PFS / OS (unweighted | IPTW), the PH check's
    Schoenfeld residuals per endpoint, Love plot, overlap."""
    figures = {}
    group = df[schema.TREATMENT].to_numpy()
    for endpoint, (tcol, _) in schema.ENDPOINTS.items():
        name = endpoint.upper()
        follow_up = {g: df[tcol].to_numpy()[group == g] for g in GROUPS if (group == g).any()}
        panels = [(f"{name}, unweighted (95% Greenwood band)", _curves(df, endpoint, None)),
                  (f"{name}, IPTW-weighted ({result.iptw.estimand.upper()})",
                   _curves(df, endpoint, result.iptw.weights))]
        figures[f"km_{endpoint}.png"] = plots.km_figure(panels, f"{name} probability", follow_up)
    figures |= {f"ph_schoenfeld_{ep}.png": schoenfeld_figure(result, df, ep) for ep in schema.ENDPOINTS}
    figures["love_plot.png"] = plots.love_figure(result.smd, result.config.balance_threshold)
    figures["propensity_overlap.png"] = plots.overlap_figure(result.iptw.propensity,
                                                             result.iptw.treated, GROUPS)
    return figures | causal_figures(result)


def causal_figures(result: AnalysisResult) -> dict[str, object]:
    """The causal section's figures: adjusted curves and RMST over tau per endpoint, and the
    Love plot of the weighting methods."""
    causal = result.causal
    if causal is None:
        return {}
    figures = {}
    for ep, r in causal.endpoints.items():
        a, name = r.adjusted, ENDPOINT_NAMES[ep]
        figures[f"adjusted_curves_{ep}.png"] = causal_plots.adjusted_curves_figure(
            a.curves, a.differences, GROUPS, f"{name}: confounder-adjusted survival per arm (ATE), "
            "95% bootstrap bands", causal.horizons)
        figures[f"rmst_tau_{ep}.png"] = causal_plots.rmst_tau_figure(
            a.rmst_by_tau, GROUPS, f"{name}: adjusted RMST difference up to tau (ATE), 95% bootstrap band")
    figures["love_plot_methods.png"] = causal_plots.weighting_love_figure(causal.balance, causal.confounders)
    return figures


def _zph_panels(fit: CoxFit, transform: str, model: str) -> list[ph_plots.SchoenfeldPanel]:
    zph = cox_zph(fit, transform)
    p = zph.table[zph.table["level"] == "term"].set_index("term")["p"]
    return [ph_plots.SchoenfeldPanel(
        title=f"{model}: {name}", g=zph.g, beta_t=zph.beta_t[name].to_numpy(), coef=float(fit.coef[j]),
        smooth=zph_smooth(zph.g, zph.beta_t[name].to_numpy(), zph.var[j, j]), p=float(p[name]),
        time=zph.time) for j, name in enumerate(fit.names)]


def schoenfeld_figure(result: AnalysisResult, df: pd.DataFrame, endpoint: str):
    """The PH check drawn (R's plot.cox.zph): beta(t) of the IPTW Cox's treatment term, then of
    each term of the multivariable Cox, each with its spline smooth and +-2 SE band. The two
    models are re-fitted as the analysis fitted them (deterministic: the same estimates)."""
    cfg, name = result.config, ENDPOINT_NAMES[endpoint]
    tcol, ecol = schema.ENDPOINTS[endpoint]
    iptw = fit_cox(df[tcol], df[ecol], result.iptw.treated.astype(float), result.iptw.weights,
                   names=[term(schema.TREATMENT, schema.TREATED)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the analysis already reported left-out constant terms
        multi = fit_complete_cases(cox_design(df, cfg.cox_covariates, treatment=True), df, endpoint)
    panels = _zph_panels(iptw, cfg.ph_transform, "IPTW") + _zph_panels(multi, cfg.ph_transform, "multi")
    return ph_plots.schoenfeld_figure(
        panels, xlabel=f"{name} time (months), {cfg.ph_transform} scale",
        suptitle=f"{name}: scaled Schoenfeld residuals beta(t) with natural-spline smooth (df 4) "
                 f"and +-2 SE band; p of cox.zph (transform {cfg.ph_transform})")

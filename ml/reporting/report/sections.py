"""Sections 1-5 (data, Table 1, balance, survival, Cox models): each a title, a plain-language
reading made from the numbers, and its tables and figures as HTML."""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field

import matplotlib.pyplot as plt

from ml.reporting import forest
from ml.reporting import survival_plots as sp
from ml.reporting.love_plot import love_plot
from ml.reporting.report.causal import causal_blocks
from ml.reporting.report.figures import svg
from ml.reporting.report.tables import gt_html, p_text

SECTIONS = (("data", "1. Data"), ("table1", "2. Table 1"), ("balance", "3. Balance"),
            ("survival", "4. Survival"), ("cox", "5. Cox models"), ("models", "6. Prediction models"),
            ("explain", "7. Explanations"), ("tripod", "8. TRIPOD+AI checklist"),
            ("methods", "9. Methods and reproducibility"))


@dataclass
class Section:
    key: str
    title: str
    reading: str
    blocks: list[str] = field(default_factory=list)


def figure(fig, caption: str) -> str:
    return f'<figure>{svg(fig, caption)}<figcaption>{html.escape(caption)}</figcaption></figure>'


def statement(text: str) -> str:
    return f'<p class="statement">{html.escape(text)}</p>'


def _title(key: str) -> str:
    return dict(SECTIONS)[key]


def _months(value: float) -> str:
    return "not reached" if value is None or not math.isfinite(value) else f"{value:.1f} months"


def data_section(c) -> Section:
    s = c.study
    events = ", ".join(f"{n} {name} events" for name, n in s.events.items())
    follow = ", ".join(f"{_months(v)} ({name})" for name, v in s.follow_up.items())
    gaps = s.missing[s.missing["missing"] > 0]
    missing = ("No variable has missing values." if gaps.empty else
               f"{len(gaps)} variable(s) have missing values, at most {gaps['percent'].max():.0f}% "
               f"({gaps.loc[gaps['percent'].idxmax(), 'variable']}).")
    sizes = ", ".join(f"{n} {g}" for g, n in s.group_sizes.items())
    reading = (f"The cohort ({html.escape(s.source)}) has {s.n} patients ({sizes}) and {events}. "
               f"Median follow-up, by the reverse Kaplan-Meier method (censoring counted as the event), is "
               f"{follow}. {missing}")
    if s.is_twin:
        reading += (" These patients are simulated by the project's digital twin: the numbers illustrate "
                    "the methods and say nothing about real patients.")
    table = gt_html(s.missing.rename(columns={"percent": "missing %"}), "missing",
                    "Missing values per variable", digits=1)
    return Section("data", _title("data"), reading, [table])


def table_one_section(c) -> Section:
    if c.table_one is None:
        return Section("table1", _title("table1"), "Table 1 could not be made.",
                       [statement(c.unavailable.get("analysis", "analysis not run"))])
    t = c.table_one
    treated, control = c.study.groups
    worst = t["SMD before"].abs().max()
    after = t["SMD after"].abs().max()
    reading = (f"Patients are described by group ({treated} and {control}) before and after inverse "
               f"probability of treatment weighting. The largest absolute standardized mean difference "
               f"(SMD) falls from {worst:.2f} before weighting to {after:.2f} after; below 0.1 is "
               "usually read as balanced. Continuous variables: median [IQR]; categories: n (%).")
    spanners = {"before weighting (patients)": [f"{treated} before", f"{control} before", "SMD before"],
                "after weighting (pseudo-population)": [f"{treated} after", f"{control} after", "SMD after"]}
    t = t.assign(level=[lv or ("patients" if var == "n" else "median [IQR]")
                        for var, lv in zip(t["variable"], t["level"].fillna(""), strict=True)])
    table = gt_html(t, "table1", "Table 1. Baseline characteristics", digits=2, spanners=spanners,
                    groups="variable", stub="level",
                    labels={f"{g} {when}": g for g in (treated, control) for when in ("before", "after")}
                    | {"SMD before": "SMD", "SMD after": "SMD"},
                    note="SMD: treated minus control over the pooled SD of the unweighted groups (cobalt "
                         "convention); weighted counts are sums of weights, not patients.")
    return Section("table1", _title("table1"), reading, [table])


def balance_section(c) -> Section:
    if c.balance is None:
        return Section("balance", _title("balance"), "Balance could not be assessed.",
                       [statement(c.unavailable.get("analysis", "analysis not run"))])
    b = c.balance
    weighted = b[b["sample"] == "IPTW"]
    off = weighted[weighted["smd"].abs() >= c.balance_threshold]
    ess = ", ".join(f"{g} {v:.1f}" for g, v in c.ess.items())
    reading = (f"The Love plot shows each covariate's standardized difference before (open) and after "
               f"(filled) weighting, one row per binary covariate; confounders the weights were built on "
               f"are marked *. After weighting {len(off)} term(s) stay at or above {c.balance_threshold:g}. "
               f"The overlap plot shows how far the propensity scores of the two groups overlap: "
               f"weights are only trustworthy where both groups are present. Effective sample sizes "
               f"(Kish): {ess}.")
    confounders = sorted(set(b.loc[b["weighted_on"], "confounder"]))
    love, ax = plt.subplots(figsize=(7.5, 1.2 + 0.26 * b["term"].nunique()))
    love_plot(ax, b, "smd", c.balance_threshold, confounders=confounders,
              title="Covariate balance: absolute SMD (* bold: the confounders the weights were built on)")
    love.tight_layout()
    blocks = [figure(love, "Love plot: absolute SMD per term, unweighted vs IPTW (* confounders)")]
    if c.propensity is not None:
        e, treated, w = c.propensity
        blocks.append(figure(sp.overlap_figure(e, treated, c.study.groups, w),
                             "Propensity score overlap: counts of patients (left) and of weighted "
                             "patients (right)"))
    return Section("balance", _title("balance"), reading, blocks)


def survival_section(c) -> Section:
    if not c.km_panels:
        return Section("survival", _title("survival"), "Survival could not be estimated.",
                       [statement(c.unavailable.get("analysis", "analysis not run"))])
    treated, control = c.study.groups
    pfs = c.iptw_cox.get("pfs", {})
    reading = ("Kaplan-Meier curves estimate the share of patients still free of the event over time "
               "(PFS: progression or death; OS: death), by group. Crosses mark censored patients "
               "(followed without an event), dashed lines the "
               "medians. The weighted curves describe a pseudo-population in which the groups have the same "
               "confounder mix; their band comes from the bootstrap, and the table under each plot counts "
               "the real patients still followed. ")
    if pfs:
        reading += (f"The IPTW Cox model gives a hazard ratio for progression or death of {pfs['hr']:.2f} "
                    f"(95% CI {pfs['ci_low']:.2f} to {pfs['ci_high']:.2f}) for {treated} vs {control}: "
                    f"{'lower' if pfs['hr'] < 1 else 'higher'} hazard with {treated}.")
    blocks = [figure(sp.km_survminer(p), p.title) for p in c.km_panels]
    if c.survival_table is not None:
        blocks.append(gt_html(c.survival_table, "medians", "Median survival (months) with 95% CI", digits=2))
    blocks += causal_blocks(c.causal)
    return Section("survival", _title("survival"), reading, blocks)


def cox_section(c) -> Section:
    if not c.forest:
        return Section("cox", _title("cox"), "The Cox models could not be fitted.",
                       [statement(c.unavailable.get("analysis", "analysis not run"))])
    terms, joint = c.forest["pfs"]
    significant = joint.loc[joint["wald_p"] < 0.05, "covariate"].tolist()
    reading = ("The multivariable Cox model estimates each baseline factor's hazard ratio adjusted for the "
               "others. A factor with several levels is judged by the joint test of all its levels, printed "
               f"beside it. Factors with joint p < 0.05 for PFS: {', '.join(significant) or 'none'}. The "
               "proportional-hazards checks (cox.zph) test whether each effect stays constant over time.")
    blocks = [figure(forest.forest_figure(t, j, f"{ep.upper()}: multivariable Cox, HR (95% CI)"),
                     f"Forest plot, {ep.upper()}") for ep, (t, j) in c.forest.items()]
    if c.ph_table is not None:
        table = c.ph_table.assign(p=c.ph_table["p"].map(p_text))
        blocks.append(gt_html(table, "ph", "Proportional hazards: cox.zph score tests", digits=2))
    blocks += [figure(fig, f"Scaled Schoenfeld residuals, {name}") for name, fig in c.ph_figures.items()]
    return Section("cox", _title("cox"), reading, blocks)

"""The analysis's result and what is made of it: the side-by-side table, analysis.json, metrics."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from features import schema
from ml.stats.balance import smd_convention
from ml.stats.weighting import IPTW
from ml.workflows.analysis_config import AnalysisConfig
from ml.workflows.causal import CausalResult, causal_metrics, causal_to_dict


@dataclass
class AnalysisResult:
    """Everything the analysis found; `to_dict` turns it into analysis.json."""

    config: AnalysisConfig
    n: int
    n_by_group: dict[str, int]
    iptw: IPTW
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
    cox_joint_tests: dict[str, dict[str, pd.DataFrame]] = field(default_factory=dict)
    """{"univariable" | "multivariable": {endpoint: covariate, df, wald_chisq, wald_p, lr_chisq,
    lr_p, n}}: the joint tests of all a covariate's terms (`ml.stats.cox_tables.joint_tests`)."""
    causal: CausalResult | None = None
    """The `causal:` section (`ml.workflows.causal.run_causal`): adjusted curves, RMST, E-values."""

    def weights_frame(self, ids) -> pd.DataFrame:
        """Per patient: id, propensity, weight (DIR/weights.csv)."""
        return pd.DataFrame({"id": np.asarray(ids), "propensity": self.iptw.propensity,
                             "weight": self.iptw.weights})


# --- side by side with the study ------------------------------------------------------------------


def median_of(result: AnalysisResult, endpoint: str, weighting: str, group: str) -> pd.Series:
    """The medians row of one endpoint, weighting ("unweighted" / "iptw") and group."""
    m = result.medians
    return m[(m.endpoint == endpoint) & (m.weighting == weighting) & (m.group == group)].iloc[0]


def _fmt_median(value: float) -> str:
    return "NR" if value is None or math.isnan(value) else f"{value:.2f}"


def _fmt_p(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _ours(result: AnalysisResult) -> list[tuple[str, str]]:
    lr = result.logrank.set_index(["endpoint", "weighting"])["p"]
    med = {(w, g): _fmt_median(median_of(result, "pfs", w, g)["median"])
           for w in ("unweighted", "iptw") for g in (schema.TREATED, schema.CONTROL)}
    return [
        ("patients (CIA, CI)", f"{result.n} ({result.n_by_group[schema.TREATED]}, "
                               f"{result.n_by_group[schema.CONTROL]})"),
        ("median OS, all (months)", _fmt_median(median_of(result, "os", "unweighted", "all")["median"])),
        ("median PFS, all (months)", _fmt_median(median_of(result, "pfs", "unweighted", "all")["median"])),
        ("median PFS CIA vs CI, unweighted", f"{med['unweighted', schema.TREATED]} vs "
                                             f"{med['unweighted', schema.CONTROL]}"),
        ("log-rank p, unweighted", _fmt_p(lr["pfs", "unweighted"])),
        ("median PFS CIA vs CI, IPTW", f"{med['iptw', schema.TREATED]} vs {med['iptw', schema.CONTROL]}"),
        ("p, IPTW-weighted", _fmt_p(lr["pfs", "iptw"])),
        ("IPTW-Cox HR for PFS, CIA vs CI (95% CI)",
         "{hr:.2f} ({ci_low:.2f}-{ci_high:.2f})".format(**result.iptw_cox["pfs"])),
        ("independent prognostic factors (multivariable PFS Cox, joint Wald p < "
         f"{result.config.alpha:g})", ", ".join(result.prognostic_factors) or "none"),
    ]


def side_by_side(result: AnalysisResult) -> pd.DataFrame:
    """The published table of COHORT.md next to this cohort's numbers."""
    pub = result.config.published
    ours = _ours(result)
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


# --- serialisation ---------------------------------------------------------------------------------


def json_safe(obj):
    """JSON-safe: NaN/inf -> None, numpy scalars -> Python, tuples -> lists, keys -> str."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
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


def _per_endpoint(result: AnalysisResult) -> dict:
    lr = result.logrank.set_index(["endpoint", "weighting"])["p"]
    return {
        "median_pfs": _median_block(result, "pfs"),
        "median_os": _median_block(result, "os"),
        "logrank_p": {"unweighted": lr["pfs", "unweighted"], "weighted": lr["pfs", "iptw"]},
        "logrank_p_os": {"unweighted": lr["os", "unweighted"], "weighted": lr["os", "iptw"]},
    }


def _cox_blocks(result: AnalysisResult) -> dict:
    out = {}
    for prefix, tables in (("iptw_cox", result.iptw_cox), ("crude_cox", result.crude_cox)):
        out |= {f"{prefix}_{ep}": tables[ep] for ep in ("pfs", "os")}
    for prefix, tables in (("cox_multivariable", result.cox_multivariable),
                           ("cox_univariable", result.cox_univariable)):
        out |= {f"{prefix}_{ep}": _terms(tables[ep]) for ep in ("pfs", "os")}
    return out


def _joint_blocks(result: AnalysisResult) -> dict:
    """cox_joint_tests_<model>_<endpoint>: {covariate: {df, wald_chisq, wald_p, lr_chisq, lr_p, n}}."""
    return {f"cox_joint_tests_{model}_{ep}": table.set_index("covariate").to_dict(orient="index")
            for model, tables in result.cox_joint_tests.items() for ep, table in tables.items()}
def _ph_global(ph_tests: dict[str, pd.DataFrame]) -> dict[str, dict]:
    """Per model: the GLOBAL cox.zph test (chisq, df, p) and the time transform."""
    rows = pd.concat(ph_tests.values(), ignore_index=True)
    rows = rows[rows["level"] == "global"]
    return {r.model: {"chisq": r.chisq, "df": int(r.df), "p": r.p, "transform": r.transform}
            for r in rows.itertuples()}


def to_dict(result: AnalysisResult) -> dict:
    """analysis.json as a dict (NaN -> None, so the JSON is valid)."""
    diag = result.iptw.diagnostics.set_index("group")
    out = {"n": result.n, "n_by_group": result.n_by_group, "config": result.config.model_dump()}
    out |= _per_endpoint(result)
    out |= {
        "smd_before": dict(zip(result.smd.term, result.smd.before, strict=True)),
        "smd_after": dict(zip(result.smd.term, result.smd.after, strict=True)),
        "smd_convention": smd_convention(result.iptw.estimand),
        "balance": result.balance,
        "ess": {g: diag.loc[g, "ess"] for g in diag.index},
        "weights": _records(result.iptw.diagnostics),
        "confounders_used": list(result.iptw.confounders),
    }
    out |= _cox_blocks(result)
    out |= _joint_blocks(result)
    out |= {
        "ph_tests": _records(pd.concat(result.ph_tests.values(), ignore_index=True)),
        "ph_global": _ph_global(result.ph_tests),
        "prognostic_factors_pfs": result.prognostic_factors,
        "side_by_side": _records(result.side_by_side),
        "bootstrap": {"replicates": result.bootstrap_replicates, "failed": result.bootstrap_failed},
        "methods": result.methods,
        "warnings": result.warnings,
    }
    if result.causal is not None:
        out["causal"] = causal_to_dict(result.causal)
    return json_safe(out)


def to_json(result: AnalysisResult) -> str:
    """analysis.json: strict JSON (NaN written as null)."""
    return json.dumps(to_dict(result), indent=2, allow_nan=False)


def key_metrics(result: AnalysisResult) -> dict[str, float]:
    """The headline numbers, flat, for MLflow metrics."""
    m = {f"median_{r.endpoint}_{r.group}_{r.weighting}": r.median for r in result.medians.itertuples()}
    m |= {f"logrank_p_{r.endpoint}_{r.weighting}": r.p for r in result.logrank.itertuples()}
    for ep in schema.ENDPOINTS:
        m |= {f"iptw_hr_{ep}": result.iptw_cox[ep]["hr"], f"iptw_p_{ep}": result.iptw_cox[ep]["p"],
              f"iptw_se_log_hr_robust_{ep}": result.iptw_cox[ep]["se_log_hr_robust"],
              f"crude_hr_{ep}": result.crude_cox[ep]["hr"]}
    m |= {f"ess_{r.group}": r.ess for r in result.iptw.diagnostics.itertuples()}
    joint = result.cox_joint_tests.get("multivariable", {})
    m |= {f"joint_wald_p_{ep}_{r.covariate}": r.wald_p
          for ep, table in joint.items() for r in table.itertuples()}
    m |= {"max_abs_smd_before": result.balance["max_abs_smd_before"],
          "max_abs_smd_after": result.balance["max_abs_smd_after"]}
    m |= causal_metrics(result.causal) if result.causal is not None else {}
    return {k: float(v) for k, v in m.items() if v is not None and np.isfinite(v)}

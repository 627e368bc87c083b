"""The causal section printed: adjusted S(t), RMST, weighting methods' balance, E-values.

Works on the plain `causal` block of analysis.json (`ml.workflows.causal.causal_to_dict`), so
what is printed is what is written; every table names its estimand and estimator.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
from rich.console import Console

from ml.reporting.display import print_frame


def _ci(d: Mapping, value: str = "estimate", digits: int = 2) -> str:
    v, lo, hi = d.get(value), d.get("ci_low"), d.get("ci_high")
    if v is None:
        return "-"
    if lo is None or hi is None:
        return f"{v:.{digits}f}"
    return f"{v:.{digits}f} ({lo:.{digits}f} to {hi:.{digits}f})"


def _p(d: Mapping) -> str:
    p = d.get("p")
    return "-" if p is None else ("<0.001" if p < 0.001 else f"{p:.3f}")


def survival_table(block: Mapping) -> pd.DataFrame:
    """Estimator x horizon: adjusted S(t) per arm and the difference, each with its CI."""
    arms = list(next(iter(block["adjusted_survival"].values())))
    rows = []
    for est, by_arm in block["adjusted_survival"].items():
        for h, diff in block["adjusted_differences"][est].items():
            rows.append({"estimator": est, "month": h}
                        | {f"S(t) {arm}": _ci(by_arm[arm][h], "survival") for arm in arms}
                        | {f"difference ({block['difference']})": _ci(diff, "difference")})
    return pd.DataFrame(rows)


def rmst_table(block: Mapping) -> pd.DataFrame:
    """Estimator: RMST per arm, difference and ratio with CI and p."""
    rows = []
    for est, arms in block["rmst"].items():
        c = block["rmst_contrasts"][est]
        rows.append({"estimator": est} | {f"RMST {a}": _ci(v, "rmst") for a, v in arms.items()}
                    | {"difference": _ci(c["difference"]), "p (diff)": _p(c["difference"]),
                       "ratio": _ci(c["ratio"]), "p (ratio)": _p(c["ratio"])})
    return pd.DataFrame(rows)


def evalue_table(block: Mapping) -> pd.DataFrame:
    """Measure, estimate (CI), conversion to the risk-ratio scale, E-values."""
    rows = []
    for ev in block["evalues"].values():
        label = ev["measure"] + (f" ({ev['estimator']})" if "estimator" in ev else "")
        rows.append({"measure": label, "estimate": _ci(ev), "on RR scale": _ci(
            {"estimate": ev["rr"], "ci_low": ev["rr_low"], "ci_high": ev["rr_high"]}),
            "E-value": ev["evalue"], "E-value (CI)": ev["evalue_ci"],
            "conversion": ev.get("outcome", "none (ratio of means)")})
    return pd.DataFrame(rows)


def weighting_table(weighting: Mapping) -> pd.DataFrame:
    """Method: estimand, ESS per arm, largest |SMD| and KS over the design terms."""
    rows = []
    for method, w in weighting.items():
        ess = w.get("ess") or {}
        rows.append({"method": method, "estimand": w.get("estimand", "-")}
                    | {f"ESS {arm}": v for arm, v in ess.items()}
                    | {"max |SMD|": w["max_abs_smd"], "max KS": w.get("max_ks")})
    return pd.DataFrame(rows)


def print_causal(console: Console, causal: Mapping, endpoint_names: Mapping[str, str]) -> None:
    """Every table of the causal block, endpoint by endpoint, then the weighting comparison."""
    print_frame(console, weighting_table(causal["weighting"]),
                title=f"Weighting methods compared ({causal['estimand']}; overlap: ATO): ESS and the "
                      "largest imbalance over the propensity design terms")
    for ep, name in endpoint_names.items():
        if ep not in causal:
            continue
        block = causal[ep]
        est = block["estimand"]
        print_frame(console, survival_table(block), digits=3,
                    title=f"{name}: adjusted survival per arm ({est}), 95% bootstrap CI "
                          f"({block['bootstrap']['replicates']} resamples)")
        print_frame(console, rmst_table(block),
                    title=f"{name}: RMST at tau = {block['tau']:g} months ({block['tau_chosen']}); "
                          f"unadjusted = survRM2 rmst2, adjusted ({est}) with bootstrap CI")
        print_frame(console, evalue_table(block),
                    title=f"{name}: E-values (unmeasured confounding needed to explain the effect away)")

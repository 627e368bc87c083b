"""Rich rendering of result frames for the terminal (results stay apart from display)."""

from __future__ import annotations

import math

import pandas as pd
from rich.console import Console
from rich.table import Table


def _fmt(value: object, digits: int = 2) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def _nr(value: float) -> str:
    """A survival median, or NR where the curve never drops to 0.5 (not reached)."""
    return "NR" if value is None or math.isnan(value) else f"{value:.2f}"


def print_frame(console: Console, df: pd.DataFrame, title: str | None = None,
                digits: int = 2) -> None:
    """Print any DataFrame as a rich table."""
    table = Table(title=title, title_justify="left")
    for col in df.columns:
        numeric = pd.api.types.is_numeric_dtype(df[col])
        table.add_column(str(col), justify="right" if numeric else "left", overflow="fold")
    for row in df.itertuples(index=False):
        table.add_row(*(_fmt(v, digits) for v in row))
    console.print(table)


def print_table_one(console: Console, table_one: pd.DataFrame, title: str) -> None:
    shown = table_one.copy()
    shown["variable"] = shown["variable"].where(~shown["variable"].duplicated(), "")
    shown["missing"] = shown["missing"].map(lambda m: str(m) if m else "")
    shown["smd"] = shown["smd"].map(lambda v: "" if pd.isna(v) else f"{v:+.3f}")
    print_frame(console, shown, title=title)


def print_medians(console: Console, medians: pd.DataFrame) -> None:
    shown = medians.assign(
        **{"median (95% CI), months": [
            f"{_nr(r.median)} ({_nr(r.ci_low)} to {_nr(r.ci_high)})" for r in medians.itertuples()
        ]}
    )[["endpoint", "group", "n", "events", "median (95% CI), months"]]
    print_frame(console, shown, title="Kaplan-Meier medians (unweighted; 95% CI: lifelines, "
                "exponential Greenwood; NR = not reached)")


def median_metrics(medians: pd.DataFrame) -> dict[str, float]:
    """Flatten a medians frame into MLflow metric names, e.g. median_pfs_CIA."""
    return {f"median_{r.endpoint}_{r.group}": r.median for r in medians.itertuples()}


# --- the study analysis (rechallenge analyze) ----------------------------------------------


def _p(value: float) -> str:
    return "-" if value is None or math.isnan(value) else "<0.001" if value < 0.001 else f"{value:.3f}"


def _hr_columns(table: pd.DataFrame, label: str) -> pd.DataFrame:
    return pd.DataFrame({
        f"{label} HR (95% CI)": [f"{r.hr:.2f} ({r.ci_low:.2f}-{r.ci_high:.2f})" for r in table.itertuples()],
        f"{label} p": [_p(p) for p in table["p"]],
    }, index=table["term"])


def cox_side_by_side(univariable: pd.DataFrame, multivariable: pd.DataFrame) -> pd.DataFrame:
    """Univariable and multivariable HRs per term in one frame (for printing)."""
    both = _hr_columns(univariable, "univariable").join(_hr_columns(multivariable, "multivariable"),
                                                        how="outer")
    order = [t for t in multivariable["term"] if t in both.index]
    order += [t for t in both.index if t not in order]
    return both.loc[order].fillna("-").reset_index(names="term")


def print_analysis(console: Console, result) -> None:
    """Print an `ml.analysis.AnalysisResult`: balance, survival, Cox, side by side, methods."""
    cfg, iptw = result.config, result.iptw
    trunc = f", truncated at percentiles {cfg.truncate}" if cfg.truncate else ""
    console.print(f"[bold]Propensity[/]: logistic on {', '.join(iptw.confounders)}; "
                  f"{cfg.estimand.upper()} weights, {'stabilized' if cfg.stabilized else 'unstabilized'}"
                  f"{trunc}", highlight=False)
    print_table_one(console, result.table_one_before, f"Table 1, unweighted ({result.n} patients)")
    print_table_one(console, result.table_one_after, "Table 1, IPTW-weighted (pseudo-population)")
    print_frame(console, iptw.diagnostics, title="Weights per group (ESS = Kish effective sample size)")
    bal = result.balance
    verdict = ("[green]balanced[/]" if bal["balanced"] else
               f"[yellow]not balanced[/]: {', '.join(bal['imbalanced_after'])}")
    console.print(f"Balance of the confounders (|SMD| < {bal['threshold']:g}): max |SMD| "
                  f"{bal['max_abs_smd_before']:.3f} before, {bal['max_abs_smd_after']:.3f} after; {verdict}",
                  highlight=False)
    med = result.medians
    shown = med.assign(**{"median (95% CI), months": [
        f"{_nr(r.median)} ({_nr(r.ci_low)} to {_nr(r.ci_high)})" for r in med.itertuples()
    ]})[["endpoint", "weighting", "group", "n", "events", "median (95% CI), months", "ci_method"]]
    print_frame(console, shown, title="Kaplan-Meier medians (NR = not reached)")
    lr = result.logrank.assign(p=[_p(p) for p in result.logrank["p"]])
    print_frame(console, lr, title="CIA vs CI: log-rank (unweighted) and robust score test (IPTW)")
    rows = []
    for ep in ("pfs", "os"):
        for label, d, se_key in (("crude", result.crude_cox[ep], "se_log_hr"),
                                 ("IPTW, robust SE", result.iptw_cox[ep], "se_log_hr_robust")):
            rows.append({"endpoint": ep, "model": label, "HR (95% CI)":
                         f"{d['hr']:.2f} ({d['ci_low']:.2f}-{d['ci_high']:.2f})",
                         "SE log-HR": f"{d[se_key]:.3f}", "p": _p(d["p"])})
        d = result.iptw_cox[ep]
        if "se_log_hr_bootstrap" in d:
            rows.append({"endpoint": ep, "model": f"IPTW, bootstrap SE ({result.bootstrap_replicates})",
                         "HR (95% CI)": f"{d['hr']:.2f} ({d['ci_low_bootstrap']:.2f}-"
                                        f"{d['ci_high_bootstrap']:.2f})",
                         "SE log-HR": f"{d['se_log_hr_bootstrap']:.3f}", "p": _p(d["p_bootstrap"])})
    print_frame(console, pd.DataFrame(rows), title="Cox model for treatment (CIA vs CI)")
    for ep, name in (("pfs", "PFS"), ("os", "OS")):
        print_frame(console, cox_side_by_side(result.cox_univariable[ep], result.cox_multivariable[ep]),
                    title=f"Cox models for {name} (Wald CI and p; multivariable on "
                          f"{int(result.cox_multivariable[ep]['n'].iloc[0])} complete cases)")
    flags = pd.concat(result.ph_tests.values(), ignore_index=True)
    flags = flags[flags["ph_violated"]]
    if len(flags):
        for r in flags.itertuples():
            console.print(f"[yellow]PH check ({r.model})[/]: {r.note}", highlight=False)
    else:
        console.print("PH check (Schoenfeld residuals): no term flagged", highlight=False)
    print_frame(console, result.side_by_side, title="Side by side with the published study")
    console.print("[bold]Methods[/]", highlight=False)
    for key, text in result.methods.items():
        console.print(f"  {key}: {text}", highlight=False)
    for message in result.warnings:
        console.print(f"[yellow]warning:[/] {message}", highlight=False)

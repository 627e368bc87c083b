"""Rich rendering of result frames for the terminal (results stay apart from display)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit, urlunsplit

import pandas as pd
from rich.console import Console, RenderableType
from rich.measure import Measurement
from rich.segment import Segments
from rich.table import Table

_WHOLE_CELL = re.compile(r"[-+<>=]?\s*\d[\d\s.,;:eE+\-<>=%()\[\]]*")
"""A number, or numbers with their interval ('0.691 [0.542, 0.840]', '1.20 (0.90-1.60)'): printed whole."""
_UNLIMITED = 10_000


def _fmt(value: object, digits: int = 2) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def _nr(value: float) -> str:
    """A survival median, or NR where the curve never drops to 0.5 (not reached)."""
    return "NR" if value is None or math.isnan(value) else f"{value:.2f}"


def redact_url(url: str) -> str:
    """A store or database URL with its password hidden, for printing: scheme://user:***@host/..."""
    if "://" not in url:
        return url
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user, host = parts.netloc.rsplit("@", 1)
    return urlunsplit(parts._replace(netloc=f"{user.split(':', 1)[0]}:***@{host}"))


def _min_width(header: str, cells: Sequence[str]) -> int:
    """The narrowest a column may get: numbers (and their intervals) stay on one line, words stay whole."""
    longest_word = max((len(word) for text in (header, *cells) for word in text.split()), default=1)
    if cells and all(_WHOLE_CELL.fullmatch(c) or c in ("-", "") for c in cells):
        return max(longest_word, *map(len, cells))
    return longest_word


def print_wide(console: Console, renderable: RenderableType) -> None:
    """Print at the console's width, or wider when the renderable cannot fit without breaking a word
    (rich would fold `intermediate` into `inte`/`rmed`/`iate`): a pipe or a file has no width."""
    needed = Measurement.get(console, console.options.update_width(_UNLIMITED), renderable).minimum
    if needed <= console.width:
        console.print(renderable)
        return
    lines = console.render_lines(renderable, console.options.update_width(needed), new_lines=True)
    console.print(Segments([segment for line in lines for segment in line]), crop=False, soft_wrap=True)


def print_frame(console: Console, df: pd.DataFrame, title: str | None = None,
                digits: int = 2) -> None:
    """Print any DataFrame as a rich table; numbers are never split across lines, words never broken."""
    # the title wraps at the table's width: the table is at least as wide as its longest word (a path)
    longest_title_word = max(map(len, (title or "").split()), default=0)
    table = Table(title=title, title_justify="left", min_width=longest_title_word)
    cells = [[_fmt(v, digits) for v in row] for row in df.itertuples(index=False)]
    for i, col in enumerate(df.columns):
        numeric = pd.api.types.is_numeric_dtype(df[col])
        table.add_column(str(col), justify="right" if numeric else "left",
                         min_width=_min_width(str(col), [row[i] for row in cells]))
    for row in cells:
        table.add_row(*row)
    print_wide(console, table)


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
    print_frame(console, shown, title="Kaplan-Meier medians (unweighted; 95% CI: exponential "
                "Greenwood; NR = not reached)")


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


def print_propensity(console: Console, confounders: Sequence[str], estimand: str, stabilized: bool,
                     truncate: Sequence[float] | None) -> None:
    """One line: the propensity model's confounders and the kind of weights."""
    trunc = f", truncated at percentiles {tuple(truncate)}" if truncate else ""
    console.print(f"[bold]Propensity[/]: logistic on {', '.join(confounders)}; "
                  f"{estimand.upper()} weights, {'stabilized' if stabilized else 'unstabilized'}"
                  f"{trunc}", highlight=False)


def print_balance(console: Console, balance: Mapping) -> None:
    """The largest |SMD| of the confounders before and after weighting, and the verdict."""
    verdict = ("[green]balanced[/]" if balance["balanced"] else
               f"[yellow]not balanced[/]: {', '.join(balance['imbalanced_after'])}")
    console.print(f"Balance of the confounders (|SMD| < {balance['threshold']:g}): max |SMD| "
                  f"{balance['max_abs_smd_before']:.3f} before, {balance['max_abs_smd_after']:.3f} after; "
                  f"{verdict}", highlight=False)


def print_survival(console: Console, medians: pd.DataFrame, logrank: pd.DataFrame) -> None:
    """KM medians (unweighted and weighted, with their CI method) and the two-group tests."""
    shown = medians.assign(**{"median (95% CI), months": [
        f"{_nr(r.median)} ({_nr(r.ci_low)} to {_nr(r.ci_high)})" for r in medians.itertuples()
    ]})[["endpoint", "weighting", "group", "n", "events", "median (95% CI), months", "ci_method"]]
    print_frame(console, shown, title="Kaplan-Meier medians (NR = not reached)")
    lr = logrank.assign(p=[_p(p) for p in logrank["p"]])
    print_frame(console, lr, title="CIA vs CI: log-rank (unweighted) and robust score test (IPTW)")


def _hr_text(d: Mapping, low: str = "ci_low", high: str = "ci_high") -> str:
    return f"{d['hr']:.2f} ({d[low]:.2f}-{d[high]:.2f})"


BOOTSTRAP_PERCENTILE = ("ci_low_bootstrap_percentile", "ci_high_bootstrap_percentile")


def _treatment_rows(endpoint: str, crude: Mapping, iptw: Mapping, replicates: int) -> list[dict]:
    primary = iptw.get("primary_ci", "robust")
    rows = [{"endpoint": endpoint, "model": "crude", "HR (95% CI)": _hr_text(crude),
             "SE log-HR": f"{crude['se_log_hr']:.3f}", "p": _p(crude["p"])},
            {"endpoint": endpoint, "model": "IPTW, robust SE" + (" (primary)" if primary == "robust" else ""),
             "HR (95% CI)": _hr_text(iptw, "ci_low_robust", "ci_high_robust"),
             "SE log-HR": f"{iptw['se_log_hr_robust']:.3f}", "p": _p(iptw["p_robust"])}]
    if "se_log_hr_bootstrap" in iptw:
        mark = " (primary)" if primary == "bootstrap_percentile" else ""
        rows.append({"endpoint": endpoint, "model": f"IPTW, bootstrap percentile ({replicates}){mark}",
                     "HR (95% CI)": _hr_text(iptw, *BOOTSTRAP_PERCENTILE),
                     "SE log-HR": f"{iptw['se_log_hr_bootstrap']:.3f}", "p": _p(iptw["p_bootstrap"])})
    return rows


def print_treatment_cox(console: Console, crude: Mapping[str, Mapping], iptw: Mapping[str, Mapping],
                        replicates: int) -> None:
    """Crude and IPTW hazard ratios for treatment per endpoint (robust and bootstrap SE)."""
    rows = []
    for endpoint in iptw:
        rows += _treatment_rows(endpoint, crude[endpoint], iptw[endpoint], replicates)
    print_frame(console, pd.DataFrame(rows), title="Cox model for treatment (CIA vs CI); IPTW: robust "
                "sandwich CI and bootstrap percentile CI (propensity re-fitted), the primary one marked")


def print_cox_tables(console: Console, univariable: Mapping[str, pd.DataFrame],
                     multivariable: Mapping[str, pd.DataFrame]) -> None:
    """Univariable next to multivariable HRs, one table per endpoint."""
    for endpoint, multi in multivariable.items():
        print_frame(console, cox_side_by_side(univariable[endpoint], multi),
                    title=f"Cox models for {endpoint.upper()} (Wald CI and p; multivariable on "
                          f"{int(multi['n'].iloc[0])} complete cases)")


def joint_tests_side_by_side(univariable: pd.DataFrame, multivariable: pd.DataFrame) -> pd.DataFrame:
    """Per covariate: the joint Wald and LR p, univariable next to multivariable (for printing);
    df is the multivariable model's (the univariable one's for a covariate not in it)."""
    def columns(table: pd.DataFrame, label: str) -> pd.DataFrame:
        return pd.DataFrame({f"{label} df": table["df"].to_numpy(),
                             f"{label} Wald p": [_p(p) for p in table["wald_p"]],
                             f"{label} LR p": [_p(p) for p in table["lr_p"]]}, index=table["covariate"])
    both = columns(univariable, "univariable").join(columns(multivariable, "multivariable"), how="outer")
    df = both.pop("multivariable df").fillna(both.pop("univariable df")).astype(int)
    both.insert(0, "df", df)
    order = [c for c in multivariable["covariate"] if c in both.index]
    order += [c for c in both.index if c not in order]
    return both.loc[order].fillna("-").reset_index(names="covariate")


def print_joint_tests(console: Console, univariable: Mapping[str, pd.DataFrame],
                      multivariable: Mapping[str, pd.DataFrame]) -> None:
    """The joint tests of each covariate (all its levels together), one table per endpoint."""
    for endpoint, multi in multivariable.items():
        print_frame(console, joint_tests_side_by_side(univariable[endpoint], multi),
                    title=f"Joint tests per covariate for {endpoint.upper()}, all its terms together "
                          "(type-III Wald and likelihood ratio, df = number of terms)")


def print_ph_flags(console: Console, ph_tests: pd.DataFrame) -> None:
    """The PH check's p per covariate and GLOBAL (one column per model), then the flagged
    covariates and models, each with its note; or that none is flagged."""
    rows = ph_tests[ph_tests["level"] != "term"]
    shown = rows.assign(cell=[f"{p:.3g} (chi2 {c:.2f}, df {d})"
                              for p, c, d in zip(rows["p"], rows["chisq"], rows["df"], strict=True)])
    wide = shown.pivot_table(index="term", columns="model", values="cell", aggfunc="first", sort=False)
    wide = wide.loc[[t for t in wide.index if t != "GLOBAL"] + ["GLOBAL"]].fillna("")
    transforms = ", ".join(dict.fromkeys(ph_tests["transform"]))
    print_frame(console, wide.reset_index(), title=f"PH check: p of R's cox.zph score test per "
                f"covariate and GLOBAL (time transform {transforms})")
    flags = ph_tests[ph_tests["ph_violated"] & (ph_tests["note"] != "")]
    for r in flags.itertuples():
        console.print(f"[yellow]PH check ({r.model})[/]: {r.note}", highlight=False)
    if not len(flags):
        console.print("PH check (cox.zph): no covariate and no model flagged", highlight=False)


def print_methods(console: Console, methods: Mapping[str, str], warnings: Sequence[str]) -> None:
    """How each number was computed, then the warnings collected on the way."""
    console.print("[bold]Methods[/]", highlight=False)
    for key, text in methods.items():
        console.print(f"  {key}: {text}", highlight=False)
    for message in warnings:
        console.print(f"[yellow]warning:[/] {message}", highlight=False)

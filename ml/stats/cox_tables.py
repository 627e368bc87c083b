"""Cox tables of a cohort: univariable and multivariable hazard ratios with the PH check.

Numbers are HR per unit, categories are `name=level` indicators against the first
(reference) level. Each model is fitted on its complete cases by the project's Cox
engine (`ml.stats.cox.fit_cox`, Efron ties) with Wald CIs and p from the model-based SE.
"""

from __future__ import annotations

import warnings

import pandas as pd

from features import schema
from features.contract import split_term, term
from ml.stats.balance import covariate_levels
from ml.stats.cox import CoxFit, fit_cox
from ml.stats.errors import CausalInputError
from ml.stats.ph import ph_test

ENDPOINT_NAMES = {"pfs": "PFS", "os": "OS"}


def cox_design(df: pd.DataFrame, covariates: list[str], treatment: bool = False) -> pd.DataFrame:
    """Numeric Cox design: numbers as they are (HR per unit), categories as `name=level`
    indicators against the first (reference) level, ECOG as a category."""
    cols = {}
    if treatment:
        cols[term(schema.TREATMENT, schema.TREATED)] = (
            df[schema.TREATMENT] == schema.TREATED).astype(float)
    for cov in covariates:
        levels = covariate_levels(cov, df[cov])
        if levels is None:
            cols[cov] = df[cov].astype(float)
            continue
        missing = df[cov].isna()
        for level in levels[1:]:
            cols[term(cov, level)] = (df[cov] == level).astype(float).mask(missing)
    return pd.DataFrame(cols, index=df.index)


def fit_complete_cases(design: pd.DataFrame, df: pd.DataFrame, endpoint: str) -> CoxFit | None:
    """Cox fit of `endpoint` on the complete cases of `design`; None if no term is left.

    Terms constant in the cohort are left out with a warning (they carry no information).
    """
    tcol, ecol = schema.ENDPOINTS[endpoint]
    name = ENDPOINT_NAMES[endpoint]
    constant = [c for c in design.columns if design[c].nunique(dropna=True) < 2]
    if constant:
        warnings.warn(f"{name} Cox: term(s) {', '.join(constant)} constant in this cohort, left out",
                      stacklevel=3)
    data = design.drop(columns=constant).assign(_time=df[tcol], _event=df[ecol]).dropna()
    if data.shape[1] <= 2:
        return None
    try:
        return fit_cox(data["_time"], data["_event"], data.drop(columns=["_time", "_event"]))
    except CausalInputError as exc:
        raise CausalInputError(f"{name} Cox with {', '.join(design.columns)}: {exc}") from None


def hazard_ratio_table(fit: CoxFit, alpha: float = 0.05) -> pd.DataFrame:
    """Per term: covariate, HR, Wald 1-alpha CI, p (model-based SE) and the patients used."""
    t = fit.table(robust=False, alpha=alpha)
    return pd.DataFrame({
        "term": t["term"], "covariate": [split_term(name)[0] for name in t["term"]],
        "hr": t["hr"], "ci_low": t["ci_low"], "ci_high": t["ci_high"], "p": t["p"], "n": fit.n,
    })


def cox_univariable(df: pd.DataFrame, covariates: list[str], endpoint: str, alpha: float = 0.05
                    ) -> pd.DataFrame:
    """Each covariate (and treatment) alone: HR, CI, p per term."""
    tables = []
    for cov in [schema.TREATMENT, *covariates]:
        design = (cox_design(df, [], treatment=True) if cov == schema.TREATMENT
                  else cox_design(df, [cov]))
        fit = fit_complete_cases(design, df, endpoint)
        if fit is not None:
            tables.append(hazard_ratio_table(fit, alpha))
    return pd.concat(tables, ignore_index=True)


def cox_multivariable(df: pd.DataFrame, covariates: list[str], endpoint: str, alpha: float = 0.05,
                      ph_transform: str = "km") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Treatment + covariates in one model: the HR table and the PH check (R's cox.zph:
    per term, per covariate and GLOBAL, time transformed by `ph_transform`)."""
    fit = fit_complete_cases(cox_design(df, covariates, treatment=True), df, endpoint)
    model = f"multivariable {ENDPOINT_NAMES[endpoint]}"
    return hazard_ratio_table(fit, alpha), ph_test(fit, alpha, model=model, transform=ph_transform)


def prognostic_factors(multivariable: pd.DataFrame, alpha: float) -> list[str]:
    """Covariates with at least one term significant (Wald p < alpha) in the multivariable Cox."""
    hits = multivariable[multivariable["p"] < alpha]
    return list(dict.fromkeys(hits["covariate"]))

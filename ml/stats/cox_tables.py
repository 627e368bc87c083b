"""Cox tables of a cohort: univariable and multivariable hazard ratios with the PH check.

Numbers are HR per unit, categories are `name=level` indicators against the first
(reference) level. Each model is fitted on its complete cases by the project's Cox
engine (`ml.stats.cox.fit_cox`, Efron ties) with Wald CIs and p from the model-based SE.

Per covariate, the joint tests of all its terms together (`joint_tests`): the type-III
Wald chi-square b_S' V_SS^-1 b_S (R's `car::Anova(fit, type = "III", test.statistic =
"Wald")`) and the likelihood-ratio test of the model without the covariate's terms, re-fitted
on the same complete cases (R's `drop1(fit, test = "Chisq")`), both on df = number of terms.
A multi-level factor is judged on these, never on one of its levels.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pandas as pd
from scipy import stats

from features import schema
from features.contract import split_term, term
from ml.stats import coxph
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


def _univariable_fits(df: pd.DataFrame, covariates: list[str], endpoint: str):
    """Treatment and each covariate alone, fitted on their complete cases (None left out)."""
    for cov in [schema.TREATMENT, *covariates]:
        design = (cox_design(df, [], treatment=True) if cov == schema.TREATMENT
                  else cox_design(df, [cov]))
        fit = fit_complete_cases(design, df, endpoint)
        if fit is not None:
            yield fit


def cox_univariable(df: pd.DataFrame, covariates: list[str], endpoint: str, alpha: float = 0.05
                    ) -> pd.DataFrame:
    """Each covariate (and treatment) alone: HR, CI, p per term."""
    return pd.concat([hazard_ratio_table(fit, alpha) for fit in _univariable_fits(df, covariates, endpoint)],
                     ignore_index=True)


def cox_multivariable(df: pd.DataFrame, covariates: list[str], endpoint: str, alpha: float = 0.05,
                      ph_transform: str = "km") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Treatment + covariates in one model: the HR table and the PH check (R's cox.zph:
    per term, per covariate and GLOBAL, time transformed by `ph_transform`)."""
    fit = fit_complete_cases(cox_design(df, covariates, treatment=True), df, endpoint)
    model = f"multivariable {ENDPOINT_NAMES[endpoint]}"
    return hazard_ratio_table(fit, alpha), ph_test(fit, alpha, model=model, transform=ph_transform)


def _reduced_loglik(fit: CoxFit, drop: np.ndarray) -> float:
    """log PL at the MLE of `fit`'s model without the columns `drop`, on the same rows and ties.

    Without any column left it is the log PL at beta = 0; NaN if the reduced model has no
    finite maximum (then the likelihood-ratio test is not defined).
    """
    keep = np.setdiff1d(np.arange(len(fit.names)), drop)
    if not len(keep):
        return coxph.evaluate(fit.risk_sets, np.zeros(len(fit.names)), hessian=False).loglik
    reduced = dataclasses.replace(fit.risk_sets, x=fit.risk_sets.x[:, keep])
    result = coxph.newton_raphson(reduced, tol=1e-10)
    return result.fit.loglik if result.status == "converged" else np.nan


def joint_tests(fit: CoxFit) -> pd.DataFrame:
    """Per covariate (all its `name=level` terms together): type-III Wald and likelihood-ratio tests.

    Wald: b_S' V_SS^-1 b_S with V the model-based covariance; LR: twice the log PL of `fit`
    minus that of the model without the covariate's terms on the same complete cases; both
    chi-square on df = |S|. A numeric or binary covariate's Wald test is its own term's.
    For unweighted fits (the Cox tables): under weights neither V nor the LR is valid.
    """
    if np.any(fit.risk_sets.w != 1):
        raise ValueError("joint tests need an unweighted Cox fit (model-based variance and likelihood "
                         "ratio); a weighted fit needs its robust variance")
    covariate = np.array([split_term(name)[0] for name in fit.names])
    rows = []
    for cov in dict.fromkeys(covariate):
        idx = np.flatnonzero(covariate == cov)
        b = fit.coef[idx]
        wald = float(b @ np.linalg.solve(fit.covariance_model[np.ix_(idx, idx)], b))
        lr = max(2.0 * (fit.loglik - _reduced_loglik(fit, idx)), 0.0)
        rows.append({"covariate": cov, "df": len(idx), "wald_chisq": wald,
                     "wald_p": float(stats.chi2.sf(wald, len(idx))), "lr_chisq": lr,
                     "lr_p": float(stats.chi2.sf(lr, len(idx))), "n": fit.n})
    return pd.DataFrame(rows)


def joint_tests_univariable(df: pd.DataFrame, covariates: list[str], endpoint: str) -> pd.DataFrame:
    """The joint tests of treatment and of each covariate in its own univariable Cox model."""
    return pd.concat([joint_tests(fit) for fit in _univariable_fits(df, covariates, endpoint)],
                     ignore_index=True)


def joint_tests_multivariable(df: pd.DataFrame, covariates: list[str], endpoint: str) -> pd.DataFrame:
    """The joint tests of treatment and of each covariate in the multivariable Cox model."""
    return joint_tests(fit_complete_cases(cox_design(df, covariates, treatment=True), df, endpoint))


def prognostic_factors(joint: pd.DataFrame, alpha: float) -> list[str]:
    """Covariates whose joint Wald test (all their terms together) has p < alpha in the
    multivariable Cox (`joint_tests_multivariable`), in model order. Treatment is the exposure
    the model adjusts for, not a prognostic factor, and is left out."""
    hits = joint[(joint["wald_p"] < alpha) & (joint["covariate"] != schema.TREATMENT)]
    return hits["covariate"].tolist()

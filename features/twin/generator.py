"""Draw a twin cohort: covariates, treatment, latent times, censoring, and the two tables.

The process, in order (the order is part of the random-number stream: changing it changes
every cohort for a given seed, so bump the config version if you do):
  covariates  -> smoking depends on sex, histology on smoking, pfs1 on prior response
  treatment   -> logistic propensity (confounded: squamous, ECOG 2, responders, brain mets)
  PFS         -> Weibull proportional hazards, log-HRs from the config
  OS          -> PFS + post-progression survival (its own Weibull PH), so OS >= PFS
  censoring   -> uniform staggered entry, fixed data cut-off, exponential loss to
                 follow-up; one censoring time per patient for both endpoints

Potential outcomes under CIA and CI share their random numbers (common random
numbers), so they form a proper counterfactual pair.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.contract import (
    BY_NAME,
    COLUMNS,
    COVARIATES,
    ID,
    OS_EVENT,
    OS_TIME,
    PFS_EVENT,
    PFS_TIME,
    TREATMENT,
)
from features.twin.config import (
    CensoringConfig,
    CovariateConfig,
    PropensityConfig,
    TwinConfig,
    WeibullPHConfig,
    load_config,
)
from features.twin.labels import COVARIATE_TERMS, DRAW_ORDER, TREATMENT_TERM

DATA_COLUMNS: tuple[str, ...] = COLUMNS
"""The observed table: the cohort contract's columns, in its order."""
TRUTH_COLUMNS: tuple[str, ...] = (
    "id", "true_lp_pfs", "true_lp_pfs_cia", "true_lp_pfs_ci", "true_propensity",
    "pfs_time_cia", "pfs_time_ci", "os_time_cia", "os_time_ci", "censor_time",
)
TIME_DECIMALS = 2
MIN_TIME = 10.0**-TIME_DECIMALS  # rounding must never produce a zero time

Covariates = dict[str, np.ndarray]
"""Drawn covariates by contract column: numbers as floats, a categorical column as integer
codes into its `DRAW_ORDER` (booleans for two levels)."""


@dataclass(frozen=True)
class TwinCohort:
    """A drawn cohort: the observed table, the per-patient truth, and how it was drawn."""

    data: pd.DataFrame
    truth: pd.DataFrame
    config: TwinConfig
    seed: int


def generate(
    n: int | None = None, seed: int | None = None, config: TwinConfig | None = None
) -> TwinCohort:
    """Draw `n` patients (default: config.default_n) with `seed` (default: config.default_seed)."""
    config = config if config is not None else load_config()
    n = config.default_n if n is None else int(n)
    seed = config.default_seed if seed is None else int(seed)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    rng = np.random.default_rng(seed)
    cov = draw_covariates(n, config.covariates, rng)
    design = design_matrix(cov)
    propensity = propensity_score(design, config.propensity)
    cia = rng.random(n) < propensity
    latent = draw_latent_times(design, config, rng)
    censor = draw_censoring(n, config.censoring, rng)
    ids = _patient_ids(n)
    data = _observed_table(ids, cov, cia, latent, censor)
    truth = _truth_table(ids, design, config, cia, propensity, latent, censor)
    return TwinCohort(data=data, truth=truth, config=config, seed=seed)


def draw_covariates(n: int, cfg: CovariateConfig, rng: np.random.Generator) -> Covariates:
    """Baseline covariates by contract column (see `Covariates`), drawn in a fixed order."""
    age = np.clip(rng.normal(cfg.age_mean, cfg.age_sd, n), cfg.age_min, cfg.age_max).round(1)
    male = rng.random(n) < cfg.p_male
    ever = rng.random(n) < np.where(male, cfg.p_ever_smoker_male, cfg.p_ever_smoker_female)
    ecog = _categorical(rng, n, [cfg.ecog[k] for k in DRAW_ORDER["ecog"]])
    histology = _draw_histology(rng, ever, cfg)
    pdl1 = _categorical(rng, n, [cfg.pdl1[k] for k in DRAW_ORDER["pdl1"]])
    response_levels = DRAW_ORDER["prior_response"]
    response = _categorical(rng, n, [cfg.prior_response[k] for k in response_levels])
    medians = np.array([cfg.pfs1_median_months[k] for k in response_levels])
    pfs1 = np.maximum(
        np.exp(np.log(medians[response]) + cfg.pfs1_log_sd * rng.standard_normal(n)), MIN_TIME
    ).round(TIME_DECIMALS)
    cov = {"age": age, "sex": male, "smoking": ever, "ecog": ecog, "histology": histology,
           "pdl1": pdl1, "prior_response": response, "pfs1_months": pfs1}
    # one draw after the other, in this order
    cov["brain_mets"] = rng.random(n) < cfg.p_brain_mets
    cov["liver_mets"] = rng.random(n) < cfg.p_liver_mets
    cov["bone_mets"] = rng.random(n) < cfg.p_bone_mets
    cov["ici_switch"] = rng.random(n) < cfg.p_ici_switch
    return cov


def _categorical(rng: np.random.Generator, n: int, probs: list[float]) -> np.ndarray:
    """Integer codes 0..k-1 drawn with `probs` (inverse-CDF on one uniform each)."""
    cdf = np.cumsum(probs)
    return np.minimum(np.searchsorted(cdf / cdf[-1], rng.random(n), side="right"), len(probs) - 1)


def _draw_histology(rng: np.random.Generator, ever: np.ndarray, cfg: CovariateConfig) -> np.ndarray:
    """Codes into DRAW_ORDER["histology"]: 0 adenocarcinoma, 1 squamous, 2 other; squamous is
    mostly a smokers' tumour."""
    u = rng.random(ever.size)
    p_squamous = np.where(ever, cfg.p_squamous_ever_smoker, cfg.p_squamous_never_smoker)
    codes = np.where(u < p_squamous, 1, 0)
    return np.where(u >= 1.0 - cfg.p_other_histology, 2, codes)


def design_matrix(cov: Covariates) -> np.ndarray:
    """(n, len(COVARIATE_TERMS)) matrix of the covariate design terms, in that order.

    Built like `contract.design_terms`: a number as is, a categorical column as one indicator
    per non-reference level of the contract.
    """
    columns = []
    for name in COVARIATES:
        column = BY_NAME[name]
        if not column.categorical:
            columns.append(cov[name])
            continue
        codes = DRAW_ORDER[name]
        columns += [cov[name] == codes.index(level) for level in column.level_names()[1:]]
    return np.column_stack(columns).astype(np.float64)


def _coefficients(mapping: dict[str, float]) -> np.ndarray:
    return np.array([mapping[term] for term in COVARIATE_TERMS])


def propensity_score(design: np.ndarray, cfg: PropensityConfig) -> np.ndarray:
    """True P(CIA | covariates) from the logistic model."""
    logit = cfg.intercept + design @ _coefficients(cfg.log_odds_ratios)
    return 1.0 / (1.0 + np.exp(-logit))


def covariate_lp(design: np.ndarray, cfg: WeibullPHConfig) -> np.ndarray:
    """Log-hazard linear predictor without the treatment term (i.e. under CI)."""
    return design @ _coefficients(cfg.log_hazard_ratios)


def weibull_time(scale: float, shape: float, lp: np.ndarray, exp1: np.ndarray) -> np.ndarray:
    """Invert H(t) = (t/scale)^shape * exp(lp) at a unit-exponential draw."""
    return scale * (exp1 * np.exp(-lp)) ** (1.0 / shape)


def draw_latent_times(
    design: np.ndarray, config: TwinConfig, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Uncensored potential PFS and OS times under CIA and CI (common random numbers)."""
    n = design.shape[0]
    e_pfs, e_pps = rng.standard_exponential(n), rng.standard_exponential(n)
    pfs, pps = config.pfs, config.pps
    lp_pfs, lp_pps = covariate_lp(design, pfs), covariate_lp(design, pps)
    times = {}
    for arm, on_cia in (("cia", 1.0), ("ci", 0.0)):
        pfs_time = weibull_time(pfs.scale, pfs.shape,
                                lp_pfs + on_cia * pfs.log_hazard_ratios[TREATMENT_TERM], e_pfs)
        pps_time = weibull_time(pps.scale, pps.shape,
                                lp_pps + on_cia * pps.log_hazard_ratios[TREATMENT_TERM], e_pps)
        times[f"pfs_time_{arm}"] = pfs_time
        times[f"os_time_{arm}"] = pfs_time + pps_time
    return times


def draw_censoring(n: int, cfg: CensoringConfig, rng: np.random.Generator) -> np.ndarray:
    """Months from start of rechallenge to censoring: cut-off minus entry, or loss to follow-up."""
    entry = rng.uniform(0.0, cfg.accrual_months, n)
    administrative = cfg.cutoff_months - entry
    if cfg.loss_rate_per_month <= 0:
        return administrative
    lost = rng.exponential(1.0 / cfg.loss_rate_per_month, n)
    return np.minimum(administrative, lost)


# ------------------------------------------------------------------------- tables


def _patient_ids(n: int) -> np.ndarray:
    numbers = np.arange(1, n + 1).astype(str)
    return np.char.add("P", np.char.zfill(numbers, len(str(n)))).astype(object)


def _labels(levels: tuple[str, ...], codes: np.ndarray) -> np.ndarray:
    """Map integer codes to plain Python str labels (object dtype, shared str objects)."""
    return np.array(levels, dtype=object)[codes.astype(np.intp)]


def _observed_column(name: str, values: np.ndarray) -> np.ndarray:
    """A drawn covariate as the cohort table holds it: labels, integer scores or numbers."""
    kind = BY_NAME[name].kind
    if kind == "category":
        return _labels(DRAW_ORDER[name], values)
    if kind == "ordinal":
        scores = np.array([int(level) for level in DRAW_ORDER[name]], dtype=np.int64)
        return scores[values]
    return values


def _observe(latent: np.ndarray, censor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    event = latent <= censor
    time = np.maximum(np.where(event, latent, censor), MIN_TIME).round(TIME_DECIMALS)
    return time, event.astype(np.int64)


def _observed_table(ids, cov, cia, latent, censor) -> pd.DataFrame:
    pfs_latent = np.where(cia, latent["pfs_time_cia"], latent["pfs_time_ci"])
    os_latent = np.where(cia, latent["os_time_cia"], latent["os_time_ci"])
    pfs_months, pfs_event = _observe(pfs_latent, censor)
    os_months, os_event = _observe(os_latent, censor)
    columns = {
        ID: ids,
        **{name: _observed_column(name, cov[name]) for name in COVARIATES},
        TREATMENT: _labels(DRAW_ORDER[TREATMENT], cia),
        PFS_TIME: pfs_months,
        PFS_EVENT: pfs_event,
        # rounding keeps the order (both are rounded the same way), so os >= pfs holds
        OS_TIME: np.maximum(os_months, pfs_months),
        OS_EVENT: os_event,
    }
    return pd.DataFrame(columns, columns=list(DATA_COLUMNS))


def _truth_table(ids, design, config, cia, propensity, latent, censor) -> pd.DataFrame:
    lp_ci = covariate_lp(design, config.pfs)
    lp_cia = lp_ci + config.pfs.log_hazard_ratios[TREATMENT_TERM]
    columns = {
        ID: ids,
        "true_lp_pfs": np.where(cia, lp_cia, lp_ci),
        "true_lp_pfs_cia": lp_cia,
        "true_lp_pfs_ci": lp_ci,
        "true_propensity": propensity,
        **latent,
        "censor_time": censor,
    }
    return pd.DataFrame(columns, columns=list(TRUTH_COLUMNS))

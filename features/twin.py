"""Digital-twin cohort generator: a synthetic rechallenge cohort with known truth.

The real patient rows of the study are private, so this module draws a cohort
with the same structure (see shared/COHORT.md) from a fully specified
data-generating process, and returns the ground truth with it: the true PFS
linear predictor, the true propensity of CIA and the latent potential event
times under both regimens. Every number of the process lives in a versioned
YAML file (experiments/cohorts/default.yaml), calibrated so that the
large-sample Kaplan-Meier medians match the published table.

The process, in order:
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

import dataclasses
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from experiments import default_path
from features.contract import TREATED, TREATMENT, design_terms, term

DEFAULT_CONFIG_PATH = default_path("cohorts/default.yaml")

TREATMENT_TERM = term(TREATMENT, TREATED)
COVARIATE_TERMS: tuple[str, ...] = design_terms()
"""Design terms from the contract (treatment coding against the reference level; age in years,
pfs1 in months), in the contract's column order."""

HAZARD_TERMS: tuple[str, ...] = (TREATMENT_TERM, *COVARIATE_TERMS)
NOISE_FEATURES: tuple[str, ...] = ("age", "sex", "histology", "bone_mets", "ici_switch")
"""Columns with no true effect on PFS; a good explanation ranks them low."""

ECOG_LEVELS = ("0", "1", "2")
PDL1_LEVELS = ("<1%", "1-49%", ">=50%", "unknown")
RESPONSE_LEVELS = ("CR/PR", "SD", "PD")
HISTOLOGY_LEVELS = ("adenocarcinoma", "squamous", "other")

DATA_COLUMNS: tuple[str, ...] = (
    "id", "age", "sex", "smoking", "ecog", "histology", "pdl1", "prior_response",
    "pfs1_months", "brain_mets", "liver_mets", "bone_mets", "ici_switch",
    "treatment", "pfs_months", "pfs_event", "os_months", "os_event",
)
TRUTH_COLUMNS: tuple[str, ...] = (
    "id", "true_lp_pfs", "true_lp_pfs_cia", "true_lp_pfs_ci", "true_propensity",
    "pfs_time_cia", "pfs_time_ci", "os_time_cia", "os_time_ci", "censor_time",
)
TIME_DECIMALS = 2
MIN_TIME = 10.0**-TIME_DECIMALS  # rounding must never produce a zero time


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class CovariateConfig:
    """Marginals and dependencies of the baseline covariates."""

    age_mean: float
    age_sd: float
    age_min: float
    age_max: float
    p_male: float
    p_ever_smoker_male: float
    p_ever_smoker_female: float
    ecog: dict[str, float]
    p_squamous_ever_smoker: float
    p_squamous_never_smoker: float
    p_other_histology: float
    pdl1: dict[str, float]
    prior_response: dict[str, float]
    pfs1_median_months: dict[str, float]
    pfs1_log_sd: float
    p_brain_mets: float
    p_liver_mets: float
    p_bone_mets: float
    p_ici_switch: float


@dataclass(frozen=True)
class PropensityConfig:
    """Logistic model of P(CIA | covariates); coefficients are log odds ratios."""

    intercept: float
    log_odds_ratios: dict[str, float]


@dataclass(frozen=True)
class WeibullPHConfig:
    """Weibull proportional hazards: H(t | x) = (t / scale) ** shape * exp(x @ log_hazard_ratios)."""

    shape: float
    scale: float
    log_hazard_ratios: dict[str, float]


@dataclass(frozen=True)
class CensoringConfig:
    """Staggered entry, administrative cut-off and random loss to follow-up."""

    accrual_months: float
    cutoff_months: float
    loss_rate_per_month: float


@dataclass(frozen=True)
class TwinConfig:
    """Every number of the data-generating process (one YAML file)."""

    version: str
    default_seed: int
    default_n: int
    covariates: CovariateConfig
    propensity: PropensityConfig
    pfs: WeibullPHConfig
    pps: WeibullPHConfig
    censoring: CensoringConfig


_LEVEL_MAPS = {
    "ecog": ECOG_LEVELS,
    "pdl1": PDL1_LEVELS,
    "prior_response": RESPONSE_LEVELS,
    "pfs1_median_months": RESPONSE_LEVELS,
}
"""Allowed keys of the dict-valued covariate fields."""


def load_config(path: str | Path | None = None) -> TwinConfig:
    """Read a twin YAML into a typed, checked `TwinConfig`.

    Unknown or missing keys raise ValueError naming the key, so a typo fails
    here rather than silently falling back to a default.
    """
    path = Path(path) if path is not None else DEFAULT_CONFIG_PATH
    raw = yaml.safe_load(path.read_text())
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a YAML mapping at the top level")
    config = _build(TwinConfig, raw, where=str(path))
    _check_config(config, where=str(path))
    return config


def _build(cls: type, raw: Any, where: str) -> Any:
    """Recursively build dataclass `cls` from a dict, refusing unknown/missing keys."""
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: expected a mapping for {cls.__name__}, got {raw!r}")
    names = [f.name for f in dataclasses.fields(cls)]
    _check_keys(raw, tuple(names), where)
    hints = typing.get_type_hints(cls)
    values = {name: _convert(hints[name], raw[name], f"{where}: {name}") for name in names}
    return cls(**values)


def _convert(hint: Any, value: Any, where: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where)
    if typing.get_origin(hint) is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected a mapping, got {value!r}")
        return {str(k): _number(v, f"{where}.{k}") for k, v in value.items()}
    if hint is str:
        return str(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where}: expected an integer, got {value!r}")
        return value
    return _number(value, where)


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{where}: expected a number, got {value!r}")
    return float(value)


def _check_config(config: TwinConfig, where: str) -> None:
    cov = config.covariates
    for name, levels in _LEVEL_MAPS.items():
        _check_keys(getattr(cov, name), levels, f"{where}: covariates.{name}")
        if name != "pfs1_median_months" and not np.isclose(sum(getattr(cov, name).values()), 1):
            raise ValueError(f"{where}: covariates.{name} probabilities must sum to 1")
    _check_keys(config.propensity.log_odds_ratios, COVARIATE_TERMS,
                f"{where}: propensity.log_odds_ratios")
    for section in ("pfs", "pps"):
        _check_keys(getattr(config, section).log_hazard_ratios, HAZARD_TERMS,
                    f"{where}: {section}.log_hazard_ratios")
    if config.default_n < 1:
        raise ValueError(f"{where}: default_n must be >= 1")


def _check_keys(mapping: dict[str, float], allowed: tuple[str, ...], where: str) -> None:
    unknown = [k for k in mapping if k not in allowed]
    if unknown:
        raise ValueError(f"{where}: unknown key '{unknown[0]}' (allowed: {', '.join(allowed)})")
    missing = [k for k in allowed if k not in mapping]
    if missing:
        raise ValueError(f"{where}: missing key '{missing[0]}'")


def true_log_hazard_ratios(config: TwinConfig | None = None) -> dict[str, float]:
    """True PFS log hazard ratios by design term (reference = first level of each column).

    Noise features (see `NOISE_FEATURES`) appear with 0.0. `pfs1_months` also has
    no direct effect, but it is correlated with prior response, so a model may
    still pick it up as a proxy.
    """
    config = config if config is not None else load_config()
    return dict(config.pfs.log_hazard_ratios)


# ----------------------------------------------------------------------- generator


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
    # Fixed draw order: covariates, treatment, outcomes, censoring. Changing it
    # changes every cohort for a given seed, so bump the config version if you do.
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


def draw_covariates(n: int, cfg: CovariateConfig, rng: np.random.Generator) -> dict[str, Any]:
    """Baseline covariates as numpy arrays (categoricals as integer level codes)."""
    age = np.clip(rng.normal(cfg.age_mean, cfg.age_sd, n), cfg.age_min, cfg.age_max).round(1)
    male = rng.random(n) < cfg.p_male
    ever = rng.random(n) < np.where(male, cfg.p_ever_smoker_male, cfg.p_ever_smoker_female)
    ecog = _categorical(rng, n, [cfg.ecog[k] for k in ECOG_LEVELS])
    histology = _draw_histology(rng, ever, cfg)
    pdl1 = _categorical(rng, n, [cfg.pdl1[k] for k in PDL1_LEVELS])
    response = _categorical(rng, n, [cfg.prior_response[k] for k in RESPONSE_LEVELS])
    medians = np.array([cfg.pfs1_median_months[k] for k in RESPONSE_LEVELS])
    pfs1 = np.maximum(
        np.exp(np.log(medians[response]) + cfg.pfs1_log_sd * rng.standard_normal(n)), MIN_TIME
    ).round(TIME_DECIMALS)
    return {
        "age": age, "male": male, "ever": ever, "ecog": ecog, "histology": histology,
        "pdl1": pdl1, "response": response, "pfs1": pfs1,
        "brain": rng.random(n) < cfg.p_brain_mets,
        "liver": rng.random(n) < cfg.p_liver_mets,
        "bone": rng.random(n) < cfg.p_bone_mets,
        "switch": rng.random(n) < cfg.p_ici_switch,
    }


def _categorical(rng: np.random.Generator, n: int, probs: list[float]) -> np.ndarray:
    """Integer codes 0..k-1 drawn with `probs` (inverse-CDF on one uniform each)."""
    cdf = np.cumsum(probs)
    return np.minimum(np.searchsorted(cdf / cdf[-1], rng.random(n), side="right"), len(probs) - 1)


def _draw_histology(rng: np.random.Generator, ever: np.ndarray, cfg: CovariateConfig) -> np.ndarray:
    """0 adenocarcinoma, 1 squamous, 2 other; squamous is mostly a smokers' tumour."""
    u = rng.random(ever.size)
    p_squamous = np.where(ever, cfg.p_squamous_ever_smoker, cfg.p_squamous_never_smoker)
    codes = np.where(u < p_squamous, 1, 0)
    return np.where(u >= 1.0 - cfg.p_other_histology, 2, codes)


def design_matrix(cov: dict[str, Any]) -> np.ndarray:
    """(n, len(COVARIATE_TERMS)) matrix of the covariate design terms, in that order."""
    columns = [
        cov["age"],
        cov["male"],
        cov["ever"],
        cov["ecog"] == 1,
        cov["ecog"] == 2,
        cov["histology"] == 1,
        cov["histology"] == 2,
        cov["pdl1"] == 1,
        cov["pdl1"] == 2,
        cov["pdl1"] == 3,
        cov["response"] == 0,
        cov["response"] == 2,
        cov["pfs1"],
        cov["brain"],
        cov["liver"],
        cov["bone"],
        cov["switch"],
    ]
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


def _observe(latent: np.ndarray, censor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    event = latent <= censor
    time = np.maximum(np.where(event, latent, censor), MIN_TIME).round(TIME_DECIMALS)
    return time, event.astype(np.int64)


def _observed_table(ids, cov, cia, latent, censor) -> pd.DataFrame:
    pfs_latent = np.where(cia, latent["pfs_time_cia"], latent["pfs_time_ci"])
    os_latent = np.where(cia, latent["os_time_cia"], latent["os_time_ci"])
    pfs_months, pfs_event = _observe(pfs_latent, censor)
    os_months, os_event = _observe(os_latent, censor)
    yes_no = ("no", "yes")
    columns = {
        "id": ids,
        "age": cov["age"],
        "sex": _labels(("female", "male"), cov["male"]),
        "smoking": _labels(("never", "ever"), cov["ever"]),
        "ecog": cov["ecog"].astype(np.int64),
        "histology": _labels(HISTOLOGY_LEVELS, cov["histology"]),
        "pdl1": _labels(PDL1_LEVELS, cov["pdl1"]),
        "prior_response": _labels(RESPONSE_LEVELS, cov["response"]),
        "pfs1_months": cov["pfs1"],
        "brain_mets": _labels(yes_no, cov["brain"]),
        "liver_mets": _labels(yes_no, cov["liver"]),
        "bone_mets": _labels(yes_no, cov["bone"]),
        "ici_switch": _labels(yes_no, cov["switch"]),
        "treatment": _labels(("CI", "CIA"), cia),
        "pfs_months": pfs_months,
        "pfs_event": pfs_event,
        # rounding keeps the order (both are rounded the same way), so os >= pfs holds
        "os_months": np.maximum(os_months, pfs_months),
        "os_event": os_event,
    }
    return pd.DataFrame(columns, columns=list(DATA_COLUMNS))


def _truth_table(ids, design, config, cia, propensity, latent, censor) -> pd.DataFrame:
    lp_ci = covariate_lp(design, config.pfs)
    lp_cia = lp_ci + config.pfs.log_hazard_ratios[TREATMENT_TERM]
    columns = {
        "id": ids,
        "true_lp_pfs": np.where(cia, lp_cia, lp_ci),
        "true_lp_pfs_cia": lp_cia,
        "true_lp_pfs_ci": lp_ci,
        "true_propensity": propensity,
        **latent,
        "censor_time": censor,
    }
    return pd.DataFrame(columns, columns=list(TRUTH_COLUMNS))


__all__ = [
    "TwinConfig", "TwinCohort", "load_config", "generate", "true_log_hazard_ratios",
    "NOISE_FEATURES", "HAZARD_TERMS", "COVARIATE_TERMS", "DEFAULT_CONFIG_PATH",
    "PUBLISHED_TARGETS", "calibration_summary", "km_median",
]


# ------------------------------------------------------------------ calibration view

PUBLISHED_TARGETS: dict[str, float] = {
    "pfs_median_all": 7.10,
    "os_median_all": 19.47,
    "pfs_median_cia": 11.49,
    "pfs_median_ci": 6.06,
    "pfs_median_cia_iptw": 11.49,
    "pfs_median_ci_iptw": 6.89,
    "p_cia": 45 / 101,
}
"""The study's published summary (n = 101) that the twin is calibrated to."""


def calibration_summary(cohort: TwinCohort) -> dict[str, float]:
    """Kaplan-Meier medians (crude and IPTW with the *true* propensity) and P(CIA).

    IPTW uses ATE weights, 1/e for CIA and 1/(1-e) for CI, so each weighted arm
    stands for the whole population under that regimen.
    """
    data, e = cohort.data, cohort.truth["true_propensity"].to_numpy()
    cia = data["treatment"].to_numpy() == "CIA"
    pfs = data["pfs_months"].to_numpy(), data["pfs_event"].to_numpy()
    os_ = data["os_months"].to_numpy(), data["os_event"].to_numpy()
    everyone = np.ones(cia.size, dtype=bool)
    return {
        "pfs_median_all": km_median(*pfs, everyone),
        "os_median_all": km_median(*os_, everyone),
        "pfs_median_cia": km_median(*pfs, cia),
        "pfs_median_ci": km_median(*pfs, ~cia),
        "pfs_median_cia_iptw": km_median(*pfs, cia, 1.0 / e),
        "pfs_median_ci_iptw": km_median(*pfs, ~cia, 1.0 / (1.0 - e)),
        "p_cia": float(cia.mean()),
    }


def km_median(time, event, mask, weights=None) -> float:
    """Kaplan-Meier median (lifelines) of the masked rows, optionally weighted."""
    from lifelines import KaplanMeierFitter  # heavy import, only when summarising

    w = None if weights is None else np.asarray(weights)[mask]
    fitter = KaplanMeierFitter().fit(time[mask], event[mask], weights=w)
    return float(fitter.median_survival_time_)

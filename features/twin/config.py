"""The twin's data-generating process as one typed config, read from a versioned YAML file.

Every number of the process lives in the YAML (default: the package's
`experiments/cohorts/default.yaml`); `load_config` refuses unknown and missing keys, naming
them, so a typo fails at load time rather than silently falling back to a default.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from experiments import default_path
from features.twin.labels import COVARIATE_TERMS, DRAW_ORDER, HAZARD_TERMS

DEFAULT_CONFIG_PATH = default_path("cohorts/default.yaml")


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
    "ecog": DRAW_ORDER["ecog"],
    "pdl1": DRAW_ORDER["pdl1"],
    "prior_response": DRAW_ORDER["prior_response"],
    "pfs1_median_months": DRAW_ORDER["prior_response"],
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

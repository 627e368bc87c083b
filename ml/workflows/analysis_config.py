"""The analysis's configuration (experiments/paper.yaml), typed: a typo fails at load time."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from experiments import default_path
from features import schema
from ml.stats.weighting import DEFAULT_CONFOUNDERS

DEFAULT_CONFIG_PATH = default_path("paper.yaml")


class Published(BaseModel):
    """The study's published figures (COHORT.md), shown next to this cohort's."""

    model_config = ConfigDict(extra="forbid")

    n: int
    n_cia: int
    n_ci: int
    median_os_all: float
    median_pfs_all: float
    median_pfs_cia: float
    median_pfs_ci: float
    logrank_p: float
    median_pfs_cia_iptw: float
    median_pfs_ci_iptw: float
    weighted_p: float
    prognostic_factors: list[str]


class CausalConfig(BaseModel):
    """The `causal:` section: adjusted curves, RMST, weighting methods compared, E-values."""

    model_config = ConfigDict(extra="forbid")

    endpoints: list[Literal["pfs", "os"]] = Field(default_factory=lambda: ["pfs", "os"], min_length=1)
    horizons: list[float] = Field(default_factory=lambda: [6.0, 12.0, 24.0], min_length=1)
    tau: float | None = Field(None, gt=0)
    estimators: list[Literal["iptw", "gformula", "aiptw", "ipcw"]] = Field(
        default_factory=lambda: ["iptw", "gformula", "aiptw"], min_length=1)
    bootstrap: int = Field(200, ge=0)
    weighting_methods: list[Literal["logistic", "ebal", "overlap"]] = Field(
        default_factory=lambda: ["logistic", "ebal", "overlap"], min_length=1)
    weighting_estimand: Literal["ate", "att", "overlap"] | None = "att"
    """Estimand of the weighting comparison; None: the analysis's `estimand`. ATT by default, as
    in paper.yaml: entropy balancing cannot reach the ATE on the default twin."""
    evalue_outcome: Literal["auto", "rare", "common"] = "auto"

    @field_validator("horizons")
    @classmethod
    def _positive(cls, v: list[float]) -> list[float]:
        if any(not h > 0 for h in v):
            raise ValueError(f"horizons must be positive numbers of months, got {v}")
        return sorted(set(v))


class AnalysisConfig(BaseModel):
    """experiments/paper.yaml, typed; a typo fails at load time."""

    model_config = ConfigDict(extra="forbid")

    version: str = "1"
    confounders: list[str] = Field(default_factory=lambda: list(DEFAULT_CONFOUNDERS))
    estimand: Literal["ate", "att", "overlap"] = "ate"
    stabilized: bool = True
    truncate: tuple[float, float] | None = None
    balance_threshold: float = Field(0.1, gt=0)
    bootstrap: int = Field(500, ge=0)
    seed: int = Field(2024, ge=0)
    alpha: float = Field(0.05, gt=0, lt=1)
    cox_covariates: list[str] = Field(default_factory=lambda: list(schema.COVARIATES))
    ph_transform: Literal["km", "rank", "identity", "log"] = "km"
    published: Published | None = None
    causal: CausalConfig = Field(default_factory=CausalConfig)

    @field_validator("confounders", "cox_covariates")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        unknown = [c for c in v if c not in schema.COVARIATES]
        if unknown:
            raise ValueError(f"unknown covariate(s) {unknown}; ours are: {', '.join(schema.COVARIATES)}")
        if not v:
            raise ValueError("needs at least one covariate")
        return v

    @model_validator(mode="after")
    def _truncation(self) -> AnalysisConfig:
        if self.truncate is not None:
            lo, hi = self.truncate
            if not 0 <= lo < hi <= 100:
                raise ValueError("truncate must be two percentiles 0 <= low < high <= 100, "
                                 f"got {self.truncate}")
        return self

    @property
    def truncation(self) -> tuple[float, float] | None:
        """`truncate` as the plain tuple the weighting takes (None: no truncation)."""
        return tuple(self.truncate) if self.truncate is not None else None


def load_config(path: str | Path | None = None) -> AnalysisConfig:
    """Read an analysis YAML (default experiments/paper.yaml); ValueError names the problem."""
    path = Path(path) if path is not None else DEFAULT_CONFIG_PATH
    if not path.is_file():
        raise FileNotFoundError(f"analysis config {path} does not exist")
    raw = yaml.safe_load(path.read_text()) or {}
    try:
        return AnalysisConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '<file>'}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"{path}: {problems}") from None


def mlflow_params(config: AnalysisConfig) -> dict[str, object]:
    """The config as flat MLflow run parameters."""
    return {"confounders": ",".join(config.confounders), "estimand": config.estimand,
            "stabilized": config.stabilized, "truncate": config.truncate,
            "bootstrap": config.bootstrap, "seed": config.seed, "alpha": config.alpha,
            "cox_covariates": ",".join(config.cox_covariates), "config_version": config.version,
            "ph_transform": config.ph_transform, "causal_tau": config.causal.tau,
            "causal_horizons": ",".join(f"{h:g}" for h in config.causal.horizons),
            "causal_estimators": ",".join(config.causal.estimators),
            "causal_bootstrap": config.causal.bootstrap,
            "causal_weighting_methods": ",".join(config.causal.weighting_methods)}

"""The benchmark's typed config (experiments/benchmark.yaml) and the data set it names."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from experiments import default_path
from features import datasets
from features.io import read_table
from ml import models

DEFAULT_CONFIG = default_path("benchmark.yaml")
TUNED_SUFFIX = "_tuned"


class BenchmarkError(ValueError):
    """Bad benchmark input: config, data or resampling."""


class Features(BaseModel):
    model_config = ConfigDict(extra="forbid")
    categorical: list[str] = Field(default_factory=list)
    numeric: list[str] = Field(default_factory=list)


class BenchmarkConfig(BaseModel):
    """experiments/benchmark.yaml; CLI options override single fields."""

    model_config = ConfigDict(extra="forbid")
    dataset: Literal["twin", "veterans", "gbsg2", "whas500", "aids", "flchain"] = "twin"
    data: Path | None = None
    time: str | None = None
    event: str | None = None
    treatment: str | None = None
    treated: str | None = None
    drop: list[str] = Field(default_factory=list)
    features: Features = Field(default_factory=Features)
    endpoint: Literal["pfs", "os"] = "pfs"
    n: int | None = Field(default=None, ge=10)
    twin_seed: int | None = Field(default=None, ge=0)
    models: list[str] = Field(default_factory=lambda: list(models.MODEL_NAMES))
    folds: int = Field(default=5, ge=2)
    repeats: int = Field(default=5, ge=1)
    seed: int = Field(default=2024, ge=0)
    horizons: dict[str, float] | None = None
    tau: float | None = Field(default=None, gt=0)
    calibration_groups: int = Field(default=3, ge=2)
    n_jobs: int = Field(default=2, ge=1)
    model_params: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # tuned rows (`benchmark --tuned`, ml.workflows.tuning): family -> the champion's best params;
    # each adds a row '<family>_tuned' next to the default-hyperparameter row
    tuned_params: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("models")
    @classmethod
    def _known_models(cls, value: list[str]) -> list[str]:
        unknown = [m for m in value if m not in models.REGISTRY]
        if unknown:
            choices = ', '.join(models.REGISTRY)
            raise ValueError(f"unknown model(s) {', '.join(unknown)}; choose from {choices}")
        if not value:
            raise ValueError("at least one model")
        return list(dict.fromkeys(value))

    @model_validator(mode="after")
    def _consistent(self) -> BenchmarkConfig:
        unknown = [m for m in self.model_params if m not in models.REGISTRY]
        if unknown:
            raise ValueError(f"model_params for unknown model(s): {', '.join(unknown)}")
        if self.data is not None and (self.time is None or self.event is None):
            raise ValueError("a data file needs its time and event columns (time:, event:)")
        if self.horizons is not None and (not self.horizons or min(self.horizons.values()) <= 0):
            raise ValueError("horizons must be a non-empty mapping of label -> time > 0")
        return self


def model_spec(name: str, config: BenchmarkConfig) -> tuple[str, dict[str, Any]]:
    """(registry family, hyperparameters) of a leaderboard row: 'rsf', or a tuned row 'rsf_tuned'."""
    family = name.removesuffix(TUNED_SUFFIX)
    if name.endswith(TUNED_SUFFIX) and family in config.tuned_params:
        return family, config.tuned_params[family]
    return name, config.model_params.get(name, {})


def load_config(path: str | Path | None = None, **overrides: Any) -> BenchmarkConfig:
    """Read the YAML (default experiments/benchmark.yaml) and apply non-None overrides."""
    path = Path(path) if path is not None else DEFAULT_CONFIG
    if not path.exists():
        raise BenchmarkError(f"no experiment file {path}")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise BenchmarkError(f"{path}: expected a mapping of settings")
    raw.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return BenchmarkConfig(**raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'config'}: {e['msg']}" for e in exc.errors())
        raise BenchmarkError(f"{path}: {problems}") from None


def prepare_data(config: BenchmarkConfig) -> datasets.SurvivalData:
    """The SurvivalData the config names (twin, a bundled set, or a user table)."""
    try:
        if config.data is not None:
            data = datasets.from_table(
                read_table(config.data), config.time, config.event, treatment=config.treatment,
                treated=config.treated, drop=config.drop, categorical=config.features.categorical,
                numeric=config.features.numeric, name=config.data.stem, horizons=config.horizons,
                tau=config.tau, source=str(config.data))
        else:
            data = datasets.load(config.dataset, n=config.n, seed=config.twin_seed, endpoint=config.endpoint)
    except (datasets.DatasetError, FileNotFoundError) as exc:
        raise BenchmarkError(str(exc)) from None
    if config.horizons is not None:
        data.horizons = dict(config.horizons)
    if config.tau is not None:
        data.tau = config.tau
    return data

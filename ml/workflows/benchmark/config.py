"""The benchmark's typed config (experiments/benchmark.yaml) and the data set it names."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from experiments import default_path
from features import datasets
from features.contract import ENDPOINTS
from features.io import read_mapped
from ml import models

DEFAULT_CONFIG = default_path("benchmark.yaml")
TUNED_SUFFIX = "_tuned"


class BenchmarkError(ValueError):
    """Bad benchmark input: config, data or resampling."""


class _Conflict(ValueError):
    """Settings that do not go together; `field` is the one the message is about (its origin is blamed)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class _Names:
    """How the user wrote each setting: the option's name (e.g. --time) when it came from `flags`,
    else the YAML key. `like`: a missing setting is named the way the one needing it was given."""

    def __init__(self, context: Mapping[str, Any] | None) -> None:
        self.flags: Mapping[str, str] = (context or {}).get("flags", {})
        self.given: set[str] = set((context or {}).get("given", ()))

    def __call__(self, field: str, like: str | None = None) -> str:
        from_flag = field in self.given or (like in self.given and field not in self.given)
        return self.flags.get(field, field) if from_flag else field


_TABLE_ONLY = ("mapping", "time", "event", "treatment", "treated", "drop")
"""Settings that describe a user table (--data): refused without one rather than ignored."""


class Features(BaseModel):
    model_config = ConfigDict(extra="forbid")
    categorical: list[str] = Field(default_factory=list)
    numeric: list[str] = Field(default_factory=list)


class InternalValidation(BaseModel):
    """`validation:` in the YAML: bootstrap internal validation of some leaderboard rows."""

    model_config = ConfigDict(extra="forbid")
    bootstrap: int = Field(default=20, ge=0)   # B resamples per model; 0: none
    models: list[str] | None = Field(default_factory=lambda: ["cox", "cox_ridge_cv"])  # None: every row

    @field_validator("models")
    @classmethod
    def _known(cls, value: list[str] | None) -> list[str] | None:
        unknown = [m for m in value or [] if m.removesuffix(TUNED_SUFFIX) not in models.REGISTRY]
        if unknown:
            raise ValueError(f"validation.models: unknown model(s) {', '.join(map(repr, unknown))}; "
                             f"choose from {', '.join(models.REGISTRY)}")
        return value


class BenchmarkConfig(BaseModel):
    """experiments/benchmark.yaml; CLI options override single fields."""

    model_config = ConfigDict(extra="forbid")
    dataset: str = "twin"
    data: Path | None = None
    mapping: Path | None = None
    time: str | None = None
    event: str | None = None
    treatment: str | None = None
    treated: str | None = None
    drop: list[str] = Field(default_factory=list)
    features: Features = Field(default_factory=Features)
    endpoint: str = "pfs"
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
    validation: InternalValidation = Field(default_factory=InternalValidation)

    @field_validator("models")
    @classmethod
    def _known_models(cls, value: list[str]) -> list[str]:
        unknown = [m for m in value if m not in models.REGISTRY]
        if unknown:
            plural = "s" if len(unknown) > 1 else ""
            raise ValueError(f"unknown model{plural} {', '.join(map(repr, unknown))}; choose from "
                             f"{', '.join(models.REGISTRY)}")
        if not value:
            raise ValueError("at least one model")
        return list(dict.fromkeys(value))

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, value: str) -> str:
        if value not in datasets.DATASETS:
            raise ValueError(f"unknown data set '{value}'; choose from {', '.join(datasets.DATASETS)}")
        return value

    @field_validator("endpoint")
    @classmethod
    def _known_endpoint(cls, value: str) -> str:
        if value not in ENDPOINTS:
            raise ValueError(f"unknown endpoint '{value}'; choose from {', '.join(ENDPOINTS)}")
        return value

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> BenchmarkConfig:
        name = _Names(info.context)
        unknown = [m for m in self.model_params if m not in models.REGISTRY]
        if unknown:
            raise _Conflict("model_params", f"model_params for unknown model(s): {', '.join(unknown)}")
        if self.horizons is not None and (not self.horizons or min(self.horizons.values()) <= 0):
            raise _Conflict("horizons", "horizons must be a non-empty mapping of label -> time > 0")
        self._check_table(name)
        return self

    def _check_table(self, name: _Names) -> None:
        """The data source and the settings describing a user table go together."""
        if self.data is not None and "dataset" in self.model_fields_set:
            raise _Conflict("data", f"give {name('dataset')} or {name('data')}, not both")
        missing = [name(f, like="data") for f in ("time", "event") if getattr(self, f) is None]
        if self.data is not None and missing:
            raise _Conflict("data", f"{name('data')} needs {' and '.join(missing)} "
                            "(its time and event columns)")
        if self.treated is not None and self.treatment is None:
            raise _Conflict("treated", f"{name('treated')} needs {name('treatment', like='treated')} "
                            "(the column whose value marks the treated group)")
        stray = [f for f in _TABLE_ONLY if getattr(self, f) and self.data is None]
        if stray:
            raise _Conflict(stray[0], f"{name(stray[0])} applies only to a table given with "
                            f"{name('data', like=stray[0])}, and there is none")


def model_spec(name: str, config: BenchmarkConfig) -> tuple[str, dict[str, Any]]:
    """(registry family, hyperparameters) of a leaderboard row: 'rsf', or a tuned row 'rsf_tuned'."""
    family = name.removesuffix(TUNED_SUFFIX)
    if name.endswith(TUNED_SUFFIX) and family in config.tuned_params:
        return family, config.tuned_params[family]
    return name, config.model_params.get(name, {})


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise BenchmarkError(f"no experiment file {path}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise BenchmarkError(f"{path}: not a valid YAML file ({exc})") from None
    if not isinstance(raw, dict):
        raise BenchmarkError(f"{path}: expected a mapping of settings")
    return raw


def _describe(error: Mapping[str, Any], given: set[str], flags: Mapping[str, str], path: Path) -> str:
    """One validation error, blaming the option when the value came from one, else the YAML file."""
    cause = (error.get("ctx") or {}).get("error")
    message = str(cause) if isinstance(cause, ValueError) else error["msg"]
    if isinstance(cause, _Conflict):
        return message if cause.field in given else f"{path}: {message}"
    field = str(error["loc"][0]) if error["loc"] else ""
    if field in given:
        return f"{flags.get(field, field)}: {message}"
    return f"{path}: {'.'.join(map(str, error['loc'])) or 'config'}: {message}"


def load_config(path: str | Path | None = None, *, flags: Mapping[str, str] | None = None,
                **overrides: Any) -> BenchmarkConfig:
    """Read the YAML (default experiments/benchmark.yaml) and apply the non-None overrides.

    An error blames the override by its name in `flags` (e.g. {"models": "--models"}) when the
    value came from one, else the YAML file. An override of the data source replaces the YAML's
    (--data drops its `dataset`, --dataset its `data` and the settings describing that table).
    """
    path = Path(path) if path is not None else DEFAULT_CONFIG
    raw = _read_yaml(path)
    given = {k: v for k, v in overrides.items() if v is not None}
    if "data" in given and "dataset" not in given:
        raw.pop("dataset", None)
    if "dataset" in given and "data" not in given:
        for key in ("data", *_TABLE_ONLY):
            raw.pop(key, None)
    try:
        return BenchmarkConfig.model_validate({**raw, **given},
                                              context={"flags": dict(flags or {}), "given": set(given)})
    except ValidationError as exc:
        problems = "; ".join(_describe(e, set(given), flags or {}, path) for e in exc.errors())
        raise BenchmarkError(problems) from None


def _user_table(config: BenchmarkConfig) -> Any:
    """The --data table as read, after its column mapping (if any: delimiter, encoding, names,
    labels, dates, time unit; the unit rule applies to the contract's time columns)."""
    try:
        return read_mapped(config.data, config.mapping)
    except (OSError, ValueError) as exc:
        message, path = str(exc), str(config.data)  # e.g. a binary file named .csv: name the file
        raise BenchmarkError(message if path in message else f"{path}: {message}") from None


def prepare_data(config: BenchmarkConfig) -> datasets.SurvivalData:
    """The SurvivalData the config names (twin, a bundled set, or a user table)."""
    try:
        if config.data is not None:
            data = datasets.from_table(
                _user_table(config), config.time, config.event, treatment=config.treatment,
                treated=config.treated, drop=config.drop, categorical=config.features.categorical,
                numeric=config.features.numeric, name=config.data.stem, horizons=config.horizons,
                tau=config.tau, source=str(config.data))
        else:
            data = datasets.load(config.dataset, n=config.n, seed=config.twin_seed, endpoint=config.endpoint)
    except (datasets.DatasetError, OSError, ValueError) as exc:  # a MappingError is a ValueError
        raise BenchmarkError(str(exc)) from None
    if config.horizons is not None:
        data.horizons = dict(config.horizons)
    if config.tau is not None:
        data.tau = config.tau
    return data

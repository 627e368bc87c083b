"""Search spaces (experiments/search_spaces/<family>.yaml -> a typed, validated `SearchSpace`)
and the registry estimator they configure."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import optuna
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sklearn.base import clone

from experiments import default_path
from ml import models
from ml.workflows.tuning.config import TuneError

SEARCH_SPACE_DIR = default_path("search_spaces")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_range(low: float, high: float, log: bool) -> None:
    if low > high:
        raise ValueError(f"low ({low}) must be <= high ({high})")
    if log and low <= 0:
        raise ValueError(f"log scale needs low > 0, got {low}")


class IntParam(_Strict):
    type: Literal["int"]
    low: int
    high: int
    step: int = 1
    log: bool = False

    @model_validator(mode="after")
    def _check(self) -> IntParam:
        _check_range(self.low, self.high, self.log)
        if self.step < 1 or (self.log and self.step != 1):
            raise ValueError("step must be >= 1, and 1 when log is true")
        return self

    def suggest(self, trial: optuna.Trial, name: str) -> int:
        return trial.suggest_int(name, self.low, self.high, step=self.step, log=self.log)


class FloatParam(_Strict):
    type: Literal["float"]
    low: float
    high: float
    step: float | None = None
    log: bool = False

    @model_validator(mode="after")
    def _check(self) -> FloatParam:
        _check_range(self.low, self.high, self.log)
        if self.step is not None and (self.step <= 0 or self.log):
            raise ValueError("step must be > 0 and cannot be combined with log")
        return self

    def suggest(self, trial: optuna.Trial, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high, step=self.step, log=self.log)


class CategoricalParam(_Strict):
    type: Literal["categorical"]
    choices: list[bool | int | float | str | None] = Field(min_length=1)

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        return trial.suggest_categorical(name, self.choices)


Param = Annotated[IntParam | FloatParam | CategoricalParam, Field(discriminator="type")]


class SearchSpace(_Strict):
    """One model family's search space: what optuna samples, plus fixed settings."""

    family: str
    params: dict[str, Param]
    fixed: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> SearchSpace:
        if not self.params:
            raise ValueError("the search space is empty: give at least one parameter under 'params'")
        both = set(self.params) & set(self.fixed)
        if both:
            raise ValueError(f"parameters both searched and fixed: {sorted(both)}")
        return self

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        sampled = {name: p.suggest(trial, name) for name, p in self.params.items()}
        return {**self.fixed, **sampled}

    def digest(self) -> str:
        text = json.dumps(self.model_dump(), sort_keys=True, default=str).encode()
        return hashlib.sha256(text).hexdigest()[:10]


def search_space_path(family: str, directory: str | Path | None = None) -> Path:
    return Path(directory or SEARCH_SPACE_DIR) / f"{family}.yaml"


def _first_error(exc: ValidationError) -> str:
    errors = exc.errors()
    parts = []
    for err in errors[:3]:
        loc = ".".join(str(p) for p in err["loc"])
        parts.append(f"{loc}: {err['msg']}" if loc else err["msg"])
    more = f" (+{len(errors) - 3} more)" if len(errors) > 3 else ""
    return "; ".join(parts) + more


def load_search_space(family: str, path: str | Path | None = None,
                      directory: str | Path | None = None) -> SearchSpace:
    """Read and validate `<directory>/<family>.yaml` (or `path`); TuneError on any problem."""
    path = Path(path) if path is not None else search_space_path(family, directory)
    if not path.is_file():
        raise TuneError(f"no search space for model '{family}': {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise TuneError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(raw, dict):
        raise TuneError(f"{path}: expected a mapping with 'family' and 'params'")
    raw.setdefault("family", family)
    try:
        space = SearchSpace.model_validate(raw)
    except ValidationError as exc:
        raise TuneError(f"{path}: {_first_error(exc)}") from exc
    if space.family != family:
        raise TuneError(f"{path}: family '{space.family}' does not match model '{family}'")
    return space


def available_models(directory: str | Path | None = None) -> list[str]:
    """Registry models that have a search space."""
    return [m for m in models.MODEL_NAMES if search_space_path(m, directory).is_file()]


def make_model(name: str, spec: Any, random_state: int) -> Any:
    """Unfitted SurvivalPipeline(preprocessor, model) of the registry, default hyperparameters."""
    if name not in models.REGISTRY:
        raise TuneError(f"unknown model '{name}'; choose one of {', '.join(available_models())}")
    return models.make_pipeline(name, spec, random_state=random_state)


def _param_key(estimator: Any, name: str) -> str:
    """Search-space names are the estimator's own names; inside the Pipeline they get a prefix."""
    return f"{models.MODEL_STEP}__{name}" if hasattr(estimator, "steps") else name


def check_space(space: SearchSpace, estimator: Any) -> None:
    """Every searched or fixed name must be a parameter of the estimator (a typo fails here)."""
    known = set(estimator.get_params(deep=True))
    unknown = sorted(n for n in (*space.params, *space.fixed) if _param_key(estimator, n) not in known)
    if unknown:
        raise TuneError(f"search space '{space.family}': unknown parameter(s) {unknown} for "
                        f"{type(estimator).__name__}")


def with_params(estimator: Any, params: Mapping[str, Any]) -> Any:
    """A clone of `estimator` with a configuration of its search space applied."""
    est = clone(estimator)
    return est.set_params(**{_param_key(est, k): v for k, v in params.items()})

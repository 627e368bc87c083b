"""Models in MLflow: log a fitted estimator (sklearn flavour), log / save / register / load
the survival pyfunc, load any pyfunc.

The survival pyfunc wraps a scorer: any object with `warm()`, `score(frame) -> DataFrame`,
`info() -> dict` and `pyfunc_contract() -> PyfuncContract` (e.g.
`ml.serving.scorer.SurvivalScorer`). What the model takes and gives (its MLflow signature
and input example) comes from that contract, plain data handed in by the caller: this
module knows no domain code.
"""

from __future__ import annotations

import importlib.metadata as md
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cloudpickle
import pandas as pd

from ml.tracking import registry
from ml.tracking.runs import log_params, mlflow_module, run

MODEL_REQUIREMENTS = ("scikit-survival", "scikit-learn", "xgboost", "numpy", "pandas", "scipy")
SCORING_EXPERIMENT = "score"
SURVIVAL_MODEL_REQUIREMENTS = (*MODEL_REQUIREMENTS, "shap", "pydantic", "cloudpickle")
ANY_TYPE = "any"


@dataclass(frozen=True)
class PyfuncContract:
    """What a pyfunc model takes and gives, as plain data.

    `inputs` / `outputs`: column -> MLflow type ("string", "double", ...; `ANY_TYPE` where
    the model checks the value itself); `optional`: input columns that may be absent;
    `example`: input rows logged as the model's input example.
    """

    inputs: Mapping[str, str]
    outputs: Mapping[str, str]
    optional: tuple[str, ...] = ()
    example: tuple[Mapping[str, Any], ...] = ()


def _pins(packages: tuple[str, ...]) -> list[str]:
    """Requirements pinned from the installed versions (no inference)."""
    return [f"{pkg}=={md.version(pkg)}" for pkg in packages]


def log_model(model: Any, name: str = "model", input_example: pd.DataFrame | None = None) -> str:
    """Log a fitted estimator to the active run (sklearn flavour, cloudpickle); returns its URI."""
    mlflow_module()  # configures the store
    from mlflow import sklearn as sklearn_flavour  # with mlflow itself (see mlflow_module)

    info = sklearn_flavour.log_model(model, name=name, pip_requirements=_pins(MODEL_REQUIREMENTS),
                                     input_example=input_example, serialization_format="cloudpickle")
    return info.model_uri


def pyfunc_signature(contract: PyfuncContract) -> Any:
    """The MLflow ModelSignature of `contract`."""
    mlflow_module()
    from mlflow.models import ModelSignature  # with mlflow itself (see mlflow_module)
    from mlflow.types import ColSpec, Schema
    from mlflow.types.schema import AnyType

    def spec(name: str, kind: str) -> Any:
        return ColSpec(AnyType() if kind == ANY_TYPE else kind, name, required=name not in contract.optional)

    return ModelSignature(inputs=Schema([spec(c, k) for c, k in contract.inputs.items()]),
                          outputs=Schema([ColSpec(k, c) for c, k in contract.outputs.items()]))


def _survival_model_kwargs(scorer: Any, tmp: str, contract: PyfuncContract | None,
                           input_example: pd.DataFrame | None) -> dict[str, Any]:
    """What log_model / save_model take for the survival pyfunc; the scorer is written into
    `tmp` with cloudpickle (the preprocessor holds a lambda, its one-hot column namer, that
    plain pickle cannot store)."""
    from ml.tracking.pyfunc import SCORER_ARTIFACT, SurvivalPyfunc  # imports mlflow (see mlflow_module)

    contract = contract if contract is not None else scorer.pyfunc_contract()
    if input_example is None and contract.example:
        input_example = pd.DataFrame([dict(row) for row in contract.example])
    path = Path(tmp) / "scorer.pkl"
    with path.open("wb") as fh:
        cloudpickle.dump(scorer, fh)
    return {"python_model": SurvivalPyfunc(), "artifacts": {SCORER_ARTIFACT: str(path)},
            "signature": pyfunc_signature(contract), "input_example": input_example,
            "pip_requirements": _pins(SURVIVAL_MODEL_REQUIREMENTS)}


def log_survival_model(scorer: Any, name: str = "survival_model", input_example: pd.DataFrame | None = None,
                       *, contract: PyfuncContract | None = None) -> str:
    """Log `scorer` as the survival pyfunc to the active run; returns its URI.

    `contract` defaults to `scorer.pyfunc_contract()`."""
    mlflow = mlflow_module()
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        # the signature is given explicitly; MLflow's nudge towards type hints is noise here
        warnings.filterwarnings("ignore", message=".*type hint", category=UserWarning)
        kwargs = _survival_model_kwargs(scorer, tmp, contract, input_example)
        info = mlflow.pyfunc.log_model(name=name, **kwargs)
    return info.model_uri


def save_survival_model(scorer: Any, path: str | Path, input_example: pd.DataFrame | None = None,
                        *, contract: PyfuncContract | None = None) -> str:
    """Write the survival pyfunc to a local directory (no tracking store); returns the path.

    `rechallenge serve --model PATH`, `mlflow models serve -m PATH` and load_survival_model
    all take it."""
    mlflow = mlflow_module()
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*type hint", category=UserWarning)
        kwargs = _survival_model_kwargs(scorer, tmp, contract, input_example)
        mlflow.pyfunc.save_model(path=str(path), **kwargs)
    return str(path)


def register_survival_model(scorer: Any, registered_name: str, *, make_champion: bool = True,
                            tags: Mapping[str, Any] | None = None, experiment: str = SCORING_EXPERIMENT,
                            contract: PyfuncContract | None = None) -> dict[str, Any]:
    """Log `scorer` in a run of `experiment`, register it as a new version of `registered_name`
    and (by default) point alias `champion` at it. Returns name, version, run id and URI."""
    info = scorer.info()
    with run(experiment, f"register {registered_name}", tags={"model": info["model"]}) as active:
        log_params({"model": info["model"], "n_train": info["n_train"], "cutoffs": info["cutoffs"],
                    "horizons_months": info["horizons_months"], "risk_scale": info["risk_scale"]})
        uri = log_survival_model(scorer, contract=contract)
        version_tags = {"flavour": "rechallenge-survival", **(tags or {})}
        version = registry.register_model(uri, registered_name, version_tags)
    if make_champion:
        registry.make_champion(registered_name, version)
    uri = registry.champion_uri(registered_name) if make_champion else f"models:/{registered_name}/{version}"
    return {"name": registered_name, "version": version, "run_id": active.info.run_id, "uri": uri}


def _load_python_model(mlflow: Any, model_uri: str) -> Any:
    wrapped = mlflow.pyfunc.load_model(model_uri).unwrap_python_model()
    scorer = getattr(wrapped, "scorer", None)
    if scorer is None:
        raise ValueError(f"{model_uri} is a pyfunc model but not a rechallenge survival model")
    return scorer


def load_survival_model(model_uri: str) -> Any:
    """What a model URI (models:/NAME@ALIAS, models:/NAME/VERSION, runs:/..., or a local path)
    holds: the scorer of a survival pyfunc, or the fitted pipeline of a sklearn-flavoured
    model (e.g. registered by `rechallenge tune`). Raises ValueError with the reason when
    nothing loadable is there."""
    mlflow = mlflow_module()
    from mlflow import sklearn as sklearn_flavour  # with mlflow itself (see mlflow_module)
    from mlflow.exceptions import MlflowException

    try:
        flavors = mlflow.models.get_model_info(model_uri).flavors
        if flavors.get("python_function", {}).get("loader_module") == "mlflow.pyfunc.model":
            return _load_python_model(mlflow, model_uri)
        if "sklearn" in flavors:
            return sklearn_flavour.load_model(model_uri)
    except (MlflowException, OSError) as exc:
        raise ValueError(f"cannot load a model from '{model_uri}': {str(exc).splitlines()[0]}") from None
    except (ImportError, AttributeError) as exc:  # pickled classes the installed code no longer has
        raise ValueError(f"cannot load a model from '{model_uri}': it was saved by an incompatible version "
                         f"of the code ({exc}); register it again") from None
    raise ValueError(f"{model_uri} holds a model of flavour(s) {', '.join(flavors)}, not a survival model")


def load_pyfunc(model_uri: str) -> Any:
    """The generic MLflow pyfunc behind a URI (what `mlflow models serve` runs), e.g. to check
    it gives the same numbers as the in-process scorer."""
    return mlflow_module().pyfunc.load_model(model_uri)

"""Models in MLflow: log a fitted estimator (sklearn flavour), log / save / register / load
the survival pyfunc, load any pyfunc.

The survival pyfunc wraps a scorer: any object with `warm()`, `score(frame) -> DataFrame`,
`info() -> dict` and `pyfunc_contract() -> PyfuncContract` (e.g.
`ml.serving.scorer.SurvivalScorer`). What the model takes and gives (its MLflow signature
and input example) and what it needs to load (the packages of the caller's code shipped
with it, the modules it imports) come from that contract, plain data handed in by the
caller: this module knows no domain code.

A survival pyfunc is portable: its pickles reference the caller's packages, which are
logged with it (`code_paths`, prepended to `sys.path` on load), and its `requirements.txt`
pins every distribution its imports need, with their whole dependency closure, at the
versions installed here. A fresh virtual environment with only those requirements loads it.
"""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import re
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
# distributions pinned (with their closure) for a survival pyfunc whose contract names no imports
SURVIVAL_MODEL_REQUIREMENTS = (*MODEL_REQUIREMENTS, "shap", "pydantic", "cloudpickle")
ANY_TYPE = "any"
# one requirement of a distribution's metadata: name, [extras], version spec; marker
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?[^;]*(?:;(.*))?$")
_EXTRA_MARKER = re.compile(r"""extra\s*==\s*['"]([^'"]+)['"]""")


@dataclass(frozen=True)
class PyfuncContract:
    """What a pyfunc model takes and gives, and what it needs to load, as plain data.

    `inputs` / `outputs`: column -> MLflow type ("string", "double", ...; `ANY_TYPE` where
    the model checks the value itself); `optional`: input columns that may be absent;
    `example`: input rows logged as the model's input example; `code`: top-level packages
    (import names) whose source is logged with the model, as its pickles reference them;
    `imports`: top-level modules it imports when loaded and predicting (besides `code`),
    whose distributions are pinned with their dependency closure.
    """

    inputs: Mapping[str, str]
    outputs: Mapping[str, str]
    optional: tuple[str, ...] = ()
    example: tuple[Mapping[str, Any], ...] = ()
    code: tuple[str, ...] = ()
    imports: tuple[str, ...] = ()


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _installed(name: str) -> bool:
    try:
        md.distribution(name)
    except md.PackageNotFoundError:
        return False
    return True


def _dependencies(name: str, extras: frozenset[str]) -> list[tuple[str, frozenset[str]]]:
    """The installed distributions `name` (with `extras`) requires, each with the extras asked.

    A dependency behind an environment marker counts when it is installed here (the marker
    held when this environment was built); one behind `extra == ...` only for those extras."""
    found = []
    for spec in md.requires(name) or []:
        match = _REQUIREMENT.match(spec)
        if match is None:
            continue
        wanted = {_canonical(e) for e in _EXTRA_MARKER.findall(match[3] or "")}
        if (wanted and not wanted & extras) or not _installed(match[1]):
            continue
        asked = frozenset(_canonical(e) for e in (match[2] or "").split(",") if e.strip())
        found.append((match[1], asked))
    return found


def distributions_of(modules: tuple[str, ...]) -> tuple[str, ...]:
    """The installed distributions providing the top-level `modules` (import names)."""
    owners = md.packages_distributions()
    unknown = [m for m in modules if m not in owners]
    if unknown:
        raise ValueError(f"no installed distribution provides {', '.join(unknown)}")
    return tuple(dict.fromkeys(dist for module in modules for dist in owners[module]))


def pinned_requirements(distributions: tuple[str, ...]) -> list[str]:
    """`name==version` for `distributions` and everything they require, transitively, at the
    versions installed here (sorted by name)."""
    todo = [(dist, frozenset[str]()) for dist in distributions]
    seen: dict[str, tuple[str, frozenset[str]]] = {}
    while todo:
        name, extras = todo.pop()
        key = _canonical(name)
        if key in seen:  # visit again only to follow extras not seen yet
            if extras <= seen[key][1]:
                continue
            extras = extras | seen[key][1]
        seen[key] = (md.metadata(name)["Name"], extras)
        todo.extend(_dependencies(name, extras))
    return sorted((f"{real}=={md.version(real)}" for real, _ in seen.values()), key=str.lower)


def code_paths(packages: tuple[str, ...]) -> list[str]:
    """The source folders of the top-level `packages` (import names), to log with a model."""
    paths = []
    for package in packages:
        spec = importlib.util.find_spec(package)
        locations = list(spec.submodule_search_locations or []) if spec is not None else []
        if len(locations) != 1:
            raise ValueError(f"'{package}' is not a regular package with one source folder")
        paths.append(locations[0])
    return paths


def log_model(model: Any, name: str = "model", input_example: pd.DataFrame | None = None,
              *, code: tuple[str, ...] = ()) -> str:
    """Log a fitted estimator to the active run (sklearn flavour, cloudpickle); returns its URI.

    `code`: top-level packages whose classes the estimator's pickle names, logged with it."""
    mlflow_module()  # configures the store
    from mlflow import sklearn as sklearn_flavour  # with mlflow itself (see mlflow_module)

    requirements = pinned_requirements(MODEL_REQUIREMENTS)
    info = sklearn_flavour.log_model(model, name=name, pip_requirements=requirements,
                                     input_example=input_example, serialization_format="cloudpickle",
                                     code_paths=code_paths(code) or None)
    return info.model_uri


def pyfunc_signature(contract: PyfuncContract) -> Any:
    """The MLflow ModelSignature of `contract`: its outputs only.

    The inputs are not declared to MLflow on purpose: MLflow's schema enforcement cannot take
    both JSON integers and a CSV body for the same numeric column (typed `any`, a CSV body is
    refused, "Failed to get pandas types"; typed `double`, an int64 column such as ECOG is
    refused as an unsafe cast). The model checks its input against the cohort contract itself,
    with messages naming the field, and the input columns are written to the MLmodel's
    metadata (`input_columns`) and shown by the input example."""
    mlflow_module()
    from mlflow.models import ModelSignature  # with mlflow itself (see mlflow_module)
    from mlflow.types import ColSpec, Schema

    return ModelSignature(inputs=None, outputs=Schema([ColSpec(k, c) for c, k in contract.outputs.items()]))


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
    needed = distributions_of(contract.imports) if contract.imports else SURVIVAL_MODEL_REQUIREMENTS
    return {"python_model": SurvivalPyfunc(), "artifacts": {SCORER_ARTIFACT: str(path)},
            "signature": pyfunc_signature(contract), "input_example": input_example,
            "code_paths": code_paths(contract.code) or None,
            # a list, not a dict: MLmodel's YAML would sort a dict's keys
            "metadata": {"input_columns": [{"name": c, "type": k, "required": c not in contract.optional}
                                           for c, k in contract.inputs.items()]},
            "pip_requirements": pinned_requirements(("mlflow", *needed))}


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

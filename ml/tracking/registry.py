"""The MLflow Model Registry: register a logged model, read and move the `champion` alias."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from ml.tracking.runs import mlflow_module

CHAMPION_ALIAS = "champion"


def register_model(model_uri: str, registered_name: str, tags: Mapping[str, Any] | None = None) -> str:
    """Register a logged model as a new version of `registered_name`; returns the version."""
    mlflow = mlflow_module()
    version = mlflow.register_model(model_uri, registered_name, await_registration_for=60)
    client = mlflow.MlflowClient()
    for key, value in (tags or {}).items():
        client.set_model_version_tag(registered_name, version.version, key, str(value))
    return str(version.version)


def champion_uri(registered_name: str) -> str:
    return f"models:/{registered_name}@{CHAMPION_ALIAS}"


def make_champion(registered_name: str, version: str) -> None:
    """Point alias `champion` of `registered_name` at `version`."""
    mlflow_module().MlflowClient().set_registered_model_alias(registered_name, CHAMPION_ALIAS, version)


def champion(registered_name: str) -> dict[str, Any] | None:
    """The version behind alias `champion` (version, run id, tags), or None."""
    mlflow = mlflow_module()
    from mlflow.exceptions import MlflowException  # with mlflow itself (see mlflow_module)

    try:
        mv = mlflow.MlflowClient().get_model_version_by_alias(registered_name, CHAMPION_ALIAS)
    except MlflowException:
        return None
    return {"name": registered_name, "version": str(mv.version), "run_id": mv.run_id, "tags": dict(mv.tags),
            "uri": champion_uri(registered_name)}


def promote_if_better(registered_name: str, version: str, metric_tag: str,
                      higher_is_better: bool) -> tuple[bool, dict[str, Any] | None]:
    """Move alias `champion` to `version` if its tag `metric_tag` beats the champion's.

    The tag holds the version's outer-CV estimate. A champion without that tag (or without
    a number in it) is replaced; ties keep the current champion. Returns (moved, previous).
    """
    client = mlflow_module().MlflowClient()
    new = float(client.get_model_version(registered_name, version).tags[metric_tag])
    current = champion(registered_name)
    old = None if current is None else pd.to_numeric(current["tags"].get(metric_tag), errors="coerce")
    better = bool(old is None or pd.isna(old) or (new > old if higher_is_better else new < old))
    if better:
        make_champion(registered_name, version)
    return better, current

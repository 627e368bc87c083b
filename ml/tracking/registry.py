"""The MLflow Model Registry: register a logged model, read the `champion` alias and move it
by the one champion rule (`champion_rule`: discrimination and calibration)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ml.tracking.runs import mlflow_module

CHAMPION_ALIAS = "champion"


def register_model(model_uri: str, registered_name: str, tags: Mapping[str, Any] | None = None,
                   description: str | None = None) -> str:
    """Register a logged model as a new version of `registered_name`; returns the version.

    `tags` become version tags (numbers as their decimal text, so the UI and `champion_rule`
    read them back as numbers); `description` is the version's description."""
    mlflow = mlflow_module()
    version = mlflow.register_model(model_uri, registered_name, await_registration_for=60)
    client = mlflow.MlflowClient()
    for key, value in (tags or {}).items():
        client.set_model_version_tag(registered_name, version.version, key, str(value))
    if description:
        client.update_model_version(registered_name, version.version, description=description)
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


def model_version(model_uri: str) -> dict[str, Any] | None:
    """The registered version behind `models:/NAME@ALIAS` or `models:/NAME/VERSION`: name,
    version, registered (UTC, ISO 8601), run id and tags; None for any other URI or when the
    registry does not know it."""
    if not model_uri.startswith("models:/"):
        return None
    name, sep, rest = model_uri.removeprefix("models:/").partition("@")
    mlflow = mlflow_module()
    from mlflow.exceptions import MlflowException  # with mlflow itself (see mlflow_module)

    client = mlflow.MlflowClient()
    try:
        if sep:
            mv = client.get_model_version_by_alias(name, rest)
        else:
            name, _, number = name.rpartition("/")
            mv = client.get_model_version(name, number)
    except MlflowException:
        return None
    registered = pd.Timestamp(int(mv.creation_timestamp), unit="ms", tz="UTC")
    return {"name": mv.name, "version": str(mv.version), "run_id": mv.run_id, "tags": dict(mv.tags),
            "registered": registered.isoformat(timespec="seconds")}


CALIBRATION_BAND = (0.8, 1.2)
"""A calibration slope inside this band counts as well calibrated (1 = ideal)."""
DEFAULT_PREFIX = "default."
"""Tags `default.<metric>`: the default configuration's estimate, the first version's reference."""


@dataclass(frozen=True)
class Decision:
    """Whether alias `champion` moves to a new version, and why (in words for the version tag)."""

    moved: bool
    reason: str
    previous: dict[str, Any] | None = None


def _number(tags: Mapping[str, Any], key: str) -> float:
    value = pd.to_numeric(tags.get(key), errors="coerce")
    return float(value) if pd.notna(value) else math.nan


def champion_rule(candidate: Mapping[str, Any], reference: Mapping[str, Any], *, objective: str,
                  calibration: str, higher_is_better: bool) -> tuple[bool, str]:
    """THE champion rule (discrimination and calibration), on plain {metric: value} maps.

    The candidate becomes champion when (1) its outer estimate of `objective` is strictly
    better than the reference's and (2) its calibration slope `calibration` (at the late
    horizon) lies in CALIBRATION_BAND or is closer to 1 than the reference's. The reference
    is the current champion, or for a name's first version the default configuration.
    A missing (non-numeric) figure fails its condition. Returns (move, reason).
    """
    new_obj, ref_obj = _number(candidate, objective), _number(reference, objective)
    new_slope, ref_slope = _number(candidate, calibration), _number(reference, calibration)
    better = new_obj > ref_obj if higher_is_better else new_obj < ref_obj
    low, high = CALIBRATION_BAND
    calibrated = low <= new_slope <= high or abs(new_slope - 1) < abs(ref_slope - 1)
    figures = (f"{objective} {new_obj:.4f} vs {ref_obj:.4f}, {calibration} {new_slope:.3f} vs "
               f"{ref_slope:.3f} (band {low}-{high})")
    if not better:
        return False, f"not better in {objective}: {figures}"
    if not calibrated:
        return False, f"badly calibrated: {figures}"
    return True, f"better and calibrated: {figures}"


def _reference(candidate: Mapping[str, Any], current: dict[str, Any] | None,
               objective: str) -> tuple[dict[str, Any], str]:
    """The champion's figures, or the default configuration's (`default.*` tags of the
    candidate) when there is no champion or it carries no numeric objective."""
    if current is not None and not math.isnan(_number(current["tags"], objective)):
        return current["tags"], f"champion version {current['version']}"
    default = {k.removeprefix(DEFAULT_PREFIX): v for k, v in candidate.items()
               if k.startswith(DEFAULT_PREFIX)}
    return default, "the default configuration"


def promote_by_rule(registered_name: str, version: str, *, objective: str, calibration: str,
                    higher_is_better: bool) -> Decision:
    """Move alias `champion` to `version` if `champion_rule` says so against the reference.

    Reads the figures from the versions' tags (same metric names as the runs); records the
    decision in the version's tag `champion_decision`."""
    client = mlflow_module().MlflowClient()
    candidate = dict(client.get_model_version(registered_name, version).tags)
    current = champion(registered_name)
    reference, against = _reference(candidate, current, objective)
    moved, reason = champion_rule(candidate, reference, objective=objective, calibration=calibration,
                                  higher_is_better=higher_is_better)
    if moved:
        make_champion(registered_name, version)
    client.set_model_version_tag(registered_name, version, "champion_decision",
                                 f"{'moved' if moved else 'kept'}: against {against}, {reason}")
    return Decision(moved, reason, current)

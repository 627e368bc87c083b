"""A tuning run in MLflow (through ml.tracking): the study's parent run, one nested run per
trial, the refitted model registered with its evidence, and alias `champion` moved by the
registry's rule (better and calibrated)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ml.tracking import mlflow_io as tracking
from ml.workflows.tuning.config import OBJECTIVES, TuneConfig
from ml.workflows.tuning.nested import TuneResult, prepare, slug, tune
from ml.workflows.tuning.space import search_space_path
from ml.workflows.tuning.storage import DEFAULT_STORAGE, redact
from ml.workflows.tuning.summary import outer_metrics, trial_runs

ModelLogger = Callable[[Any, Any], str]
"""(fitted model, SurvivalData it was fitted on) -> the URI of the model logged to the active run."""


@dataclass(frozen=True)
class Registration:
    name: str
    version: str
    promoted: bool
    previous_champion: dict[str, Any] | None
    run_id: str
    reason: str = ""
    """Why alias `champion` moved or not (the champion rule's figures)."""


def registered_model_name(label: str, model: str) -> str:
    """`rechallenge-<endpoint or data set>-<model>`, e.g. rechallenge-pfs-rsf."""
    return f"rechallenge-{label}-{model}"


def log_sklearn_model(model: Any, data: Any) -> str:
    """The default `ModelLogger`: the refitted pipeline in MLflow's sklearn flavour."""
    return tracking.log_model(model, input_example=data.X.head(3))


def _log_inputs(data: Any, config: TuneConfig) -> None:
    tracking.log_params({k: v for k, v in vars(config).items() if k not in ("storage", "study")})
    tracking.log_params({"storage": redact(str(config.storage or DEFAULT_STORAGE))})
    tracking.log_dataset(data.frame, name=slug(data.name), source=data.source or data.name)


def _log_result(result: TuneResult) -> None:
    config = result.config
    tracking.log_params({"study": result.study, "fingerprint": result.fingerprint})
    mine = result.trials[result.trials["invocation"] == result.invocation]
    tracking.log_child_runs(trial_runs(mine, config.objective))
    tracking.log_metrics({**outer_metrics(result.summary), "seconds": result.seconds,
                          "trials_run": len(mine)})
    tracking.log_table(result.outer, "outer_folds.csv")
    tracking.log_table(result.summary, "outer_summary.csv")
    tracking.log_json({"final": result.best_params, "outer_folds": result.outer_params}, "best_params.json")


def _version_tags(result: TuneResult, data: Any) -> dict[str, Any]:
    """Numeric tags under the runs' metric names (tuned: plain; `default.*`, `gap.*`) and what
    made the version."""
    config = result.config
    tags: dict[str, Any] = {k: v for k, v in outer_metrics(result.summary).items() if pd.notna(v)}
    tags.update({"objective": config.objective, "best_params": json.dumps(result.best_params),
                 "study": result.study, "data": data.name, "n": len(data.y),
                 "events": int(data.y["event"].sum()), "fingerprint": result.fingerprint,
                 "model": config.model})
    return tags


def _figure(summary: pd.DataFrame, metric: str, variant: str) -> str:
    row = summary[(summary["metric"] == metric) & (summary["variant"] == variant)]
    if row.empty:
        return f"{metric} n/a"
    r = row.iloc[0]
    return f"{metric} {r['mean']:.3f} [95% CI {r['ci_low']:.3f}, {r['ci_high']:.3f}]"


def version_description(result: TuneResult, data: Any, calibration: str) -> str:
    """The registry's evidence for a version: data, n, events, outer-fold estimates, command."""
    config, summary = result.config, result.summary
    shown = [config.objective, *(m for m in OBJECTIVES if m != config.objective), calibration]
    lines = [
        f"{config.model} tuned on {data.name} (source {data.source or data.name}): n = {len(data.y)}, "
        f"events = {int(data.y['event'].sum())}.",
        f"Outer {config.outer_folds}-fold estimates (nested CV, {config.inner_folds} inner folds, "
        f"corrected resampled t CIs), tuned: " + "; ".join(_figure(summary, m, "tuned") for m in shown) + ".",
        "Default configuration: " + "; ".join(_figure(summary, m, "default") for m in shown) + ".",
        "Tuned - default: " + _figure(summary, config.objective, "tuned - default") + ".",
        f"Study {result.study}; best parameters {json.dumps(result.best_params)}.",
        f"Command: {tracking.command_line()}",
    ]
    return "\n".join(lines)


def run_and_log(data: Any, config: TuneConfig, *, registered_name: str,
                log_model: ModelLogger = log_sklearn_model, label: str | None = None,
                experiment: str = "tune",
                progress: Callable[[int, int], None] | None = None) -> tuple[TuneResult, Registration]:
    """Tune inside one MLflow parent run; log every trial of this invocation as a nested run,
    log the refitted model with `log_model`, register it with its evidence and move alias
    `champion` by the registry's rule (`tracking.champion_rule`: the objective and the late
    horizon's calibration slope, against the champion or, for a first version, the default
    configuration). `progress(trials done, trials in all)` follows the search."""
    prepare(config, data.spec)  # bad input fails before any run is opened
    tags = {"model": config.model, "objective": config.objective, "data": data.name}
    calibration = f"calibration_slope_{data.calibration_horizon}"
    with tracking.run(experiment, f"tune {config.model} {data.name}", seed=config.seed, tags=tags) as active:
        _log_inputs(data, config)
        result = tune(data, config, label=label, progress=progress)
        _log_result(result)
        uri = log_model(result.final_model, data)
        version = tracking.register_model(uri, registered_name, _version_tags(result, data),
                                          description=version_description(result, data, calibration))
        decision = tracking.promote_by_rule(
            registered_name, version, objective=config.objective, calibration=calibration,
            higher_is_better=OBJECTIVES[config.objective].direction == "maximize")
    registration = Registration(registered_name, version, decision.moved, decision.previous,
                                active.info.run_id, decision.reason)
    return result, registration


def champion_params(label: str, families: Sequence[str]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Best params of each family's registered champion (`rechallenge-<label>-<family>`).

    Returns ({family: params}, [families without a champion]). For `benchmark --tuned`; the
    params were tuned on all rows of the data, so a benchmark row refitting them on the
    benchmark's folds is optimistic: the honest figure is the tune run's outer estimate.
    """
    found, missing = {}, []
    for family in families:
        if not search_space_path(family).is_file():
            continue
        champ = tracking.champion(registered_model_name(label, family))
        if champ is None or "best_params" not in champ["tags"]:
            missing.append(family)
        else:
            found[family] = json.loads(champ["tags"]["best_params"])
    return found, missing

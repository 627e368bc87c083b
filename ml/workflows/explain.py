"""The explain run: fit models on a data set, explain them with SHAP, check the twin's signals.

`prepare` turns an `ExplainConfig` into the data and the model names (or one clear
`ExplainError`); `run_explain` fits, explains, checks and assembles the content of
shap_summary.json; `figures`, `rank_table` and `log_to_mlflow` present the result. The
benchmark's log uses `final_model_record`. Pure apart from `log_to_mlflow`: nothing is
written here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import yaml
from matplotlib.figure import Figure

from features import datasets, twin
from features.io import read_mapped
from features.pipeline import FeatureSpec
from ml import explain as ex
from ml import models
from ml.reporting import explain_plots
from ml.tracking import mlflow_io as tracking

EXPERIMENT = "explain"
SUMMARY_FILE = "shap_summary.json"
DEFAULT_MODEL_SEED = 2024
"""Models' seed without --seed (the benchmark's default seed): explanations are reproducible."""


class ExplainError(ValueError):
    """Input the explain run cannot use (unknown data set or model, bad table or config, ...)."""


# ------------------------------------------------------------------ one model


@dataclass
class ModelExplanation:
    """One fitted model's explanations (risk, and S(horizon) where it has curves)."""

    model: str
    risk: ex.Explanation
    risk_summary: pd.DataFrame
    survival: ex.Explanation | None = None
    survival_summary: pd.DataFrame | None = None

    def record(self) -> dict[str, Any]:
        out = {ex.RISK: ex.summary_record(self.risk, self.risk_summary)}
        if self.survival is not None:
            out[ex.SURVIVAL] = ex.summary_record(self.survival, self.survival_summary)
        return out


def explain_fitted(name: str, model: Any, X: pd.DataFrame, spec: FeatureSpec,
                   horizon: float | None = ex.DEFAULT_HORIZON,
                   random_state: int | None = None) -> ModelExplanation:
    """Risk (and, with a horizon, S(horizon)) explanations and summaries of a fitted model."""
    risk = ex.explain(model, X, ex.RISK, random_state=random_state)
    out = ModelExplanation(model=name, risk=risk, risk_summary=ex.summarise(risk, spec))
    if horizon is not None and hasattr(model, "predict_survival_function"):
        surv = ex.explain(model, X, ex.SURVIVAL, horizon=horizon, random_state=random_state)
        out.survival, out.survival_summary = surv, ex.summarise(surv, spec)
    return out


def _fit(data: datasets.SurvivalData, name: str, params: Mapping[str, Any] | None,
         random_state: int | None) -> Any:
    return models.fit_full(name, data.spec, data.X, data.y, random_state=random_state,
                           treatment_column=data.treatment_column, **dict(params or {}))


def fit_and_explain(data: datasets.SurvivalData, names: Sequence[str],
                    horizon: float | None = ex.DEFAULT_HORIZON, random_state: int | None = None,
                    params: Mapping[str, Mapping[str, Any]] | None = None) -> list[ModelExplanation]:
    """Fit each model of the zoo on all rows of `data` and explain it on the same rows."""
    return [explain_fitted(name, _fit(data, name, (params or {}).get(name), random_state), data.X,
                           data.spec, horizon, random_state)
            for name in names]


# ------------------------------------------------------------------ signal checks


def check_signals(explained: Sequence[ModelExplanation], true_log_hr: Mapping[str, float],
                  noise: Sequence[str] = (), **kwargs: Any) -> list[ex.SignalCheck]:
    """`signal_check` of each model's risk summary."""
    return [ex.signal_check(e.risk_summary, true_log_hr, model=e.model, noise=noise, **kwargs)
            for e in explained]


def recovery_over_seeds(names: Sequence[str], seeds: Sequence[int], n: int | None = None,
                        config: twin.TwinConfig | None = None, random_state: int | None = None,
                        params: Mapping[str, Mapping[str, Any]] | None = None,
                        on_draw: Callable[[int], None] | None = None,
                        ) -> tuple[list[ex.SignalCheck], pd.DataFrame]:
    """Signal checks of every model on fresh twin draws (one per seed), and their recovery table."""
    config = config if config is not None else twin.load_config()
    truth = twin.true_log_hazard_ratios(config)
    checks: list[ex.SignalCheck] = []
    for seed in seeds:
        data = datasets.twin(n=n, seed=seed, config=config)
        explained = fit_and_explain(data, names, horizon=None, random_state=random_state, params=params)
        checks += check_signals(explained, truth, noise=twin.NOISE_FEATURES)
        if on_draw is not None:
            on_draw(seed)
    return checks, ex.recovery_table(checks)


# ------------------------------------------------------------------ tables and documents


def summary_document(explained: Sequence[ModelExplanation], checks: Sequence[ex.SignalCheck] | None = None,
                     recovery: pd.DataFrame | None = None, **meta: Any) -> dict[str, Any]:
    """The content of shap_summary.json."""
    doc: dict[str, Any] = {**meta, "models": {e.model: e.record() for e in explained}}
    if checks is not None:
        doc["signal_check"] = {c.model: c.as_dict() for c in checks}
    if recovery is not None:
        doc["recovery"] = recovery.to_dict(orient="records")
    return doc


SUMMARY_COLUMNS = ["model", "feature", "mean_abs_shap", "rank", "direction"]


def summary_frame(explained: Sequence[ModelExplanation], output: str = ex.RISK) -> pd.DataFrame:
    """Long table model x feature (mean_abs_shap, rank, direction) for one output."""
    summaries = [(e.model, e.risk_summary if output == ex.RISK else e.survival_summary) for e in explained]
    frames = [s[SUMMARY_COLUMNS[1:]].assign(model=m) for m, s in summaries if s is not None]
    if not frames:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    return pd.concat(frames, ignore_index=True)[SUMMARY_COLUMNS]


def _directions_text(feature: str, found: Mapping[str, int]) -> str:
    """'CR/PR-, PD+' (a numeric feature is written by its own name)."""
    return ", ".join(f"{level or feature}{'+' if s > 0 else '-' if s < 0 else '0'}"
                     for level, s in found.items())


def signal_frame(checks: Sequence[ex.SignalCheck]) -> pd.DataFrame:
    """One row per model: pass/fail and, per signal feature, its rank and directions."""
    rows = []
    for c in checks:
        row: dict[str, Any] = {"model": c.model, "pass": "yes" if c.passed else "no"}
        for feat, res in c.features.items():
            row[f"{feat} rank"] = res["rank"]
            row[f"{feat} direction"] = (_directions_text(feat, res["direction_found"])
                                        + ("" if res["direction_ok"] else " (wrong)"))
        rows.append(row)
    return pd.DataFrame(rows)


def _explained_rows(X: pd.DataFrame, max_rows: int, random_state: int | None) -> pd.DataFrame:
    """All rows, or a seeded random subset of `max_rows` of them in their original order."""
    if len(X) <= max_rows:
        return X
    return X.iloc[np.sort(np.random.default_rng(random_state).choice(len(X), max_rows, replace=False))]


def final_model_record(data: datasets.SurvivalData, name: str, params: Mapping[str, Any] | None = None,
                       random_state: int | None = None, horizon: float | None = None,
                       max_rows: int = 1000) -> dict[str, Any]:
    """SHAP summary of model `name` refitted on all rows of `data` (for the benchmark's log).

    Fitted on every row; explained on at most `max_rows` of them (a seeded random subset,
    enough for a stable summary). On the twin's PFS the signal check against the default
    cohort config is included.
    """
    fitted = _fit(data, name, params, random_state)
    X = _explained_rows(data.X, max_rows, random_state)
    explained = explain_fitted(name, fitted, X, data.spec, horizon, random_state)
    record: dict[str, Any] = {"model": name, "refitted_on": int(len(data.frame)), "explained_rows": len(X),
                              **explained.record()}
    if data.name.startswith("twin") and data.time == "pfs_months":
        check = ex.signal_check(explained.risk_summary, twin.true_log_hazard_ratios(), model=name,
                                noise=twin.NOISE_FEATURES)
        record["signal_check"] = check.as_dict()
    return record


# ------------------------------------------------------------------ the run


@dataclass(frozen=True)
class ExplainConfig:
    """What `rechallenge explain` was asked for. `horizon` 0 = risk only; `models` empty = all
    that apply; `cohort_config` is the twin's YAML (its true log HRs are the answer key)."""

    dataset: str = "twin"
    data: Path | None = None
    mapping: Path | None = None
    time: str | None = None
    event: str | None = None
    treatment: str | None = None
    treated: str | None = None
    drop: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    horizon: float = ex.DEFAULT_HORIZON
    seeds: int = 0
    n: int | None = None
    seed: int | None = None
    cohort_config: Path | None = None
    patient: str | None = None

    @property
    def is_twin(self) -> bool:
        return self.data is None and self.dataset == "twin"

    @property
    def model_seed(self) -> int:
        """The random models' seed: --seed, else the benchmark's default (the same command twice
        gives the same explanations)."""
        return DEFAULT_MODEL_SEED if self.seed is None else self.seed


@dataclass
class Prepared:
    """The data, the models to fit on it and, on the twin, the cohort config."""

    data: datasets.SurvivalData
    names: list[str]
    cohort: twin.TwinConfig | None = None


@dataclass
class ExplainResult:
    config: ExplainConfig
    prepared: Prepared
    explained: list[ModelExplanation]
    document: dict[str, Any]
    checks: list[ex.SignalCheck] | None = None
    recovery: pd.DataFrame | None = None


def _table(cfg: ExplainConfig) -> datasets.SurvivalData:
    try:  # the mapping (if any) gives delimiter, encoding, names, labels, dates and time unit
        table = read_mapped(cfg.data, cfg.mapping)
    except (OSError, ValueError) as exc:  # e.g. a binary file named .csv: the message names the file
        raise ExplainError(str(exc) if str(cfg.data) in str(exc) else f"{cfg.data}: {exc}") from None
    return datasets.from_table(table, cfg.time, cfg.event, treatment=cfg.treatment,
                               treated=cfg.treated, drop=cfg.drop, name=cfg.data.stem, source=str(cfg.data))


def _load(cfg: ExplainConfig) -> tuple[datasets.SurvivalData, twin.TwinConfig | None]:
    if cfg.is_twin:
        cohort = twin.load_config(cfg.cohort_config)
        return datasets.twin(n=cfg.n, seed=cfg.seed, config=cohort), cohort
    if cfg.data is not None:
        return _table(cfg), None
    return datasets.public(cfg.dataset), None


def _model_names(requested: Sequence[str], data: datasets.SurvivalData) -> list[str]:
    """The requested models, or every model of the zoo that applies to `data`."""
    unknown = [m for m in requested if m not in models.REGISTRY]
    if unknown:
        raise ExplainError(f"--models: unknown model '{unknown[0]}'; "
                           f"choose from {', '.join(models.MODEL_NAMES)}")
    if requested:
        return list(requested)
    has_treatment = data.treatment is not None
    return [m for m in models.MODEL_NAMES if has_treatment or not models.REGISTRY[m].needs_treatment]


def prepare(cfg: ExplainConfig) -> Prepared:
    """Load the data set and pick the models; every input problem is one ExplainError."""
    if cfg.data is None and cfg.dataset not in datasets.DATASETS:
        raise ExplainError(f"--dataset: unknown data set '{cfg.dataset}'; "
                           f"choose from {', '.join(datasets.DATASETS)}")
    if cfg.data is not None and (cfg.time is None or cfg.event is None):
        raise ExplainError("--data needs --time and --event (its time and event columns)")
    try:
        data, cohort = _load(cfg)
    except (OSError, ValueError, yaml.YAMLError) as exc:  # bad config or table: one clean message
        raise ExplainError(str(exc)) from None
    names = _model_names(cfg.models, data)
    if cfg.patient is not None and cfg.patient not in data.frame.index.astype(str):
        raise ExplainError(f"no patient '{cfg.patient}' in {data.name}")
    return Prepared(data=data, names=names, cohort=cohort)


Progress = Callable[[str, int, int], None]
"""progress(what is running, model fits done, model fits in all)."""


def _recovery(prepared: Prepared, cfg: ExplainConfig, progress: Progress | None) -> pd.DataFrame | None:
    """On the twin with `cfg.seeds` > 0: the recovery table over that many fresh draws."""
    if prepared.cohort is None or not cfg.seeds:
        return None
    first, k = (prepared.cohort.default_seed if cfg.seed is None else cfg.seed) + 1, len(prepared.names)
    _progress(progress, "signal check on fresh twin draws", k, k * (1 + cfg.seeds))
    _, table = recovery_over_seeds(
        prepared.names, range(first, first + cfg.seeds), n=cfg.n, config=prepared.cohort,
        random_state=cfg.model_seed, on_draw=lambda seed: _progress(
            progress, "signal check on fresh twin draws", k * (seed - first + 2), k * (1 + cfg.seeds)))
    return table


def _progress(step: Progress | None, message: str, done: int, total: int) -> None:
    if step is not None:
        step(message, done, total)


def run_explain(prepared: Prepared, cfg: ExplainConfig, progress: Progress | None = None) -> ExplainResult:
    """Fit and explain every model; on the twin, the signal check (and the recovery over
    `cfg.seeds` fresh draws); the shap_summary.json document."""
    data, horizon, names = prepared.data, cfg.horizon or None, prepared.names
    total = len(names) * (1 + (cfg.seeds if prepared.cohort is not None else 0))
    explained: list[ModelExplanation] = []
    for i, name in enumerate(names):  # one at a time, for the progress bar
        _progress(progress, f"{name} on {data.name}", i, total)
        explained += fit_and_explain(data, [name], horizon=horizon, random_state=cfg.model_seed)
    truth = twin.true_log_hazard_ratios(prepared.cohort) if prepared.cohort is not None else None
    checks = None if truth is None else check_signals(explained, truth, noise=twin.NOISE_FEATURES)
    recovery = _recovery(prepared, cfg, progress)
    doc = summary_document(explained, checks, recovery, dataset=data.name, n=len(data.frame),
                           horizon=horizon, truth=truth, config=str(cfg.cohort_config or "default"))
    return ExplainResult(config=cfg, prepared=prepared, explained=explained, document=doc, checks=checks,
                         recovery=recovery)


# ------------------------------------------------------------------ presentation


def _title(expl: ex.Explanation, model: str) -> str:
    return f"{model}: SHAP of {expl.output} ({expl.scale})".strip(": ")


def model_figures(e: ModelExplanation, spec: FeatureSpec, patient: str | None = None) -> dict[str, Figure]:
    """Beeswarm and bar of the model's risk SHAP, and the waterfall of `patient` (an index label,
    compared as text) if given."""
    values, title, out = ex.to_shap(e.risk, spec), _title(e.risk, e.model), {}
    for kind, draw in (("beeswarm", explain_plots.plot_beeswarm), ("bar", explain_plots.plot_bar)):
        fig, ax = plt.subplots(figsize=(8, 6))
        draw(values, ax=ax, title=title)
        out[f"{e.model}_{kind}.png"] = fig
    if patient is not None:
        rows = np.flatnonzero(e.risk.data.index.astype(str) == patient)
        if not len(rows):
            raise KeyError(f"patient {patient!r} is not among the explained rows")
        out[f"{e.model}_waterfall_{patient}.png"] = explain_plots.plot_waterfall(
            values, int(rows[0]), title=f"{title}, patient {patient}")
    return out


def figures(result: ExplainResult, patient: str | None = None) -> dict[str, Figure]:
    """Every model's figures, by file name."""
    out: dict[str, Figure] = {}
    for e in result.explained:
        out.update(model_figures(e, result.prepared.data.spec, patient))
    return out


def rank_table(result: ExplainResult) -> pd.DataFrame:
    """feature x model: the risk SHAP rank, sorted by the first model's ranks."""
    names = result.prepared.names
    table = summary_frame(result.explained).pivot(index="feature", columns="model", values="rank")
    return table.reset_index()[["feature", *names]].sort_values(names[0])


def report_tables(result: ExplainResult) -> list[tuple[str, pd.DataFrame]]:
    """(title, table) pairs to show: the ranks, and on the twin the signal check and recovery."""
    tables = [(f"SHAP rank of each feature (risk, 1 = most important): {result.prepared.data.name}",
               rank_table(result))]
    if result.checks is not None:
        tables.append(("Signal check vs the cohort config's true log HRs (pass = top 3 of non-treatment "
                       "features, true direction)", signal_frame(result.checks)))
    if result.recovery is not None:
        tables.append((f"Recovery over {result.config.seeds} fresh twin draws", result.recovery))
    return tables


def mlflow_metrics(result: ExplainResult) -> dict[str, float]:
    metrics = {f"signal_pass_{c.model}": float(c.passed) for c in result.checks or []}
    if result.recovery is not None:
        metrics.update({f"recovery_rate_{r.model}": r.recovery_rate for r in result.recovery.itertuples()})
    return metrics


def log_to_mlflow(result: ExplainResult, files: Sequence[Path] = ()) -> str:
    """One run in experiment 'explain': parameters, shap_summary.json, metrics, figure files."""
    cfg, data = result.config, result.prepared.data
    with tracking.run(EXPERIMENT, f"explain {data.name}", seed=cfg.seed) as active:
        tracking.log_params({"dataset": data.name, "models": ",".join(result.prepared.names),
                             "horizon": cfg.horizon, "seeds": cfg.seeds,
                             "config": str(cfg.cohort_config or "default")})
        tracking.log_json(result.document, SUMMARY_FILE)
        tracking.log_metrics(mlflow_metrics(result))
        for path in files:
            tracking.log_artifact(path)
    return active.info.run_id

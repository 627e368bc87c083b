"""The benchmark run: every model on the same repeated CV folds, scored on the held-out rows.

Per fold the preprocessor (impute, scale, one-hot) is fitted once on the training rows
and shared by every model (each model's Pipeline would fit the identical transformer);
then each model is fitted on the training rows and scored on the test rows by
`ml.evaluation.loop.fit_and_score`. On the twin the true linear predictor is scored on
the same folds as the `oracle` row. Pure: no I/O, no MLflow.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import pandas as pd
from sklearn.base import clone

from features import datasets
from features.pipeline import describe_infrequent, infrequent_levels
from ml import models
from ml.evaluation.folds import EvaluationError, Fold, make_folds
from ml.evaluation.loop import FitScore, Scoring, fit_and_score, score_held_out
from ml.evaluation.metrics import metric_names, summarise
from ml.evaluation.parallel import map_folds
from ml.evaluation.validation import ValidationResult
from ml.workflows.benchmark.config import TUNED_SUFFIX, BenchmarkConfig, BenchmarkError, model_spec
from ml.workflows.benchmark.internal import run_internal

BASELINE, ORACLE = "cox", "oracle"
FAILURES = (ValueError, ArithmeticError, np.linalg.LinAlgError)
"""Numerical failures of one model on one fold: noted, that model's row of the fold is NaN."""


@dataclass
class BenchmarkResult:
    data_name: str
    n: int
    events: int
    scores: pd.DataFrame            # one row per (model, repeat, fold)
    leaderboard: pd.DataFrame
    calibration: pd.DataFrame       # per model, fold, risk group: predicted vs observed S(h)
    risk: pd.DataFrame              # out-of-fold risk of the first repeat (for KM by risk group)
    metrics: list[str]
    horizons: dict[str, float]
    tau: float
    time_unit: str
    config: BenchmarkConfig
    skipped: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    internal: dict[str, ValidationResult] = field(default_factory=dict)  # bootstrap validation per model


@dataclass
class FoldOutput:
    """What one fold gives back: score records, calibration rows, first-repeat risks, notes."""

    records: list[dict] = field(default_factory=list)
    calibration: list[pd.DataFrame] = field(default_factory=list)
    risks: list[pd.DataFrame] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    infrequent: dict[str, tuple] = field(default_factory=dict)  # rare levels the fold's preprocessor pooled

    def add(self, name: str, fold: Fold, fs: FitScore, y_test: np.ndarray) -> None:
        where = {"repeat": fold.repeat, "fold": fold.fold}
        self.notes += [f"{name}, repeat {fold.repeat + 1} fold {fold.fold + 1}: {n}" for n in fs.notes]
        if fs.error is not None:
            self.notes.append(f"{name} failed on repeat {fold.repeat + 1} fold {fold.fold + 1}: {fs.error}")
            self.records.append({"model": name, **where, "fit_seconds": math.nan})
            return
        self.records.append({"model": name, **where, **fs.metrics, "fit_seconds": fs.fit_seconds})
        self.calibration.append(fs.calibration.assign(model=name, **where))
        if fold.repeat == 0:
            self.risks.append(_risk_frame(name, fold, fs.risk, y_test))

    def add_oracle(self, fold: Fold, truth: np.ndarray, y_train: np.ndarray, y_test: np.ndarray,
                   scoring: Scoring) -> None:
        # the oracle has no curves (no calibration rows); its notes would repeat the models'
        fs = score_held_out(y_train, y_test, truth, scoring)
        self.records.append({"model": ORACLE, "repeat": fold.repeat, "fold": fold.fold, **fs.metrics,
                             "fit_seconds": 0.0})
        if fold.repeat == 0:
            self.risks.append(_risk_frame(ORACLE, fold, truth, y_test))


def _fold_seed(seed: int, k: int) -> int:
    return int((seed * 1_000_003 + k * 7919) % (2**31 - 1))


def _risk_frame(name: str, fold: Fold, risk: np.ndarray, y_test: np.ndarray) -> pd.DataFrame:
    # risk groups by tertile within the test fold (risk scales differ between folds)
    group = pd.qcut(pd.Series(risk).rank(method="first"), 3, labels=["low", "medium", "high"])
    return pd.DataFrame({"model": name, "fold": fold.fold, "row": fold.test, "risk": risk,
                         "group": group.astype(str).to_numpy(), "time": y_test["time"],
                         "event": y_test["event"]})


@dataclass(frozen=True)
class FoldRunner:
    """Fits and scores every model on one fold; picklable, so folds can run in worker processes."""

    data: datasets.SurvivalData
    names: list[str]
    config: BenchmarkConfig

    def __call__(self, k: int, fold: Fold, on_model: Callable[[str], None] | None = None) -> FoldOutput:
        data = self.data
        pre = clone(models.make_pipeline(self.names[0], data.spec, treatment_column=data.treatment_column)[0])
        X, y = data.X, data.y
        X_train, X_test = pre.fit_transform(X.iloc[fold.train]), pre.transform(X.iloc[fold.test])
        y_train, y_test = y[fold.train], y[fold.test]
        scoring = Scoring.of(data, self.config.calibration_groups)
        out = FoldOutput(infrequent=infrequent_levels(pre))
        for name in self.names:
            fs = self._fit_and_score(name, k, X_train, y_train, X_test, y_test, scoring)
            out.add(name, fold, fs, y_test)
            if on_model is not None:
                on_model(name)
        if data.truth is not None:
            out.add_oracle(fold, data.truth[fold.test], y_train, y_test, scoring)
        return out

    def _fit_and_score(self, name: str, k: int, X_train: pd.DataFrame, y_train: np.ndarray,
                       X_test: pd.DataFrame, y_test: np.ndarray, scoring: Scoring) -> FitScore:
        family, params = model_spec(name, self.config)
        try:
            est = models.make_estimator(family, random_state=_fold_seed(self.config.seed, k),
                                        treatment_column=self.data.treatment_column, **params)
        except FAILURES as exc:
            return FitScore(error=str(exc))
        return fit_and_score(est, X_train, y_train, X_test, y_test, scoring, catch=FAILURES)


def _runnable(data: datasets.SurvivalData, config: BenchmarkConfig) -> tuple[list[str], dict[str, str]]:
    """The leaderboard rows to fit (tuned rows last) and the models skipped, with why."""
    names, skipped = [], {}
    for name in config.models:
        if models.REGISTRY[name].needs_treatment and data.treatment is None:
            skipped[name] = (f"skipped: '{data.name}' has no treatment column (give --treatment COL "
                             "--treated VALUE)")
        else:
            names.append(name)
    names += [f"{m}{TUNED_SUFFIX}" for m in config.tuned_params if m in names]
    if not names:
        raise BenchmarkError("no model left to run: " + "; ".join(f"{k} {v}" for k, v in skipped.items()))
    if BASELINE not in names:
        skipped.setdefault(BASELINE, "not run: the paired differences to Cox are not available")
    return names, skipped


def _run_folds(runner: FoldRunner, folds: list[Fold],
               progress: Callable[[str, int], None] | None) -> list[FoldOutput]:
    """The folds in fold order; `progress(model, steps_done)` as model-fold fits finish."""
    done = 0

    def tick(name: str) -> None:
        nonlocal done
        done += 1
        if progress:
            progress(name, done)

    if runner.config.n_jobs == 1:  # in this process: one tick per model fitted
        return map_folds(partial(runner, on_model=tick), folds)
    return map_folds(runner, folds, runner.config.n_jobs,
                     on_done=lambda _: [tick(name) for name in runner.names])


def _scores_frame(outputs: list[FoldOutput], names: list[str], metrics: list[str]) -> pd.DataFrame:
    """One row per (model, repeat, fold), models in config order (oracle last)."""
    scores = pd.DataFrame([r for out in outputs for r in out.records])
    for m in metrics:
        if m not in scores:
            scores[m] = math.nan
    order = {name: i for i, name in enumerate([*names, ORACLE])}
    return scores.sort_values(["model", "repeat", "fold"], key=lambda s: s.map(order) if s.name == "model"
                              else s, kind="stable").reset_index(drop=True)


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def run_benchmark(data: datasets.SurvivalData, config: BenchmarkConfig,
                  progress: Callable[[str, int], None] | None = None) -> BenchmarkResult:
    """Fit and score every model on every fold. `progress(model, steps_done)` is called as
    model-fold fits finish (from this process), for a progress bar."""
    started = time.perf_counter()
    y = data.y
    names, skipped = _runnable(data, config)
    try:
        folds = make_folds(y, config.folds, config.repeats, config.seed)
    except EvaluationError as exc:
        raise BenchmarkError(str(exc)) from None
    outputs = _run_folds(FoldRunner(data, names, config), folds, progress)
    fits = len(names) * len(folds)
    internal = run_internal(data, config, names, None if progress is None else
                            (lambda name, done: progress(f"{name} B", fits + done)))
    metrics = metric_names(data.horizons)
    scores = _scores_frame(outputs, names, metrics)
    n_test = float(np.mean([len(f.test) for f in folds]))
    n_train = float(np.mean([len(f.train) for f in folds]))
    board = summarise(scores, metrics, n_train, n_test, baseline=BASELINE if BASELINE in names else None)
    pooled = describe_infrequent([out.infrequent for out in outputs], data.spec.min_level_rows,
                                 "at least one training fold")
    return BenchmarkResult(
        data_name=data.name, n=len(y), events=int(y["event"].sum()), scores=scores, leaderboard=board,
        calibration=_concat([c for out in outputs for c in out.calibration]),
        risk=_concat([r for out in outputs for r in out.risks]), metrics=metrics,
        horizons=dict(data.horizons), tau=data.tau, time_unit=data.time_unit, config=config,
        skipped=skipped,
        notes=[*data.notes, *filter(None, [pooled]), *(n for out in outputs for n in out.notes),
               *(f"internal validation of {m}: {n}" for m, r in internal.items() for n in r.notes)],
        seconds=time.perf_counter() - started, internal=internal)

"""Nested cross-validation: the honest estimate of a tuned model family, and the final model.

    outer fold k (k = 0..K-1):  study `<study>-outer<k>` searches on inner folds of the
                                outer training part; its best configuration and the
                                default one are both fitted on that training part and
                                scored on the untouched outer test part
    final:                      study `<study>` searches on inner folds of all rows; its
                                best configuration is refitted on all rows

The outer scores are the honest estimate of "tuned model family"; the final model is
what gets registered (`record`). Pure: no MLflow and no printing.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
import pandas as pd

from ml.evaluation.folds import Fold
from ml.evaluation.loop import Scoring, fit_and_score
from ml.evaluation.parallel import map_folds
from ml.workflows.tuning.config import OBJECTIVES, TuneConfig
from ml.workflows.tuning.progress import watch_trials
from ml.workflows.tuning.space import SearchSpace, check_space, load_search_space, make_model, with_params
from ml.workflows.tuning.storage import (
    best_params,
    create_studies,
    fingerprint,
    open_storage,
    study_names,
    trials_frame,
)
from ml.workflows.tuning.studies import StudyTask, WorkerJob, cv_folds, quotas, run_workers
from ml.workflows.tuning.summary import summarise_outer


@dataclass
class TuneResult:
    """Results only; printing is the CLI's (`summary_table`), logging is `run_and_log`'s."""

    config: TuneConfig
    study: str
    studies: list[str]
    fingerprint: str
    outer: pd.DataFrame          # one row per outer fold x variant (tuned/default), all metrics
    summary: pd.DataFrame        # per variant and metric: mean, CI; plus tuned-default difference
    best_params: dict[str, Any]
    outer_params: list[dict[str, Any]]
    final_model: Any
    trials: pd.DataFrame
    invocation: str
    seconds: float


def default_study_name(label: str, config: TuneConfig, fp: str) -> str:
    return f"{label}-{config.model}-{config.objective}-{fp}"


def slug(name: str) -> str:
    """'twin (n=101, seed 7)' -> 'twin-n101-seed7': a study-name-safe label."""
    keep = "".join(c if c.isalnum() else "-" for c in name.lower().replace("=", ""))
    return "-".join(p for p in keep.split("-") if p)


def prepare(config: TuneConfig, spec: Any) -> tuple[SearchSpace, Any, optuna.storages.BaseStorage]:
    """Check the inputs before any work: model, search space, storage (TuneError if bad)."""
    base = make_model(config.model, spec, random_state=config.seed)
    space = load_search_space(config.model, config.space_path)
    check_space(space, base)
    return space, base, open_storage(config.storage)


@dataclass(frozen=True)
class _OuterFold:
    """Scores the tuned and the default configuration on one outer fold."""

    X: pd.DataFrame
    y: np.ndarray
    base: Any
    fixed: dict[str, Any]
    best: list[dict[str, Any]]
    scoring: Scoring

    def __call__(self, k: int, fold: Fold) -> list[dict[str, Any]]:
        rows = []
        for variant, params in (("tuned", {**self.fixed, **self.best[k]}), ("default", self.fixed)):
            fs = fit_and_score(with_params(self.base, params), self.X.iloc[fold.train], self.y[fold.train],
                               self.X.iloc[fold.test], self.y[fold.test], self.scoring)
            rows.append({"fold": k, "variant": variant, "n_train": len(fold.train), "n_test": len(fold.test),
                         **fs.metrics})
        return rows


def _search(X: pd.DataFrame, y: np.ndarray, data: Any, config: TuneConfig, space: SearchSpace,
            tasks: tuple[StudyTask, ...], progress: Callable[[int, int], None] | None = None) -> str:
    """Add this run's trials to the studies (split over the workers); returns the invocation id."""
    invocation = uuid.uuid4().hex
    deadline = None if config.timeout is None else time.time() + config.timeout
    jobs = [WorkerJob(X, y, data.spec, Scoring.of(data), config, space, tasks, config.storage, q, w,
                      invocation, deadline)
            for w, q in enumerate(quotas(config.n_trials, config.workers)) if q > 0 or w == 0]
    if config.n_trials > 0:
        with watch_trials(config.storage, [t.name for t in tasks], config.n_trials * len(tasks), progress):
            run_workers(jobs)
    return invocation


def tune(data: Any, config: TuneConfig, *, label: str | None = None,
         progress: Callable[[int, int], None] | None = None) -> TuneResult:
    """Nested CV tuning of one model family on a `features.datasets.SurvivalData`.

    Returns the outer-fold scores of the tuned and the default configuration and the
    best configuration refitted on all rows. `label` prefixes the default study name;
    `progress(trials done, trials in all)` follows the search.
    """
    t0 = time.time()
    X, y = data.X.reset_index(drop=True), data.y
    space, base, storage = prepare(config, data.spec)
    fp = fingerprint(X, y, config, space)
    study = config.study or default_study_name(label or slug(data.name), config, fp)
    names = study_names(study, config.outer_folds)
    create_studies(storage, names, OBJECTIVES[config.objective].direction, fp)

    outer = cv_folds(y, config.outer_folds, random_state=config.seed)
    row_sets = [f.train for f in outer] + [np.arange(len(y))]
    tasks = tuple(StudyTask(name, rows, i)
                  for i, (name, rows) in enumerate(zip(names, row_sets, strict=True)))
    invocation = _search(X, y, data, config, space, tasks, progress)

    best = [best_params(storage, name) for name in names]
    scored = map_folds(_OuterFold(X, y, base, dict(space.fixed), best, Scoring.of(data)), outer)
    outer_df = pd.DataFrame([row for rows in scored for row in rows])
    final = with_params(base, {**space.fixed, **best[-1]}).fit(X, y)
    return TuneResult(
        config=config, study=study, studies=names, fingerprint=fp, outer=outer_df,
        summary=summarise_outer(outer_df), best_params=best[-1], outer_params=best[:-1],
        final_model=final, trials=trials_frame(storage, names), invocation=invocation,
        seconds=time.time() - t0,
    )

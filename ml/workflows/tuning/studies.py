"""The study machinery: the inner-CV objective, and workers adding trials to shared studies.

Trials report the running mean over inner folds after each fold, so a median pruner stops
hopeless configurations early. Any number of processes (`workers`) on any number of
machines can add trials to the same studies (see `storage`).
"""

from __future__ import annotations

import math
import multiprocessing
import os
import socket
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
import pandas as pd
from sklearn.base import clone

from ml.evaluation.folds import EvaluationError, Fold, make_folds
from ml.evaluation.loop import Scoring, fit_and_score
from ml.evaluation.parallel import exit_with_parent
from ml.workflows.tuning.config import TuneConfig, TuneError
from ml.workflows.tuning.space import SearchSpace, make_model, with_params
from ml.workflows.tuning.storage import fail_stale_trials, make_pruner, open_storage

CATCH = (ValueError, ArithmeticError, np.linalg.LinAlgError)
"""Numerical failures of one configuration: that trial is marked FAIL, the study goes on."""


def cv_folds(y: np.ndarray, n_splits: int, random_state: int) -> list[Fold]:
    """K folds stratified on the event indicator (ml.evaluation's make_folds, one repeat)."""
    try:
        return make_folds(y, n_splits, 1, random_state)
    except EvaluationError as exc:
        raise TuneError(str(exc)) from exc


@dataclass(frozen=True)
class StudyTask:
    """One study: its name and the rows it searches on (inner folds are drawn from them)."""

    name: str
    rows: np.ndarray
    index: int


@dataclass
class InnerCVObjective:
    """Mean inner-fold score of one sampled configuration; reports after each fold (pruning)."""

    X: pd.DataFrame
    y: np.ndarray
    base: Any
    space: SearchSpace
    folds: list[Fold]
    objective: str
    scoring: Scoring
    tags: dict[str, Any] = field(default_factory=dict)

    def __call__(self, trial: optuna.Trial) -> float:
        for key, value in self.tags.items():
            trial.set_user_attr(key, value)
        model = with_params(self.base, self.space.suggest(trial))
        scores: list[float] = []
        for step, fold in enumerate(self.folds):
            scores.append(self._fold_score(model, fold))
            if not math.isfinite(scores[-1]):
                raise ValueError(f"{self.objective} could not be computed on inner fold {step}")
            trial.report(float(np.mean(scores)), step)
            if trial.should_prune():
                trial.set_user_attr("fold_scores", scores)
                raise optuna.TrialPruned(f"pruned after inner fold {step}")
        trial.set_user_attr("fold_scores", scores)
        return float(np.mean(scores))

    def _fold_score(self, model: Any, fold: Fold) -> float:
        # curves only when the objective needs them (IBS): a C-index does not
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fs = fit_and_score(clone(model), self.X.iloc[fold.train], self.y[fold.train],
                               self.X.iloc[fold.test], self.y[fold.test], self.scoring,
                               curves=self.objective == "ibs")
        return fs.metrics[self.objective]


@dataclass(frozen=True)
class WorkerJob:
    """What one worker process needs (pickled to it): data, model, studies and its quota."""

    X: pd.DataFrame
    y: np.ndarray
    spec: Any
    scoring: Scoring
    config: TuneConfig
    space: SearchSpace
    tasks: tuple[StudyTask, ...]
    storage: str | None
    n_trials: int
    worker: int
    invocation: str
    deadline: float | None


def _sampler_seed(seed: int, study_index: int, worker: int, existing_trials: int) -> int:
    return int(np.random.SeedSequence([seed, study_index, worker, existing_trials]).generate_state(1)[0])


def _share_of_time(deadline: float | None, studies_left: int) -> float | None:
    """An even split of the remaining budget over the studies still to run."""
    if deadline is None:
        return None
    return (deadline - time.time()) / studies_left


def _optimize(job: WorkerJob, task: StudyTask, storage: optuna.storages.BaseStorage, base: Any,
              tags: dict[str, Any], timeout: float | None) -> int:
    """This worker's trials on one study; returns how many it added."""
    cfg = job.config
    # The sampler's stream depends on the trials already there, so a resumed study or a
    # later machine does not replay the first one's random start-up configurations.
    before = len(optuna.load_study(study_name=task.name, storage=storage).get_trials(deepcopy=False))
    sampler = optuna.samplers.TPESampler(seed=_sampler_seed(cfg.seed, task.index, job.worker, before))
    study = optuna.load_study(study_name=task.name, storage=storage, sampler=sampler,
                              pruner=make_pruner(cfg.pruner_startup_trials))
    X, y = job.X.iloc[task.rows], job.y[task.rows]
    folds = cv_folds(y, cfg.inner_folds, random_state=cfg.seed + 1 + task.index)
    objective = InnerCVObjective(X, y, base, job.space, folds, cfg.objective, job.scoring, tags)
    study.optimize(objective, n_trials=job.n_trials, timeout=timeout, catch=CATCH, gc_after_trial=False)
    return len(study.get_trials(deepcopy=False)) - before


def work(job: WorkerJob) -> int:
    """Run this worker's share of trials on each study in turn; returns trials run."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(job.storage)
    base = make_model(job.config.model, job.spec, random_state=job.config.seed)
    tags = {"pid": os.getpid(), "host": socket.gethostname(), "worker": job.worker,
            "invocation": job.invocation}
    done = 0
    for i, task in enumerate(job.tasks):
        timeout = _share_of_time(job.deadline, len(job.tasks) - i)
        if timeout is not None and timeout <= 0:
            break
        done += _optimize(job, task, storage, base, tags, timeout)
    return done


def quotas(n_trials: int, workers: int) -> list[int]:
    """Split n_trials over workers so the counts add up exactly."""
    q, r = divmod(n_trials, workers)
    return [q + (1 if w < r else 0) for w in range(workers)]


def _work_and_report(job: WorkerJob, parent_pid: int, conn: Any) -> None:
    """A worker process: run `work`, then send ("done", trials) or ("error", exception) home."""
    exit_with_parent(parent_pid)  # a killed tune leaves no orphan adding trials for nobody
    try:
        conn.send(("done", work(job)))
    except Exception as exc:  # any error of the worker is the command's, raised in the parent
        try:
            conn.send(("error", exc))
        except Exception:  # an exception that cannot be pickled: its text then
            conn.send(("error", TuneError(f"worker {job.worker}: {exc}")))
    finally:
        conn.close()


def _outcome(job: WorkerJob, proc: Any, conn: Any) -> BaseException | None:
    """The error a finished worker reported; a worker killed before reporting is a warning only."""
    try:
        message = conn.recv() if conn.poll() else None
    except EOFError:  # closed without a word: the worker died
        message = None
    if message is None:
        # e.g. SIGKILL (out of memory): the other workers go on; its running trial is marked
        # FAIL by heartbeat (RDB storage) when another worker starts a trial after the grace period
        warnings.warn(f"tuning worker {job.worker} (pid {proc.pid}) died with exit code {proc.exitcode}; "
                      f"the trials it had left were not run", RuntimeWarning, stacklevel=2)
        return None
    return message[1] if message[0] == "error" else None


def run_workers(jobs: Sequence[WorkerJob]) -> None:
    """One job in this process; several in separate processes (each opens its own storage),
    which exit when this process dies (`ml.evaluation.parallel.exit_with_parent`). A worker
    that dies (e.g. SIGKILL) does not stop the others; the first error a worker raised is
    raised here once all have ended. Then trials left running by dead workers (here or on
    other machines) are marked FAIL once their heartbeat is older than the grace period."""
    if len(jobs) == 1:
        work(jobs[0])
    else:
        _run_processes(jobs)
    fail_stale_trials(open_storage(jobs[0].storage), [task.name for task in jobs[0].tasks])


def _run_processes(jobs: Sequence[WorkerJob]) -> None:
    ctx = multiprocessing.get_context("spawn")  # no forked sqlite/mlflow handles in children
    running = []
    try:
        for job in jobs:  # plain processes, not a Pool: a Pool waits for ever on a killed worker's task
            receive, send = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_work_and_report, args=(job, os.getpid(), send), daemon=True)
            proc.start()
            send.close()
            running.append((job, proc, receive))
        for _, proc, _ in running:
            proc.join()
    finally:
        for _, proc, _ in running:
            if proc.is_alive():  # interrupted (Ctrl-C): stop the others too
                proc.terminate()
    errors = [e for e in (_outcome(*r) for r in running) if e is not None]
    if errors:
        raise errors[0]

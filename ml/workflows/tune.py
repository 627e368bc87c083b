"""Hyperparameter tuning with optuna: search spaces, nested cross-validation, many workers.

The shape of one `tune` run (see the README section "Tuning"):

    outer fold k (k = 0..K-1):  study `<study>-outer<k>` searches on inner folds of the
                                outer training part; its best configuration and the
                                default one are both fitted on that training part and
                                scored on the untouched outer test part
    final:                      study `<study>` searches on inner folds of all rows; its
                                best configuration is refitted on all rows

The outer scores are the honest estimate of "tuned model family"; the final model is
what gets registered. Trials report the running mean over inner folds after each fold,
so a median pruner stops hopeless configurations early.

Studies live in optuna storage, so any number of processes (``workers``) on any number
of machines can add trials to the same studies. The local default is a journal file
(`mlruns/optuna/journal.log`): optuna appends every operation to it under a file lock,
which is safe for many processes, whereas a sqlite file serialises writers with one
database lock and fails with "database is locked" under contention. Any RDB URL
(`postgresql://...`, `mysql+pymysql://...`, `sqlite:///...`) is accepted too.

This module does no MLflow and no printing: `run_and_log` hands plain records to
`ml.tracking`, the CLI prints.
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import os
import socket
import time
import uuid
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import optuna
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sklearn.base import clone

from experiments import default_path

SEARCH_SPACE_DIR = default_path("search_spaces")
DEFAULT_STORAGE = Path("mlruns") / "optuna" / "journal.log"
SQLITE_TIMEOUT_S = 60
HEARTBEAT_S = 60
CATCH = (ValueError, ArithmeticError, np.linalg.LinAlgError)
"""Numerical failures of one configuration: that trial is marked FAIL, the study goes on."""


class TuneError(ValueError):
    """Bad tuning input (unknown model, empty or invalid search space, bad storage...)."""


# --------------------------------------------------------------------------------------
# Search spaces: YAML -> typed, validated SearchSpace
# --------------------------------------------------------------------------------------
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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


def _check_range(low: float, high: float, log: bool) -> None:
    if low > high:
        raise ValueError(f"low ({low}) must be <= high ({high})")
    if log and low <= 0:
        raise ValueError(f"log scale needs low > 0, got {low}")


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
        return _digest(json.dumps(self.model_dump(), sort_keys=True, default=str).encode())


def search_space_path(family: str, directory: str | Path | None = None) -> Path:
    return Path(directory or SEARCH_SPACE_DIR) / f"{family}.yaml"


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


def _first_error(exc: ValidationError) -> str:
    errors = exc.errors()
    parts = []
    for err in errors[:3]:
        loc = ".".join(str(p) for p in err["loc"])
        parts.append(f"{loc}: {err['msg']}" if loc else err["msg"])
    more = f" (+{len(errors) - 3} more)" if len(errors) > 3 else ""
    return "; ".join(parts) + more


def check_space(space: SearchSpace, estimator: Any) -> None:
    """Every searched or fixed name must be a parameter of the estimator (a typo fails here)."""
    known = set(estimator.get_params(deep=True))
    unknown = sorted(n for n in (*space.params, *space.fixed) if _param_key(estimator, n) not in known)
    if unknown:
        raise TuneError(f"search space '{space.family}': unknown parameter(s) {unknown} for "
                        f"{type(estimator).__name__}")


# --------------------------------------------------------------------------------------
# Models (the ml.models registry) and metrics. Interim scorer until ml.evaluate lands.
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Objective:
    name: str
    direction: Literal["maximize", "minimize"]


OBJECTIVES = {
    "uno_c": Objective("uno_c", "maximize"),
    "harrell_c": Objective("harrell_c", "maximize"),
    "ibs": Objective("ibs", "minimize"),
}


def available_models(directory: str | Path | None = None) -> list[str]:
    """Registry models that have a search space."""
    from ml import models

    return [m for m in models.MODEL_NAMES if search_space_path(m, directory).is_file()]


def make_model(name: str, spec: Any, random_state: int) -> Any:
    """Unfitted SurvivalPipeline(preprocessor, model) of the registry, default hyperparameters."""
    from ml import models

    if name not in models.REGISTRY:
        raise TuneError(f"unknown model '{name}'; choose one of {', '.join(available_models())}")
    return models.make_pipeline(name, spec, random_state=random_state)


def _param_key(estimator: Any, name: str) -> str:
    """Search-space names are the estimator's own names; inside the Pipeline they get a prefix."""
    from ml.models import MODEL_STEP

    return f"{MODEL_STEP}__{name}" if hasattr(estimator, "steps") else name


def with_params(estimator: Any, params: Mapping[str, Any]) -> Any:
    est = clone(estimator)
    return est.set_params(**{_param_key(est, k): v for k, v in params.items()})


@dataclass(frozen=True)
class Scoring:
    """What ml.evaluate.score_fold needs besides the data: the data set's horizons and tau."""

    horizons: dict[str, float]
    tau: float
    calibration_horizon: str

    @classmethod
    def of(cls, data: Any) -> Scoring:
        return cls(dict(data.horizons), float(data.tau), data.calibration_horizon)


def score(model: Any, X_test: pd.DataFrame, y_train: np.ndarray, y_test: np.ndarray, scoring: Scoring,
          curves: bool = True) -> dict[str, float]:
    """Held-out metrics of a fitted model by ml.evaluate.score_fold (the project's one scorer).

    Without `curves` the survival-curve metrics (IBS, Brier) are skipped: cheaper when
    the objective is a C-index.
    """
    from ml.evaluation import evaluate

    surv = model.predict_survival_function(X_test, return_array=True) if curves else None
    fs = evaluate.score_fold(y_train, y_test, model.predict(X_test), horizons=scoring.horizons,
                             tau=scoring.tau, calibration_horizon=scoring.calibration_horizon, surv=surv,
                             times=model.unique_times_ if curves else None)
    return fs.metrics


def splits(y: np.ndarray, n_splits: int, random_state: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """K folds stratified on the event indicator (ml.evaluate.make_folds, one repeat)."""
    from ml.evaluation import evaluate

    try:
        return [(f.train, f.test) for f in evaluate.make_folds(y, n_splits, 1, random_state)]
    except evaluate.EvaluationError as exc:
        raise TuneError(str(exc)) from exc


# --------------------------------------------------------------------------------------
# Config, storage, studies
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TuneConfig:
    """Everything that defines a tuning run, besides the data."""

    model: str
    objective: str = "uno_c"
    n_trials: int = 20
    timeout: float | None = None
    outer_folds: int = 3
    inner_folds: int = 3
    workers: int = 1
    seed: int = 0
    storage: str | None = None
    study: str | None = None
    pruner_startup_trials: int = 5
    space_path: str | None = None

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise TuneError(f"unknown objective '{self.objective}'; choose one of {', '.join(OBJECTIVES)}")
        for name, low in (("n_trials", 0), ("outer_folds", 2), ("inner_folds", 2), ("workers", 1)):
            if getattr(self, name) < low:
                raise TuneError(f"{name} must be >= {low}, got {getattr(self, name)}")
        if self.timeout is not None and self.timeout <= 0:
            raise TuneError(f"timeout must be > 0 seconds, got {self.timeout}")


def open_storage(url: str | os.PathLike | None = None) -> optuna.storages.BaseStorage:
    """An RDB URL (`scheme://...`) or a journal file path (default mlruns/optuna/journal.log)."""
    from optuna.storages import JournalStorage, RDBStorage
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    target = str(url) if url is not None else str(DEFAULT_STORAGE)
    try:
        if "://" in target:
            kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}} if target.startswith("sqlite") else {}
            # heartbeats: a trial of a crashed worker / machine is marked FAIL after the grace period
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return RDBStorage(target, engine_kwargs=kwargs, heartbeat_interval=HEARTBEAT_S,
                                  grace_period=3 * HEARTBEAT_S)
        path = Path(target)
        path.parent.mkdir(parents=True, exist_ok=True)
        # The open-lock (O_CREAT|O_EXCL) works on network file systems too, unlike symlinks on some.
        return JournalStorage(JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path))))
    except ModuleNotFoundError as exc:
        raise TuneError(f"cannot open optuna storage '{_redact(target)}': database driver "
                        f"'{exc.name}' is not installed") from exc
    except Exception as exc:  # sqlalchemy / OS errors: one clear line for the user
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TuneError(f"cannot open optuna storage '{_redact(target)}': {first}") from exc


def _redact(url: str) -> str:
    """Hide a password in an RDB URL before printing it."""
    if "://" in url and "@" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}" if ":" in creds else url
    return url


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:10]


def fingerprint(X: pd.DataFrame, y: np.ndarray, config: TuneConfig, space: SearchSpace) -> str:
    """What a study's trials depend on: data, folds, seed, model, objective, search space."""
    h = hashlib.sha256()
    h.update(pd.util.hash_pandas_object(X, index=False).to_numpy().tobytes())
    h.update(np.ascontiguousarray(y).tobytes())
    h.update(json.dumps([config.model, config.objective, config.outer_folds, config.inner_folds,
                         config.seed, space.digest()]).encode())
    return h.hexdigest()[:10]


def _sampler_seed(seed: int, study_index: int, worker: int, existing_trials: int) -> int:
    return int(np.random.SeedSequence([seed, study_index, worker, existing_trials]).generate_state(1)[0])


def make_pruner(startup_trials: int) -> optuna.pruners.BasePruner:
    # Median of the other trials' running inner-CV mean at the same fold; from the first fold on.
    return optuna.pruners.MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=0)


def create_studies(storage: optuna.storages.BaseStorage, names: Sequence[str], direction: str,
                   fp: str) -> None:
    """Create (or load) every study and check it was run on the same data and settings."""
    for name in names:
        study = optuna.create_study(storage=storage, study_name=name, direction=direction,
                                    load_if_exists=True)
        if study.direction.name.lower() != direction:
            raise TuneError(f"study '{name}' exists with direction {study.direction.name.lower()}; "
                            f"choose another --study")
        found = study.user_attrs.get("fingerprint")
        if found is None:
            study.set_user_attr("fingerprint", fp)
        elif found != fp:
            raise TuneError(f"study '{name}' holds trials of other data or settings (fingerprint {found}, "
                            f"this run {fp}); choose another --study")


# --------------------------------------------------------------------------------------
# The objective and the workers
# --------------------------------------------------------------------------------------
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
    folds: list[tuple[np.ndarray, np.ndarray]]
    objective: str
    scoring: Scoring
    tags: dict[str, Any] = field(default_factory=dict)

    def __call__(self, trial: optuna.Trial) -> float:
        for key, value in self.tags.items():
            trial.set_user_attr(key, value)
        model = with_params(self.base, self.space.suggest(trial))
        scores: list[float] = []
        for step, (tr, va) in enumerate(self.folds):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fitted = clone(model).fit(self.X.iloc[tr], self.y[tr])
                metrics = score(fitted, self.X.iloc[va], self.y[tr], self.y[va], self.scoring,
                                curves=self.objective == "ibs")
            scores.append(metrics[self.objective])
            if not math.isfinite(scores[-1]):
                raise ValueError(f"{self.objective} could not be computed on inner fold {step}")
            trial.report(float(np.mean(scores)), step)
            if trial.should_prune():
                trial.set_user_attr("fold_scores", scores)
                raise optuna.TrialPruned(f"pruned after inner fold {step}")
        trial.set_user_attr("fold_scores", scores)
        return float(np.mean(scores))


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


def work(job: WorkerJob) -> int:
    """Run this worker's share of trials on each study in turn; returns trials run."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(job.storage)
    cfg = job.config
    base = make_model(cfg.model, job.spec, random_state=cfg.seed)
    tags = {"pid": os.getpid(), "host": socket.gethostname(), "worker": job.worker,
            "invocation": job.invocation}
    done = 0
    for i, task in enumerate(job.tasks):
        timeout = _share_of_time(job.deadline, len(job.tasks) - i)
        if timeout is not None and timeout <= 0:
            break
        # The sampler's stream depends on the trials already there, so a resumed study or a
        # later machine does not replay the first one's random start-up configurations.
        before = len(optuna.load_study(study_name=task.name, storage=storage).get_trials(deepcopy=False))
        sampler = optuna.samplers.TPESampler(seed=_sampler_seed(cfg.seed, task.index, job.worker, before))
        study = optuna.load_study(study_name=task.name, storage=storage, sampler=sampler,
                                  pruner=make_pruner(cfg.pruner_startup_trials))
        X, y = job.X.iloc[task.rows], job.y[task.rows]
        folds = splits(y, cfg.inner_folds, random_state=cfg.seed + 1 + task.index)
        objective = InnerCVObjective(X, y, base, job.space, folds, cfg.objective, job.scoring, tags)
        study.optimize(objective, n_trials=job.n_trials, timeout=timeout, catch=CATCH,
                       gc_after_trial=False)
        done += len(study.get_trials(deepcopy=False)) - before
    return done


def _share_of_time(deadline: float | None, studies_left: int) -> float | None:
    """An even split of the remaining budget over the studies still to run."""
    if deadline is None:
        return None
    return (deadline - time.time()) / studies_left


def quotas(n_trials: int, workers: int) -> list[int]:
    """Split n_trials over workers so the counts add up exactly."""
    q, r = divmod(n_trials, workers)
    return [q + (1 if w < r else 0) for w in range(workers)]


def run_workers(jobs: Sequence[WorkerJob]) -> None:
    """One job in this process; several in separate processes (each opens its own storage)."""
    if len(jobs) == 1:
        work(jobs[0])
        return
    ctx = multiprocessing.get_context("spawn")  # no forked sqlite/mlflow handles in children
    with ctx.Pool(processes=len(jobs)) as pool:
        pool.map(work, jobs, chunksize=1)


# --------------------------------------------------------------------------------------
# Nested cross-validation
# --------------------------------------------------------------------------------------
@dataclass
class TuneResult:
    """Results only; printing is ml.display's, logging is run_and_log's."""

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


def study_names(study: str, outer_folds: int) -> list[str]:
    return [f"{study}-outer{k}" for k in range(outer_folds)] + [study]


def default_study_name(label: str, config: TuneConfig, fp: str) -> str:
    return f"{label}-{config.model}-{config.objective}-{fp}"


def prepare(config: TuneConfig, spec: Any) -> tuple[SearchSpace, Any, optuna.storages.BaseStorage]:
    """Check the inputs before any work: model, search space, storage (TuneError if bad)."""
    base = make_model(config.model, spec, random_state=config.seed)
    space = load_search_space(config.model, config.space_path)
    check_space(space, base)
    return space, base, open_storage(config.storage)


def tune(data: Any, config: TuneConfig, *, label: str | None = None) -> TuneResult:
    """Nested CV tuning of one model family on a `features.datasets.SurvivalData`.

    Returns the outer-fold scores of the tuned and the default configuration and the
    best configuration refitted on all rows. `label` prefixes the default study name.
    """
    t0 = time.time()
    X, y, spec, scoring = data.X.reset_index(drop=True), data.y, data.spec, Scoring.of(data)
    label = label or _slug(data.name)
    space, base, storage = prepare(config, spec)
    objective = OBJECTIVES[config.objective]
    fp = fingerprint(X, y, config, space)
    study = config.study or default_study_name(label, config, fp)
    names = study_names(study, config.outer_folds)
    create_studies(storage, names, objective.direction, fp)

    outer = splits(y, config.outer_folds, random_state=config.seed)
    row_sets = [tr for tr, _ in outer] + [np.arange(len(y))]
    tasks = tuple(StudyTask(name, rows, i)
                  for i, (name, rows) in enumerate(zip(names, row_sets, strict=True)))
    invocation = uuid.uuid4().hex
    deadline = None if config.timeout is None else time.time() + config.timeout
    jobs = [WorkerJob(X, y, spec, scoring, config, space, tasks, config.storage, q, w, invocation, deadline)
            for w, q in enumerate(quotas(config.n_trials, config.workers)) if q > 0 or w == 0]
    if config.n_trials > 0:
        run_workers(jobs)

    best = [_best_params(storage, name) for name in names]
    rows = []
    for k, (tr, te) in enumerate(outer):
        for variant, params in (("tuned", {**space.fixed, **best[k]}), ("default", space.fixed)):
            model = with_params(base, params).fit(X.iloc[tr], y[tr])
            rows.append({"fold": k, "variant": variant, "n_train": len(tr), "n_test": len(te),
                         **score(model, X.iloc[te], y[tr], y[te], scoring)})
    outer_df = pd.DataFrame(rows)
    final = with_params(base, {**space.fixed, **best[-1]}).fit(X, y)
    return TuneResult(
        config=config, study=study, studies=names, fingerprint=fp, outer=outer_df,
        summary=summarise_outer(outer_df), best_params=best[-1], outer_params=best[:-1],
        final_model=final, trials=trials_frame(storage, names), invocation=invocation,
        seconds=time.time() - t0,
    )


def _best_params(storage: optuna.storages.BaseStorage, name: str) -> dict[str, Any]:
    study = optuna.load_study(study_name=name, storage=storage)
    try:
        best = study.best_trial
    except ValueError as exc:
        raise TuneError(f"study '{name}' has no completed trial (all pruned/failed, or the time ran "
                        f"out); raise --trials or --timeout") from exc
    return dict(best.params)


def summarise_outer(outer: pd.DataFrame) -> pd.DataFrame:
    """Mean and corrected-t 95% CI per variant and metric, and of the paired tuned-default gap."""
    from ml.evaluation.evaluate import corrected_t_ci

    n_train, n_test = int(outer["n_train"].mean()), int(outer["n_test"].mean())
    wide = outer.pivot(index="fold", columns="variant", values=list(OBJECTIVES))
    rows = []
    for metric in OBJECTIVES:
        series = {v: wide[(metric, v)] for v in ("tuned", "default")}
        series["tuned - default"] = series["tuned"] - series["default"]
        for variant, values in series.items():
            mean, lo, hi = corrected_t_ci(values.to_numpy(), n_train, n_test)
            rows.append({"metric": metric, "variant": variant, "mean": mean, "ci_low": lo, "ci_high": hi,
                         "folds": len(values)})
    return pd.DataFrame(rows)


def trials_frame(storage: optuna.storages.BaseStorage, names: Sequence[str]) -> pd.DataFrame:
    """One row per trial of the given studies: state, value, params, fold scores, worker."""
    rows = []
    for name in names:
        study = optuna.load_study(study_name=name, storage=storage)
        for t in study.get_trials(deepcopy=False):
            rows.append({
                "study": name, "number": t.number, "state": t.state.name, "value": t.value,
                "params": dict(t.params), "intermediate": dict(t.intermediate_values),
                "fold_scores": t.user_attrs.get("fold_scores"),
                "pid": t.user_attrs.get("pid"), "host": t.user_attrs.get("host"),
                "worker": t.user_attrs.get("worker"), "invocation": t.user_attrs.get("invocation"),
                "start": t.datetime_start, "end": t.datetime_complete,
            })
    return pd.DataFrame(rows)


def _slug(name: str) -> str:
    """'twin (n=101, seed 7)' -> 'twin-n101-seed7': a study-name-safe label."""
    keep = "".join(c if c.isalnum() else "-" for c in name.lower().replace("=", ""))
    return "-".join(p for p in keep.split("-") if p)


# --------------------------------------------------------------------------------------
# Tracking: the study's parent run, one nested run per trial, the registered model
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Registration:
    name: str
    version: str
    promoted: bool
    previous_champion: dict[str, Any] | None
    run_id: str


def registered_model_name(label: str, model: str) -> str:
    """`rechallenge-<endpoint or data set>-<model>`, e.g. rechallenge-pfs-rsf."""
    return f"rechallenge-{label}-{model}"


def trial_runs(trials: pd.DataFrame, objective: str) -> list[dict[str, Any]]:
    """Plain records for ml.tracking.log_child_runs: one per trial."""
    runs = []
    for t in trials.itertuples(index=False):
        runs.append({
            "name": f"{t.study} trial {t.number}", "params": t.params, "state": t.state,
            "metrics": {f"inner_{objective}": t.value} if t.value is not None else {},
            "step_metrics": {f"inner_{objective}_running_mean": t.intermediate},
            "tags": {"study": t.study, "trial_number": t.number, "worker_pid": t.pid, "host": t.host},
            "start": t.start, "end": t.end,
        })
    return runs


def outer_metrics(summary: pd.DataFrame) -> dict[str, float]:
    out = {}
    for r in summary.itertuples(index=False):
        key = f"outer_{r.metric}_{r.variant.replace(' - ', '_minus_')}"
        out.update({key: r.mean, f"{key}_ci_low": r.ci_low, f"{key}_ci_high": r.ci_high})
    return out


def run_and_log(data: Any, config: TuneConfig, *, registered_name: str, label: str | None = None,
                experiment: str = "tune") -> tuple[TuneResult, Registration]:
    """Tune inside one MLflow parent run; log every trial of this invocation as a nested run,
    register the refitted model and move alias `champion` if it beats the old one."""
    from ml.tracking import mlflow_io as tracking

    prepare(config, data.spec)  # bad input fails before any run is opened
    tags = {"model": config.model, "objective": config.objective, "data": data.name}
    with tracking.run(experiment, f"tune {config.model} {data.name}", seed=config.seed, tags=tags) as active:
        tracking.log_params({k: v for k, v in vars(config).items() if k not in ("storage", "study")})
        tracking.log_params({"storage": _redact(str(config.storage or DEFAULT_STORAGE))})
        tracking.log_dataset(data.frame, name=_slug(data.name), source=data.source or data.name)
        result = tune(data, config, label=label)
        tracking.log_params({"study": result.study, "fingerprint": result.fingerprint})
        mine = result.trials[result.trials["invocation"] == result.invocation]
        tracking.log_child_runs(trial_runs(mine, config.objective))
        tracking.log_metrics({**outer_metrics(result.summary), "seconds": result.seconds,
                              "trials_run": len(mine)})
        tracking.log_table(result.outer, "outer_folds.csv")
        tracking.log_table(result.summary, "outer_summary.csv")
        tracking.log_json({"final": result.best_params, "outer_folds": result.outer_params},
                          "best_params.json")
        uri = _log_final_model(result.final_model, data, config)
        outer = result.summary.set_index(["metric", "variant"])["mean"]
        version_tags = {f"outer_{m}": outer[(m, "tuned")] for m in OBJECTIVES}
        version_tags.update({"objective": config.objective, "best_params": json.dumps(result.best_params),
                             "study": result.study, "data": data.name, "fingerprint": result.fingerprint,
                             "model": config.model})
        version = tracking.register_model(uri, registered_name, version_tags)
        promoted, previous = tracking.promote_if_better(
            registered_name, version, f"outer_{config.objective}",
            higher_is_better=OBJECTIVES[config.objective].direction == "maximize")
    return result, Registration(registered_name, version, promoted, previous, active.info.run_id)


def _log_final_model(model: Any, data: Any, config: TuneConfig) -> str:
    """Log the refitted model to the active run; returns its URI.

    On a rechallenge cohort it is logged as the survival pyfunc (risk-group cut-offs fixed on
    these training rows, curves, explanations), so a tuned champion serves `rechallenge score`
    and `serve` like the default model. Other tables (e.g. GBSG2) lack the patient contract
    and keep the sklearn flavour.
    """
    from ml.serving import scorer as score
    from ml.tracking import mlflow_io as tracking

    if set(score.SCORE_FEATURES) <= set(data.X.columns):
        scorer = score.SurvivalScorer(model, model_name=config.model,
                                      random_state=config.seed).fit(data.X)
        return tracking.log_survival_model(scorer)
    return tracking.log_model(model, input_example=data.X.head(3))


def summary_table(result: TuneResult) -> pd.DataFrame:
    """The tuned vs default outer estimates as one table (objective first)."""
    order = [result.config.objective, *(m for m in OBJECTIVES if m != result.config.objective)]
    s = result.summary.copy()
    s["metric"] = pd.Categorical(s["metric"], order, ordered=True)
    s = s.sort_values(["metric", "variant"], key=lambda c: c if c.name == "metric" else c.map(
        {"tuned": 0, "default": 1, "tuned - default": 2}))
    s["95% CI"] = [f"{lo:.3f} to {hi:.3f}" for lo, hi in zip(s["ci_low"], s["ci_high"], strict=True)]
    return s[["metric", "variant", "mean", "95% CI", "folds"]].reset_index(drop=True)


def cohort_data(df: pd.DataFrame, endpoint: str, name: str, source: str) -> Any:
    """A validated cohort table (the cohort contract) as SurvivalData, like the twin's."""
    from features import datasets

    return datasets.from_cohort(df, endpoint, name, source)


def champion_params(label: str, families: Sequence[str]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Best params of each family's registered champion (`rechallenge-<label>-<family>`).

    Returns ({family: params}, [families without a champion]). For `benchmark --tuned`; the
    params were tuned on all rows of the data, so a benchmark row refitting them on the
    benchmark's folds is optimistic: the honest figure is the tune run's outer estimate.
    """
    from ml.tracking import mlflow_io as tracking

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

"""Where the studies live: optuna storage, shared by any number of processes and machines.

The local default is a journal file (`mlruns/optuna/journal.log`): optuna appends every
operation to it under a file lock, which is safe for many processes, whereas a sqlite file
serialises writers with one database lock and fails with "database is locked" under
contention. Any RDB URL (`postgresql://...`, `mysql+pymysql://...`, `sqlite:///...`) is
accepted too. A PostgreSQL URL without a driver (`postgresql://`, `postgres://`) gets the
installed one, psycopg2 (`postgresql+psycopg2://`): SQLAlchemy 2.1 would pick psycopg 3,
which is not installed, and optuna would then say "Failed to import DB access module".

An RDB storage records a heartbeat of every running trial every `RECHALLENGE_HEARTBEAT_S`
seconds (environment, default 60); a trial whose heartbeat is older than three intervals
(its worker or machine died) is marked FAIL by the next worker that starts a trial.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.storages import JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

from ml.reporting.display import redact_url as redact  # the one rule for hiding a password in a URL
from ml.workflows.tuning.config import TuneConfig, TuneError
from ml.workflows.tuning.space import SearchSpace

DEFAULT_STORAGE = Path("mlruns") / "optuna" / "journal.log"
SQLITE_TIMEOUT_S = 60
HEARTBEAT_S = 60
HEARTBEAT_ENV = "RECHALLENGE_HEARTBEAT_S"
GRACE_HEARTBEATS = 3
SCHEMA_RACE_WAIT_S = 2.0


POSTGRES_SCHEMES = ("postgresql", "postgres")
POSTGRES_DRIVER = "postgresql+psycopg2"


def _password(url: str) -> str | None:
    if "://" not in url or "@" not in url:
        return None
    creds = url.split("://", 1)[1].rsplit("@", 1)[0]
    return creds.split(":", 1)[1] if ":" in creds else None


def with_driver(url: str) -> str:
    """The RDB URL with its database driver named: `postgresql://` and `postgres://` become
    `postgresql+psycopg2://` (the driver in the lock); any other URL is returned as is."""
    scheme, sep, rest = url.partition("://")
    return f"{POSTGRES_DRIVER}://{rest}" if sep and scheme.lower() in POSTGRES_SCHEMES else url


def _first_line(exc: BaseException, password: str | None) -> str:
    """One line of a storage error for the user, without the password the URL held."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    first = first.split(") ", 1)[1] if first.startswith("(") and ") " in first else first  # "(driver.Error) "
    return first.replace(password, "***") if password else first


def _reason(exc: BaseException, url: str) -> str:
    """Why a storage could not be opened, in the user's terms."""
    scheme = url.split("://", 1)[0]
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        return f"database driver '{exc.name}' is not installed"
    if isinstance(exc, ImportError):  # optuna's "Failed to import DB access module"
        return (f"no database driver for '{scheme}' is installed (PostgreSQL works as "
                f"postgresql://user:password@host:5432/db; another database needs its driver "
                f"installed and named, e.g. mysql+pymysql://)")
    if _raised_as(exc, "NoSuchModuleError"):
        return f"unknown database '{scheme}' (use postgresql://, mysql+<driver>:// or sqlite:///)"
    prefix = "invalid URL: " if isinstance(exc, ValueError) or _raised_as(exc, "ArgumentError") else ""
    return prefix + _first_line(exc, _password(url))


def _raised_as(exc: BaseException, sqlalchemy_error: str) -> bool:
    # by name: sqlalchemy comes with optuna, it is not a dependency of ours to import
    return any(cls.__name__ == sqlalchemy_error and cls.__module__.startswith("sqlalchemy")
               for cls in type(exc).__mro__)


def heartbeat_seconds() -> int:
    """The heartbeat interval: `RECHALLENGE_HEARTBEAT_S` (a positive integer) or 60 s."""
    text = os.environ.get(HEARTBEAT_ENV, "").strip()
    if not text:
        return HEARTBEAT_S
    if not text.isdigit() or int(text) < 1:
        raise TuneError(f"{HEARTBEAT_ENV}={text!r}: the heartbeat interval must be a whole number "
                        f"of seconds, at least 1")
    return int(text)


def _rdb(url: str) -> optuna.storages.BaseStorage:
    """The RDB storage; machines starting at once on an empty database race to create optuna's
    tables ("relation ... already exists"): the loser opens it again once they are there."""
    try:
        return _rdb_once(url)
    except Exception as exc:
        if not (_raised_as(exc, "ProgrammingError") or _raised_as(exc, "IntegrityError")):
            raise
        time.sleep(SCHEMA_RACE_WAIT_S)
        return _rdb_once(url)


def _rdb_once(url: str) -> optuna.storages.BaseStorage:
    url = with_driver(url)
    kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}} if url.startswith("sqlite") else {}
    beat = heartbeat_seconds()
    # heartbeats: a trial of a crashed worker / machine is marked FAIL after the grace period
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return RDBStorage(url, engine_kwargs=kwargs, heartbeat_interval=beat,
                          grace_period=GRACE_HEARTBEATS * beat)


def _journal(path: Path) -> optuna.storages.BaseStorage:
    path.parent.mkdir(parents=True, exist_ok=True)
    # The open-lock (O_CREAT|O_EXCL) works on network file systems too, unlike symlinks on some.
    return JournalStorage(JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path))))


def open_storage(url: str | os.PathLike | None = None) -> optuna.storages.BaseStorage:
    """An RDB URL (`scheme://...`, driver added by `with_driver`) or a journal file path
    (default mlruns/optuna/journal.log). TuneError, with the password hidden, if it cannot
    be opened (unknown scheme, driver missing, server unreachable, bad credentials)."""
    target = str(url) if url is not None else str(DEFAULT_STORAGE)
    if "://" in target:
        heartbeat_seconds()  # a bad setting is the user's error, not the storage's
    try:
        return _rdb(target) if "://" in target else _journal(Path(target))
    except Exception as exc:  # driver, sqlalchemy and OS errors: one clear line for the user
        raise TuneError(f"cannot open optuna storage '{redact(target)}': {_reason(exc, target)}") from exc


def fail_stale_trials(storage: optuna.storages.BaseStorage, names: Sequence[str]) -> None:
    """Mark FAIL the running trials of these studies whose heartbeat is older than the grace
    period (their worker or machine died). Optuna does it for a study when a trial starts on
    it; this catches the trials of a worker that died after the last one did. RDB only."""
    if not isinstance(storage, RDBStorage):  # a journal file records no heartbeats
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        for name in names:
            optuna.storages.fail_stale_trials(optuna.load_study(study_name=name, storage=storage))


def fingerprint(X: pd.DataFrame, y: np.ndarray, config: TuneConfig, space: SearchSpace) -> str:
    """What a study's trials depend on: data, folds, seed, model, objective, search space."""
    h = hashlib.sha256()
    h.update(pd.util.hash_pandas_object(X, index=False).to_numpy().tobytes())
    h.update(np.ascontiguousarray(y).tobytes())
    h.update(json.dumps([config.model, config.objective, config.outer_folds, config.inner_folds,
                         config.seed, space.digest()]).encode())
    return h.hexdigest()[:10]


def study_names(study: str, outer_folds: int) -> list[str]:
    """One study per outer fold, then the final study on all rows."""
    return [f"{study}-outer{k}" for k in range(outer_folds)] + [study]


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


def best_params(storage: optuna.storages.BaseStorage, name: str) -> dict[str, Any]:
    """The best completed trial's sampled parameters (TuneError if there is none)."""
    study = optuna.load_study(study_name=name, storage=storage)
    try:
        best = study.best_trial
    except ValueError as exc:
        raise TuneError(f"study '{name}' has no completed trial (all pruned/failed, or the time ran "
                        f"out); raise --trials or --timeout") from exc
    return dict(best.params)


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

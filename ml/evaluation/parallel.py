"""Folds run serially or in worker processes, the results always in fold order; worker
processes that end with the process that started them.

Light on imports on purpose: a worker process unpickles `_indexed` and `exit_with_parent`
from here before it runs anything, so this module must not pull in the metrics or the models.

Why a watch thread and not Linux's prctl(PR_SET_PDEATHSIG): the kernel sends that signal
when the *thread* that started the worker ends, and loky and multiprocessing start workers
from helper threads too, so healthy workers of a live process could be killed. Polling
os.getppid() instead sees the parent's death (the worker is re-parented) on Linux and macOS.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from joblib import Parallel, delayed

T = TypeVar("T")
PARENT_POLL_S = 0.2
"""How often a worker checks that its parent is alive: an orphan ends within this delay."""


def exit_with_parent(parent_pid: int) -> None:
    """Worker initialiser: end this process as soon as its parent `parent_pid` is gone.

    A daemon thread polls os.getppid() every PARENT_POLL_S seconds and calls os._exit when
    the worker has been re-parented, i.e. its parent died (even by SIGKILL, which runs no
    clean-up). Without it, joblib's idle workers outlive a killed parent by 5 minutes and
    a tuning worker finishes its trials for nobody. Pass the parent's pid taken in the parent
    (`exit_with_parent, (os.getpid(),)`): a parent dead before the thread starts is caught too.
    A worker still starting up (importing) when its parent dies exits once it gets here.
    On Windows, where a pid is not re-parented, nothing is watched.
    """
    if os.name != "posix":
        return
    threading.Thread(target=_watch_parent, args=(parent_pid,), name="exit-with-parent",
                     daemon=True).start()


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(PARENT_POLL_S)
    os._exit(1)  # no clean-up: there is nobody left to report to


def map_folds(run_fold: Callable[[int, Any], T], folds: Sequence[Any], n_jobs: int = 1,
              on_done: Callable[[T], None] | None = None) -> list[T]:
    """`run_fold(k, fold)` for every fold, serially or in `n_jobs` worker processes (joblib's
    loky workers, which exit when this process dies: `exit_with_parent`).

    The results come back in fold order. `on_done(result)` is called in this process as
    each fold finishes (in completion order when parallel), e.g. to move a progress bar.
    """
    if n_jobs == 1 or len(folds) <= 1:
        results = []
        for k, fold in enumerate(folds):
            results.append(run_fold(k, fold))
            if on_done is not None:
                on_done(results[-1])
        return results
    finished: dict[int, T] = {}
    # unordered: a slow first fold does not hold back the progress of the others
    parallel = Parallel(n_jobs=n_jobs, return_as="generator_unordered", initializer=exit_with_parent,
                        initargs=(os.getpid(),))
    for k, result in parallel(delayed(_indexed)(run_fold, k, fold) for k, fold in enumerate(folds)):
        finished[k] = result
        if on_done is not None:
            on_done(result)
    return [finished[k] for k in range(len(folds))]


def _indexed(run_fold: Callable[[int, Any], T], k: int, fold: Any) -> tuple[int, T]:
    return k, run_fold(k, fold)

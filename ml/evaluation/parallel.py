"""Folds run serially or in worker processes, the results always in fold order; worker
processes that end with the process that started them.

Light on imports on purpose: a worker process unpickles `_indexed` and `exit_with_parent`
from here before it runs anything, so this module must not pull in the metrics or the models.

The parent-death watch is `ml.processes.exit_with_parent` (re-exported here for the workers).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from joblib import Parallel, delayed

from ml.processes import PARENT_POLL_S, exit_with_parent  # noqa: F401  (re-exported)

T = TypeVar("T")
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

"""How many trials of a tuning run have finished, read from the shared storage while it runs.

The trials may run in this process or in worker processes (`studies.run_workers`); the storage
is the one place that sees them all, so a thread polls it and reports `progress(done, total)`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence

import optuna

from ml.workflows.tuning.storage import open_storage

FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)
POLL_SECONDS = 0.5


def finished_trials(storage: optuna.storages.BaseStorage, study_ids: Sequence[int]) -> int:
    return sum(len(storage.get_all_trials(i, deepcopy=False, states=FINISHED)) for i in study_ids)


@contextlib.contextmanager
def watch_trials(url: str | None, names: Sequence[str], total: int,
                 progress: Callable[[int, int], None] | None) -> Iterator[None]:
    """While the body runs, `progress(trials finished since it started, total)` every half second
    (from the storage at `url`, see `storage.open_storage`)."""
    if progress is None:
        yield
        return
    storage = open_storage(url)
    ids = [storage.get_study_id_from_name(name) for name in names]
    before = finished_trials(storage, ids)
    stop = threading.Event()

    def report() -> None:
        progress(min(finished_trials(storage, ids) - before, total), total)

    def poll() -> None:
        while not stop.wait(POLL_SECONDS):
            # a storage hiccup (lock, a line being written) costs one update, never the tuning run
            with contextlib.suppress(Exception):
                report()

    thread = threading.Thread(target=poll, name="trial-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
    report()

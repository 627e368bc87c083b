"""Worker processes that end with the process that started them (imports nothing of the project,
so the fold runner, the tuning workers and the parallel TreeSHAP can all use it).

Why a watch thread and not Linux's prctl(PR_SET_PDEATHSIG): the kernel sends that signal
when the *thread* that started the worker ends, and loky and multiprocessing start workers
from helper threads too, so healthy workers of a live process could be killed. Polling
os.getppid() instead sees the parent's death (the worker is re-parented) on Linux and macOS.
"""

from __future__ import annotations

import os
import threading
import time

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

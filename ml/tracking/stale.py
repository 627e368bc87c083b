"""Runs left RUNNING by a killed process: who owns a run, and the sweep that closes them.

A process killed with SIGKILL (or a power cut) cannot end its MLflow runs, which would then
show as RUNNING for ever. So every run the project opens records its owner (tags
`rechallenge.pid`, `rechallenge.host` and, on Linux, `rechallenge.process_start`, the
owner's start time, so that a recycled pid is not taken for the owner). When a top-level
run starts, `sweep` marks FAILED every RUNNING run of the store whose owner ran on this host
and is gone, with a tag `rechallenge.swept` saying why. Runs owned by another host are left
alone: their process cannot be checked from here.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

PID_TAG = "rechallenge.pid"
HOST_TAG = "rechallenge.host"
START_TAG = "rechallenge.process_start"
SWEPT_TAG = "rechallenge.swept"
NOTE_TAG = "mlflow.note.content"   # the run's description in the MLflow UI
MAX_RUNNING = 1000                 # RUNNING runs examined per sweep (one page of the search)


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state, start time in clock ticks since boot) of a pid from /proc, None if unreadable."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (2nd field) may hold spaces or parentheses: split after the last ')'
    fields = text.rsplit(")", 1)[1].split()
    return fields[0], fields[19]


def process_start(pid: int) -> str | None:
    """The process's start time as the kernel reports it (Linux), None elsewhere."""
    stat = _proc_stat(pid)
    return stat[1] if stat is not None else None


def process_alive(pid: int, start: str | None = None) -> bool:
    """Whether process `pid` (started at `start`, if given) still runs on this host.

    A zombie counts as gone, and so does a pid now held by a process started at another
    time. Without /proc (macOS), or where /proc hides other users' processes, signal 0 asks
    the kernel; where that cannot tell either (Windows), a process counts as alive: a run is
    never closed on a guess.
    """
    stat = _proc_stat(pid)
    if stat is not None:
        return stat[0] != "Z" and (start is None or stat[1] == start)
    if os.name != "posix":  # os.kill(pid, 0) would send CTRL_C_EVENT on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def owner_tags() -> dict[str, str]:
    """The tags naming this process as a run's owner."""
    pid = os.getpid()
    tags = {PID_TAG: str(pid), HOST_TAG: socket.gethostname()}
    start = process_start(pid)
    if start is not None:
        tags[START_TAG] = start
    return tags


def _owner_gone(run_tags: dict[str, str], host: str) -> bool:
    pid = run_tags.get(PID_TAG, "")
    if run_tags.get(HOST_TAG) != host or not pid.isdigit():
        return False
    return not process_alive(int(pid), run_tags.get(START_TAG))


def _close(client: Any, run: Any, now_ms: int) -> None:
    tags = run.data.tags
    why = (f"marked FAILED by process {os.getpid()}: its process {tags[PID_TAG]} on "
           f"{tags[HOST_TAG]} ended (killed?) without closing it")
    client.set_tag(run.info.run_id, SWEPT_TAG, why)
    if not tags.get(NOTE_TAG):
        client.set_tag(run.info.run_id, NOTE_TAG, why)
    client.set_terminated(run.info.run_id, status="FAILED", end_time=now_ms)


def sweep(client: Any) -> list[str]:
    """Mark FAILED the RUNNING runs (any experiment, nested ones too) of dead processes on
    this host; returns their ids."""
    host = socket.gethostname()
    experiment_ids = [e.experiment_id for e in client.search_experiments()]
    if not experiment_ids:
        return []
    running = client.search_runs(
        experiment_ids, max_results=MAX_RUNNING,
        filter_string=f"attributes.status = 'RUNNING' and tags.`{HOST_TAG}` = '{host}'")
    stale = [r for r in running if _owner_gone(r.data.tags, host)]
    now_ms = int(time.time() * 1000)
    for run in stale:
        _close(client, run, now_ms)
    return [r.info.run_id for r in stale]

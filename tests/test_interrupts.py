"""Interrupt safety: a run left RUNNING by a killed process is closed by the next run, and
worker processes die with the process that started them.

The end-to-end test SIGKILLs a real `rechallenge benchmark` while it logs to MLflow. Process
trees are read from /proc (psutil is not in the lock), so these tests need Linux.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ml.evaluation.parallel import exit_with_parent
from ml.tracking import mlflow_io as tracking
from ml.tracking import stale

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
REPO = Path(__file__).resolve().parents[1]
ORPHAN_GRACE_S = 5.0


# ---- /proc ----------------------------------------------------------------------------
def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat from the state on (index 0 = state, 1 = ppid, 2 = pgrp)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _processes() -> dict[int, list[str]]:
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            found[int(entry.name)] = fields
    return found


def _descendants(root: int) -> dict[int, str]:
    """{pid: start time} of every live descendant of `root`."""
    procs = _processes()
    found, frontier = {}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, fields in procs.items():
            if fields[1] == str(parent) and pid not in found:
                found[pid] = fields[19]
                frontier.append(pid)
    return found


def _alive(pids: dict[int, str]) -> list[int]:
    """Which of {pid: start time} still run (a zombie or a recycled pid does not count)."""
    return [pid for pid, start in pids.items()
            if (fields := _stat(pid)) is not None and fields[0] != "Z" and fields[19] == start]


def _group_members(pgid: int) -> list[int]:
    return [pid for pid, fields in _processes().items() if fields[2] == str(pgid) and fields[0] != "Z"]


def _wait_until(condition, timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


def _client():
    """A client of this test's store (named explicitly: mlflow keeps the URI an earlier test set)."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=os.environ["MLFLOW_TRACKING_URI"])


def _runs(experiment: str) -> list:
    client = _client()
    return client.search_runs([client.get_experiment_by_name(experiment).experiment_id])


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", ""])
    child.wait()
    return child.pid


# ---- the sweep of stale runs ----------------------------------------------------------
def _running(client, experiment_id: str, name: str, tags: dict[str, str]) -> str:
    return client.create_run(experiment_id, run_name=name, tags=tags).info.run_id


def test_a_new_run_closes_the_runs_of_dead_processes_on_this_host_only(mlflow_store):
    client = _client()
    exp = client.create_experiment("killed")
    mine = stale.owner_tags()
    dead = {**mine, stale.PID_TAG: str(_dead_pid())}
    parent = _running(client, exp, "parent", dead)
    child = _running(client, exp, "child", {**dead, "mlflow.parentRunId": parent})
    recycled = _running(client, exp, "pid reused", {**mine, stale.START_TAG: "1"})
    live = _running(client, exp, "live", mine)
    elsewhere = _running(client, exp, "other host", {**dead, stale.HOST_TAG: "another-host.invalid"})
    untagged = _running(client, exp, "no owner", {})

    with tracking.run("another experiment", "next command") as active:
        pass

    status = {rid: client.get_run(rid) for rid in (parent, child, recycled, live, elsewhere, untagged)}
    for rid in (parent, child, recycled):
        assert status[rid].info.status == "FAILED" and status[rid].info.end_time is not None
        assert "ended (killed?) without closing it" in status[rid].data.tags[stale.SWEPT_TAG]
    for rid in (live, elsewhere, untagged):
        assert status[rid].info.status == "RUNNING" and stale.SWEPT_TAG not in status[rid].data.tags
    opened = client.get_run(active.info.run_id)
    assert opened.info.status == "FINISHED" and opened.data.tags[stale.PID_TAG] == str(os.getpid())


def test_every_run_records_its_owner_even_child_runs_logged_after_the_fact(mlflow_store):
    with tracking.run("owners", "parent"):
        with tracking.run("owners", "nested", nested=True) as nested:
            pass
        (trial,) = tracking.log_child_runs([{"name": "trial 0", "params": {"a": 1}}])
    client = _client()
    for rid in (nested.info.run_id, trial):
        tags = client.get_run(rid).data.tags
        assert tags[stale.PID_TAG] == str(os.getpid()) and tags[stale.HOST_TAG] == stale.owner_tags()[
            stale.HOST_TAG]
    assert stale.process_alive(os.getpid(), stale.process_start(os.getpid()))
    assert not stale.process_alive(_dead_pid())


# ---- workers die with their parent ----------------------------------------------------
_TUNE_PARENT = """
import sys
import numpy as np
from features import datasets
from ml.evaluation.loop import Scoring
from ml.workflows import tuning as tune

if __name__ == "__main__":
    storage = sys.argv[1]
    data = datasets.twin(n=60, seed=5)
    tune.create_studies(tune.open_storage(storage), ["s"], "maximize", "fp")
    config = tune.TuneConfig(model="coxnet", n_trials=1000, inner_folds=2, seed=3, storage=storage)
    task = tune.StudyTask("s", np.arange(len(data.y)), 0)
    tune.run_workers([tune.WorkerJob(data.X.reset_index(drop=True), data.y, data.spec, Scoring.of(data),
                                     config, tune.load_search_space("coxnet"), (task,), storage, 500, w,
                                     "killed", None) for w in range(2)])
"""


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@pytest.mark.slow
def test_tuning_workers_end_when_the_tuning_process_is_killed(tmp_path):
    script, journal = tmp_path / "tune_parent.py", tmp_path / "journal.log"
    script.write_text(_TUNE_PARENT)
    parent = subprocess.Popen([sys.executable, str(script), str(journal)], cwd=tmp_path,
                              env={**os.environ, "PYTHONPATH": str(REPO)}, start_new_session=True)

    def both_workers_run_trials() -> bool:
        # a trial's first write is its user attributes, the worker's pid among them
        found = [pid for pid in _descendants(parent.pid) if "spawn_main" in _cmdline(pid)]
        text = journal.read_text() if journal.exists() else ""
        return len(found) == 2 and all(f'"user_attr":{{"pid":{pid}}}' in text for pid in found)

    try:
        assert _wait_until(lambda: both_workers_run_trials() or parent.poll() is not None, timeout=120)
        children = _descendants(parent.pid)  # the two workers and multiprocessing's resource tracker
        assert parent.poll() is None and len(children) >= 2
        parent.kill()
        parent.wait()
        assert _wait_until(lambda: not _alive(children), timeout=ORPHAN_GRACE_S)
    finally:
        _kill_group(parent)


def test_exit_with_parent_leaves_a_worker_of_a_live_parent_alone():
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1, initializer=exit_with_parent, initargs=(os.getpid(),)) as pool:
        first = pool.apply(os.getpid)
        time.sleep(0.5)  # a couple of polls
        assert pool.apply(os.getpid) == first


def _kill_group(proc: subprocess.Popen) -> None:
    """Clean up after a failed test: the group of a process this test started (its own session)."""
    if _group_members(proc.pid):
        os.killpg(proc.pid, signal.SIGKILL)
    if proc.poll() is None:
        proc.kill()
        proc.wait()


# ---- end to end: SIGKILL of a benchmark while it logs ---------------------------------
def _nested_run_running(db: Path) -> bool:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.2) as con:
            found = con.execute("SELECT count(*) FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid "
                                "WHERE r.status = 'RUNNING' AND t.key = 'mlflow.parentRunId'").fetchone()
            return found[0] > 0
    except sqlite3.OperationalError:  # locked by the writer or not migrated yet: ask again
        return False


def _benchmark(store: Path, log: str, *args: str, **popen) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "MPLBACKEND": "Agg",
           "MLFLOW_TRACKING_URI": f"sqlite:///{store}/mlruns/mlflow.db"}
    cmd = [sys.executable, "-m", "ml.cli", "benchmark", "--n", "60", "--repeats", "1", "--folds", "2",
           "--out", str(store / log), *args]
    with open(store / f"{log}.log", "w") as output:  # a file, not a pipe: a full pipe would block it
        return subprocess.Popen(cmd, cwd=store, env=env, stdout=output, stderr=subprocess.STDOUT, **popen)


@pytest.mark.slow
def test_sigkill_while_logging_leaves_no_running_run_and_no_live_worker(mlflow_store):
    from ml.cli import app

    db = mlflow_store / "mlruns" / "mlflow.db"
    # two folds on two processes: joblib's workers are up (idle, kept for reuse) while it logs;
    # rsf's nested run (SHAP of a forest) keeps the logging going for a while
    victim = _benchmark(mlflow_store, "killed", "--models", "cox,rsf", "--n-jobs", "2",
                        start_new_session=True)
    try:
        assert _wait_until(lambda: _nested_run_running(db) or victim.poll() is not None, timeout=120)
        victim.send_signal(signal.SIGSTOP)  # frozen mid-logging: no race between seeing it and the kill
        assert victim.poll() is None, (mlflow_store / "killed.log").read_text()
        children = _descendants(victim.pid)
        assert len(children) >= 2  # joblib's workers of the folds, idle but alive
        victim.kill()
        victim.wait()
        assert _wait_until(lambda: not _alive(children) and not _group_members(victim.pid),
                           timeout=ORPHAN_GRACE_S)
    finally:
        _kill_group(victim)
    # the parent run and a model's nested run are left RUNNING by the kill ...
    assert sum(r.info.status == "RUNNING" for r in _runs("benchmark")) >= 2

    # ... until the next command opens a run (in this process: its imports are warm)
    result = CliRunner().invoke(app, ["benchmark", "--n", "60", "--repeats", "1", "--folds", "2",
                                      "--models", "cox", "--n-jobs", "1", "--out", str(mlflow_store / "n")])
    assert result.exit_code == 0, result.output
    runs = _runs("benchmark")
    assert [r.info.status for r in runs if r.info.status == "RUNNING"] == []
    swept = [r for r in runs if stale.SWEPT_TAG in r.data.tags]
    assert len(swept) >= 2 and all(r.info.status == "FAILED" for r in swept)
    assert any("mlflow.parentRunId" in r.data.tags for r in swept)

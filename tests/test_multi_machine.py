"""Tuning across machines on a live PostgreSQL, with an MLflow tracking server (marker `postgres`).

A throw-away PostgreSQL cluster is made for this module (initdb into a temporary folder, a
free port on 127.0.0.1, the socket in that folder; as root, the server runs as the `postgres`
user, since PostgreSQL refuses root) with two databases: `optuna` (the studies) and `mlflow`
(the backend store of an `mlflow server` whose artifacts go to a temporary folder). Every
`rechallenge tune` command below is a separate process pointed at both, as a machine would be.

- 3 worker processes (`--workers 3`) and a second command started at the same time add
  trials to the same studies: each study holds exactly the trials asked, numbered without
  gap or duplicate, and every trial is a run on the tracking server;
- a worker SIGKILLed mid-trial: its trial is marked FAIL by heartbeat (RECHALLENGE_HEARTBEAT_S=1)
  and the command still completes.

Skipped with a reason when PostgreSQL's binaries are not installed (Debian: `postgresql`,
which `.ci/run` installs); run with `make test-postgres` or `pytest -m postgres`.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
import sqlalchemy

from ml.workflows.tuning import TuneError, open_storage, study_names

REPO = Path(__file__).resolve().parents[1]
PG_BINARIES = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name))
PG_BIN = Path(PG_BINARIES[-1]) if PG_BINARIES else None
USER = "rechallenge"
TUNE = ["--model", "coxnet", "--n", "80", "--outer-folds", "2", "--inner-folds", "2", "--seed", "3"]

needs_postgres = pytest.mark.skipif(PG_BIN is None, reason="PostgreSQL is not installed "
                                    "(/usr/lib/postgresql/<version>/bin; Debian package postgresql)")


# ---- the heartbeat setting (no server needed) -----------------------------------------
def test_heartbeat_interval_and_grace_period_come_from_the_environment(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path}/studies.db"
    assert open_storage(url).get_heartbeat_interval() == 60  # default
    monkeypatch.setenv("RECHALLENGE_HEARTBEAT_S", "2")
    storage = open_storage(url)
    assert (storage.get_heartbeat_interval(), storage.grace_period) == (2, 6)
    monkeypatch.setenv("RECHALLENGE_HEARTBEAT_S", "0.5")
    with pytest.raises(TuneError, match="RECHALLENGE_HEARTBEAT_S='0.5'"):
        open_storage(url)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_server_user(args: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root: as root, run its programs as the `postgres` user
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


def _pg(program: str, *args: str, **kwargs) -> None:
    # from a folder the server's user can enter (the checkout may be root's only)
    subprocess.run(_as_server_user([str(PG_BIN / program), *args]), check=True, capture_output=True,
                   text=True, cwd=tempfile.gettempdir(), **kwargs)


# ---- a live cluster and tracking server ---------------------------------------------------
@pytest.fixture(scope="module")
def postgres(request):
    """A throw-away cluster; yields the URL prefix `postgresql://rechallenge@127.0.0.1:<port>/`."""
    if "postgres" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("starts a PostgreSQL cluster and an MLflow server: run with `-m postgres` "
                    "(make test-postgres)")
    root = Path(tempfile.mkdtemp(prefix="rechallenge-pg-"))  # not pytest's tmp: root-only folder
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    data, port = root / "data", _free_port()
    print(f"\n[postgres] initdb {data} (PostgreSQL {PG_BIN.parent.name}), port {port}")
    _pg("initdb", "-D", str(data), "-U", USER, "-A", "trust", "--no-sync")
    _pg("pg_ctl", "start", "-w", "-D", str(data), "-l", str(root / "server.log"), "-o",
        f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off -c max_connections=100")
    try:
        for db in ("optuna", "mlflow"):
            _pg("createdb", "-h", "127.0.0.1", "-p", str(port), "-U", USER, db)
        yield f"postgresql://{USER}@127.0.0.1:{port}/"
    finally:
        print("[postgres] stop and delete the cluster")
        _pg("pg_ctl", "stop", "-D", str(data), "-m", "immediate")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def tracking_server(postgres):
    """`mlflow server` on the cluster's `mlflow` database; yields its http URL."""
    folder = Path(tempfile.mkdtemp(prefix="rechallenge-mlflow-"))
    port = _free_port()
    backend = postgres.replace("postgresql://", "postgresql+psycopg2://") + "mlflow"
    print(f"[mlflow] server on 127.0.0.1:{port}, backend {backend}")
    log = open(folder / "server.log", "w")
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend,
                               "--artifacts-destination", str(folder / "artifacts"), "--host", "127.0.0.1",
                               "--port", str(port), "--workers", "1"],
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        assert _wait_until(lambda: _healthy(url) or server.poll() is not None, timeout=120)
        assert server.poll() is None, (folder / "server.log").read_text()
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        log.close()
        shutil.rmtree(folder, ignore_errors=True)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _wait_until(condition, timeout: float, every: float = 0.2) -> bool:
    end = time.time() + timeout
    while time.time() < end:
        if condition():
            return True
        time.sleep(every)
    return False


def _tune(workdir: Path, log: str, tracking: str, *args: str, heartbeat: str = "60") -> subprocess.Popen:
    """`rechallenge tune` as its own process (a machine), in its own folder, output to a file."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "MPLBACKEND": "Agg", "MLFLOW_TRACKING_URI": tracking,
           "RECHALLENGE_HEARTBEAT_S": heartbeat}
    folder = workdir / log
    folder.mkdir()
    cmd = [sys.executable, "-m", "ml.cli", "tune", *TUNE, *args]
    print(f"[tune] {log}: rechallenge tune {' '.join(cmd[4:])}")
    with open(workdir / f"{log}.log", "w") as output:  # a file, not a pipe: a full pipe would block it
        return subprocess.Popen(cmd, cwd=folder, env=env, stdout=output, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _finish(proc: subprocess.Popen, log: Path, timeout: float = 150) -> str:
    try:
        proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    text = log.read_text()
    assert proc.returncode == 0, text
    return text


def _trial_runs(tracking: str, study: str) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking)
    experiment = client.get_experiment_by_name("tune")
    return client.search_runs([experiment.experiment_id], f"tags.study = '{study}'", max_results=1000)


@pytest.mark.postgres
@needs_postgres
def test_workers_and_a_second_command_share_studies_and_tracking_server(postgres, tracking_server, tmp_path):
    start = time.time()
    storage = postgres + "optuna"
    study = "shared"
    three = _tune(tmp_path, "three-workers", tracking_server, "--trials", "6", "--workers", "3",
                  "--storage", storage, "--study", study)
    second = _tune(tmp_path, "second-command", tracking_server, "--trials", "4", "--storage", storage,
                   "--study", study)
    _finish(three, tmp_path / "three-workers.log")
    _finish(second, tmp_path / "second-command.log")
    print(f"[tune] both commands done in {time.time() - start:.0f} s")

    db = open_storage(storage)
    for name in study_names(study, 2):
        trials = optuna.load_study(study_name=name, storage=db).get_trials(deepcopy=False)
        assert sorted(t.number for t in trials) == list(range(10)), name  # 6 + 4, none lost or doubled
        assert all(t.state.is_finished() for t in trials)
        per_command = sorted(sum(t.user_attrs["invocation"] == i for t in trials)
                             for i in {t.user_attrs["invocation"] for t in trials})
        assert per_command == [4, 6], name
        assert len({t.user_attrs["pid"] for t in trials}) == 4  # 3 workers + the second command
        runs = _trial_runs(tracking_server, name)
        assert sorted(int(r.data.tags["trial_number"]) for r in runs) == list(range(10)), name
    print("[check] 3 studies x 10 trials, each once in optuna and once on the tracking server")


def _running_trial_of_a_worker(db, name: str) -> tuple[int, int] | None:
    """(trial id, worker pid) of a trial running in study `name`, if any."""
    try:
        trials = optuna.load_study(study_name=name, storage=db).get_trials(deepcopy=False)
    except KeyError:  # not created yet
        return None
    for t in trials:
        # all the worker's tags written (pid first, invocation last): its objective is running
        if t.state == optuna.trial.TrialState.RUNNING and {"pid", "invocation"} <= set(t.user_attrs):
            return t._trial_id, t.user_attrs["pid"]
    return None


def _has_heartbeat(db, trial_id: int) -> bool:
    # optuna's own table: a trial killed before its first heartbeat is never found stale (optuna)
    with db.engine.connect() as con:
        query = sqlalchemy.text("SELECT count(*) FROM trial_heartbeats WHERE trial_id = :t")
        return con.execute(query, {"t": trial_id}).scalar() > 0


def _kill_mid_trial(db, name: str, proc: subprocess.Popen) -> tuple[int, int]:
    """SIGKILL a worker while its trial runs (with a heartbeat recorded): stopped first, so the
    trial cannot end in between."""
    while proc.poll() is None:
        found = _running_trial_of_a_worker(db, name)
        if found is None:
            time.sleep(0.05)
            continue
        trial_id, pid = found
        os.kill(pid, signal.SIGSTOP)
        if db.get_trial(trial_id).state == optuna.trial.TrialState.RUNNING and _has_heartbeat(db, trial_id):
            os.kill(pid, signal.SIGKILL)
            return trial_id, pid
        os.kill(pid, signal.SIGCONT)  # it finished meanwhile: another one
    pytest.fail("the command ended before a trial could be killed")


@pytest.mark.postgres
@needs_postgres
def test_a_worker_killed_mid_trial_fails_by_heartbeat_and_the_study_completes(postgres, tracking_server,
                                                                               tmp_path):
    start = time.time()
    storage = postgres + "optuna"
    study = "killed"
    proc = _tune(tmp_path, "kill-one", tracking_server, "--trials", "45", "--workers", "3",
                 "--storage", storage, "--study", study, heartbeat="1")
    db = open_storage(storage)
    trial_id, pid = _kill_mid_trial(db, f"{study}-outer0", proc)
    print(f"[kill] SIGKILL worker pid {pid} during its trial (id {trial_id})")
    log = _finish(proc, tmp_path / "kill-one.log")
    assert f"pid {pid}) died" in log
    assert "registered" in log
    print(f"[tune] completed {time.time() - start:.0f} s after start, without the killed worker")

    killed = db.get_trial(trial_id)
    assert killed.state == optuna.trial.TrialState.FAIL  # by heartbeat: nobody else knew it died
    for name in study_names(study, 2):
        trials = optuna.load_study(study_name=name, storage=db).get_trials(deepcopy=False)
        assert all(t.state.is_finished() for t in trials), name
        survivors = [t for t in trials if t.user_attrs.get("pid") != pid]
        assert len(survivors) == 30, name  # the two other workers' 15 trials each
    runs = _trial_runs(tracking_server, f"{study}-outer0")
    states = {int(r.data.tags["trial_number"]): r.info.status for r in runs}
    assert states[killed.number] == "FAILED"
    print(f"[check] trial {killed.number} FAIL by heartbeat; every study finished; its run FAILED on "
          f"the server")

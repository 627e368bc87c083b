"""The survival pyfunc outside the project: a fresh venv with only its requirements, and serving.

The install test saves the cox scorer as the survival pyfunc, creates a virtual environment
in a temporary folder (never inside the checkout) with `python -m venv`, installs nothing but
the model's `requirements.txt` (with uv when it is beside the running interpreter or on PATH,
else pip), and loads the model there from another folder with PYTHONPATH cleared: the
project's code must come from the model's own `code/` folder and every distribution it needs
must be pinned. The venv's Python is the one that saved the model (what its python_env.yaml
names; under another INSTALL_PYTHON the install tests skip). They run only when selected:
`pytest -m install` (`make test-install`).

The slow test serves the model with `mlflow models serve` from the project's venv.
"""

from __future__ import annotations

import importlib.metadata
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest
import yaml

from features.patient import EXAMPLE_PATIENT
from ml.serving import results
from ml.tracking import mlflow_io as tracking
from ml.tracking import models as logged_models
from tests.fresh_venv import INSTALL_TIMEOUT, clean_env, find_uv, free_port, run, selected

ROOT = Path(__file__).resolve().parents[1]
# run inside the fresh venv: load the model, score the patients, say where `ml` came from and
# what is installed (pickles keep every float and string exactly)
LOAD_AND_PREDICT = """
import importlib.metadata as md, pickle, sys
import mlflow.pyfunc, pandas as pd
model = mlflow.pyfunc.load_model(sys.argv[1])
table = model.predict(pd.read_pickle(sys.argv[2]))
import ml
installed = sorted(f"{d.metadata['Name']}=={d.version}" for d in md.distributions())
with open(sys.argv[3], "wb") as fh:
    pickle.dump({"table": table, "ml": ml.__file__, "installed": installed}, fh)
"""






@pytest.fixture(scope="module")
def patients(twin_data) -> pd.DataFrame:
    """A few training rows and one patient with unknown values (imputed)."""
    unknown = {**EXAMPLE_PATIENT, "id": "unknowns", "pdl1": None, "pfs1_months": None}
    rows = twin_data.X.head(6).assign(id=[f"p{i}" for i in range(6)])
    return pd.DataFrame([*rows.to_dict(orient="records"), unknown])


@pytest.fixture(scope="module")
def model(tmp_path_factory, fitted_scorer) -> tuple[Path, object]:
    """The cox scorer saved as the survival pyfunc (no tracking store), and the scorer."""
    root = tmp_path_factory.mktemp("portable")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root}/mlflow.db")
        path = tracking.save_survival_model(fitted_scorer("cox"), root / "model")
    return Path(path), fitted_scorer("cox")


@pytest.fixture(scope="module")
def fresh_venv(request, tmp_path_factory, model) -> Path:
    """A venv outside the checkout holding only the model's requirements."""
    if not selected(request.config):
        pytest.skip("builds a fresh venv: run with `-m install` (make test-install)")
    other = os.environ.get("INSTALL_PYTHON")
    if other and _version(other) != _version(sys.executable):
        pytest.skip("the model's python_env names the Python that saved it; INSTALL_PYTHON is another one")
    work = tmp_path_factory.mktemp("fresh")
    target, requirements = work / "venv", model[0] / "requirements.txt"
    uv = find_uv()
    if uv:
        run([sys.executable, "-m", "venv", "--without-pip", target], cwd=work)
        run([uv, "pip", "install", "--quiet", "--python", target / "bin" / "python", "-r", requirements],
             cwd=work, timeout=INSTALL_TIMEOUT)
    else:
        run([sys.executable, "-m", "venv", target], cwd=work)
        run([target / "bin" / "python", "-m", "pip", "install", "--quiet", "-r", requirements],
             cwd=work, timeout=INSTALL_TIMEOUT)
    return target


def _version(python: str) -> str:
    return subprocess.run([python, "-c", "import sys; print(*sys.version_info[:2])"], capture_output=True,
                          text=True, check=True).stdout.strip()


def _pinned(requirements: Path) -> set[str]:
    return {line.strip().lower().replace("_", "-") for line in requirements.read_text().splitlines()
            if line.strip() and not line.startswith("#")}


@pytest.mark.install
def test_model_loads_and_predicts_in_a_venv_with_only_its_requirements(model, fresh_venv, patients,
                                                                       tmp_path):
    path, scorer = model
    mlmodel = yaml.safe_load((path / "MLmodel").read_text())
    assert mlmodel["flavors"]["python_function"]["code"] == "code"
    assert {p.name for p in (path / "code").iterdir()} == {"ml", "features"}
    requirements = _pinned(path / "requirements.txt")
    assert all("==" in r for r in requirements), requirements
    assert not {r for r in requirements if r.startswith("rechallenge")}

    patients.to_pickle(tmp_path / "patients.pkl")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run([fresh_venv / "bin" / "python", "-c", LOAD_AND_PREDICT, path, tmp_path / "patients.pkl",
          tmp_path / "out.pkl"], cwd=elsewhere, env=clean_env(MPLBACKEND="Agg"))
    with (tmp_path / "out.pkl").open("rb") as fh:
        got = pickle.load(fh)

    assert Path(got["ml"]).is_relative_to(path / "code"), got["ml"]
    pd.testing.assert_frame_equal(got["table"], scorer.score(patients), rtol=1e-9, atol=1e-9)
    seeded = ("pip==",)  # what `python -m venv` puts in when uv is not there to install with
    unpinned = {d for d in got["installed"]
                if d.lower().replace("_", "-") not in requirements and not d.startswith(seeded)}
    assert not unpinned, f"installed in the fresh venv but not pinned by the model: {sorted(unpinned)}"


# ------------------------------------------------------------------ mlflow models serve



def _wait_for_ping(url: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url + "/ping", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, "mlflow models serve did not start"
        time.sleep(0.5)


def _serve_and_check(bin_dir: Path, path: Path, scorer, patients: pd.DataFrame, env: dict) -> None:
    """`mlflow models serve --env-manager local` from `bin_dir` answers like the in-process
    scorer, and a bad row with 400 naming the field."""
    port = free_port()
    env = {**env, "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"}  # mlflow starts uvicorn from PATH
    command = [str(bin_dir / "mlflow"), "models", "serve", "-m", str(path), "--env-manager", "local",
               "-h", "127.0.0.1", "-p", str(port)]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for_ping(url, proc)
        want = scorer.score(patients)
        records = patients.astype(object).where(patients.notna(), None).to_dict(orient="records")
        resp = httpx.post(url + "/invocations", json={"dataframe_records": records}, timeout=60)
        assert resp.status_code == 200, resp.text
        got = pd.DataFrame(resp.json()["predictions"])[list(results.OUTPUT_COLUMNS)]
        pd.testing.assert_frame_equal(got, want, check_dtype=False, rtol=1e-9, atol=1e-9)
        bad = [{**records[0], "age": 300}]
        resp = httpx.post(url + "/invocations", json={"dataframe_records": bad}, timeout=60)
        assert resp.status_code == 400 and "age: Input should be less than or equal to 110" in resp.text
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


@pytest.mark.slow
def test_mlflow_models_serve_gives_the_in_process_numbers(model, patients):
    path, scorer = model
    _serve_and_check(Path(sys.executable).parent, path, scorer, patients, dict(os.environ))


@pytest.mark.install
def test_mlflow_models_serve_works_in_the_fresh_venv(model, fresh_venv, patients, tmp_path):
    path, scorer = model
    _serve_and_check(fresh_venv / "bin", path, scorer, patients, clean_env(MPLBACKEND="Agg"))


def test_requirements_pin_the_dependency_closure_of_what_the_model_imports():
    pins = logged_models.pinned_requirements(logged_models.distributions_of(("sksurv",)))
    names = {p.split("==")[0].lower() for p in pins}
    assert {"scikit-survival", "scikit-learn", "numpy", "scipy", "pandas", "joblib"} <= names
    assert all(p.count("==") == 1 for p in pins) and len(names) == len(pins)
    with pytest.raises(ValueError, match="no installed distribution provides no_such_module"):
        logged_models.distributions_of(("no_such_module",))
    assert not logged_models.code_paths(())
    with pytest.raises(ValueError, match="not a regular package"):
        logged_models.code_paths(("json.decoder",))
    assert logged_models.code_paths(("features",)) == [str(ROOT / "features")]


def test_a_logged_estimator_carries_the_packages_it_names_and_pinned_requirements(mlflow_store, tmp_path):
    from sklearn.dummy import DummyRegressor

    with tracking.run("tune", "models"):
        uri = tracking.log_model(DummyRegressor().fit([[0.0], [1.0]], [0.0, 1.0]), code=("features",))
    local = Path(tracking.mlflow_module().artifacts.download_artifacts(uri, dst_path=str(tmp_path)))
    mlmodel = yaml.safe_load((local / "MLmodel").read_text())
    assert mlmodel["flavors"]["python_function"]["code"] == "code"
    assert (local / "code" / "features" / "contract.py").exists()
    pins = _pinned(local / "requirements.txt")
    installed = {f"{name}=={importlib.metadata.version(name)}" for name in ("scikit-learn", "numpy", "scipy")}
    assert installed <= pins and all("==" in p for p in pins)

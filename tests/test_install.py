"""What a user without a checkout gets: the wheel, installed into a fresh virtual environment.

The wheel is built from a copy of the source tree, installed with the runtime lock as
constraints into a venv in a temporary folder (never inside the checkout), and the CLI is run
from yet another folder, with PYTHONPATH cleared, so that nothing can be found through the
checkout: defaults must come from package data. MLflow writes to a temporary sqlite store.

These tests build a venv (a minute or so with uv's cache warm), so they run only when selected:
`pytest -m install` (`make test-install`). INSTALL_PYTHON names the interpreter of the fresh
venv (CI runs them again with Python 3.12 and 3.13); the default is the one running pytest.

The last two tests are cheap static checks of the packaging files and always run.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
import urllib.request
import zipfile
from pathlib import Path

import pytest

from tests.fresh_venv import INSTALL_TIMEOUT, clean_env, find_uv, free_port, run, selected

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ml", "features", "experiments")
# what a build copy of the tree leaves out: environments, caches, outputs, old builds
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "venv", "out", "mlruns", "build", "dist",
                                    "*.egg-info", "__pycache__", ".*_cache", ".hypothesis")
PATIENT = {
    "id": "install-test-1", "age": 58, "sex": "female", "smoking": "never", "ecog": 0,
    "histology": "adenocarcinoma", "pdl1": ">=50%", "prior_response": "CR/PR", "pfs1_months": 11.0,
    "brain_mets": "no", "liver_mets": "no", "bone_mets": "no", "ici_switch": "no",
    "treatment": "CIA",
}



@pytest.fixture(scope="module")
def work(request, tmp_path_factory) -> Path:
    if not selected(request.config):
        pytest.skip("builds a fresh venv: run with `-m install` (make test-install)")
    return tmp_path_factory.mktemp("install")




@pytest.fixture(scope="module")
def wheel(work) -> Path:
    """The wheel, built from a copy of the tree so that no stale build/ folder can leak in."""
    src = work / "src"
    shutil.copytree(ROOT, src, ignore=NOT_SOURCE)
    dist = work / "dist"
    no_isolation = ["--no-build-isolation"] if _has_setuptools() else []
    run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", *no_isolation,
          "--wheel-dir", dist, src], cwd=work)
    (built,) = dist.glob("rechallenge-*.whl")
    return built


def _has_setuptools() -> bool:
    """setuptools >= 77 (the dev lock has it) builds without fetching a build environment."""
    try:
        major = int(importlib.metadata.version("setuptools").split(".")[0])
    except importlib.metadata.PackageNotFoundError:
        return False
    return major >= 77


def _interpreter() -> str:
    return os.environ.get("INSTALL_PYTHON") or sys.executable


@pytest.fixture(scope="module")
def venv(work, wheel) -> Path:
    """A fresh venv outside the checkout with the wheel installed under the runtime lock."""
    python = _interpreter()
    target = work / "venv"
    uv = find_uv()
    if uv:
        run([uv, "venv", "--quiet", "--python", python, target], cwd=work)
        run([uv, "pip", "install", "--quiet", "--python", target / "bin" / "python",
              "-c", ROOT / "requirements.lock", wheel], cwd=work, timeout=INSTALL_TIMEOUT)
    else:
        run([python, "-m", "venv", target], cwd=work)
        run([target / "bin" / "python", "-m", "pip", "install", "--quiet",
              "-c", ROOT / "requirements.lock", wheel], cwd=work, timeout=INSTALL_TIMEOUT)
    return target


@pytest.fixture(scope="module")
def elsewhere(work, venv) -> tuple[Path, dict]:
    """A folder that is neither the checkout nor the venv, and the environment to run in."""
    folder = work / "elsewhere"
    folder.mkdir()
    env = clean_env(MLFLOW_TRACKING_URI=f"sqlite:///{work}/mlflow.db", MPLBACKEND="Agg",
                    PATH=f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}")
    return folder, env


@pytest.mark.install
def test_wheel_ships_the_packages_the_default_configs_and_the_page(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {p: p in names for p in _expected_data()}
    assert all(shipped.values()), f"missing from {wheel.name}: {[p for p, ok in shipped.items() if not ok]}"
    assert not [n for n in names if n.startswith(("tests/", "benchmarks/", "examples/"))]
    for package in PACKAGES:
        assert f"{package}/__init__.py" in names


def _expected_data() -> list[str]:
    """Every config under experiments/ and every page under ml/serving, as wheel paths."""
    data = [*(ROOT / "experiments").rglob("*.yaml"), *(ROOT / "ml" / "serving").glob("*.html")]
    assert data, "no package data found in the checkout"
    return [p.relative_to(ROOT).as_posix() for p in data]


@pytest.mark.install
def test_installed_wheel_runs_every_command_from_another_directory(venv, elsewhere):
    folder, env = elsewhere
    python = venv / "bin" / "python"
    where = run([python, "-c", "import sys, ml, experiments; print(ml.__file__, experiments.__file__); "
                  "print(*sys.version_info[:2])"], cwd=folder, env=env).stdout
    assert str(ROOT) not in where and str(venv) in where, where
    wanted = run([_interpreter(), "-c", "import sys; print(*sys.version_info[:2])"], cwd=folder).stdout
    assert where.splitlines()[-1] == wanted.strip(), (where, wanted)
    cli = venv / "bin" / "rechallenge"

    run([cli, "cohort", "generate", "--out", "cohort.csv"], cwd=folder, env=env)
    assert len((folder / "cohort.csv").read_text().splitlines()) > 50

    run([cli, "analyze", "--no-mlflow", "--out", "analysis"], cwd=folder, env=env)
    assert json.loads((folder / "analysis" / "analysis.json").read_text())["n"] > 50

    run([cli, "benchmark", "--models", "cox", "--repeats", "1", "--no-mlflow", "--out", "bench"],
         cwd=folder, env=env)
    assert "cox" in (folder / "bench" / "leaderboard.csv").read_text()

    (folder / "patient.json").write_text(json.dumps(PATIENT))
    run([cli, "score", "--patient", "patient.json", "--out", "score.json"], cwd=folder, env=env)
    (scored,) = json.loads((folder / "score.json").read_text())
    assert scored["id"] == PATIENT["id"]
    survival = list(scored["survival"].values())
    assert survival and all(0 <= p <= 1 for p in survival), scored["survival"]

    health = _serve_and_get_health(cli, folder, env)
    assert health["status"] == "ok", health



def _serve_and_get_health(cli: Path, folder: Path, env: dict, timeout: float = 300) -> dict:
    """Start `rechallenge serve` on a free loopback port, GET /health, then stop it."""
    port = free_port()
    log = folder / "serve.log"
    with log.open("w") as out:
        server = subprocess.Popen([str(cli), "serve", "--host", "127.0.0.1", "--port", str(port)],
                                  cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        return _poll_health(f"http://127.0.0.1:{port}/health", server, log, timeout)
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _poll_health(url: str, server: subprocess.Popen, log: Path, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.poll() is None, f"serve exited {server.returncode}:\n{log.read_text()[-6000:]}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.loads(response.read())
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"no answer from {url} within {timeout:.0f} s:\n{log.read_text()[-6000:]}")


# ---- static checks of the packaging files (cheap; always run) ---------------------------

def _pins(lock: Path) -> dict[str, str]:
    pins = {}
    for line in lock.read_text().splitlines():
        match = re.match(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
        if match:
            pins[_canonical(match[1])] = match[2]
    return pins


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_locks_pin_every_declared_dependency_and_agree_with_each_other():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime, dev = _pins(ROOT / "requirements.lock"), _pins(ROOT / "requirements-dev.lock")
    declared = {_canonical(n): v for n, v in (d.split("==") for d in project["dependencies"])}
    tools = {_canonical(n): v for n, v in (d.split("==") for d in project["optional-dependencies"]["dev"])}
    assert {n: runtime.get(n) for n in declared} == declared
    assert {n: dev.get(n) for n in {**declared, **tools}} == {**declared, **tools}
    # setuptools is a build tool for us, but osqp (through scikit-survival) needs it at run time
    assert not (set(tools) - {"setuptools"}) & set(runtime), "a test tool is in the runtime lock"
    assert {n: dev.get(n) for n in runtime} == runtime, "the two locks disagree"


def test_every_third_party_import_of_the_package_is_declared():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {_canonical(d.split("==")[0]) for d in project["dependencies"]}
    distributions = importlib.metadata.packages_distributions()
    undeclared = {}
    for module, files in _third_party_imports().items():
        owners = {_canonical(d) for d in distributions.get(module, [module])}
        if not owners & declared:
            undeclared[module] = sorted(files)
    assert not undeclared, f"imported but not in [project.dependencies]: {undeclared}"


def _third_party_imports() -> dict[str, set[str]]:
    """Top-level modules imported anywhere (module or function level) in the package."""
    local = set(PACKAGES) | set(sys.stdlib_module_names)
    found: dict[str, set[str]] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                for name in _imported_names(node):
                    if name.split(".")[0] not in local:
                        found.setdefault(name.split(".")[0], set()).add(path.relative_to(ROOT).as_posix())
    return found


def _imported_names(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        return [node.module]
    return []

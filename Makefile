# Two commands set up everything on a fresh machine with Python 3.11:
#   make demo   - create .venv if missing, install the pinned dev lock, run the main job on the twin cohort
#   make test   - same set-up, then the test suite (slow tests excluded; `make test-all` runs them)
# Others: `make lint` (ruff + import-linter), `make test-install` (the wheel in a fresh venv,
# outside the checkout), `make test-postgres` (tuning across machines on a throw-away PostgreSQL
# cluster and an MLflow tracking server; needs Debian's postgresql), `make lock` (re-resolve
# both locks after editing pyproject.toml).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
OUT    ?= out/demo
# uv installs the lock several times faster than pip; it is the only tool not in the lock
UV_VERSION := 0.13.9
export MLFLOW_TRACKING_URI ?= sqlite:///mlruns/mlflow.db
export MPLBACKEND ?= Agg

.PHONY: demo test test-slow test-all test-install test-postgres lint lock bench clean-venv

$(BIN)/uv:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "uv==$(UV_VERSION)"

# sync, not install: packages dropped from the lock are removed from the venv too. Bytecode is
# compiled at install: where PYTHONDONTWRITEBYTECODE is set, every process (test workers, fold
# workers, CLI subprocesses) would otherwise recompile every imported module (~5 s each).
$(STAMP): pyproject.toml requirements-dev.lock | $(BIN)/uv
	$(BIN)/uv pip sync --quiet --compile-bytecode --python $(BIN)/python requirements-dev.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps --no-build-isolation -e .
	$(BIN)/python -m compileall -q ml features experiments
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/rechallenge cohort generate --out $(OUT)/cohort.csv --truth $(OUT)/truth.csv
	$(BIN)/rechallenge cohort describe $(OUT)/cohort.csv --mlflow
	$(BIN)/rechallenge analyze --out $(OUT)/analysis
	$(BIN)/rechallenge benchmark --out $(OUT)/benchmark
	$(BIN)/rechallenge explain --out $(OUT)/explain
	$(BIN)/rechallenge score --patient examples/patient.json --out $(OUT)/score/patient.json
	$(BIN)/rechallenge report --reuse $(OUT) --out $(OUT)/report.html
	@echo "report: $(abspath $(OUT))/report.html"

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 -m "not slow and not install and not postgres" -q

# the slow tests alone (end-to-end CLI runs, browser, interrupts, most R-oracle comparisons): CI runs them
test-slow: $(STAMP)
	$(BIN)/python -m pytest -n 2 -m "slow and not install and not postgres" -q

test-all: $(STAMP)
	$(BIN)/python -m pytest -n 2 -m "not install and not postgres" -q

# INSTALL_PYTHON=/path/to/python3.13 runs it with another interpreter in the fresh venv
test-install: $(STAMP)
	$(BIN)/python -m pytest -m install -q tests/test_install.py tests/test_pyfunc_portable.py

# -s: the test prints what it does (cluster, server, commands, kill) and how long each part took
test-postgres: $(STAMP)
	$(BIN)/python -m pytest -m postgres -q -s tests/test_multi_machine.py

# both linters report even when the first one fails
lint: $(STAMP)
	status=0; $(BIN)/ruff check . || status=1; $(BIN)/lint-imports || status=1; exit $$status

# Universal locks (Python 3.11-3.13); existing pins are kept where they still resolve, and the
# dev lock is seeded with the runtime lock so that the two agree on every shared package.
lock: | $(BIN)/uv
	$(BIN)/uv pip compile --quiet pyproject.toml --universal --python-version 3.11 -o requirements.lock
	cat requirements.lock requirements-dev.lock > $(VENV)/lock-preferences.txt
	cp $(VENV)/lock-preferences.txt requirements-dev.lock
	$(BIN)/uv pip compile --quiet pyproject.toml --universal --python-version 3.11 --extra dev \
	    -o requirements-dev.lock

bench: $(STAMP)
	$(BIN)/python benchmarks/twin_calibration.py
	$(BIN)/python benchmarks/twin_speed.py

clean-venv:
	rm -rf $(VENV)

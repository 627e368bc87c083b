# Two commands set up everything on a fresh machine with Python 3.11:
#   make demo   - create .venv if missing, install the pinned lock, run the main job on the twin cohort
#   make test   - same set-up, then the test suite (slow tests excluded; `make test-all` runs them)
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
OUT    ?= out/demo
export MLFLOW_TRACKING_URI ?= sqlite:///mlruns/mlflow.db
export MPLBACKEND ?= Agg

.PHONY: demo test test-all lint bench clean-venv

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip==26.3"
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/rechallenge cohort generate --out $(OUT)/cohort.csv --truth $(OUT)/truth.csv
	$(BIN)/rechallenge cohort describe $(OUT)/cohort.csv --mlflow
	$(BIN)/rechallenge analyze --out $(OUT)/analysis
	$(BIN)/rechallenge benchmark --out $(OUT)/benchmark
	$(BIN)/rechallenge explain --out $(OUT)/explain
	$(BIN)/rechallenge score --patient examples/patient.json --out $(OUT)/score/patient.json

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 -m "not slow" -q

test-all: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python benchmarks/twin_calibration.py
	$(BIN)/python benchmarks/twin_speed.py

clean-venv:
	rm -rf $(VENV)

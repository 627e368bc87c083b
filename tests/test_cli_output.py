"""What the commands print and write: --version, --json, tables readable through a pipe, progress
callbacks, --mapping on every command that reads a table, MLflow kept quiet and its store named."""

from __future__ import annotations

import importlib.metadata as md
import io
import json
import re

import pandas as pd
import pytest
import yaml
from rich.console import Console
from typer.testing import CliRunner

from features import twin
from features.patient import EXAMPLE_PATIENT
from ml.cli import app
from ml.cli import runner as cli_runner
from ml.reporting import display
from ml.tracking import mlflow_io as tracking
from ml.workflows import analysis

runner = CliRunner()
FAST_BENCHMARK = ["--n", "60", "--models", "cox", "--repeats", "1", "--folds", "2", "--n-jobs", "1"]
THEIR_NAMES = {"id": "patient", "age": "AGE", "pfs_months": "PFS_M", "pfs_event": "PROGRESSED",
               "treatment": "ARM"}


@pytest.fixture(autouse=True)
def _restore_mlflow_switches(monkeypatch):
    """The CLI sets MLflow's environment switches for its process: undo them after each test."""
    for name in ("MLFLOW_LOGGING_LEVEL", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR",
                 "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A cohort table under its own names and its mapping, a patient, a saved model."""
    root = tmp_path_factory.mktemp("cli-output")
    cohort = twin.generate(n=80, seed=5).data
    cohort.to_csv(root / "cohort.csv", index=False)
    cohort.rename(columns=THEIR_NAMES).to_csv(root / "theirs.csv", index=False)
    (root / "mapping.yaml").write_text(yaml.safe_dump({"columns": THEIR_NAMES}))
    (root / "patient.json").write_text(json.dumps(EXAMPLE_PATIENT))
    return root


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory, fitted_scorer):
    root = tmp_path_factory.mktemp("model")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root}/mlruns/mlflow.db")
        return str(tracking.save_survival_model(fitted_scorer("cox"), root / "cox"))


def _ok(args: list[str]):
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    return result


def test_version_is_the_installed_distributions():
    result = _ok(["--version"])
    try:
        expected = md.version("rechallenge")
    except md.PackageNotFoundError:
        expected = "unknown"
    assert result.stdout.strip().startswith(f"rechallenge {expected}")


# ------------------------------------------------------------------ --json: the result, alone on stdout


@pytest.mark.slow
def test_benchmark_json_is_the_summary_alone_on_stdout(tmp_path):
    result = _ok(["benchmark", *FAST_BENCHMARK, "--no-mlflow", "--out", str(tmp_path), "--json"])
    summary = json.loads(result.stdout)
    assert summary == json.loads((tmp_path / "benchmark.json").read_text())
    assert set(summary["models"]) == {"cox", "oracle"}
    assert "wrote" in result.stderr and "Harrell C" not in result.output


@pytest.mark.slow
def test_analyze_json_is_analysis_json(tmp_path):
    experiment = tmp_path / "fast.yaml"
    raw = yaml.safe_load(analysis.DEFAULT_CONFIG_PATH.read_text()) | {"bootstrap": 5}
    raw["causal"]["bootstrap"] = 5
    experiment.write_text(yaml.safe_dump(raw))
    result = _ok(["analyze", "--experiment", str(experiment), "--no-mlflow", "--out", str(tmp_path / "o"),
                  "--json"])
    assert json.loads(result.stdout) == json.loads((tmp_path / "o" / "analysis.json").read_text())
    assert json.loads(result.stdout)["bootstrap"]["replicates"] == 5


def test_validate_json_reports_valid_and_invalid_tables(files, tmp_path):
    report = json.loads(_ok(["cohort", "validate", str(files / "cohort.csv"), "--json"]).stdout)
    assert report["valid"] and report["n"] == 80 and report["problems"] == []
    bad = pd.read_csv(files / "cohort.csv")
    bad.loc[3, "age"] = 5
    bad.to_csv(tmp_path / "bad.csv", index=False)
    result = runner.invoke(app, ["cohort", "validate", str(tmp_path / "bad.csv"), "--json"])
    assert result.exit_code == 2
    report = json.loads(result.stdout)
    assert not report["valid"] and report["problems"][0]["column"] == "age"
    assert report["problems"][0]["rows"] == [str(bad.loc[3, "id"])]
    assert "age" in result.stderr


@pytest.mark.slow
def test_score_json_is_the_records(files, saved_model, tmp_path):
    result = _ok(["score", "--patient", str(files / "patient.json"), "--model", saved_model, "--json",
                  "--plot", str(tmp_path / "curve.png")])
    records = json.loads(result.stdout)
    assert records[0]["id"] == EXAMPLE_PATIENT["id"] and records[0]["risk_group"] in ("low", "intermediate",
                                                                                        "high")
    assert (tmp_path / "curve.png").stat().st_size > 1000


# ------------------------------------------------------------------ --mapping wherever a table is read


def test_score_applies_the_mapping_before_the_contract(files, saved_model, tmp_path):
    plain = _ok(["score", "--data", str(files / "cohort.csv"), "--model", saved_model, "--out",
                 str(tmp_path / "plain.csv")])
    mapped = _ok(["score", "--data", str(files / "theirs.csv"), "--mapping", str(files / "mapping.yaml"),
                  "--model", saved_model, "--out", str(tmp_path / "mapped.csv")])
    assert "wrote" in plain.output and "wrote" in mapped.output
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "plain.csv"), pd.read_csv(tmp_path / "mapped.csv"))


@pytest.mark.slow
def test_benchmark_and_explain_read_a_mapped_table_as_ours(files, tmp_path):
    """The same cohort under its own column names plus the mapping gives the same numbers."""
    common = ["--time", "pfs_months", "--event", "pfs_event", "--drop", "id,os_months,os_event",
              "--no-mlflow", "--models", "cox"]
    sources = {"ours": ["--data", str(files / "cohort.csv")],
               "theirs": ["--data", str(files / "theirs.csv"), "--mapping", str(files / "mapping.yaml")]}
    boards, shap = {}, {}
    for name, source in sources.items():
        _ok(["benchmark", *source, *common, "--repeats", "1", "--folds", "2", "--n-jobs", "1",
             "--out", str(tmp_path / f"b-{name}")])
        boards[name] = pd.read_csv(tmp_path / f"b-{name}" / "leaderboard.csv").drop(columns=["fit_seconds"])
        _ok(["explain", *source, *common, "--horizon", "0", "--out", str(tmp_path / f"e-{name}")])
        shap[name] = json.loads((tmp_path / f"e-{name}" / "shap_summary.json").read_text())["models"]
    pd.testing.assert_frame_equal(boards["ours"], boards["theirs"])
    assert shap["ours"] == shap["theirs"] and "pfs1_months" in json.dumps(shap["ours"])


# ------------------------------------------------------------------ tables through a pipe


def test_piped_tables_keep_numbers_and_words_whole(files):
    result = _ok(["cohort", "describe", str(files / "cohort.csv")])
    age = [line for line in result.stdout.splitlines() if line.startswith("│ age ")]
    assert age and len(re.findall(r"│ \d+\.\d \[\d+\.\d, \d+\.\d\] +(?=│)", age[0])) == 2, result.stdout
    assert re.search(r"│ histology +│ adenocarcinoma +│", result.stdout), result.stdout


def test_a_table_wider_than_the_console_is_printed_whole():
    console = Console(file=io.StringIO(), width=30)
    frame = pd.DataFrame({"group": ["intermediate", "low"],
                          "HR (95% CI)": ["0.52 (0.33-0.83)", "1.00 (1-1)"]})
    display.print_frame(console, frame, title="hazard ratios by risk group")
    text = console.file.getvalue()
    assert "intermediate" in text and "0.52 (0.33-0.83)" in text


# ------------------------------------------------------------------ progress callbacks


@pytest.mark.slow
def test_analysis_reports_each_bootstrap_resample(twin_small):
    calls = []
    config = analysis.AnalysisConfig(bootstrap=4, causal={"bootstrap": 0})
    with_progress = analysis.run_analysis(twin_small.data, config, progress=lambda *a: calls.append(a))
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]
    without = analysis.run_analysis(twin_small.data, config)
    assert analysis.to_json(with_progress) == analysis.to_json(without)  # watching changes nothing


def test_explain_reports_each_model_fit():
    from ml.workflows import explain

    cfg = explain.ExplainConfig(models=("cox", "coxnet"), horizon=0, n=60, seed=2, seeds=1)
    calls = []
    explain.run_explain(explain.prepare(cfg), cfg, progress=lambda *a: calls.append(a))
    assert [(done, total) for _, done, total in calls] == [(0, 4), (1, 4), (2, 4), (4, 4)]


@pytest.mark.slow
def test_tuning_reports_trials_until_all_are_done(mlflow_store):
    from features import datasets
    from ml.workflows import tuning

    calls = []
    config = tuning.TuneConfig(model="coxnet", n_trials=2, outer_folds=2, inner_folds=2,
                               storage=str(mlflow_store / "journal.log"))
    tuning.tune(datasets.twin(n=60), config, progress=lambda *a: calls.append(a))
    assert calls[-1] == (6, 6) and all(total == 6 for _, total in calls)


# ------------------------------------------------------------------ MLflow: quiet, and its store named


@pytest.mark.slow
@pytest.mark.parametrize("verbose", [False, True])
def test_mlflow_chatter_only_with_verbose(files, mlflow_store, verbose):
    args = ["score", "--patient", str(files / "patient.json"), "--out", str(mlflow_store / "s.json")]
    result = _ok(["--verbose", *args] if verbose else args)
    assert "registered it as version 1" in result.output  # the default model was registered here
    mlflow_lines = ("Successfully registered" in result.output, "mlflow.pyfunc" in result.output)
    assert mlflow_lines == (verbose, verbose)
    assert f"MLflow store sqlite:///{mlflow_store}/mlruns/mlflow.db" in " ".join(result.output.split())


@pytest.mark.slow
def test_every_logging_command_names_its_store(files, mlflow_store):
    result = _ok(["cohort", "describe", str(files / "cohort.csv"), "--mlflow"])
    assert re.search(rf"logged to MLflow run \w+ \(experiment 'cohort'\) in sqlite:///{mlflow_store}",
                     " ".join(result.output.split()))


def test_the_store_is_printed_without_its_password(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "postgresql://me:secret@db.example:5432/mlflow")
    assert cli_runner.tracking_store() == "postgresql://me:***@db.example:5432/mlflow"

"""Bad input at the command line: exit 2, one message naming the flag or file, nothing written,
and outputs refused before any computation."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from features import twin
from features.patient import EXAMPLE_PATIENT
from ml.cli import app
from ml.cli import runner as cli_runner

runner = CliRunner()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A small cohort table, a binary file named .csv, a survival table and a patient."""
    root = tmp_path_factory.mktemp("inputs")
    twin.generate(n=60, seed=3).data.to_csv(root / "cohort.csv", index=False)
    (root / "binary.csv").write_bytes(Path(sys.executable).read_bytes()[:4096])
    pd.DataFrame({"t": [1.0, 2.0, 3.0, 4.0], "e": [1, 0, 1, 1], "x": [0.1, 0.2, 0.3, 0.4]}).to_csv(
        root / "table.csv", index=False)
    (root / "patient.json").write_text(json.dumps(EXAMPLE_PATIENT))
    (root / "a_file").write_text("not a directory")
    return root


def _bad(args: list[str], *expected: str) -> str:
    result = runner.invoke(app, args)
    text = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for piece in expected:
        assert piece in text, text
    return text


# ------------------------------------------------------------------ input files and flags


@pytest.mark.parametrize("command", [
    ["benchmark", "--time", "t", "--event", "e"],
    ["explain", "--time", "t", "--event", "e"],
    ["score"],
])
def test_a_binary_file_named_csv_is_one_message_naming_it(files, tmp_path, command):
    out = tmp_path / "out"
    args = [*command, "--data", str(files / "binary.csv"), "--out", str(out / "x.json" if command == ["score"]
                                                                        else out)]
    _bad(args + (["--no-mlflow"] if command != ["score"] else []), "binary.csv")
    assert not out.exists()


@pytest.mark.parametrize("args,message", [
    (["--models", "foo"], "--models: unknown model 'foo'; choose from cox"),
    (["--endpoint", "dfs"], "--endpoint: unknown endpoint 'dfs'"),
    (["--dataset", "foo"], "--dataset: unknown data set 'foo'"),
    (["--data", "{table}"], "--data needs --time and --event"),
    (["--data", "{table}", "--time", "t"], "--data needs --event"),
    (["--treated", "CIA"], "--treated needs --treatment"),
    (["--data", "{table}", "--time", "t", "--event", "e", "--treated", "1"], "--treated needs --treatment"),
    (["--dataset", "gbsg2", "--data", "{table}", "--time", "t", "--event", "e"], "give --dataset or --data"),
    (["--time", "t"], "--time applies only to a table given with --data"),
    (["--mapping", "{table}"], "--mapping applies only to a table given with --data"),
])
def test_benchmark_blames_the_flag_not_the_yaml(files, tmp_path, args, message):
    args = [a.format(table=files / "table.csv") for a in args]
    text = _bad(["benchmark", *args, "--no-mlflow", "--out", str(tmp_path / "out")], message)
    assert "benchmark.yaml" not in text
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("settings,message", [
    ("models: [cox, foo]\n", "{yaml}: models: unknown model 'foo'"),
    ("treated: CIA\n", "{yaml}: treated needs treatment"),
    ("data: x.csv\n", "{yaml}: data needs time and event"),
])
def test_benchmark_blames_the_yaml_for_its_own_values(tmp_path, settings, message):
    experiment = tmp_path / "mine.yaml"
    experiment.write_text(settings)
    text = _bad(["benchmark", "--experiment", str(experiment), "--no-mlflow", "--out", str(tmp_path / "o")],
                message.format(yaml=experiment))
    assert "--" not in text


def test_a_flag_is_blamed_even_beside_yaml_settings(tmp_path):
    experiment = tmp_path / "mine.yaml"
    experiment.write_text("data: x.csv\ntime: t\nevent: e\n")
    _bad(["benchmark", "--experiment", str(experiment), "--treated", "1", "--no-mlflow"],
         "--treated needs --treatment")


def test_a_broken_yaml_is_one_line(tmp_path):
    experiment = tmp_path / "broken.yaml"
    experiment.write_text("models: [cox\n")
    text = _bad(["benchmark", "--experiment", str(experiment), "--no-mlflow", "--out", str(tmp_path / "o")],
                "broken.yaml", "not a valid YAML file")
    assert "\n" not in text


@pytest.mark.parametrize("command", [["explain", "--no-mlflow"], ["tune", "--model", "coxnet"]])
def test_dataset_and_data_together_are_refused(files, tmp_path, command):
    _bad([*command, "--dataset", "gbsg2", "--data", str(files / "cohort.csv")], "give --dataset or --data")


@pytest.mark.parametrize("args,message", [
    (["--treated", "CIA"], "--treated needs --treatment"),
    (["--time", "t"], "--time applies only to a table given with --data"),
    (["--models", "foo"], "--models: unknown model 'foo'"),
    (["--dataset", "foo"], "--dataset: unknown data set 'foo'"),
])
def test_explain_blames_the_flag(tmp_path, args, message):
    _bad(["explain", *args, "--no-mlflow", "--out", str(tmp_path / "out")], message)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args,message", [
    (["--dataset", "foo"], "--dataset: unknown data set 'foo'"),
    (["--endpoint", "dfs"], "--endpoint: unknown endpoint 'dfs'"),
    (["--mapping", "m.yaml"], "--mapping applies only to a table given with --data"),
])
def test_tune_blames_the_flag(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    _bad(["tune", "--model", "coxnet", *args], message)
    assert list(tmp_path.iterdir()) == []


def test_a_mapping_that_does_not_fit_the_table_names_the_column(files, tmp_path):
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text("columns: {age: AGE_AT_START}\n")
    for command in (["benchmark", "--time", "pfs_months", "--event", "pfs_event", "--no-mlflow"],
                    ["explain", "--time", "pfs_months", "--event", "pfs_event", "--no-mlflow"], ["score"]):
        _bad([*command, "--data", str(files / "cohort.csv"), "--mapping", str(mapping),
              "--out", str(tmp_path / "out" / "s.json" if command == ["score"] else tmp_path / "out")],
             "AGE_AT_START")
    assert not (tmp_path / "out").exists()


def test_analyze_on_an_all_censored_cohort_is_bad_input(files, tmp_path):
    censored = pd.read_csv(files / "cohort.csv").assign(pfs_event=0)
    censored.to_csv(tmp_path / "censored.csv", index=False)
    _bad(["analyze", "--data", str(tmp_path / "censored.csv"), "--no-mlflow", "--out", str(tmp_path / "out")],
         "no PFS events", "'pfs_event' is 0 on all")
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ outputs refused before any work


def _never(*args, **kwargs):
    raise AssertionError("computed although the output cannot be written")


@pytest.fixture
def no_computation(monkeypatch):
    """The commands' workflows fail loudly if reached: an output problem must stop the command first."""
    from features import twin as twin_module
    from ml.workflows import analysis, benchmark, explain

    for module, name in ((benchmark, "prepare_data"), (explain, "prepare"), (analysis, "run_analysis"),
                         (twin_module, "generate")):
        monkeypatch.setattr(module, name, _never)


def _commands(out: str) -> list[list[str]]:
    return [["benchmark", "--no-mlflow", "--out", out], ["explain", "--no-mlflow", "--out", out],
            ["analyze", "--no-mlflow", "--out", out]]


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs /proc (Linux)")
@pytest.mark.parametrize("command", _commands("/proc/rechallenge-out"))
def test_an_unwritable_out_directory_is_refused_first(no_computation, command):
    _bad(command, "--out /proc/rechallenge-out", "cannot be written")


@pytest.mark.parametrize("command", _commands("{file}/sub"))
def test_an_out_directory_under_a_file_is_refused_first(no_computation, files, command):
    _bad([a.format(file=files / "a_file") for a in command], "--out", "a_file is a file, not a directory")


@pytest.mark.parametrize("command", _commands("{file}"))
def test_an_out_directory_that_is_a_file_is_refused_first(no_computation, files, command):
    _bad([a.format(file=files / "a_file") for a in command], "--out", "exists and is not a directory")
    assert (files / "a_file").read_text() == "not a directory"


@pytest.mark.parametrize("args,message", [
    (["cohort", "generate", "--out", "{dir}"], "--out {dir}: is a directory"),
    (["cohort", "generate", "--out", "{file}/c.csv"], "a_file is a file, not a directory"),
    (["cohort", "generate", "--out", "{tmp}/c.csv", "--truth", "{dir}"], "--truth {dir}: is a directory"),
    (["score", "--patient", "{patient}", "--out", "{dir}"], "--out {dir}: is a directory"),
    (["score", "--patient", "{patient}", "--out", "{tmp}/s.txt"],
     "--out {tmp}/s.txt: must end in .json or .csv"),
    (["score", "--patient", "{patient}", "--out", "{dir}/x.json", "--plot", "{file}/p.png"],
     "--plot"),
])
def test_file_outputs_are_refused_first(no_computation, files, tmp_path, args, message):
    (tmp_path / "d.csv").mkdir()
    fill = dict(dir=tmp_path / "d.csv", file=files / "a_file", tmp=tmp_path, patient=files / "patient.json")
    _bad([a.format(**fill) for a in args], message.format(**fill))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.csv"]


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs /proc (Linux)")
def test_score_refuses_an_unwritable_out_before_loading_a_model(files):
    _bad(["score", "--patient", str(files / "patient.json"), "--out", "/proc/x.json", "--model", "nowhere"],
         "--out /proc/x.json", "cannot be written")


# ------------------------------------------------------------------ atomic writes


def test_a_failed_write_leaves_no_file_behind(tmp_path):
    (tmp_path / "b.txt").write_text("old")

    def broken(target: Path) -> None:
        target.write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(typer.Exit) as exit_info:
        cli_runner.write_outputs("--out", {tmp_path / "a.txt": lambda p: p.write_text("complete"),
                                           tmp_path / "b.txt": broken})
    assert exit_info.value.exit_code == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.txt"]  # no a.txt, no temporary file
    assert (tmp_path / "b.txt").read_text() == "old"  # the previous file is untouched


def test_an_interrupted_write_leaves_the_previous_file(tmp_path):
    target = tmp_path / "table.csv"
    target.write_text("previous")

    def interrupted(temp: Path) -> None:
        temp.write_text("partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cli_runner.write_atomic(target, interrupted)
    assert [p.name for p in tmp_path.iterdir()] == ["table.csv"] and target.read_text() == "previous"

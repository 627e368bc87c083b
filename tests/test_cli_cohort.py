"""`rechallenge cohort ...` end to end."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from features import io
from features.twin import DEFAULT_CONFIG_PATH
from ml.cli import app
from tests.test_schema import good_table

runner = CliRunner()


def test_help_explains_every_command():
    for args in ([], ["cohort"], ["cohort", "generate"], ["cohort", "describe"],
                 ["cohort", "validate"]):
        result = runner.invoke(app, [*args, "--help"])
        assert result.exit_code == 0, result.output
        assert "Usage" in result.output


def test_generate_writes_cohort_and_truth(tmp_path):
    out, truth = tmp_path / "c.csv", tmp_path / "t.parquet"
    result = runner.invoke(app, ["cohort", "generate", "--n", "150", "--seed", "3",
                                 "--out", str(out), "--truth", str(truth)])
    assert result.exit_code == 0, result.output
    data = io.load_cohort(out)  # what generate writes passes the contract
    t = pd.read_parquet(truth)
    assert len(data) == len(t) == 150
    assert list(t["id"]) == list(data["id"])
    for col in ("true_lp_pfs", "true_propensity", "pfs_time_cia", "pfs_time_ci",
                "os_time_cia", "os_time_ci"):
        assert col in t.columns


def test_generate_is_byte_identical_for_same_seed(tmp_path):
    paths = [tmp_path / "a.csv", tmp_path / "b.csv"]
    for p in paths:
        assert runner.invoke(app, ["cohort", "generate", "--n", "80", "--seed", "9",
                                   "--out", str(p)]).exit_code == 0
    assert paths[0].read_bytes() == paths[1].read_bytes()


def test_generate_default_is_the_named_seed_at_n_101(tmp_path):
    out = tmp_path / "d.csv"
    result = runner.invoke(app, ["cohort", "generate", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(out)) == 101


def test_generate_rejects_bad_suffix_and_writes_nothing(tmp_path):
    result = runner.invoke(app, ["cohort", "generate", "--out", str(tmp_path / "c.xlsx")])
    assert result.exit_code == 2
    assert ".csv or .parquet" in result.output
    assert list(tmp_path.iterdir()) == []


def test_generate_names_a_config_typo_and_writes_nothing(tmp_path):
    config = tmp_path / "typo.yaml"
    config.write_text(DEFAULT_CONFIG_PATH.read_text().replace("accrual_months:", "acrual_months:"))
    result = runner.invoke(app, ["cohort", "generate", "--config", str(config),
                                 "--out", str(tmp_path / "c.csv")])
    assert result.exit_code == 2
    assert "unknown key 'acrual_months'" in result.output
    assert not (tmp_path / "c.csv").exists()


def test_describe_prints_table_one_and_medians(tmp_path):
    path = tmp_path / "c.csv"
    good_table().to_csv(path, index=False)
    result = runner.invoke(app, ["cohort", "describe", str(path)])
    assert result.exit_code == 0, result.output
    for fragment in ("Table 1", "histology", "CR/PR", "smd", "Kaplan-Meier medians", "NR"):
        assert fragment in result.output


@pytest.mark.slow
def test_describe_logs_to_mlflow(tmp_path, mlflow_store):
    import mlflow  # heavy (~2 s): only this test reads the store back

    path = tmp_path / "c.csv"
    good_table().to_csv(path, index=False)
    result = runner.invoke(app, ["cohort", "describe", str(path), "--mlflow"])
    assert result.exit_code == 0, result.output
    runs = mlflow.search_runs(experiment_names=["cohort"])
    assert len(runs) == 1 and runs.loc[0, "status"] == "FINISHED"
    assert "metrics.median_pfs_all" in runs.columns


def test_validate_reports_every_problem_and_exits_2(tmp_path):
    df = good_table()
    df.loc[0, "smoking"] = "former"
    df.loc[2, "os_months"] = 0.1
    df.to_csv(tmp_path / "bad.csv", index=False)
    result = runner.invoke(app, ["cohort", "validate", str(tmp_path / "bad.csv")])
    assert result.exit_code == 2
    assert "column 'smoking'" in result.output and "former" in result.output
    assert "os_months >= pfs_months" in result.output and "P02" in result.output


def test_validate_good_table(tmp_path):
    good_table().to_csv(tmp_path / "ok.csv", index=False)
    result = runner.invoke(app, ["cohort", "validate", str(tmp_path / "ok.csv")])
    assert result.exit_code == 0 and "valid: 6 patients (CIA 3, CI 3)" in result.output


def test_validate_missing_file_exits_2(tmp_path):
    result = runner.invoke(app, ["cohort", "validate", str(tmp_path / "none.csv")])
    assert result.exit_code == 2 and "not found" in result.output

"""A covariate column empty on every row is accepted (covariates may be missing) and left out,
with a warning naming it: by `analyze` (Table 1, propensity model, Cox tables) and by
`benchmark --data` (the inferred features)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from features.errors import InputWarning
from ml.cli import app


@pytest.fixture(scope="module")
def empty_pdl1(tmp_path_factory, twin_small):
    path = tmp_path_factory.mktemp("empty") / "empty_pdl1.csv"
    twin_small.data.assign(pdl1="").to_csv(path, index=False)
    return path


@pytest.mark.slow
def test_analyze_accepts_an_empty_confounder_and_warns(empty_pdl1, tmp_path):
    out = tmp_path / "a"
    result = CliRunner().invoke(app, ["analyze", "--data", str(empty_pdl1), "--out", str(out), "--no-mlflow",
                                      "--experiment", str(_fast_experiment(tmp_path))])
    assert result.exit_code == 0, result.output
    printed = " ".join(result.output.split())  # the console wraps at its width
    assert "confounder 'pdl1' is missing on every row: left out of the propensity model" in printed
    assert "pdl1 missing on every row: left out of the Cox tables" in printed
    written = json.loads((out / "analysis.json").read_text())
    assert "pdl1" not in written["confounders_used"] and "age" in written["confounders_used"]
    assert not any(term.startswith("pdl1") for term in written["cox_multivariable_pfs"])
    assert any("pdl1" in w for w in written["warnings"])


@pytest.mark.slow
def test_benchmark_accepts_an_empty_feature_and_warns(empty_pdl1, tmp_path):
    out = tmp_path / "b"
    # the command prints warnings as 'warning: ...' lines; under pytest they are caught here
    with pytest.warns(InputWarning, match="pdl1 entirely missing: accepted, but left out of the features"):
        result = CliRunner().invoke(app, [
            "benchmark", "--data", str(empty_pdl1), "--time", "pfs_months", "--event", "pfs_event",
            "--drop", "id,os_months,os_event", "--models", "cox", "--folds", "2", "--repeats", "1",
            "--n-jobs", "1", "--no-mlflow", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert list(pd.read_csv(out / "leaderboard.csv")["model"]) == ["cox"]


def _fast_experiment(tmp_path):
    path = tmp_path / "fast.yaml"
    path.write_text("bootstrap: 5\ncausal: {bootstrap: 5}\n")
    return path

"""Robust defaults on real tables (issue 15): label spellings, rare levels, integer codes, no events.

- every model family takes category labels of any spelling (`pdl1=<1%` broke XGBoost);
- levels seen in fewer than `MIN_LEVEL_ROWS` training rows of an inferred table are pooled as
  `feature=infrequent` and the benchmark says which; the contract's declared levels stay as they are;
- an integer code is a number unless declared categorical, and then its rare codes are pooled;
- `analyze` refuses an endpoint without events with one message (exit 2), not a KeyError.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from features import datasets, io
from features.contract import term
from features.pipeline import INFREQUENT_LEVEL, MIN_LEVEL_ROWS, cohort_spec, infer_spec, infrequent_levels
from ml import models
from ml.cli import app
from ml.models.cox import SeparationWarning
from ml.stats.bootstrap import bootstrap_iptw
from ml.stats.errors import CausalInputError
from ml.stats.weighting import estimate_iptw
from ml.workflows import analysis
from ml.workflows import benchmark as bench

runner = CliRunner()
OUTCOMES = "id,os_months,os_event"


@pytest.fixture(scope="module")
def cohort_csv(tmp_path_factory):
    """The project's own table format, as `rechallenge cohort generate` writes it."""
    path = tmp_path_factory.mktemp("cohort") / "cohort.csv"
    result = runner.invoke(app, ["cohort", "generate", "--n", "500", "--seed", "7", "--out", str(path)])
    assert result.exit_code == 0, result.output
    return path


@pytest.mark.slow
def test_benchmark_scores_every_fold_of_the_cohort_table_with_every_model_family(cohort_csv, tmp_path):
    """The PD-L1 label `<1%` becomes the feature `pdl1=<1%`, a name xgboost itself refuses."""
    out = tmp_path / "bench"
    result = runner.invoke(app, ["benchmark", "--data", str(cohort_csv), "--time", "pfs_months",
                                 "--event", "pfs_event", "--drop", OUTCOMES,
                                 "--models", "cox,xgb_cox,xgb_aft",
                                 "--folds", "3", "--repeats", "1", "--n-jobs", "1", "--no-mlflow",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    scores = pd.read_csv(out / "fold_scores.csv")
    assert set(scores["model"]) == {"cox", "xgb_cox", "xgb_aft"}
    assert scores["harrell_c"].notna().all() and len(scores) == 3 * 3
    notes = json.loads((out / "benchmark.json").read_text())["notes"]
    assert not [n for n in notes if "failed" in n]


@pytest.mark.slow
def test_explain_takes_the_cohort_table_with_xgboost(cohort_csv, tmp_path):
    out = tmp_path / "explain"
    result = runner.invoke(app, ["explain", "--data", str(cohort_csv), "--time", "pfs_months",
                                 "--event", "pfs_event", "--drop", OUTCOMES, "--models", "xgb_cox,xgb_aft",
                                 "--horizon", "0", "--no-mlflow", "--out", str(out)])
    assert result.exit_code == 0, result.output
    summary = (out / "shap_summary.json").read_text()
    assert "pdl1" in summary and "xgb_aft" in summary


# --------------------------------------------------------------------------------- rare levels


def _table_with_rare_levels(n: int = 160, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    site = np.array(["north"] * 90 + ["south"] * (n - 97) + ["east"] * 4 + ["west"] * 3)
    return pd.DataFrame({"age": rng.normal(60, 10, n), "site": rng.permutation(site),
                         "months": rng.exponential(12, n) + 0.1, "dead": (rng.random(n) < 0.7).astype(int)})


def test_rare_levels_of_an_inferred_table_share_one_column():
    data = datasets.from_table(_table_with_rare_levels(), "months", "dead")
    assert data.spec.min_level_rows == MIN_LEVEL_ROWS
    pipe = models.fit_full("cox", data.spec, data.X, data.y)
    columns = list(pipe.preprocessor_.get_feature_names_out())
    assert term("site", INFREQUENT_LEVEL) in columns
    assert term("site", "east") not in columns and term("site", "west") not in columns
    assert infrequent_levels(pipe.preprocessor_) == {"site": ("east", "west")}
    # an unknown label at prediction time is scored like the pooled rare levels
    row = data.X.iloc[[0]]
    rare, unseen = pipe.predict(row.assign(site="west")), pipe.predict(row.assign(site="mars"))
    assert np.allclose(rare, unseen)


def test_a_feature_whose_levels_are_all_rare_drops_out():
    tiny = _table_with_rare_levels().iloc[:12]
    spec = infer_spec(tiny, exclude=("months", "dead"))
    pre = models.make_pipeline("cox", spec)[0].fit(tiny)
    assert list(pre.get_feature_names_out()) == ["age"]
    assert set(infrequent_levels(pre)["site"]) == set(tiny["site"])


@pytest.mark.slow
def test_benchmark_notes_name_the_pooled_levels():
    data = datasets.from_table(_table_with_rare_levels(), "months", "dead")
    config = bench.BenchmarkConfig(models=["cox"], folds=2, repeats=1, n_jobs=1)
    notes = " ".join(bench.run_benchmark(data, config).notes)
    assert "site: levels east, west grouped as 'infrequent'" in notes


def test_the_contract_keeps_its_declared_levels_however_rare():
    """The twin's preprocessing (and so its numbers) does not pool: one column per declared level."""
    data = datasets.twin(n=40, seed=2)  # at n = 40 several declared levels have fewer than 10 rows
    assert cohort_spec().min_level_rows is None and data.spec.min_level_rows is None
    pre = models.make_pipeline("cox", data.spec)[0].fit(data.X)
    columns = list(pre.get_feature_names_out())
    assert infrequent_levels(pre) == {}
    for feature, levels in data.spec.categorical.items():
        assert [term(feature, level) for level in levels[1:]] == [c for c in columns if
                                                                  c.startswith(f"{feature}=")]


# ------------------------------------------------------------------------------ integer codes


@pytest.fixture(scope="module")
def lung():
    """The NCCTG lung table: `inst` is an institution code (18 codes, 2 to 36 patients each)."""
    from lifelines.datasets import load_lung  # the table ships with lifelines (the tests' oracle)

    return load_lung()


def test_an_integer_code_is_a_number_unless_declared_categorical(lung):
    assert "inst" in infer_spec(lung, exclude=("time", "status")).numeric
    data = datasets.from_table(lung, "time", "status", categorical=["inst"])
    assert "inst" in data.spec.categorical
    with warnings.catch_warnings():
        warnings.simplefilter("error", SeparationWarning)
        pipe = models.fit_full("cox", data.spec, data.X, data.y)
    pooled = infrequent_levels(pipe.preprocessor_)["inst"]
    small = data.frame["inst"].value_counts()
    assert set(pooled) == set(small[small < MIN_LEVEL_ROWS].index)
    assert np.all(np.abs(pipe.model_.coef_) < 2)


# -------------------------------------------------------------------------- no events (analyze)


@pytest.mark.parametrize("change, message", [
    ({"pfs_event": 0, "os_event": 0}, "no PFS events: 'pfs_event' is 0 on all 300 rows"),
    ({"os_event": 0}, "no OS events"),
])
def test_analysis_refuses_an_endpoint_without_events(twin_small, change, message):
    df = twin_small.data.assign(**change)
    with pytest.raises(CausalInputError, match=message):
        analysis.run_analysis(df, analysis.AnalysisConfig(bootstrap=0))


def test_analysis_refuses_a_group_without_events(twin_small):
    df = twin_small.data.copy()
    df.loc[df["treatment"] == "CI", "pfs_event"] = 0
    with pytest.raises(CausalInputError, match="no PFS events in CI"):
        analysis.run_analysis(df, analysis.AnalysisConfig(bootstrap=20))
    with pytest.raises(CausalInputError, match="none of the 5 bootstrap resamples"):
        bootstrap_iptw(df, estimate_iptw(df), replicates=5, seed=0)


def test_analyze_cli_on_an_all_censored_cohort_exits_2_and_writes_nothing(cohort_csv, tmp_path):
    df = pd.read_csv(cohort_csv).assign(pfs_event=0, os_event=0)
    data = tmp_path / "censored.csv"
    io.write_table(df, data)
    out = tmp_path / "out"
    result = runner.invoke(app, ["analyze", "--data", str(data), "--out", str(out), "--no-mlflow"])
    assert result.exit_code == 2, result.output
    assert "no PFS events" in " ".join(result.output.split()) and "Traceback" not in result.output
    assert not (out / "analysis.json").exists()

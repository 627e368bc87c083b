"""Internal validation (`rechallenge validate`): the optimism as defined, its sign on an overfit
model, events per variable, the command's files and exit codes, and the MLflow run's metric names."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sksurv.util import Surv
from typer.testing import CliRunner

from features import datasets
from ml.cli import app
from ml.evaluation import validation as stats
from ml.evaluation.metrics import metric_names as benchmark_metric_names
from ml.models.cox import CoxPH
from ml.workflows import validation as wf

B = 6


@pytest.fixture(scope="module")
def twin150():
    return datasets.twin(n=150, seed=5)


@pytest.fixture(scope="module")
def twin_run(twin150):
    config = wf.load_config(model="cox", bootstrap=B, seed=3, n=150)
    return wf.run_validation(twin150, config)


def test_optimism_by_hand():
    resamples = pd.DataFrame({"b": [0, 1, 0, 1], "metric": ["harrell_c", "harrell_c", "uno_c", "uno_c"],
                              "apparent": [0.80, 0.70, 0.75, np.nan], "test": [0.60, 0.66, 0.70, 0.65]})
    summary = stats.optimism_summary({"harrell_c": 0.75, "uno_c": 0.72}, resamples).set_index("metric")
    # harrell: mean(0.20, 0.04) = 0.12; uno: the NaN resample is left out -> 0.05
    assert summary.loc["harrell_c", "optimism"] == pytest.approx(0.12)
    assert summary.loc["harrell_c", "corrected"] == pytest.approx(0.63)
    assert summary.loc["uno_c", "optimism"] == pytest.approx(0.05)
    assert summary.loc["uno_c", "corrected"] == pytest.approx(0.67)


def test_corrected_is_apparent_minus_mean_gap(twin_run):
    result = twin_run.result
    assert set(result.resamples["b"]) == set(range(B))
    assert set(result.summary["metric"]) == set(stats.metric_names(twin_run.horizons))
    for row in result.summary.to_dict("records"):
        per_b = result.resamples[result.resamples["metric"] == row["metric"]]
        optimism = float(np.nanmean(per_b["apparent"] - per_b["test"]))
        assert row["apparent"] == pytest.approx(result.apparent[row["metric"]])
        assert row["optimism"] == pytest.approx(optimism)
        assert row["corrected"] == pytest.approx(row["apparent"] - optimism)


def test_calibration_curves_have_a_band(twin_run):
    curves = twin_run.result.calibration
    assert set(curves["horizon"]) == set(twin_run.horizons)
    assert (curves["band_low"] <= curves["band_high"]).all()
    assert curves[["predicted", "observed"]].stack().between(0, 1).all()


@pytest.fixture(scope="module")
def noisy():
    """120 rows, 2 real and 25 noise columns: an unpenalised Cox on them is overfit."""
    rng = np.random.default_rng(0)
    n, noise = 120, 25
    X = pd.DataFrame(rng.normal(size=(n, 2 + noise)), columns=[f"x{i}" for i in range(2 + noise)])
    time = rng.exponential(np.exp(-(0.7 * X["x0"] - 0.5 * X["x1"])).to_numpy() * 12)
    censor = rng.exponential(30, n)
    return X, Surv.from_arrays(time <= censor, np.minimum(time, censor))


def _validate_noisy(noisy, seed):
    X, y = noisy
    return stats.bootstrap_validation(lambda X_, y_: CoxPH(alpha=0.0).fit(X_, y_), X, y,
                                      horizons={"6": 6.0, "12": 12.0}, tau=24.0, n_bootstrap=8, seed=seed)


def test_seeded(noisy):
    first, again, other = (_validate_noisy(noisy, s).summary for s in (1, 1, 2))
    pd.testing.assert_frame_equal(first, again)
    assert not first["optimism"].equals(other["optimism"])


def test_overfit_model_is_corrected_down(noisy):
    summary = _validate_noisy(noisy, 1).summary.set_index("metric")
    assert summary.loc["harrell_c", "optimism"] > 0.02
    assert summary.loc["harrell_c", "corrected"] < summary.loc["harrell_c", "apparent"]
    assert summary.loc["uno_c", "corrected"] < summary.loc["uno_c", "apparent"]
    assert summary.loc["calibration_slope_12", "corrected"] < 0.9   # shrinkage needed


def test_events_per_variable_and_warning(twin_run, twin150):
    assert stats.events_per_variable(45, 18) == pytest.approx(2.5)
    assert "events per variable 2.5 < 10" in stats.epv_warning(2.5)
    assert stats.epv_warning(12.0) is None
    assert twin_run.epv == pytest.approx(twin_run.events / twin_run.n_columns)
    assert twin_run.n_columns > len(twin150.spec.columns)   # counted after one-hot encoding
    assert any("events per variable" in note for note in twin_run.notes) == (twin_run.epv < 10)


def test_json_names_and_methods(twin_run):
    doc = wf.to_json(twin_run)
    names = {"harrell_c", "uno_c", "calibration_slope_12", "calibration_in_the_large_6", "epv"}
    assert names <= set(doc["metrics"])
    assert set(doc["metrics"]["harrell_c"]) == {"apparent", "optimism", "corrected"}
    assert {"harrell_c", "uno_c", "calibration_slope_<h>", "calibration_in_the_large_<h>", "epv",
            "calibration_curve"} <= set(doc["methods"])


def test_cli_writes_files(tmp_path):
    out = tmp_path / "val"
    result = CliRunner().invoke(app, ["validate", "--n", "150", "--bootstrap", "4", "--no-mlflow",
                                      "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "validation.json").read_text())
    assert json.loads(result.stdout) == doc    # --json: the document alone on stdout
    assert doc["bootstrap"] == 4 and doc["model"] == "cox"
    assert (out / "calibration.png").stat().st_size > 1000


@pytest.mark.parametrize(("args", "message"), [
    (["--model", "nope"], "--model"),
    (["--bootstrap", "0"], "--bootstrap"),
    (["--dataset", "gbsg2", "--data", "x.csv"], "--data"),
    (["--data", "x.csv"], "--time"),
    (["--dataset", "nope"], "--dataset"),
    (["--dataset", "whas500", "--model", "iptw_cox"], "--treatment"),
])
def test_cli_bad_flags_exit_2(tmp_path, args, message):
    result = CliRunner().invoke(app, ["validate", *args, "--no-mlflow", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (tmp_path / "o" / "validation.json").exists()


@pytest.mark.slow
def test_mlflow_run_carries_the_vocabulary(mlflow_store):
    from mlflow.tracking import MlflowClient

    result = CliRunner().invoke(app, ["validate", "--n", "150", "--bootstrap", "3", "--out", "out"])
    assert result.exit_code == 0, result.output
    assert "corrected" in result.stdout and "logged to MLflow run" in result.stdout
    client = MlflowClient()
    experiment = client.get_experiment_by_name("validate")
    [run] = client.search_runs([experiment.experiment_id])
    doc = json.loads((mlflow_store / "out" / "validation.json").read_text())
    metrics = run.data.metrics
    for name in ("harrell_c", "uno_c", "calibration_slope_12"):
        assert name in benchmark_metric_names(doc["horizons"])   # the benchmark's name for it
        assert metrics[name] == pytest.approx(doc["metrics"][name]["corrected"])
        assert metrics[f"apparent.{name}"] == pytest.approx(doc["metrics"][name]["apparent"])
    assert metrics["epv"] == pytest.approx(doc["epv"])
    assert run.info.run_name.endswith("/cox")
    assert run.inputs.dataset_inputs
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"validation.json", "calibration.png"} <= artifacts


def test_cli_runs_on_a_table(tmp_path, twin150):
    table = tmp_path / "cohort.csv"
    renamed = twin150.frame.rename(columns={"pfs_months": "months", "pfs_event": "progressed"})
    renamed.to_csv(table, index=False)
    result = CliRunner().invoke(app, ["validate", "--data", str(table), "--time", "months", "--event",
                                      "progressed", "--treatment", "treatment", "--treated", "CIA",
                                      "--model", "iptw_cox", "--bootstrap", "3", "--no-mlflow",
                                      "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "out" / "validation.json").read_text())
    assert (doc["data"], doc["model"], doc["n"]) == ("cohort", "iptw_cox", 150)


# ------------------------------------------------------------------ smoothed calibration curve


def test_smoothed_calibration_curve_has_its_band_and_correction(twin_run):
    smooth = twin_run.result.smooth
    assert set(smooth["horizon"]) == set(twin_run.horizons)
    assert smooth.groupby("horizon").size().eq(50).all()
    assert smooth["observed"].between(0, 1).all() and (smooth["band_low"] <= smooth["band_high"]).all()
    assert np.allclose(smooth["corrected"], smooth["observed"] - smooth["optimism"])
    doc = wf.to_json(twin_run)
    assert len(doc["calibration_smooth"]) == len(smooth) and "calibration_smooth" in doc["methods"]
    assert set(doc["calibration_smooth"][0]) == {"horizon", "predicted", "observed", "optimism", "corrected",
                                                 "band_low", "band_high"}


def test_smoothed_curve_of_an_overfit_model_is_flattened_by_the_correction(noisy):
    smooth = _validate_noisy(noisy, 1).smooth
    late = smooth[smooth["horizon"] == "12"]
    apparent = np.polyfit(late["predicted"], late["observed"], 1)[0]
    corrected = np.polyfit(late["predicted"], late["corrected"], 1)[0]
    assert corrected < 0.9 * apparent   # overfit: observed varies less than predicted once corrected


def test_restricted_cubic_spline_is_linear_beyond_the_outer_knots():
    from ml.evaluation.smooth_calibration import rcs_basis, spline_knots

    z = np.linspace(-3, 3, 61)
    knots = spline_knots(z)
    basis = rcs_basis(z, knots)
    assert basis.shape == (61, 2) and np.array_equal(basis[:, 0], z)
    outside = (z < knots[0]) | (z > knots[-1])
    second = np.diff(basis[:, 1], 2)
    assert np.allclose(second[outside[1:-1] & outside[2:] & outside[:-2]], 0, atol=1e-12)
    assert np.all(basis[z <= knots[0], 1] == 0)


# ------------------------------------------------------------------ internal validation in the benchmark


@pytest.fixture(scope="module")
def bench_run():
    from ml.workflows import benchmark as bench

    config = bench.load_config(None, n=80, folds=2, repeats=1, n_jobs=1, models=["cox", "coxnet"],
                               validation={"bootstrap": 3, "models": ["cox"]})
    data = bench.prepare_data(config)
    return bench, data, config, bench.run_benchmark(data, config)


def test_benchmark_validates_the_listed_models(bench_run):
    bench, data, config, result = bench_run
    assert list(result.internal) == ["cox"]
    doc = bench.to_json(result)
    block = doc["models"]["cox"]["internal_validation"]
    assert "internal_validation" not in doc["models"]["coxnet"]
    assert doc["internal_validation"]["bootstrap"] == 3 and doc["internal_validation"]["models"] == ["cox"]
    # apparent = the pipeline refitted on all rows, scored on them (Harrell C by hand, sksurv)
    from sksurv.metrics import concordance_index_censored

    from ml import models

    full = models.fit_full("cox", data.spec, data.X, data.y, random_state=config.seed)
    c = concordance_index_censored(data.y["event"], data.y["time"], full.predict(data.X))[0]
    assert block["harrell_c"]["apparent"] == pytest.approx(c, abs=1e-12)
    assert block["harrell_c"]["corrected"] == pytest.approx(block["harrell_c"]["apparent"]
                                                            - block["harrell_c"]["optimism"])
    assert set(block) == set(stats.metric_names(data.horizons))


def test_benchmark_validation_settings_are_checked_at_load_time():
    from ml.workflows import benchmark as bench

    with pytest.raises(bench.BenchmarkError, match="validation.models.*deepsurv"):
        bench.load_config(None, validation={"models": ["deepsurv"]})
    none = bench.load_config(None, validation={"bootstrap": 0})
    assert bench.validated_models(none, ["cox", "cox_ridge_cv"]) == []
    every = bench.load_config(None, validation={"bootstrap": 2, "models": None})
    assert bench.validated_models(every, ["cox", "rsf"]) == ["cox", "rsf"]


def test_benchmark_logs_the_corrected_figures_to_the_models_run(bench_run, mlflow_store):
    import mlflow

    bench, data, _, result = bench_run
    parent = bench.log_to_mlflow(result, data, {})
    client = mlflow.MlflowClient()
    children = client.search_runs([client.get_run(parent).info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent}'")
    metrics = {run.data.tags["model"]: run.data.metrics for run in children}
    block = bench.to_json(result)["models"]["cox"]["internal_validation"]
    assert metrics["cox"]["internal.harrell_c"] == pytest.approx(block["harrell_c"]["corrected"])
    assert metrics["cox"]["internal.optimism.calibration_slope_12"] == pytest.approx(
        block["calibration_slope_12"]["optimism"], nan_ok=True)
    assert not any(k.startswith("internal.") for k in metrics["coxnet"])


def test_smoothed_curve_is_not_extrapolated(noisy):
    from ml.evaluation.smooth_calibration import smooth_calibration

    X, y = noisy
    model = CoxPH(alpha=0.1).fit(X, y)
    s_h = model.predict_survival_function(X, return_array=True)[:, np.searchsorted(model.unique_times_, 12.0)]
    grid = np.linspace(0.0, 1.0, 101)
    observed = smooth_calibration(y, s_h, 12.0, grid)
    inside = (grid >= s_h.min()) & (grid <= s_h.max())
    assert np.isnan(observed[~inside]).all() and np.isfinite(observed[inside]).all()

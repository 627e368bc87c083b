"""The benchmark end to end: typed config, results, JSON, fold order, the CLI and MLflow."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from ml import models
from ml.cli import app
from ml.workflows import benchmark as B

FAST = {"gbsa": {"n_estimators": 20}, "rsf": {"n_estimators": 10}, "xgb_cox": {"n_estimators": 20},
        "xgb_aft": {"n_estimators": 20}}


def _config(**kw):
    base = dict(n=150, folds=2, repeats=1, n_jobs=1, models=["cox", "iptw_cox", "xgb_aft"], model_params=FAST)
    return B.load_config(None, **{**base, **kw})


def test_config_typos_fail_at_load_time(tmp_path):
    bad = tmp_path / "b.yaml"
    bad.write_text("folds: 5\nrepeat: 3\n")
    with pytest.raises(B.BenchmarkError, match="repeat"):
        B.load_config(bad)
    bad.write_text("models: [cox, deepsurv]\n")
    with pytest.raises(B.BenchmarkError, match="unknown model"):
        B.load_config(bad)
    assert B.load_config(None).models == list(models.MODEL_NAMES)


@pytest.mark.slow
def test_benchmark_result_and_json():
    cfg = _config()
    result = B.run_benchmark(B.prepare_data(cfg), cfg)
    board = result.leaderboard.set_index("model")
    assert set(board.index) == {"cox", "iptw_cox", "xgb_aft", "oracle"}
    assert board.loc["cox", "delta_c_vs_cox"] == 0.0
    assert (board["n_resamples"] == 2).all()
    doc = B.to_json(result)
    json.dumps(doc, allow_nan=False)  # NaN became null
    cox = doc["models"]["cox"]
    for key in ("harrell_c", "uno_c", "ibs", "auc_6", "auc_12", "brier_12", "calibration_slope_12",
                "delta_c_vs_cox"):
        assert set(cox[key]) == {"mean", "ci_low", "ci_high"}
    assert doc["models"]["oracle"]["ibs"]["mean"] is None  # no curves for the oracle
    assert "Nadeau-Bengio" in doc["ci_method"]


@pytest.mark.slow
def test_iptw_is_skipped_without_a_treatment_column():
    cfg = B.load_config(None, dataset="veterans", folds=2, repeats=1, n_jobs=1, models=["cox", "iptw_cox"])
    data = B.prepare_data(cfg)
    data.treatment = None
    result = B.run_benchmark(data, cfg)
    assert "iptw_cox" in result.skipped and "no treatment column" in result.skipped["iptw_cox"]
    assert list(result.leaderboard["model"]) == ["cox"]


@pytest.mark.slow
def test_folds_run_in_parallel_give_the_same_results_in_fold_order():
    serial = B.run_benchmark(B.prepare_data(_config()), _config())
    parallel = B.run_benchmark(B.prepare_data(_config()), _config(n_jobs=2))
    timing = ["fit_seconds"]
    pd.testing.assert_frame_equal(serial.scores.drop(columns=timing), parallel.scores.drop(columns=timing))
    pd.testing.assert_frame_equal(serial.calibration, parallel.calibration)
    pd.testing.assert_frame_equal(serial.risk, parallel.risk)
    assert serial.notes == parallel.notes
    folds = serial.calibration[["repeat", "fold"]].drop_duplicates()
    assert list(folds["fold"]) == sorted(folds["fold"])


@pytest.mark.slow
def test_km_by_risk_matches_lifelines():
    from lifelines import KaplanMeierFitter

    cfg = _config(models=["cox"])
    result = B.run_benchmark(B.prepare_data(cfg), cfg)
    curves = B.km_by_risk(result.risk)
    assert set(curves["model"]) == {"cox", "oracle"} and set(curves["group"]) == {"low", "medium", "high"}
    for (model, group), curve in curves.groupby(["model", "group"]):
        rows = result.risk[(result.risk["model"] == model) & (result.risk["group"] == group)]
        fitter = KaplanMeierFitter().fit(rows["time"], rows["event"])
        expected = fitter.survival_function_at_times(curve["time"]).to_numpy()
        assert np.allclose(curve["survival"], expected)
        assert curve["time"].iloc[0] == 0 and curve["time"].iloc[-1] == rows["time"].max()
        assert (curve["n"] == len(rows)).all()


def _without_timings(doc):
    if isinstance(doc, dict):
        return {k: _without_timings(v) for k, v in doc.items() if k not in ("seconds", "fit_seconds")}
    return [_without_timings(v) for v in doc] if isinstance(doc, list) else doc


@pytest.mark.slow
def test_two_parallel_runs_write_the_same_bytes_apart_from_timings(tmp_path):
    outputs = []
    for k in range(2):
        out = tmp_path / f"run{k}"
        result = CliRunner().invoke(app, ["benchmark", "--n", "60", "--folds", "2", "--repeats", "2",
                                          "--n-jobs", "2", "--models", "cox,coxnet", "--no-mlflow",
                                          "--out", str(out)])
        assert result.exit_code == 0, result.output
        doc = _without_timings(json.loads((out / "benchmark.json").read_text()))
        tables = [pd.read_csv(out / name).drop(columns="fit_seconds").to_csv(index=False)
                  for name in ("leaderboard.csv", "fold_scores.csv")]
        outputs.append((json.dumps(doc, indent=2), *tables))
    assert outputs[0] == outputs[1]
    assert json.loads(outputs[0][0])["notes"]  # there are notes whose order could differ


@pytest.mark.slow
def test_cli_end_to_end_with_mlflow(mlflow_store):
    out = mlflow_store / "bench"
    result = CliRunner().invoke(app, ["benchmark", "--n", "120", "--folds", "2", "--repeats", "1", "--n-jobs",
                                      "1", "--models", "cox,coxnet,xgb_aft", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "Harrell C" in result.output and "Nadeau-Bengio" in result.output
    board = pd.read_csv(out / "leaderboard.csv")
    assert set(board["model"]) == {"cox", "coxnet", "xgb_aft", "oracle"}
    doc = json.loads((out / "benchmark.json").read_text())
    assert doc["models"]["coxnet"]["fit_seconds"] > 0
    for name in ("cindex.png", "calibration.png", "km_by_risk.png"):
        assert (out / name).stat().st_size > 1000
    import mlflow

    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name("benchmark")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 4
    assert all(r.info.status == "FINISHED" for r in runs)
    parent = parents[0]
    assert parent.data.tags["seed"] == "2024" and "mlflow.source.git.commit" in parent.data.tags
    assert any(k.startswith("version.") for k in parent.data.tags)
    assert len(parent.inputs.dataset_inputs) == 1 and parent.inputs.dataset_inputs[0].dataset.digest
    cox = next(r for r in children if r.data.tags["model"] == "cox")
    history = client.get_metric_history(cox.info.run_id, "fold.harrell_c")
    assert sorted(m.step for m in history) == [0, 1]
    assert "harrell_c" in cox.data.metrics
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"leaderboard.csv", "benchmark.json", "cindex.png"} <= artifacts


def test_failed_run_is_marked_failed(mlflow_store):
    import mlflow

    from ml.tracking import mlflow_io as tracking

    with pytest.raises(RuntimeError), tracking.run("benchmark", "boom"):
        raise RuntimeError("model crashed")
    runs = mlflow.MlflowClient().search_runs([mlflow.get_experiment_by_name("benchmark").experiment_id])
    assert [r.info.status for r in runs] == ["FAILED"]


@pytest.fixture
def table(tmp_path):
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"months": rng.uniform(1, 30, 80), "dead": (rng.random(80) < 0.5).astype(int),
                       "age": rng.normal(60, 5, 80), "stage": rng.choice(["I", "II"], 80)})
    path = tmp_path / "t.csv"
    df.to_csv(path, index=False)
    return df, path


@pytest.mark.slow
def test_cli_runs_on_any_table(mlflow_store, table):
    _, path = table
    out = mlflow_store / "o"
    result = CliRunner().invoke(app, ["benchmark", "--data", str(path), "--time", "months", "--event", "dead",
                                      "--models", "cox,iptw_cox", "--folds", "2", "--repeats", "1",
                                      "--n-jobs", "1", "--no-mlflow", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "iptw_cox" in result.output and "no treatment column" in result.output
    assert list(pd.read_csv(out / "leaderboard.csv")["model"]) == ["cox"]


@pytest.mark.parametrize("change,args,message", [
    (lambda df: df, ["--time", "weeks", "--event", "dead"], "no time column 'weeks'"),
    (lambda df: df.assign(dead=[1, 1] + [0] * 78), ["--time", "months", "--event", "dead", "--folds", "3"],
     "2 events for 3 folds"),
    (lambda df: df, ["--time", "months", "--event", "dead", "--models", "cox,deepsurv"], "unknown model"),
])
def test_cli_bad_input_exits_2(mlflow_store, table, change, args, message):
    df, path = table
    change(df).to_csv(path, index=False)
    result = CliRunner().invoke(app, ["benchmark", "--data", str(path), *args, "--repeats", "1",
                                      "--no-mlflow", "--out", str(mlflow_store / "o")])
    assert result.exit_code == 2
    assert message in result.output

"""The explain run (`ml.workflows.explain`), its figures (`ml.reporting.explain_plots`) and the
`explain` command."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from features import datasets, twin
from features.pipeline import FeatureSpec
from ml import explain as E
from ml.cli import app
from ml.reporting import explain_plots as P
from ml.tracking import mlflow_io as tracking
from ml.workflows import explain as W


@pytest.fixture(scope="module")
def twin_data():
    return datasets.twin(n=300, seed=11)


@pytest.fixture(scope="module")
def explained(twin_data):
    """Risk explanations of a Cox model and a small forest fitted on the twin."""
    return W.fit_and_explain(twin_data, ["cox", "rsf"], horizon=None, random_state=0,
                             params={"rsf": {"n_estimators": 30}})


def _toy_values():
    """Per-feature SHAP values of three features for six patients, as shap's plots take them."""
    raw = pd.DataFrame({"age": [50.0, 60.0, 70.0, 80.0, 55.0, 65.0],
                        "smoking": ["never", "ever", "ever", "never", "ever", "never"]})
    data = pd.DataFrame({"age": (raw["age"] - 63) / 10, "smoking=ever": (raw["smoking"] == "ever") * 1.0})
    values = np.column_stack([0.01 * (raw["age"] - 63), np.where(raw["smoking"] == "ever", -0.3, 0.2)])
    expl = E.Explanation(values=values, base_value=0.0, data=data, prediction=values.sum(1), output="risk",
                         scale="log-hazard", method="toy", exact=True, raw=raw)
    return E.to_shap(expl, FeatureSpec(numeric=("age",), categorical={"smoking": ("never", "ever")}))


def test_cox_recovers_the_signals_and_a_reversed_smoking_config_reverses_the_direction():
    default = twin.load_config()
    harmful = twin.load_config(Path(twin.DEFAULT_CONFIG_PATH).with_name("smoking_harmful.yaml"))
    for config, sign in ((default, -1), (harmful, 1)):
        truth = twin.true_log_hazard_ratios(config)
        assert np.sign(truth["smoking=ever"]) == sign
        data = datasets.twin(n=1500, seed=3, config=config)
        [cox] = W.fit_and_explain(data, ["cox"], horizon=None)
        smoking = cox.risk_summary.set_index("feature").loc["smoking"]
        assert smoking["direction_by_level"] == {"ever": sign}
        assert E.signal_check(cox.risk_summary, truth, noise=twin.NOISE_FEATURES).passed
    # the truth, not the code, decides: the harmful-smoking fit fails against the default truth
    assert not E.signal_check(cox.risk_summary, twin.true_log_hazard_ratios(default)).passed


def test_workflow_document_on_the_twin(twin_data, explained):
    checks = W.check_signals(explained, twin.true_log_hazard_ratios(), noise=twin.NOISE_FEATURES)
    doc = json.loads(json.dumps(W.summary_document(explained, checks, n=len(twin_data.X))))
    assert set(doc["models"]) == {"cox", "rsf"}
    features = doc["models"]["rsf"]["risk"]["features"]
    columns = twin_data.spec.columns
    assert set(features) == set(columns)  # one entry per original feature
    assert sorted(f["rank"] for f in features.values()) == list(range(1, len(columns) + 1))
    assert set(doc["signal_check"]["rsf"]["features"]) == {"smoking", "prior_response"}
    assert set(doc["signal_check"]["cox"]["noise_ranks"]) == set(twin.NOISE_FEATURES)
    ranks = W.summary_frame(explained)
    assert len(ranks) == 2 * len(columns) and set(ranks["model"]) == {"cox", "rsf"}
    table = W.signal_frame(checks).set_index("model")
    assert table.loc["cox", "prior_response direction"].startswith("CR/PR")


def test_final_model_record_explains_a_seeded_subset_and_checks_the_twin_signals():
    data = datasets.twin(n=150, seed=4)
    record = W.final_model_record(data, "cox", random_state=0, max_rows=100)
    assert record["refitted_on"] == 150 and record["explained_rows"] == 100
    assert record["risk"]["n"] == 100 and record["risk"]["exact"]
    assert set(record["signal_check"]["features"]) == {"smoking", "prior_response"}
    again = W.final_model_record(data, "cox", random_state=0, max_rows=100)
    assert again["risk"]["features"] == record["risk"]["features"]


# ------------------------------------------------------------------ plots


def test_plots_draw_on_an_axis_or_return_a_figure(tmp_path):
    values = _toy_values()
    for draw in (P.plot_beeswarm, P.plot_bar):
        fig, ax = plt.subplots()
        assert draw(values, ax=ax, title="toy") is ax
        assert "smoking" in [t.get_text() for t in ax.get_yticklabels()] and ax.get_title() == "toy"
        fig.savefig(tmp_path / f"{draw.__name__}.png")
        plt.close(fig)
    fig = P.plot_waterfall(values, 2, title="toy, patient 2")
    fig.savefig(tmp_path / "waterfall.png")
    plt.close(fig)
    assert all((tmp_path / f).stat().st_size > 1000 for f in ("plot_beeswarm.png", "plot_bar.png",
                                                              "waterfall.png"))
    with pytest.raises(IndexError, match="not among the 6 explained rows"):
        P.plot_waterfall(values, 6)


def test_beeswarm_is_the_same_every_time_and_leaves_numpy_global_generator_alone(tmp_path):
    values = _toy_values()
    np.random.seed(5)
    expected = np.random.random()
    np.random.seed(5)
    for name in ("a.png", "b.png"):
        fig, ax = plt.subplots()
        P.plot_beeswarm(values, ax=ax)
        fig.savefig(tmp_path / name)
        plt.close(fig)
    assert np.random.random() == expected
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()


def test_model_figures_name_each_file_and_refuse_an_unknown_patient(twin_data, explained):
    cox, patient = explained[0], str(twin_data.X.index[3])
    figures = W.model_figures(cox, twin_data.spec, patient=patient)
    assert set(figures) == {"cox_beeswarm.png", "cox_bar.png", f"cox_waterfall_{patient}.png"}
    plt.close("all")
    with pytest.raises(KeyError, match="not among the explained rows"):
        W.model_figures(cox, twin_data.spec, patient="nobody")
    plt.close("all")


# ------------------------------------------------------------------ command


@pytest.mark.slow
def test_explain_command_writes_summary_figures_waterfall_and_mlflow(mlflow_store):
    out = mlflow_store / "explain"
    result = CliRunner().invoke(app, ["explain", "--models", "cox,rsf", "--n", "150", "--seed", "4",
                                      "--horizon", "0", "--seeds", "2", "--patient", "P007",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "shap_summary.json").read_text())
    assert set(doc["models"]) == {"cox", "rsf"} and set(doc["signal_check"]) == {"cox", "rsf"}
    assert doc["truth"]["smoking=ever"] < 0
    assert [r["draws"] for r in doc["recovery"]] == [2, 2]
    for name in ("cox_beeswarm.png", "rsf_bar.png", "rsf_waterfall_P007.png"):
        assert (out / name).stat().st_size > 1000
    assert "Signal check" in result.output and "Recovery over 2 fresh twin draws" in result.output
    mlflow = tracking._mlflow()
    runs = mlflow.search_runs(experiment_names=["explain"])
    assert len(runs) == 1 and "metrics.recovery_rate_rsf" in runs.columns


@pytest.mark.slow
def test_the_same_command_twice_gives_the_same_explanations(tmp_path):
    """Without --seed the random models are seeded too (the benchmark's default seed)."""
    docs = []
    for run in ("a", "b"):
        out = tmp_path / run
        result = CliRunner().invoke(app, ["explain", "--models", "rsf,xgb_cox", "--n", "80", "--horizon", "0",
                                          "--no-mlflow", "--out", str(out)])
        assert result.exit_code == 0, result.output
        docs.append((out / "shap_summary.json").read_text())
    assert docs[0] == docs[1]


@pytest.mark.parametrize("args,message", [(["--models", "nope"], "unknown model"),
                                          (["--patient", "P999"], "no patient"),
                                          (["--dataset", "nosuch"], "unknown data set"),
                                          (["--data", "table.csv"], "time and event"),
                                          (["--data", "missing.csv", "--time", "t", "--event", "e"],
                                           "missing.csv")])
def test_explain_command_bad_input_exits_2(mlflow_store, args, message):
    table = pd.DataFrame({"t": [1.0, 2.0], "e": [1, 0], "x": [0.5, 0.1]})
    table.to_csv(mlflow_store / "table.csv", index=False)
    result = CliRunner().invoke(app, ["explain", "--n", "50", "--no-mlflow", *args])
    assert result.exit_code == 2 and message in result.output

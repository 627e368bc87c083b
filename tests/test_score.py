"""Individual scoring: outputs, cut-offs, explanations, the input contract, the pyfunc and the CLI."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import cloudpickle
import httpx
import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from typer.testing import CliRunner

from features.contract import BY_NAME, OUTCOMES
from features.patient import EXAMPLE_PATIENT
from ml import explain
from ml.cli import app
from ml.serving import inputs, resolve, results
from ml.serving.inputs import SCORE_FEATURES, ScoringInputError, parse_patients
from ml.tracking import mlflow_io as tracking

FAMILIES = ("cox", "coxnet", "iptw_cox", "rsf", "gbsa", "xgb_cox", "xgb_aft")


@pytest.fixture(scope="module")
def data(twin_data):
    return twin_data


@pytest.fixture(scope="module")
def scorers(fitted_scorer):
    """One fitted scorer per model family (shared with the service and page tests)."""
    return {m: fitted_scorer(m) for m in FAMILIES}


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory, scorers):
    """The survival pyfunc of the cox scorer, saved to a directory (no tracking store)."""
    root = tmp_path_factory.mktemp("model")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root}/mlruns/mlflow.db")
        path = tracking.save_survival_model(scorers["cox"], root / "cox")
    return path, scorers["cox"]


def patient(**changes):
    return {**EXAMPLE_PATIENT, **changes}


# ------------------------------------------------------------------ outputs


@pytest.mark.parametrize("family", FAMILIES)
def test_outputs_are_well_formed(scorers, data, family):
    out = scorers[family].score(data.X.head(60))
    assert list(out.columns) == list(results.OUTPUT_COLUMNS)
    assert set(out["risk_group"]) <= set(results.RISK_GROUPS)
    surv = out[[results.horizon_column(t) for t in results.HORIZONS]].to_numpy()
    assert np.all((surv >= 0) & (surv <= 1))
    assert np.all(np.diff(surv, axis=1) <= 1e-12)  # P(PFS > t) cannot grow with t
    for row, s in zip(out.itertuples(), surv, strict=True):
        if np.isfinite(row.median_pfs_months):   # S is above 1/2 before the median, at most 1/2 from it
            assert np.all(s[np.array(results.HORIZONS) < row.median_pfs_months] > 0.5)
            assert np.all(s[np.array(results.HORIZONS) >= row.median_pfs_months] <= 0.5)
            assert row.median_pfs == f"{row.median_pfs_months:.1f} months"
        else:
            assert row.median_pfs == results.NOT_REACHED
    assert (out["risk_percentile"].between(0, 100)).all()


@pytest.mark.parametrize("family", FAMILIES)
def test_numbers_are_the_models_own(scorers, data, family):
    """Risk = pipeline.predict; S(t) = the pipeline's step functions evaluated at t."""
    scorer, X = scorers[family], data.X.iloc[100:140]
    out = scorer.score(X)
    np.testing.assert_allclose(out["risk_score"], scorer.pipeline.predict(X), rtol=1e-9, atol=1e-9)
    curves = scorer.pipeline.predict_survival_function(X)
    for t in results.HORIZONS:
        expected = [float(fn(t)) for fn in curves]
        np.testing.assert_allclose(out[results.horizon_column(t)], expected, rtol=0, atol=1e-7)


@pytest.mark.parametrize("family", FAMILIES)
def test_fast_paths_agree_with_scikit_learn(scorers, data, family):
    """The numpy replays (preprocessor, model outputs) change no number."""
    scorer = scorers[family]
    assert scorer.fast_preprocessor_ is not None
    X = data.X.iloc[:80].copy()
    X.loc[X.index[:10], "pdl1"] = np.nan
    X.loc[X.index[5:15], "age"] = np.nan
    fast = scorer.score(X)
    slow = cloudpickle.loads(cloudpickle.dumps(scorer))
    slow.fast_preprocessor_ = None
    slow.fast_model_.kind = "generic"
    pd.testing.assert_frame_equal(fast, slow.score(X), rtol=1e-9, atol=1e-9)


def test_fast_model_paths_are_used_where_they_apply(scorers):
    kinds = {m: scorers[m].fast_model_.kind for m in FAMILIES}
    assert kinds["cox"] == kinds["xgb_cox"] == kinds["gbsa"] == "breslow"
    assert kinds["rsf"] == "forest"


def test_risk_groups_are_training_tertiles(scorers, data):
    scorer = scorers["cox"]
    risk = scorer.pipeline.predict(data.X)
    np.testing.assert_allclose(scorer.cutoffs_, np.quantile(risk, [1 / 3, 2 / 3]))
    groups = pd.Series(scorer.group(risk)).value_counts(normalize=True)
    for g in results.RISK_GROUPS:
        assert groups[g] == pytest.approx(1 / 3, abs=0.02)
    out = scorer.score(data.X).sort_values("risk_score")
    assert out["risk_percentile"].is_monotonic_increasing
    order = out["risk_group"].map({g: i for i, g in enumerate(results.RISK_GROUPS)})
    assert order.is_monotonic_increasing


def test_higher_risk_means_lower_survival_for_proportional_hazards(scorers, data):
    out = scorers["cox"].score(data.X).sort_values("risk_score")
    assert out["surv_12m"].is_monotonic_decreasing


def test_median_not_reached():
    times = np.array([1.0, 2.0, 5.0])
    surv = np.array([[0.9, 0.7, 0.6], [0.9, 0.5, 0.2]])
    medians = results.medians(times, surv)
    assert np.isnan(medians[0]) and medians[1] == 2.0
    assert results.median_text(medians[0]) == "not reached"
    np.testing.assert_allclose(results.step_values(times, surv, np.array([0.5, 2.5, 6.0]))[1],
                               [1.0, 0.5, np.nan])


# ------------------------------------------------------------------ uncertainty


def test_cox_intervals_are_the_models_delta_band(scorers, data):
    scorer, X = scorers["cox"], data.X.iloc[:40]
    result = scorer.predict_result(X, curve=True)
    Xt = scorer.pipeline.preprocessor_.transform(X)
    s, low, high = scorer.pipeline.model_.predict_survival_ci(Xt, result.horizons)
    np.testing.assert_allclose(result.survival, s, rtol=0, atol=1e-12)
    np.testing.assert_allclose(result.survival_low, low, rtol=1e-12)
    np.testing.assert_allclose(result.survival_high, high, rtol=1e-12)
    assert np.all((low < s) & (s < high))
    curves = result.curves
    assert np.all((result.curves_low <= curves + 1e-12) & (curves <= result.curves_high + 1e-12))
    m, m_low, m_high = result.median, result.median_low, result.median_high
    reached = np.isfinite(m)
    assert reached.sum() > 10
    assert np.all(m_low[reached] <= m[reached]) and np.all(~(m_high[reached] < m[reached]))
    assert "delta method" in result.ci_method and "survfit.coxph" in result.ci_method
    assert "ridge (alpha = 0.01)" in result.ci_method


def test_bootstrap_band_is_seeded(scorers, data):
    X = data.X.iloc[:6]

    def band(seed, n_boot=4):
        scorer = cloudpickle.loads(cloudpickle.dumps(scorers["coxnet"]))
        scorer.random_state = seed
        return scorer.predict_result(X, ci_bootstrap=n_boot)

    first, again, other = band(0), band(0), band(1)
    np.testing.assert_array_equal(first.survival_low, again.survival_low)
    np.testing.assert_array_equal(first.median_high, again.median_high)
    assert not np.allclose(first.survival_low, other.survival_low)
    assert np.all(first.survival_low <= first.survival_high)
    assert "bootstrap percentile" in first.ci_method and "B = 4" in first.ci_method
    off = band(0, n_boot=0)
    assert np.isnan(off.survival_low).all() and off.ci_method.startswith("no CI")
    table = results.to_frame(first)
    np.testing.assert_array_equal(table["surv_12m_low"], first.survival_low[:, 2])
    assert (table["ci_method"] == first.ci_method).all()


def test_refits_made_at_fit_travel_with_the_scorer(scorers, data):
    from ml.serving.scorer import SurvivalScorer

    scorer = SurvivalScorer(scorers["coxnet"].pipeline, ci_bootstrap=3).fit(data.X, data.y)
    assert len(scorer.refits_.pipelines) == 3
    out = cloudpickle.loads(cloudpickle.dumps(scorer)).score(data.X.head(3))
    assert out["surv_12m_low"].notna().all() and "B = 3" in out["ci_method"].iloc[0]
    pd.testing.assert_frame_equal(out, scorer.score(data.X.head(3)))
    assert np.isnan(scorers["coxnet"].score(data.X.head(3))["surv_12m_low"]).all()  # none asked for


@pytest.mark.slow
def test_service_answers_with_the_intervals(scorers):
    from fastapi.testclient import TestClient

    from ml.serving import app as serve

    scorer = scorers["cox"]
    with TestClient(serve.create_app(scorer=scorer)) as client:
        assert "delta method" in client.get("/health").json()["uncertainty"]
        resp = client.post("/score", params={"curve": "true"}, json=patient())
    assert resp.status_code == 200
    body = serve.ScoreResponse.model_validate(resp.json())
    got, want = body.results[0], scorer.score_records([patient()], curve=True)[0]
    assert got.survival_ci == want["survival_ci"] and got.median_pfs_ci == want["median_pfs_ci"]
    assert got.curve.low == want["curve"]["low"] and "survfit.coxph" in got.ci_method


def test_curve_plot_shades_the_band_and_titles_the_median_ci():
    import matplotlib.pyplot as plt

    from ml.reporting.score_plots import plot_survival_curve

    months = np.array([0.0, 1.0, 2.0, 3.0])
    fig, ax = plt.subplots()
    plot_survival_curve(ax, months, np.array([1.0, 0.8, 0.6, 0.4]), median=3.0,
                        low=np.array([1.0, 0.7, 0.4, 0.2]), high=np.array([1.0, 0.9, 0.8, 0.6]),
                        band_label="95% CI (delta method)")
    assert len(ax.collections) == 1 and ax.get_legend().get_texts()[0].get_text() == "95% CI (delta method)"
    plt.close(fig)
    assert results.median_ci_text(14.45, 10.9, np.nan) == "14.4 months (95% CI 10.9 to not reached)"
    assert results.median_ci_text(np.nan, np.nan, np.nan, interval=False) == "not reached"


# ------------------------------------------------------------------ explanations


@pytest.mark.parametrize("family", ["cox", "rsf", "gbsa", "xgb_cox", "xgb_aft"])
def test_explanation_agrees_with_ml_explain(scorers, data, family):
    scorer, X = scorers[family], data.X.iloc[:25]
    result = scorer.predict_result(X)
    reference = explain.feature_shap(explain.explain(scorer.pipeline, X, background=data.X))
    mine = result.contributions[reference.columns].to_numpy()
    np.testing.assert_allclose(mine, reference.to_numpy(), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("family", ["cox", "rsf", "xgb_cox"])
def test_contributions_add_up_to_the_risk(scorers, data, family):
    """SHAP sums to risk minus a constant (the average training output)."""
    result = scorers[family].predict_result(data.X.iloc[:40])
    offset = result.risk - result.contributions.to_numpy().sum(1)
    assert np.ptp(offset) < 1e-6 * max(1.0, np.abs(result.risk).max())
    assert set(result.contributions.columns) == set(data.spec.columns)


def test_top_features_name_the_true_risk_factors(scorers):
    """A patient with every harmful level the twin's truth knows: they lead the list going up."""
    worst = patient(id="w", prior_response="PD", ecog=2, liver_mets="yes", smoking="never",
                    pdl1="<1%", treatment="CI")
    result = scorers["cox"].predict_result(worst)
    up, down = result.top_features(0)
    assert {u["feature"] for u in up} <= {"prior_response", "ecog", "liver_mets", "smoking", "treatment",
                                           "pdl1", "brain_mets"}
    assert up[0]["effect"] >= up[-1]["effect"] > 0
    assert all(d["effect"] < 0 for d in down)
    text = results.to_frame(result)["top_up"].iloc[0]
    assert text.startswith(f"{up[0]['feature']}={up[0]['value']} (+")
    assert results.to_frame(result)["risk_group"].iloc[0] == "high"


def test_unknown_values_are_imputed_and_reported(scorers):
    out = scorers["cox"].score(patient(age=None, pdl1=None))
    assert out["imputed"].iloc[0] == "age, pdl1"
    assert np.isfinite(out["risk_score"].iloc[0])
    records = scorers["cox"].score_records(patient(age=None))
    assert records[0]["imputed"] == ["age"]
    shown = {c["feature"]: c["value"] for c in records[0]["top_up"] + records[0]["top_down"]}
    assert shown.get("age", "missing (imputed)") == "missing (imputed)"


def test_records_are_json_ready_with_curve(scorers):
    rec = scorers["xgb_cox"].score_records([patient(), patient(id="b", treatment="CIA")], curve=True)
    text = json.dumps(rec, allow_nan=False)
    assert json.loads(text)[1]["id"] == "b"
    curve = rec[0]["curve"]
    assert curve["months"][0] == 0.0 and len(curve["months"]) == len(curve["survival"]) > 50
    assert np.all(np.diff(curve["survival"]) <= 1e-12)
    cox = scorers["cox"].score_records([patient()], curve=True)[0]
    json.dumps(cox, allow_nan=False)
    low, high = cox["survival_ci"]["surv_12m"]
    assert low < cox["survival"]["surv_12m"] < high and "delta method" in cox["ci_method"]
    assert len(cox["curve"]["low"]) == len(cox["curve"]["high"]) == len(cox["curve"]["months"])
    assert cox["median_pfs_ci"][0] <= cox["median_pfs_months"]


def test_pickled_scorer_gives_the_same_numbers(scorers, data):
    for family in ("rsf", "xgb_cox"):
        again = cloudpickle.loads(cloudpickle.dumps(scorers[family]))
        pd.testing.assert_frame_equal(again.score(data.X.head(20)), scorers[family].score(data.X.head(20)))


# ------------------------------------------------------------------ input contract


@pytest.mark.parametrize(("payload", "field", "words"), [
    (patient(age=300), "age", "less than or equal to 110"),
    (patient(age="sixty"), "age", "valid number"),
    (patient(age=True), "age", "not a boolean"),
    (patient(pfs1_months=-2), "pfs1_months", "greater than 0"),
    (patient(ecog=3), "ecog", "less than or equal to 2"),
    (patient(ecog=1.5), "ecog", "fractional"),
    (patient(sex="robot"), "sex", "'female' or 'male'"),
    (patient(treatment=None), "treatment", "'CI' or 'CIA'"),
    ({k: v for k, v in EXAMPLE_PATIENT.items() if k != "pdl1"}, "pdl1", "field required"),
    (patient(smoker="yes"), "smoker", "unknown field"),
    (patient(age=float("nan")), "age", "Input should be"),
    (patient(pfs1_months=float("inf")), "pfs1_months", "Input should be"),
])
def test_bad_patient_names_the_field(payload, field, words):
    with pytest.raises(ScoringInputError) as err:
        parse_patients(payload)
    assert err.value.problems[0]["field"] == field
    assert str(err.value).startswith(f"{field}: ")
    assert words in str(err.value)


def test_bad_rows_of_a_table_are_numbered():
    rows = pd.DataFrame([patient(id="a"), patient(id="b", histology="small cell")])
    with pytest.raises(ScoringInputError, match=r"row 2: histology: Input should be"):
        parse_patients(rows)
    with pytest.raises(ScoringInputError, match="at least one patient"):
        parse_patients([])


def test_table_check_agrees_with_the_record_check(twin_small):
    """The vectorised table path gives what pydantic gives record by record."""
    table = twin_small.data.head(40).drop(columns=list(OUTCOMES)).copy()
    table.loc[3, "pdl1"] = np.nan
    records = [{k: (None if pd.isna(v) else v) for k, v in row.items()} for row in table.to_dict("records")]
    by_record = parse_patients(records)
    mixed = table.astype({"age": object})
    mixed.loc[5, "age"] = str(mixed.loc[5, "age"])          # text number: pydantic's lax parse
    pd.testing.assert_frame_equal(parse_patients(mixed), by_record)
    numbered = table.assign(id=np.arange(100, 140))           # numeric ids from a CSV
    assert parse_patients(numbered)["id"].iloc[0] == "100"
    bad = table.copy()
    bad.loc[7, "ecog"] = 4
    bad.loc[9, "sex"] = "other"
    with pytest.raises(ScoringInputError) as err:
        parse_patients(bad)
    assert [p["field"] for p in err.value.problems] == ["row 8: ecog", "row 10: sex"]
    with pytest.raises(ScoringInputError, match="row 1: smoker: unknown field"):
        parse_patients(table.assign(smoker="yes"))
    with pytest.raises(ScoringInputError, match="row 1: treatment: field required"):
        parse_patients(table.drop(columns=["treatment"]))


@pytest.mark.parametrize("column", ["age", "pfs1_months", "ecog"])
def test_range_edges_are_the_contracts_for_records_and_tables(column):
    """At the edges of a range, one record (pydantic) and a table (the vectorised check first)
    accept and refuse the same values: the contract's, with its open or closed lower end."""
    col = BY_NAME[column]
    edges = {col.low: col.low_inclusive, col.high: True, col.high + 1: False, col.low - 1: False}
    for value, allowed in edges.items():
        one = patient(id="b", **{column: value})
        for payload in (one, pd.DataFrame([patient(id="a"), one])):
            if allowed:
                assert parse_patients(payload)[column].iloc[-1] == value
            else:
                with pytest.raises(ScoringInputError, match=column):
                    parse_patients(payload)


def test_long_problem_lists_are_cut_in_the_message(twin_small):
    table = twin_small.data.head(60).assign(age=500)
    with pytest.raises(ScoringInputError) as err:
        parse_patients(table)
    assert len(err.value.problems) == 60
    assert str(err.value).count("\n") == inputs.MAX_PROBLEMS_SHOWN
    assert str(err.value).endswith("and 40 more problem(s)")


def test_outcome_columns_of_a_cohort_table_are_ignored(twin_small):
    frame = parse_patients(twin_small.data)
    assert list(frame.columns) == ["id", *SCORE_FEATURES]
    assert len(frame) == len(twin_small.data)


# ------------------------------------------------------------------ MLflow pyfunc and registry


@pytest.mark.slow
def test_pyfunc_registry_and_default_model(mlflow_store, scorers, data):
    """Registered pyfunc == in-process numbers; `resolve_scorer()` registers a default once."""
    scorer = scorers["xgb_cox"]
    reg = tracking.register_survival_model(scorer, "rechallenge-pfs-xgb_cox")
    assert reg["uri"] == "models:/rechallenge-pfs-xgb_cox@champion"
    assert tracking.champion("rechallenge-pfs-xgb_cox")["version"] == reg["version"]
    X = data.X.iloc[:30]
    pyfunc = tracking.load_pyfunc(reg["uri"])
    pd.testing.assert_frame_equal(pyfunc.predict(X), scorer.score(X))
    signature = pyfunc.metadata.signature
    assert signature.inputs is None  # the scorer checks its inputs itself (JSON and CSV bodies)
    assert [c["name"] for c in pyfunc.metadata.metadata["input_columns"]] == ["id", *SCORE_FEATURES]
    assert [c.name for c in signature.outputs.inputs] == list(results.OUTPUT_COLUMNS)
    assert pyfunc.metadata.saved_input_example_info is not None
    bad = X.head(2).copy()
    bad.loc[bad.index[1], "age"] = 300.0
    message = r"row 2: age: Input should be less than or equal to 110"
    with pytest.raises(MlflowException, match=message) as err:
        pyfunc.predict(bad)
    assert err.value.error_code == "INVALID_PARAMETER_VALUE"  # HTTP 400 from `mlflow models serve`
    loaded = tracking.load_survival_model(reg["uri"])
    pd.testing.assert_frame_equal(loaded.score(X), scorer.score(X))

    first, uri, notes = resolve.resolve_scorer(None)
    assert uri == resolve.DEFAULT_MODEL_URI and "registered it as version 1" in notes[0]
    registered = resolve.registered_version(uri)  # the model card's figures, as version tags
    assert registered["version"] == "1" and registered["registered"].endswith("+00:00")
    assert registered["tags"]["card.simulated"] == "True"
    assert 0.5 < float(registered["tags"]["card.harrell_c"]) < 1
    assert first.card_["harrell_c"] == pytest.approx(float(registered["tags"]["card.harrell_c"]))
    again, uri2, notes2 = resolve.resolve_scorer(None)
    assert uri2 == resolve.DEFAULT_MODEL_URI and notes2 == []
    pd.testing.assert_frame_equal(again.score(X), first.score(X))
    with pytest.raises(ValueError, match="cannot load a model"):
        resolve.resolve_scorer("models:/no-such-model@champion")


def test_sklearn_flavoured_pipeline_gets_reference_cutoffs(scorers):
    scorer, notes = resolve.scorer_from(scorers["cox"].pipeline)
    assert "cut-offs" in notes[0] and "twin" in notes[0]
    assert scorer.score(patient())["risk_group"].iloc[0] in results.RISK_GROUPS
    with pytest.raises(ValueError, match="not a survival pipeline"):
        resolve.scorer_from(object())


# ------------------------------------------------------------------ CLI


def test_cli_scores_one_patient_with_plot(saved_model, tmp_path):
    path, scorer = saved_model
    file = tmp_path / "p.json"
    file.write_text(json.dumps(patient(id="anna")))
    out = tmp_path / "res" / "anna.json"
    args = ["score", "--patient", str(file), "--model", str(path), "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    expected = scorer.score(patient(id="anna")).iloc[0]
    assert expected["risk_group"] in result.output and "anna" in result.output
    written = json.loads(out.read_text())
    assert written[0]["risk_group"] == expected["risk_group"]
    assert written[0]["survival_ci"]["surv_12m"] == pytest.approx([expected["surv_12m_low"],
                                                                   expected["surv_12m_high"]])
    assert "intervals: pointwise 95% CI by the delta method" in " ".join(result.output.split())
    top = scorer.predict_result(patient(id="anna")).top_features(0)[0][0]
    first = f"raising the risk: {top['feature']}={top['value']} (hazard ratio {top['clinical']:.2f})"
    assert first in result.output
    assert "scale: hazard ratio of the patient's value against the average training patient" in " ".join(
        result.output.split())
    assert written[0]["risk_score"] == pytest.approx(expected["risk_score"])
    png = out.with_suffix(".png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_cli_scores_a_table_to_csv(saved_model, tmp_path, twin_small):
    path, scorer = saved_model
    table = tmp_path / "cohort.csv"
    twin_small.data.head(25).to_csv(table, index=False)
    out = tmp_path / "scores.csv"
    result = CliRunner().invoke(app, ["score", "--data", str(table), "--model", str(path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    got = pd.read_csv(out)
    assert len(got) == 25 and list(got.columns) == list(results.OUTPUT_COLUMNS)
    np.testing.assert_allclose(got["risk_score"], scorer.score(twin_small.data.head(25))["risk_score"])


@pytest.mark.parametrize(("args", "message"), [
    (["--patient", "{p}"], "age: Input should be less than or equal to 110"),
    ([], "exactly one of --patient"),
    (["--patient", "{p}", "--data", "{p}"], "exactly one of --patient"),
    (["--patient", "{missing}"], "No such file"),
    (["--patient", "{p}", "--out", "x.txt"], "must end in .json or .csv"),
    (["--patient", "{good}", "--model", "{missing}"], "cannot load a model"),
    (["--patient", "{good}", "--ci-bootstrap", "-1"], "--ci-bootstrap"),
])
def test_cli_bad_input_exits_2(saved_model, tmp_path, args, message):
    bad, good = tmp_path / "bad.json", tmp_path / "good.json"
    bad.write_text(json.dumps(patient(age=300)))
    good.write_text(json.dumps(patient()))
    args = [a.format(p=bad, good=good, missing=tmp_path / "nope") for a in args]
    if "--model" not in args:
        args += ["--model", str(saved_model[0])]
    result = CliRunner().invoke(app, ["score", *args])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())


@pytest.mark.slow
def test_mlflow_models_serve_gives_the_same_numbers(saved_model):
    """`mlflow models serve -m <model> --env-manager local` answers like the in-process scorer."""
    path, scorer = saved_model
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    bin_dir = os.path.dirname(sys.executable)  # mlflow starts `uvicorn` from PATH
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    command = [os.path.join(bin_dir, "mlflow"), "models", "serve", "-m", str(path), "--env-manager", "local",
               "-h", "127.0.0.1", "-p", str(port)]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(url + "/ping", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "mlflow models serve did not start"
            time.sleep(0.5)
        rows = [patient(id="a"), patient(id="b", prior_response="CR/PR", treatment="CIA")]
        resp = httpx.post(url + "/invocations", json={"dataframe_records": rows}, timeout=60)
        assert resp.status_code == 200, resp.text
        got = pd.DataFrame(resp.json()["predictions"])
        want = scorer.score(rows)
        pd.testing.assert_frame_equal(got[list(results.OUTPUT_COLUMNS)], want, check_dtype=False)
        bad = httpx.post(url + "/invocations", json={"dataframe_records": [patient(age=300)]}, timeout=60)
        assert bad.status_code == 400 and "age: Input should be less than or equal to 110" in bad.text
        # a CSV body (text/csv) of the same patients, as pandas writes it
        csv = pd.DataFrame(rows).to_csv(index=False)
        resp = httpx.post(url + "/invocations", content=csv, headers={"content-type": "text/csv"}, timeout=60)
        assert resp.status_code == 200, resp.text
        got = pd.DataFrame(resp.json()["predictions"])
        pd.testing.assert_frame_equal(got[list(results.OUTPUT_COLUMNS)], want, check_dtype=False)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


# ------------------------------------------------------------------ both regimens, card, clinician units


def _breslow_hazard(x, time, event, beta, t):
    """H(t|x) of a Cox model at coefficients beta, Breslow baseline, recomputed from the rows."""
    risk = np.exp(x @ beta)
    order = np.unique(time[event.astype(bool) & (time <= t)])
    h0 = sum(event[time == s].sum() / risk[time >= s].sum() for s in order)
    return h0


def test_both_arms_delta_difference_matches_numerical_derivatives(scorers, data):
    """Var(S_CIA(12) - S_CI(12)): the closed form against finite differences of H(12|x) in the
    coefficients (Breslow baseline recomputed at each perturbed beta) plus the baseline term."""
    from ml.serving import contrast

    scorer = scorers["cox"]
    model = scorer.pipeline.steps[-1][1]
    X = parse_patients(patient())
    xs = {arm: scorer.pipeline.preprocessor_.transform(contrast.with_treatment(X, arm)[list(SCORE_FEATURES)])
          .to_numpy(float)[0] for arm in contrast.ARMS}
    diff, low, high = contrast.delta_difference(model, xs["CI"][None], xs["CIA"][None], np.array([12.0]))
    x_train = scorer.pipeline.preprocessor_.transform(data.X[list(SCORE_FEATURES)]).to_numpy(float)
    time_, event = data.y["time"], data.y["event"].astype(float)
    beta = model.curve_variance_.coef
    cov = model.curve_variance_.cov

    def hazard(x, b):
        return np.exp(x @ b) * _breslow_hazard(x_train, time_, event, b, 12.0)

    grads, s = {}, {}
    for arm, x in xs.items():
        s[arm] = np.exp(-hazard(x, beta))
        eps = 1e-6
        grads[arm] = np.array([(hazard(x, beta + eps * e) - hazard(x, beta - eps * e)) / (2 * eps)
                               for e in np.eye(len(beta))])
    base = sum(event[time_ == u].sum() / np.exp(x_train @ beta)[time_ >= u].sum() ** 2
               for u in np.unique(time_[(event > 0) & (time_ <= 12.0)]))
    r = {arm: np.exp(x @ beta) for arm, x in xs.items()}

    def cov_h(a, b):
        return r[a] * r[b] * base + grads[a] @ cov @ grads[b]

    var = (s["CI"] ** 2 * cov_h("CI", "CI") + s["CIA"] ** 2 * cov_h("CIA", "CIA")
           - 2 * s["CI"] * s["CIA"] * cov_h("CI", "CIA"))
    assert diff[0, 0] == pytest.approx(s["CIA"] - s["CI"], rel=1e-9)
    assert (high[0, 0] - low[0, 0]) / (2 * 1.959963984540054) == pytest.approx(np.sqrt(var), rel=1e-5)


def test_both_arms_bootstrap_median_difference_for_a_forest(scorers):
    from ml.serving import contrast

    arms = contrast.both_arms(scorers["rsf"], parse_patients([patient(), patient(id="b", age=80)]), 6)
    rec = arms.records()
    assert "percentile bootstrap" in rec[0]["difference"]["survival_method"]
    for r in rec:
        d = r["difference"]["surv_12m"]
        assert d["low"] <= d["high"] and r["arms"]["CIA"]["curve"]["high"] is not None
        s12 = r["arms"]["CIA"]["survival"]["surv_12m"] - r["arms"]["CI"]["survival"]["surv_12m"]
        assert d["estimate"] == pytest.approx(s12, abs=1e-6)
    again = contrast.both_arms(scorers["rsf"], parse_patients([patient()]), 6).records()[0]
    assert again["difference"] == rec[0]["difference"]  # seeded, cached refits


def test_clinician_units(scorers):
    cox = scorers["cox"].predict_result(patient())
    np.testing.assert_allclose(cox.clinical.to_numpy(), np.exp(cox.contributions.to_numpy()))
    assert cox.clinical_scale == "hazard_ratio"
    rsf = scorers["rsf"].predict_result(patient(age=80))
    assert rsf.clinical_scale == "survival_points"
    typical = scorers["rsf"].typical_
    changed = scorers["rsf"].predict_result(patient(age=typical["age"]))
    # by hand: S(12) with the patient's age minus S(12) with the typical training age, in points
    by_hand = 100 * (rsf.survival[0, 2] - changed.survival[0, 2])
    assert rsf.clinical["age"].iloc[0] == pytest.approx(by_hand, abs=1e-9)
    rec = results.to_records(rsf)[0]
    assert "percentage points" in rec["effect_scale"] and rec["effect_unit"] == "survival_points"


def test_model_card_of_a_twin_model(scorers, data):
    import copy

    from ml.serving import model_card

    scorer = copy.deepcopy(scorers["cox"])
    tags = model_card.card_tags(scorer, data, simulated=True, n_bootstrap=5)
    card = model_card.model_card(scorer)
    assert card["trained_on"].endswith("simulated cohort, not patients") and card["n"] == 300
    assert card["events"] == int(data.y["event"].sum()) and card["epv"] == pytest.approx(
        card["events"] / len(scorer.columns_), abs=0.01)
    c = card["validation"]["harrell_c"]
    assert 0.5 < c["estimate"] < 1 and c["low"] < c["high"]
    again = model_card.model_card(copy.deepcopy(scorers["cox"]),
                                  {"name": "m", "version": "3", "registered": "2026-01-01T00:00:00+00:00",
                                   "tags": {k: str(v) for k, v in tags.items()}})
    assert again["n"] == 300 and again["validation"]["harrell_c"]["estimate"] == pytest.approx(c["estimate"])
    assert again["simulated"] and again["version"] == "3"
    lines = "\n".join(model_card.card_lines(again))
    assert "version 3 of m, registered 2026-01-01" in lines and "validated C-index (Harrell)" in lines


def test_cli_both_arms(saved_model, tmp_path):
    path, scorer = saved_model
    file = tmp_path / "p.json"
    file.write_text(json.dumps(patient(id="anna")))
    out = tmp_path / "anna.json"
    args = ["score", "--patient", str(file), "--model", str(path), "--both-arms", "--ci-bootstrap", "5",
            "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "anna under either regimen" in text and "CIA minus CI" in text
    assert "not a randomised comparison" in text
    assert "model card" in text and "P(PFS > 12 months)" in text and "(95% CI" in text
    written = json.loads(out.read_text())
    diff = written["both_arms"][0]["difference"]["surv_12m"]
    arms = written["both_arms"][0]["arms"]
    s12 = {arm: arms[arm]["survival"]["surv_12m"] for arm in arms}
    assert diff["estimate"] == pytest.approx(s12["CIA"] - s12["CI"], abs=1e-6)
    assert f"{100 * diff['estimate']:+.1f}" in text and "percentage" in text  # a table cell may wrap

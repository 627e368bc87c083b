"""`rechallenge analyze`'s causal section (ml.workflows.causal): config, analysis.json, printed
tables, figures, MLflow metrics, and bad input (exit 2, one message naming the setting, nothing
written). The estimators themselves are tested in test_causal*.py; here, the wiring and that
what is written is what the statistics give."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from lifelines import KaplanMeierFitter
from lifelines.utils import restricted_mean_survival_time
from typer.testing import CliRunner

from features import io, schema, twin
from ml.cli import app
from ml.reporting import causal_display
from ml.stats.errors import CausalInputError
from ml.stats.evalues import evalues_hr
from ml.workflows import analysis
from ml.workflows.causal import causal_metrics, check_settings, run_causal

FAST_CAUSAL = {"bootstrap": 10, "weighting_methods": ["logistic", "ebal", "overlap"]}


def _experiment(path, causal=None, **changes):
    """paper.yaml with few resamples (bootstrap 0 for the study part) and these changes."""
    raw = yaml.safe_load(analysis.DEFAULT_CONFIG_PATH.read_text())
    raw.update({"bootstrap": 0, "cox_covariates": ["smoking", "ecog"]} | changes)
    raw["causal"] = raw["causal"] | FAST_CAUSAL | (causal or {})
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="module")
def cohort():
    return twin.generate().data


@pytest.fixture(scope="module")
def run(cohort, tmp_path_factory):
    """One `rechallenge analyze` on the default twin, few resamples: (output, out dir, JSON)."""
    root = tmp_path_factory.mktemp("causal")
    data = root / "cohort.csv"
    io.write_table(cohort, data)
    out = root / "out"
    res = CliRunner().invoke(app, ["analyze", "--data", str(data), "--experiment",
                                   str(_experiment(root / "fast.yaml")), "--out", str(out), "--no-mlflow"])
    assert res.exit_code == 0, res.output
    return res.output, out, json.loads((out / "analysis.json").read_text())


# --- config -------------------------------------------------------------------------------------


def test_paper_yaml_has_the_causal_section_with_its_defaults():
    c = analysis.load_config().causal
    assert c.horizons == [6, 12, 24] and c.tau is None and c.bootstrap == 200
    assert c.estimators == ["iptw", "gformula", "aiptw"]
    assert c.weighting_methods == ["logistic", "ebal", "overlap"] and c.evalue_outcome == "auto"


@pytest.mark.parametrize("causal, named", [
    ({"horizon": [12]}, "causal.horizon"),
    ({"estimators": ["aipw"]}, "causal.estimators"),
    ({"weighting_methods": ["cbps"]}, "causal.weighting_methods"),
    ({"evalue_outcome": "often"}, "causal.evalue_outcome"),
    ({"tau": -3}, "causal.tau"),
    ({"horizons": [0, 12]}, "causal.horizons"),
])
def test_a_typo_or_bad_value_fails_at_load_naming_the_key(tmp_path, causal, named):
    with pytest.raises(ValueError, match=named.replace(".", r"\.")):
        analysis.load_config(_experiment(tmp_path / "bad.yaml", causal))


# --- analysis.json --------------------------------------------------------------------------------


@pytest.mark.slow
def test_json_causal_block_has_every_output_named_by_estimand_and_estimator(run):
    _, _, result = run
    c = result["causal"]
    assert c["estimand"] == "ATT" and c["curves_estimand"] == "ATE"  # paper.yaml: weighting ATT
    assert c["horizons"] == [6, 12, 24]
    for ep in ("pfs", "os"):
        block = c[ep]
        assert block["estimand"] == "ATE" and block["tau_chosen"] == "survRM2 rule"
        assert "survRM2" in block["tau_rule"]
        assert set(block["adjusted_survival"]) == {"iptw", "gformula", "aiptw"}
        s = block["adjusted_survival"]["aiptw"]
        d = block["adjusted_differences"]["aiptw"]["12"]
        assert d["difference"] == pytest.approx(s["CIA"]["12"]["survival"] - s["CI"]["12"]["survival"])
        assert d["ci_low"] <= d["difference"] <= d["ci_high"]
        assert {"unadjusted", "iptw", "aiptw"} <= set(block["rmst"]) and set(block["rmst_contrasts"]) >= {
            "unadjusted", "iptw", "aiptw"}
        for contrast in block["rmst_contrasts"].values():
            assert set(contrast) == {"difference", "ratio"}
            assert {"estimate", "ci_low", "ci_high", "p"} <= set(contrast["difference"])
        last = block["rmst_by_tau"]["iptw"][-1]
        assert last["tau"] == block["tau"]
        assert last["difference"] == pytest.approx(block["rmst_contrasts"]["iptw"]["difference"]["estimate"])
        assert set(block["evalues"]) == {"hr", "rmst_ratio"}
        assert f"rmst_when_{ep}" in c["methods"]
    for method, estimand in (("logistic", "ATT"), ("ebal", "ATT"), ("overlap", "ATO")):
        w = c["weighting"][method]
        assert w["estimand"] == estimand and set(w["ess"]) == {"CIA", "CI"}
        assert {"smd", "variance_ratio", "ks"} <= set(w["balance"][0])


@pytest.mark.slow
def test_entropy_balancing_balances_every_design_term_exactly_in_the_json(run):
    smd = [row["smd"] for row in run[2]["causal"]["weighting"]["ebal"]["balance"]]
    assert len(smd) > 10 and max(abs(v) for v in smd) < 1e-6
    assert run[2]["causal"]["weighting"]["unadjusted"]["max_abs_smd"] > 0.3


def test_unadjusted_rmst_is_the_area_under_each_arm_kaplan_meier(run, cohort):
    """survRM2's arm RMST is the KM area up to tau: lifelines computes it independently."""
    block = run[2]["causal"]["pfs"]
    tcol, ecol = schema.ENDPOINTS["pfs"]
    for arm in ("CIA", "CI"):
        part = cohort[cohort[schema.TREATMENT] == arm]
        km = KaplanMeierFitter().fit(part[tcol], part[ecol])
        expected = restricted_mean_survival_time(km, t=block["tau"])
        assert block["rmst"]["unadjusted"][arm]["rmst"] == pytest.approx(expected, rel=1e-9)


def test_hr_evalue_is_that_of_the_iptw_cox_hr_as_printed(run):
    output, _, result = run
    cox = result["iptw_cox_pfs"]
    assert cox["primary_ci"] == "robust"  # bootstrap: 0 in the fast experiment
    ev = result["causal"]["pfs"]["evalues"]["hr"]
    assert ev["outcome"] == "common" and ev["event_fraction"] > 0.15  # PFS: nearly everyone progresses
    assert f"{ev['event_fraction']:.1%}" in ev["outcome_rule"]
    expected = evalues_hr(cox["hr"], cox["ci_low"], cox["ci_high"], rare=False)
    assert ev["evalue"] == pytest.approx(expected.evalue)
    assert ev["evalue_ci"] == pytest.approx(expected.evalue_ci)
    assert ev["estimate"] == cox["hr"] and "common" in ev["conversion"]
    text = " ".join(output.split())
    assert f"{cox['hr']:.2f} ({cox['ci_low']:.2f}-{cox['ci_high']:.2f})" in text  # the Cox table
    assert "PFS: E-values" in text
    printed = causal_display.evalue_table(result["causal"]["pfs"]).set_index("measure").loc["HR"]
    assert printed["estimate"] == f"{cox['hr']:.2f} ({cox['ci_low']:.2f} to {cox['ci_high']:.2f})"
    assert printed["E-value"] == ev["evalue"] and printed["E-value (CI)"] == ev["evalue_ci"]


def test_printed_tables_and_figures_are_written(run):
    output, out, _ = run
    text = " ".join(output.split())
    for title in ("Weighting methods compared", "PFS: adjusted survival per arm (ATE)", "PFS: RMST at tau",
                  "OS: E-values"):
        assert title in text
    for name in ("adjusted_curves_pfs.png", "rmst_tau_pfs.png", "adjusted_curves_os.png",
                 "rmst_tau_os.png", "love_plot_methods.png"):
        assert (out / name).stat().st_size > 5000, name


def test_mlflow_metrics_carry_rmst_s12_and_evalues(cohort):
    config = analysis.load_config().model_copy(update={"causal": analysis.load_config().causal.model_copy(
        update={"bootstrap": 0, "endpoints": ["pfs"], "weighting_methods": ["logistic"]})})
    result = run_causal(cohort, config)
    m = causal_metrics(result)
    assert {"rmst_diff_unadjusted_pfs", "rmst_diff_iptw_pfs", "rmst_diff_aiptw_pfs", "s12_diff_aiptw_pfs",
            "evalue_rmst_ratio_pfs", "max_abs_smd_logistic"} <= set(m)
    assert m["s12_diff_aiptw_pfs"] == pytest.approx(float(result.endpoints["pfs"].adjusted.differences.query(
        "estimator == 'aiptw' and time == 12")["difference"].iloc[0]))


# --- bad input -------------------------------------------------------------------------------------


def _bad_run(tmp_path, df, causal=None, **changes) -> str:
    data = tmp_path / "cohort.csv"
    io.write_table(df, data)
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["analyze", "--data", str(data), "--experiment",
                                   str(_experiment(tmp_path / "e.yaml", causal, **changes)),
                                   "--out", str(out), "--no-mlflow"])
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    assert not out.exists() or not any(out.iterdir())
    return " ".join(res.output.split())


def test_tau_beyond_follow_up_exits_2_naming_causal_tau_and_the_arm(tmp_path, cohort):
    text = _bad_run(tmp_path, cohort, {"tau": 60})
    assert "causal.tau = 60" in text and "arm CIA" in text and "set causal.tau to at most" in text
    assert "null" in text


def test_a_horizon_beyond_follow_up_names_causal_horizons(tmp_path, cohort):
    text = _bad_run(tmp_path, cohort, {"horizons": [12, 48]})
    assert "causal.horizons = 48" in text and "at most" in text


def test_ebal_for_the_ato_names_the_settings(tmp_path, cohort):
    text = _bad_run(tmp_path, cohort, {"weighting_estimand": "overlap"})
    assert "causal.weighting_methods" in text and "'ebal' cannot target the ATO" in text
    assert "causal.weighting_estimand" in text


def test_infeasible_entropy_balancing_exits_2_naming_the_setting(tmp_path, cohort):
    """On the default twin no positive weights of the CIA patients hit the cohort's means."""
    text = _bad_run(tmp_path, cohort, {"weighting_estimand": "ate"})
    assert "causal.weighting_methods: 'ebal' for the ATE" in text
    assert "CIA" in text and "Remove 'ebal' from causal.weighting_methods" in text


def test_settings_are_checked_before_any_computation(cohort):
    config = analysis.load_config()
    bad = config.model_copy(update={"causal": config.causal.model_copy(update={"tau": 100.0})})
    with pytest.raises(CausalInputError, match="causal.tau"):
        check_settings(cohort, bad)
    check_settings(cohort, config)  # the defaults are fine


def test_an_arm_without_events_names_the_endpoint_setting(cohort):
    df = cohort.copy()
    df.loc[df[schema.TREATMENT] == "CI", "os_event"] = 0
    config = analysis.load_config()
    fast = config.model_copy(update={"causal": config.causal.model_copy(
        update={"bootstrap": 0, "weighting_methods": ["logistic"]})})
    with pytest.raises(CausalInputError, match="OS: arm CI has no events.*causal.endpoints"):
        run_causal(df, fast)
    assert np.isfinite(run_causal(df, fast.model_copy(update={"causal": fast.causal.model_copy(
        update={"endpoints": ["pfs"]})})).endpoints["pfs"].adjusted.tau)


def test_the_causal_bootstrap_reports_its_own_progress(cohort):
    config = analysis.load_config()
    fast = config.model_copy(update={"causal": config.causal.model_copy(
        update={"bootstrap": 3, "weighting_methods": ["logistic"]})})
    calls = []
    run_causal(cohort, fast, lambda label, done, total: calls.append((label, done, total)))
    assert calls == [(f"causal bootstrap ({name})", i, 3) for name in ("PFS", "OS") for i in (1, 2, 3)]

"""The analysis workflow (ml.workflows.analysis*), its Cox tables (ml.stats.cox_tables), its
figures and the `analyze` command, on small twin cohorts; lifelines is the oracle."""

from __future__ import annotations

import json
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import yaml
from lifelines import CoxPHFitter, KaplanMeierFitter
from rich.console import Console
from typer.testing import CliRunner

from features import io, schema, twin
from ml.cli import app
from ml.stats.bootstrap import bootstrap_iptw, percentile_ci
from ml.stats.cox import fit_cox
from ml.stats.cox_tables import (
    cox_design,
    cox_multivariable,
    cox_univariable,
    joint_tests,
    joint_tests_multivariable,
    prognostic_factors,
)
from ml.stats.errors import CausalInputError
from ml.stats.ph import cox_zph
from ml.stats.weighting import estimate_iptw
from ml.workflows import analysis, analysis_report
from ml.workflows.analysis_config import CausalConfig
from ml.workflows.analysis_result import json_safe

FAST = {"bootstrap": 30, "causal": CausalConfig(bootstrap=10)}


@pytest.fixture(scope="module")
def small_result(twin_small):
    config = analysis.load_config().model_copy(update=FAST)
    return analysis.run_analysis(twin_small.data, config)


def _write_experiment(path, **changes):
    raw = yaml.safe_load(analysis.DEFAULT_CONFIG_PATH.read_text())
    raw["causal"]["bootstrap"] = 10  # the causal section is tested in test_causal_workflow.py
    raw.update(changes)
    path.write_text(yaml.safe_dump(raw))
    return path


# --- config ---------------------------------------------------------------------------------


def test_paper_config_loads_with_the_published_table():
    cfg = analysis.load_config()
    assert cfg.estimand == "ate" and cfg.stabilized
    assert cfg.published.n == 101 and cfg.published.median_pfs_ci_iptw == 6.89


def test_config_typo_fails_at_load_time(tmp_path):
    path = _write_experiment(tmp_path / "bad.yaml", estimand="atee", confunders=["age"])
    with pytest.raises(ValueError, match="estimand") as err:
        analysis.load_config(path)
    assert "confunders" in str(err.value)


def test_config_rejects_bad_truncation_and_unknown_covariates(tmp_path):
    with pytest.raises(ValueError, match="truncate"):
        analysis.load_config(_write_experiment(tmp_path / "a.yaml", truncate=[99, 1]))
    with pytest.raises(ValueError, match="unknown covariate"):
        analysis.load_config(_write_experiment(tmp_path / "b.yaml", confounders=["shoe_size"]))

    with pytest.raises(ValueError, match="ph_transform"):
        analysis.load_config(_write_experiment(tmp_path / "c.yaml", ph_transform="kmm"))


def test_ph_transform_from_the_config_reaches_both_ph_checks(twin_small, tmp_path):
    config = analysis.load_config(_write_experiment(tmp_path / "rank.yaml", ph_transform="rank",
                                                    bootstrap=0, cox_covariates=["ecog", "smoking"]))
    result = analysis.run_analysis(twin_small.data, config)
    ph = pd.concat(result.ph_tests.values(), ignore_index=True)
    assert set(ph["transform"]) == {"rank"} and set(ph["model"]) >= {"IPTW PFS", "multivariable OS"}
    df = twin_small.data
    fit = fit_cox(df["pfs_months"], df["pfs_event"], result.iptw.treated.astype(float), result.iptw.weights)
    expected = cox_zph(fit, "rank").table.iloc[-1]
    got = ph[(ph["model"] == "IPTW PFS") & (ph["level"] == "global")].iloc[0]
    assert got["chisq"] == pytest.approx(expected["chisq"], rel=1e-12)
    assert analysis.mlflow_params(config)["ph_transform"] == "rank"
    assert "cox.zph" in result.methods["ph_check"] and "mean 1" in result.methods["ph_check"]


# --- the result -------------------------------------------------------------------------------


def test_json_holds_the_required_fields_and_is_strict_json(small_result):
    text = analysis.to_json(small_result)
    out = json.loads(text)  # to_json uses allow_nan=False, so NaN would have raised
    for key in ("n", "n_by_group", "median_pfs", "median_os", "logrank_p", "smd_before", "smd_after",
                "ess", "cox_multivariable_pfs", "iptw_cox_pfs"):
        assert key in out, key
    assert out["n"] == 300
    assert out["n_by_group"]["CIA"] + out["n_by_group"]["CI"] == 300
    for weighting in ("unweighted", "iptw"):
        for group in ("all", "CIA", "CI"):
            assert set(out["median_pfs"][weighting][group]) >= {"median", "ci_low", "ci_high"}
    assert set(out["logrank_p"]) == {"unweighted", "weighted"}
    assert set(out["iptw_cox_pfs"]) >= {"hr", "se_log_hr_robust", "ci_low", "ci_high", "p"}
    assert set(out["cox_multivariable_pfs"]["treatment=CIA"]) == {"hr", "ci_low", "ci_high", "p"}
    assert set(out["ess"]) == {"CIA", "CI", "all"}
    assert set(out["ph_global"]) == {"multivariable PFS", "IPTW PFS", "multivariable OS", "IPTW OS"}
    assert out["ph_global"]["IPTW PFS"]["df"] == 1 and out["ph_global"]["IPTW PFS"]["transform"] == "km"
    assert {r["level"] for r in out["ph_tests"]} == {"term", "covariate", "global"}


def test_nan_serialises_as_null():
    assert json_safe({"a": float("nan"), "b": [np.float64("inf"), 1.5], "c": np.int64(3)}) == {
        "a": None, "b": [None, 1.5], "c": 3}


def test_km_medians_agree_with_lifelines(small_result, twin_small):
    df = twin_small.data
    w = small_result.iptw.weights
    cia = small_result.iptw.treated
    for weighting, weights in (("unweighted", None), ("iptw", w)):
        for group, mask in (("CIA", cia), ("CI", ~cia)):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ref = KaplanMeierFitter().fit(df["pfs_months"][mask], df["pfs_event"][mask],
                                              weights=None if weights is None else weights[mask])
            row = analysis.median_of(small_result, "pfs", weighting, group)
            assert row["median"] == pytest.approx(ref.median_survival_time_)


def test_iptw_cox_agrees_with_lifelines_on_the_written_weights(small_result, twin_small):
    weights = small_result.weights_frame(twin_small.data["id"])
    data = pd.DataFrame({"cia": small_result.iptw.treated.astype(float), "w": weights["weight"],
                         "T": twin_small.data["pfs_months"], "E": twin_small.data["pfs_event"]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = CoxPHFitter().fit(data, "T", "E", weights_col="w", robust=True,
                                fit_options={"precision": 1e-12})
    ours = small_result.iptw_cox["pfs"]
    assert ours["hr"] == pytest.approx(np.exp(ref.params_["cia"]), rel=1e-6)
    # twin times have ties (2 decimals), so the robust SEs agree closely but not exactly
    assert ours["se_log_hr_robust"] == pytest.approx(ref.standard_errors_["cia"], rel=0.02)
    assert ours["ci_low"] < ours["hr"] < ours["ci_high"]


def test_weights_frame_has_one_row_per_patient(small_result, twin_small):
    frame = small_result.weights_frame(twin_small.data["id"])
    assert list(frame.columns) == ["id", "propensity", "weight"]
    assert len(frame) == 300 and frame["weight"].gt(0).all()
    assert frame["propensity"].between(0, 1).all()


def test_weighting_improves_balance_on_the_twin(small_result):
    bal = small_result.balance
    assert bal["max_abs_smd_after"] < bal["max_abs_smd_before"]
    smd = small_result.smd
    assert set(smd.columns) >= {"term", "before", "after", "confounder"}


def test_bootstrap_gives_ci_around_the_weighted_median_and_se(small_result):
    row = analysis.median_of(small_result, "pfs", "iptw", "CIA")
    assert row["ci_method"] == "bootstrap"
    assert row["ci_low"] <= row["median"] <= row["ci_high"]
    assert small_result.iptw_cox["pfs"]["se_log_hr_bootstrap"] > 0


def test_bootstrap_is_reproducible_from_the_config_seed(twin_small):
    df = twin_small.data
    iptw = estimate_iptw(df)
    a = bootstrap_iptw(df, iptw, 5, seed=7)
    b = bootstrap_iptw(df, iptw, 5, seed=7)
    c = bootstrap_iptw(df, iptw, 5, seed=8)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)
    assert len(a) + a.attrs["failed"] == 5


def test_percentile_ci_treats_not_reached_as_infinite():
    lo, hi = percentile_ci(np.r_[np.arange(1.0, 91.0), np.full(10, np.nan)], 0.05)
    assert lo == pytest.approx(3.0) and np.isnan(hi)


def test_side_by_side_shows_published_and_own_numbers(small_result):
    sbs = small_result.side_by_side
    assert list(sbs.columns) == ["quantity", "published", "this cohort"]
    row = sbs.set_index("quantity").loc["median PFS CIA vs CI, IPTW"]
    assert row["published"] == "11.49 vs 6.89"
    assert " vs " in row["this cohort"]
    assert "300 (" in sbs["this cohort"].iloc[0]


def test_prognostic_factors_are_decided_on_the_joint_wald_test():
    joint = pd.DataFrame({"covariate": ["treatment", "smoking", "ecog", "age"], "df": [1, 1, 2, 1],
                          "wald_p": [0.001, 0.01, 0.04, 0.2], "lr_p": [0.001, 0.01, 0.06, 0.2]})
    assert prognostic_factors(joint, 0.05) == ["smoking", "ecog"]  # treatment is the exposure


def test_a_factor_is_not_declared_from_one_of_its_levels():
    """Known answer (fixed seed): the 6-patient level of a 3-level factor has p = 0.04 alone,
    the factor's joint Wald test p = 0.12: it is not a prognostic factor."""
    rng = np.random.default_rng(7)
    n = 200
    level = np.where(np.arange(n) < 6, "other", np.where(np.arange(n) % 2, "squamous", "adenocarcinoma"))
    df = pd.DataFrame({"histology": level, "treatment": np.where(np.arange(n) % 3, "CIA", "CI"),
                       "pfs_months": rng.exponential(np.where(level == "other", 0.4, 1.0)), "pfs_event": 1})
    table, _ = cox_multivariable(df, ["histology"], "pfs")
    joint = joint_tests_multivariable(df, ["histology"], "pfs").set_index("covariate")
    assert table.set_index("term").loc["histology=other", "p"] < 0.05
    assert joint.loc["histology", "df"] == 2 and joint.loc["histology", "wald_p"] > 0.1
    assert "histology" not in prognostic_factors(joint.reset_index(), 0.05)


def test_joint_tests_refuse_a_weighted_fit(twin_small):
    df = twin_small.data
    x = cox_design(df, ["ecog"])
    for weights in (np.where(df["treatment"] == "CIA", 2.0, 1.0), np.full(len(df), 3.0)):
        with pytest.raises(ValueError, match="unweighted"):
            joint_tests(fit_cox(df["pfs_months"], df["pfs_event"], x, weights=weights))
    unit = fit_cox(df["pfs_months"], df["pfs_event"], x, weights=np.ones(len(df)))
    assert joint_tests(unit)["df"].tolist() == [2]


def test_joint_tests_reach_the_json_the_metrics_and_the_printed_tables(small_result):
    """One rule: the prognostic factors are the multivariable PFS joint Wald p < alpha, wherever shown."""
    joint = small_result.cox_joint_tests["multivariable"]["pfs"]
    assert small_result.prognostic_factors == prognostic_factors(joint, small_result.config.alpha)
    out = json.loads(analysis.to_json(small_result))
    block = out["cox_joint_tests_multivariable_pfs"]
    assert list(block) == list(joint["covariate"]) and block["ecog"]["df"] == 2
    assert set(block["ecog"]) == {"df", "wald_chisq", "wald_p", "lr_chisq", "lr_p", "n"}
    assert out["prognostic_factors_pfs"] == [c for c, t in block.items()
                                             if t["wald_p"] < 0.05 and c != "treatment"]
    assert {"cox_joint_tests_univariable_os", "cox_joint_tests_multivariable_os"} <= set(out)
    metrics = analysis.key_metrics(small_result)
    assert metrics["joint_wald_p_pfs_ecog"] == pytest.approx(block["ecog"]["wald_p"])
    console = Console(record=True, width=200)
    analysis_report.print_analysis(console, small_result)
    text = console.export_text()
    assert "Joint tests per covariate for PFS" in text and "joint Wald p < 0.05" in text


def test_cox_design_codes_against_the_reference_level(twin_small):
    design = cox_design(twin_small.data, ["ecog", "smoking", "age"], treatment=True)
    assert list(design.columns) == ["treatment=CIA", "ecog=1", "ecog=2", "smoking=ever", "age"]
    ever = twin_small.data["smoking"].eq("ever")
    assert (design["smoking=ever"] == ever.astype(float)).all()


EXACT = {"precision": 1e-30, "r_precision": 1e-30, "max_steps": 30}
"""lifelines run to the MLE (its defaults stop up to ~1e-5 short of it)."""


def _lifelines_table(df: pd.DataFrame, design: pd.DataFrame, endpoint: str):
    tcol, ecol = schema.ENDPOINTS[endpoint]
    data = design.assign(T=df[tcol], E=df[ecol]).dropna()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return CoxPHFitter().fit(data, "T", "E", fit_options=EXACT), data


def _assert_same_table(ours: pd.DataFrame, cph: CoxPHFitter) -> None:
    ref = cph.summary
    ours = ours.set_index("term").loc[ref.index]
    np.testing.assert_allclose(ours["hr"], ref["exp(coef)"], rtol=1e-6)
    np.testing.assert_allclose(ours["ci_low"], ref["exp(coef) lower 95%"], rtol=1e-6)
    np.testing.assert_allclose(ours["ci_high"], ref["exp(coef) upper 95%"], rtol=1e-6)
    np.testing.assert_allclose(ours["p"], ref["p"], rtol=1e-6)
    assert (ours["n"] == len(cph.durations)).all()


@pytest.mark.parametrize("endpoint", ["pfs", "os"])
def test_cox_tables_agree_with_lifelines_and_carry_the_cox_zph_check(twin_small, endpoint):
    """The PH check's numbers are R's cox.zph (tests/test_r_zph.py); here: its rows."""
    df = twin_small.data
    covariates = ["age", "smoking", "ecog", "prior_response", "liver_mets", "pdl1"]
    table, ph = cox_multivariable(df, covariates, endpoint)
    cph, _ = _lifelines_table(df, cox_design(df, covariates, treatment=True), endpoint)
    _assert_same_table(table, cph)
    assert list(ph.loc[ph["level"] == "term", "term"]) == list(table["term"])
    grouped = ph[ph["level"] == "covariate"].set_index("term")["df"]
    assert grouped.to_dict() == {"treatment": 1, "age": 1, "smoking": 1, "ecog": 2, "prior_response": 2,
                                 "liver_mets": 1, "pdl1": 3}
    assert ph.iloc[-1]["term"] == "GLOBAL" and ph.iloc[-1]["df"] == len(table)
    assert (ph["transform"] == "km").all() and ph["p"].between(0, 1).all()
    uni = cox_univariable(df, ["ecog", "pdl1"], endpoint)
    for design in (cox_design(df, [], treatment=True), cox_design(df, ["ecog"]), cox_design(df, ["pdl1"])):
        cph, _ = _lifelines_table(df, design, endpoint)
        _assert_same_table(uni[uni["term"].isin(design.columns)], cph)


def test_multivariable_cox_recovers_the_twin_truth():
    """Known answer: at n = 3000 the PFS Cox estimates sit near the twin's true log-HRs."""
    cohort = twin.generate(n=3000, seed=5)
    truth = twin.true_log_hazard_ratios(cohort.config)
    table, _ = cox_multivariable(cohort.data, ["smoking", "ecog", "prior_response",
                                                        "liver_mets", "brain_mets", "pdl1"], "pfs")
    coef = dict(zip(table["term"], np.log(table["hr"]), strict=True))
    se = dict(zip(table["term"], (np.log(table["ci_high"]) - np.log(table["ci_low"])) / (2 * 1.96),
                  strict=True))
    # one term-naming scheme: the Cox table's terms are the twin's truth keys
    for term in ("treatment=CIA", "prior_response=CR/PR", "smoking=ever", "liver_mets=yes"):
        assert abs(coef[term] - truth[term]) < 4 * se[term], term


def test_single_group_cohort_is_refused(twin_small):
    df = twin_small.data.assign(treatment=schema.CONTROL)
    with pytest.raises(CausalInputError, match="both groups"):
        analysis.run_analysis(df, analysis.AnalysisConfig(bootstrap=0))


def test_analysis_collects_warnings_instead_of_losing_them(twin_small):
    df = twin_small.data.copy()
    ci = df.index[df["treatment"] == "CI"][:2]
    df.loc[df["histology"] == "other", "histology"] = "squamous"
    df.loc[ci, "histology"] = "other"  # a rare level seen in the CI group only
    # entropy balancing cannot balance a level one group lacks (an error of its own): not compared here
    config = analysis.AnalysisConfig(bootstrap=0, cox_covariates=["smoking"],
                                     causal={"weighting_methods": ["logistic", "overlap"], "bootstrap": 0})
    result = analysis.run_analysis(df, config)
    assert any("histology=other" in w for w in result.warnings)


# --- figures ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_analysis_figures_draw_every_panel(small_result, twin_small):
    figures = analysis_report.analysis_figures(small_result, twin_small.data)
    causal = {f"{kind}_{ep}.png" for kind in ("adjusted_curves", "rmst_tau") for ep in ("pfs", "os")}
    assert set(figures) == {"km_pfs.png", "km_os.png", "love_plot.png", "propensity_overlap.png",
                            "ph_schoenfeld_pfs.png", "ph_schoenfeld_os.png", "love_plot_methods.png"} | causal
    schoenfeld = [ax for ax in figures["ph_schoenfeld_pfs.png"].axes if ax.get_visible()]
    assert len(schoenfeld) == 1 + len(small_result.cox_multivariable["pfs"])  # IPTW + each term
    assert schoenfeld[0].get_title().startswith("IPTW: treatment=CIA (p = ")
    assert len(schoenfeld[0].get_lines()) == 4  # smooth, band (2), fitted log-HR
    unweighted, weighted = figures["km_pfs.png"].axes
    assert len(unweighted.get_lines()) >= 2  # one curve per group
    assert len(unweighted.collections) == 2 and not weighted.collections  # Greenwood bands unweighted only
    assert "At risk" in {t.get_text() for t in unweighted.texts}
    love_ax = figures["love_plot.png"].axes[0]
    assert len(love_ax.collections) == 2  # before and after
    assert love_ax.get_yticklabels()[0].get_text() in set(small_result.smd["term"])
    plt.close("all")


def test_printed_report_shows_every_section(small_result):
    console = Console(record=True, width=200)
    analysis_report.print_analysis(console, small_result)
    text = console.export_text()
    for heading in ("Propensity", "Table 1, unweighted (300 patients)", "Kaplan-Meier medians",
                    "Cox model for treatment", "Cox models for PFS", "PH check", "Methods"):
        assert heading in text, heading


# --- the command -----------------------------------------------------------------------------


@pytest.mark.slow
def test_analyze_cli_end_to_end(mlflow_store, tmp_path):
    cohort = twin.generate(n=150, seed=4)
    data = tmp_path / "cohort.csv"
    io.write_table(cohort.data, data)
    # few resamples and Cox terms: this test checks the wiring, the statistics are tested above
    experiment = _write_experiment(tmp_path / "fast.yaml", bootstrap=10,
                                   cox_covariates=["smoking", "prior_response", "ecog"])
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["analyze", "--data", str(data), "--experiment", str(experiment),
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "Side by side with the published study" in res.output
    result = json.loads((out / "analysis.json").read_text())
    assert result["n"] == 150 and result["bootstrap"]["replicates"] == 10
    weights = pd.read_csv(out / "weights.csv")
    assert len(weights) == 150 and list(weights.columns) == ["id", "propensity", "weight"]
    for name in ("km_pfs.png", "km_os.png", "love_plot.png", "propensity_overlap.png",
                 "ph_schoenfeld_pfs.png", "ph_schoenfeld_os.png"):
        assert (out / name).stat().st_size > 1000
    assert "logged to MLflow run" in res.output
    assert (mlflow_store / "mlruns" / "mlflow.db").exists()


@pytest.mark.parametrize("problem, expected", [
    ("single_group", "both groups"),
    ("constant_within_group", "'liver_mets' is 'no' for every patient in CIA"),
    ("separation", "perfect separation"),
])
@pytest.mark.slow
def test_analyze_cli_bad_input_exits_2_with_one_message(mlflow_store, tmp_path, problem, expected):
    df = twin.generate(n=120, seed=6).data
    if problem == "single_group":
        df["treatment"] = "CIA"
    elif problem == "constant_within_group":
        df.loc[df["treatment"] == "CIA", "liver_mets"] = "no"
    else:
        df["treatment"] = np.where(df["age"] > df["age"].median(), "CIA", "CI")
    data = tmp_path / "bad.csv"
    io.write_table(df, data)
    res = CliRunner().invoke(app, ["analyze", "--data", str(data), "--out", str(tmp_path / "out"),
                                   "--no-mlflow"])
    assert res.exit_code == 2, res.output
    assert expected in " ".join(res.output.split())
    assert not (tmp_path / "out" / "analysis.json").exists()


def test_analyze_cli_bad_experiment_exits_2(mlflow_store, tmp_path):
    experiment = _write_experiment(tmp_path / "bad.yaml", estimand="atx")
    res = CliRunner().invoke(app, ["analyze", "--experiment", str(experiment), "--no-mlflow",
                                   "--out", str(tmp_path / "out")])
    assert res.exit_code == 2
    assert "estimand" in res.output

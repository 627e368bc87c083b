"""ml.stats.balance, ml.stats.weighting and ml.stats.positivity: SMD, Table 1, IPTW, input checks.

Known answers are hand computations written out here (SMD, truncation at percentiles) and the
twin's true propensity.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from features import schema
from ml.stats.balance import smd_convention, standardized_differences, table_one
from ml.stats.errors import CausalInputError, ExtremeWeightsWarning, SeparationWarning
from ml.stats.weighting import estimate_iptw, fit_propensity, iptw_weights, stratified_resample

# --- standardized differences --------------------------------------------------------------


def test_smd_matches_hand_computation_with_and_without_weights():
    """cobalt's conventions, by hand. age: treated 50, 60, 70 (mean 60, s^2 = 100), control 55, 65,
    75, 80 (mean 68.75, s^2 = 368.75 / 3, n - 1); smoking=ever: p = 2/3 vs 1/4, variance p(1 - p)."""
    df = pd.DataFrame({
        "treatment": ["CIA", "CIA", "CIA", "CI", "CI", "CI", "CI"],
        "age": [50.0, 60.0, 70.0, 55.0, 65.0, 75.0, 80.0],
        "smoking": ["ever", "never", "ever", "never", "never", "ever", "never"],
    })
    w = np.array([1.0, 2.0, 1.0, 0.5, 1.0, 2.0, 1.5])  # weighted means: 60 vs 362.5 / 5 = 72.5
    pooled_age = np.sqrt((100 + 368.75 / 3) / 2)
    pooled_ever = np.sqrt((2 / 9 + 3 / 16) / 2)
    for estimand in ("ate", "overlap"):  # pooled SD of the unweighted groups
        smd = standardized_differences(df, ["age", "smoking"], estimand=estimand)
        assert smd["age"] == pytest.approx(-8.75 / pooled_age, rel=1e-12)
        assert smd["smoking=ever"] == pytest.approx((5 / 12) / pooled_ever, rel=1e-12)
        smd_w = standardized_differences(df, ["age"], weights=w, estimand=estimand)
        assert smd_w["age"] == pytest.approx(-12.5 / pooled_age, rel=1e-12)
    att = standardized_differences(df, ["age", "smoking"], estimand="att")  # the treated SD: 10
    assert att["age"] == pytest.approx(-0.875, rel=1e-12)
    assert att["smoking=ever"] == pytest.approx(5 / (4 * np.sqrt(2)), rel=1e-12)
    assert standardized_differences(df, ["age"], weights=w, estimand="att")["age"] == pytest.approx(-1.25)
    assert smd_convention("att")["sd_denominator"] == "treated"
    with pytest.raises(ValueError, match="unknown estimand"):
        standardized_differences(df, ["age"], estimand="atc")


# --- IPTW and the input checks -------------------------------------------------------------


def _toy_cohort(n: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    age = rng.normal(60, 8, n)
    brain = rng.random(n) < 0.3
    p = 1 / (1 + np.exp(-(0.05 * (age - 60) + 0.8 * brain)))
    cia = rng.random(n) < p
    return pd.DataFrame({"age": age, "brain_mets": np.where(brain, "yes", "no"),
                         "treatment": np.where(cia, "CIA", "CI")})


def test_iptw_improves_balance_and_reports_ess():
    df = _toy_cohort(600)
    res = estimate_iptw(df, ["age", "brain_mets"])
    before = standardized_differences(df, ["age", "brain_mets"]).abs().max()
    after = standardized_differences(df, ["age", "brain_mets"], weights=res.weights).abs().max()
    assert after < 0.5 * before
    diag = res.diagnostics.set_index("group")
    assert 0 < diag.loc["CIA", "ess"] <= diag.loc["CIA", "n"]
    assert np.all(np.isfinite(res.weights))


def test_truncation_caps_the_weights_at_percentiles():
    df = _toy_cohort(300)
    e = fit_propensity(df, ["age", "brain_mets"]).predict_proba(df)[:, 1]
    t = df["treatment"].eq("CIA").to_numpy()
    w = iptw_weights(e, t, truncate=(5, 95))
    raw = iptw_weights(e, t)
    assert w.max() == pytest.approx(np.percentile(raw, 95))
    assert w.min() == pytest.approx(np.percentile(raw, 5))


def test_single_treatment_group_is_a_clear_error():
    df = _toy_cohort().assign(treatment="CIA")
    with pytest.raises(CausalInputError, match="both groups.*CI: 0"):
        estimate_iptw(df, ["age"])


def test_covariate_constant_within_a_group_is_named():
    df = _toy_cohort()
    df.loc[df["treatment"] == "CIA", "brain_mets"] = "no"
    with pytest.raises(CausalInputError, match="'brain_mets' is 'no' for every patient in CIA"):
        estimate_iptw(df, ["age", "brain_mets"])


def test_covariate_constant_in_the_whole_cohort_is_dropped_with_a_warning():
    df = _toy_cohort().assign(brain_mets="no")
    with pytest.warns(SeparationWarning, match="brain_mets"):
        res = estimate_iptw(df, ["age", "brain_mets"])
    assert res.confounders == ("age",)


def test_rare_level_in_one_group_warns_and_keeps_weights_finite():
    df = _toy_cohort(300)
    df["histology"] = np.where(np.arange(len(df)) % 3 == 0, "squamous", "adenocarcinoma")
    ci_rows = df.index[df["treatment"] == "CI"][:3]
    df.loc[ci_rows, "histology"] = "other"
    with pytest.warns(SeparationWarning, match="histology=other occurs only in CI"):
        res = estimate_iptw(df, ["age", "histology"])
    assert np.all(np.isfinite(res.weights))


def test_perfect_separation_is_a_clear_error():
    df = _toy_cohort()
    df["treatment"] = np.where(df["age"] > 60, "CIA", "CI")
    with pytest.raises(CausalInputError, match="perfect separation"):
        estimate_iptw(df, ["age", "brain_mets"])


def test_extreme_weights_warn_with_the_ess():
    rng = np.random.default_rng(3)
    n = 300
    age = rng.normal(60, 8, n)
    cia = rng.random(n) < 1 / (1 + np.exp(-0.45 * (age - 60)))  # strong confounding
    df = pd.DataFrame({"age": age, "treatment": np.where(cia, "CIA", "CI")})
    with pytest.warns(ExtremeWeightsWarning, match=r"ESS \d+\.\d of \d+ patients"):
        estimate_iptw(df, ["age"], stabilized=False)


def test_no_warning_for_reasonable_weights():
    df = _toy_cohort(400)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ExtremeWeightsWarning)
        estimate_iptw(df, ["age", "brain_mets"])


def test_stratified_resample_keeps_group_sizes():
    t = np.r_[np.ones(7, bool), np.zeros(13, bool)]
    idx = stratified_resample(t, np.random.default_rng(0))
    assert t[idx].sum() == 7 and len(idx) == 20


def test_iptw_on_the_twin_uses_the_schema_groups(twin_small):
    res = estimate_iptw(twin_small.data)
    assert res.treated.sum() == (twin_small.data[schema.TREATMENT] == schema.TREATED).sum()
    # the fitted propensity tracks the twin's true one
    assert np.corrcoef(res.propensity, twin_small.truth["true_propensity"])[0, 1] > 0.8


def test_table_one_counts_levels_and_weights_the_pseudo_population():
    df = pd.DataFrame({
        "treatment": ["CIA", "CIA", "CI", "CI", "CI"],
        "age": [50.0, 70.0, 40.0, 60.0, np.nan],
        "smoking": ["ever", "never", "ever", "ever", "never"],
    })
    plain = table_one(df, ["age", "smoking"]).set_index(["variable", "level"])
    assert plain.loc[("n", ""), "CIA"] == "2" and plain.loc[("n", ""), "CI"] == "3"
    assert plain.loc[("smoking", "ever"), "CI"] == "2 (66.7%)"
    assert plain.loc[("age", ""), "missing"] == 1
    weighted = table_one(df, ["age", "smoking"], weights=np.array([1, 3, 0.5, 0.5, 1.0]))
    weighted = weighted.set_index(["variable", "level"])
    assert weighted.loc[("n", ""), "CIA"] == "4.0"
    assert weighted.loc[("smoking", "never"), "CIA"] == "3.0 (75.0%)"


@pytest.mark.parametrize("estimand, expected", [
    ("att", lambda e, t: np.where(t, 1.0, e / (1 - e))),
    ("overlap", lambda e, t: np.where(t, 1 - e, e)),
    ("ate", lambda e, t: np.where(t, t.mean() / e, (1 - t.mean()) / (1 - e))),
])
def test_weights_of_each_estimand(estimand, expected):
    e = np.array([0.2, 0.5, 0.7, 0.4, 0.9])
    t = np.array([True, False, True, False, True])
    np.testing.assert_allclose(iptw_weights(e, t, estimand), expected(e, t))
    with pytest.raises(ValueError, match="unknown estimand"):
        iptw_weights(e, t, "atc")

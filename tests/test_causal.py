"""ml.causal: SMD, weights, input checks, the numpy weighted Cox and log-rank, fast KM.

Known answers come from independent sources: lifelines (Cox, KM), hand computations
written out here (SMD, observed - expected), and algebraic identities (frequency
weights = replicated rows under Breslow ties; the weighted score residuals sum to the
score, which is 0 at the estimate).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from lifelines import CoxPHFitter, KaplanMeierFitter

from features import schema
from ml.stats import causal, coxph, km

TIGHT = {"precision": 1e-12}  # let lifelines' Newton steps run to the exact MLE


def _survival_data(n: int, seed: int, tied: bool) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = pd.DataFrame({"a": rng.integers(0, 2, n).astype(float), "b": rng.normal(size=n),
                      "c": rng.normal(size=n)})
    lp = 0.7 * x["a"] - 0.4 * x["b"] + 0.2 * x["c"]
    t = rng.exponential(np.exp(-lp)) * 10
    cens = rng.exponential(15, n)
    time = np.minimum(t, cens)
    time = np.ceil(time) if tied else time  # whole months: many ties
    event = (t <= cens).astype(int)
    w = rng.uniform(0.3, 3.0, n)
    return x.assign(T=time, E=event), w


def _lifelines(data: pd.DataFrame, w: np.ndarray | None) -> CoxPHFitter:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if w is None:
            return CoxPHFitter().fit(data, "T", "E", fit_options=TIGHT)
        return CoxPHFitter().fit(data.assign(w=w), "T", "E", weights_col="w", robust=True,
                                 fit_options=TIGHT)


# --- weighted Cox against lifelines --------------------------------------------------------


@pytest.mark.parametrize("tied", [False, True])
def test_weighted_cox_point_estimates_match_lifelines(tied):
    data, w = _survival_data(400, seed=1, tied=tied)
    ours = causal.fit_cox(data["T"], data["E"], data[["a", "b", "c"]], w)
    ref = _lifelines(data, w)
    np.testing.assert_allclose(ours.coef, ref.params_.to_numpy(), rtol=1e-6)
    assert ours.names == ("a", "b", "c")


def test_robust_se_matches_lifelines_on_untied_data():
    data, w = _survival_data(400, seed=2, tied=False)
    ours = causal.fit_cox(data["T"], data["E"], data[["a", "b", "c"]], w)
    ref = _lifelines(data, w)
    np.testing.assert_allclose(ours.se_robust, ref.standard_errors_.to_numpy(), rtol=1e-6)
    # the naive (model) SE is not the robust one under weights: a test that could not tell
    # them apart would be worthless
    assert not np.allclose(ours.se_model, ours.se_robust, rtol=1e-3)


def test_model_se_matches_lifelines_unweighted_with_ties():
    data, _ = _survival_data(300, seed=3, tied=True)
    ours = causal.fit_cox(data["T"], data["E"], data[["a", "b", "c"]])
    ref = _lifelines(data, None)
    np.testing.assert_allclose(ours.coef, ref.params_.to_numpy(), rtol=1e-6)
    np.testing.assert_allclose(ours.se_model, ref.standard_errors_.to_numpy(), rtol=1e-6)
    assert ours.loglik == pytest.approx(ref.log_likelihood_, rel=1e-9)


def test_robust_se_with_ties_is_close_to_lifelines():
    """Documented difference: with tied times our score residuals follow R's Efron form,
    lifelines' ignore ties (its row order decides the risk set). On this heavily tied
    data (whole months) the SEs differ by a few per cent; without ties they agree."""
    data, w = _survival_data(400, seed=4, tied=True)
    ours = causal.fit_cox(data["T"], data["E"], data[["a", "b", "c"]], w)
    ref = _lifelines(data, w)
    np.testing.assert_allclose(ours.se_robust, ref.standard_errors_.to_numpy(), rtol=0.05)


@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_dfbeta_is_the_derivative_of_the_estimate_in_each_weight(ties):
    """The sandwich is sum_i D_i D_i' with D_i = I^-1 w_i U_i, and I^-1 U_i = d beta / d w_i
    exactly (implicit function theorem). Checked by refitting with one weight nudged, on tied
    data, which pins down the tie handling of the residuals independently of any library."""
    data, w = _survival_data(150, seed=12, tied=True)
    x = data[["a", "b"]].to_numpy()
    time, event = data["T"].to_numpy(), data["E"].to_numpy().astype(bool)
    fit = causal.fit_cox(time, event, x, w, ties=ties)
    ev = coxph.evaluate(coxph.risk_sets(time, event, x, w, ties), fit.coef, residuals=True)
    influence = ev.residuals @ np.linalg.inv(ev.information)
    tied_deaths = np.flatnonzero(event & pd.Series(time).duplicated(keep=False).to_numpy())
    eps = 1e-6
    for i in [*tied_deaths[:4], *np.flatnonzero(~event)[:2]]:
        nudged = w.copy()
        nudged[i] += eps
        step = (causal.fit_cox(time, event, x, nudged, ties=ties).coef - fit.coef) / eps
        np.testing.assert_allclose(step, influence[i], rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_weighted_score_residuals_sum_to_zero_at_the_estimate(ties):
    data, w = _survival_data(250, seed=5, tied=True)
    x = data[["a", "b", "c"]].to_numpy()
    fit = causal.fit_cox(data["T"], data["E"], x, w, ties=ties)
    rs = coxph.risk_sets(data["T"].to_numpy(), data["E"].to_numpy().astype(bool), x, w, ties)
    ev = coxph.evaluate(rs, fit.coef, residuals=True)
    np.testing.assert_allclose(ev.gradient, 0, atol=1e-8)
    np.testing.assert_allclose((w[:, None] * ev.residuals).sum(0), ev.gradient, atol=1e-8)


def test_breslow_frequency_weights_equal_replicated_rows():
    data, _ = _survival_data(120, seed=6, tied=True)
    counts = np.random.default_rng(0).integers(1, 4, len(data))
    x = data[["a", "b"]]
    weighted = causal.fit_cox(data["T"], data["E"], x, counts.astype(float), ties="breslow")
    rep = data.loc[data.index.repeat(counts)]
    expanded = causal.fit_cox(rep["T"], rep["E"], rep[["a", "b"]], ties="breslow")
    np.testing.assert_allclose(weighted.coef, expanded.coef, rtol=1e-9)
    np.testing.assert_allclose(weighted.se_model, expanded.se_model, rtol=1e-9)


def test_hand_computed_sandwich_on_tiny_untied_data():
    """One covariate, five patients: score residuals written out by hand (Breslow = Efron)."""
    time = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    event = np.array([1, 1, 0, 1, 0])
    x = np.array([1.0, 0.0, 1.0, 0.0, 1.0])
    w = np.array([1.0, 2.0, 0.5, 1.5, 1.0])
    fit = causal.fit_cox(time, event, x, w)
    b = fit.coef[0]
    r = np.exp(b * x)
    resid = np.zeros(5)
    info = 0.0
    for j in np.flatnonzero(event):  # each event time
        risk = time >= time[j]
        s0 = np.sum(w[risk] * r[risk])
        xbar = np.sum(w[risk] * r[risk] * x[risk]) / s0
        info += w[j] * (np.sum(w[risk] * r[risk] * x[risk] ** 2) / s0 - xbar**2)
        resid[j] += x[j] - xbar
        resid[risk] -= r[risk] * w[j] / s0 * (x[risk] - xbar)
    assert np.sum(w * resid) == pytest.approx(0, abs=1e-9)
    assert fit.se_model[0] == pytest.approx(np.sqrt(1 / info), rel=1e-8)
    assert fit.se_robust[0] == pytest.approx(np.sqrt(np.sum((w * resid) ** 2)) / info, rel=1e-8)


def test_cox_without_finite_maximum_is_a_clear_error():
    time = np.arange(1.0, 21.0)
    x = np.arange(20) % 2.0
    event = (x == 0).astype(int)  # the x = 1 group never has an event: log-HR -> -inf
    with pytest.raises(causal.CausalInputError, match="did not converge"):
        causal.fit_cox(time, event, x)


def test_cox_rejects_nan_weights_rather_than_returning_nan():
    data, w = _survival_data(50, seed=7, tied=False)
    w[3] = np.nan
    with pytest.raises(causal.CausalInputError, match="finite"):
        causal.fit_cox(data["T"], data["E"], data[["a"]], w)


# --- weighted log-rank ------------------------------------------------------------------


def test_weighted_logrank_observed_minus_expected_by_hand():
    data, w = _survival_data(200, seed=8, tied=True)
    treated = data["a"].to_numpy().astype(bool)
    time, event = data["T"].to_numpy(), data["E"].to_numpy().astype(bool)
    o_minus_e = 0.0
    for t in np.unique(time[event]):
        risk = time >= t
        dead = event & (time == t)
        o_minus_e += w[dead & treated].sum() - w[dead].sum() * w[risk & treated].sum() / w[risk].sum()
    res = causal.robust_logrank(time, event, treated, w)
    assert res.observed_minus_expected == pytest.approx(o_minus_e, rel=1e-10)
    assert 0 < res.p < 1


def test_weighted_logrank_is_invariant_to_rescaling_the_weights():
    data, w = _survival_data(200, seed=9, tied=False)
    treated = data["a"].to_numpy().astype(bool)
    a = causal.robust_logrank(data["T"], data["E"], treated, w)
    b = causal.robust_logrank(data["T"], data["E"], treated, 7.5 * w)
    assert a.statistic == pytest.approx(b.statistic, rel=1e-10)


def test_unit_weight_robust_logrank_is_close_to_the_classic_logrank():
    from lifelines.statistics import logrank_test

    data, _ = _survival_data(600, seed=10, tied=False)
    t = data["a"].to_numpy().astype(bool)
    classic = logrank_test(data["T"][t], data["T"][~t], data["E"][t], data["E"][~t]).test_statistic
    ours = causal.robust_logrank(data["T"], data["E"], t).statistic
    assert ours == pytest.approx(classic, rel=0.15)


# --- Kaplan-Meier ------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("weighted", [False, True])
def test_fast_km_median_matches_lifelines(seed, weighted):
    data, w = _survival_data(80, seed=seed, tied=True)
    weights = w if weighted else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = KaplanMeierFitter().fit(data["T"], data["E"], weights=weights).median_survival_time_
    ours = km.km_median_fast(data["T"], data["E"], weights)
    assert ours == pytest.approx(ref) if np.isfinite(ref) else np.isnan(ours)


def test_km_median_not_reached_is_nan():
    time = np.arange(1.0, 11.0)
    event = np.r_[1, 1, np.zeros(8)]
    assert np.isnan(km.km_median_fast(time, event))
    assert np.isnan(causal.km_median(time, event).median)


# --- standardized differences --------------------------------------------------------------


def test_smd_matches_hand_computation_with_and_without_weights():
    df = pd.DataFrame({
        "treatment": ["CIA", "CIA", "CIA", "CI", "CI", "CI", "CI"],
        "age": [50.0, 60.0, 70.0, 55.0, 65.0, 75.0, 80.0],
        "smoking": ["ever", "never", "ever", "never", "never", "ever", "never"],
    })
    w = np.array([1.0, 2.0, 1.0, 0.5, 1.0, 2.0, 1.5])
    t = df["treatment"].eq("CIA").to_numpy()
    age = df["age"].to_numpy()
    sd = np.sqrt((np.var(age[t]) + np.var(age[~t])) / 2)  # unweighted pooled SD, both times
    smd = causal.standardized_differences(df, ["age", "smoking"])
    assert smd["age"] == pytest.approx((age[t].mean() - age[~t].mean()) / sd)
    smd_w = causal.standardized_differences(df, ["age", "smoking"], weights=w)
    m1 = np.sum(w[t] * age[t]) / w[t].sum()
    m0 = np.sum(w[~t] * age[~t]) / w[~t].sum()
    assert smd_w["age"] == pytest.approx((m1 - m0) / sd)
    ever = df["smoking"].eq("ever").to_numpy().astype(float)
    p1, p0 = ever[t].mean(), ever[~t].mean()
    sd_ever = np.sqrt((p1 * (1 - p1) + p0 * (1 - p0)) / 2)
    assert smd["smoking=ever"] == pytest.approx((p1 - p0) / sd_ever)


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
    res = causal.estimate_iptw(df, ["age", "brain_mets"])
    before = causal.standardized_differences(df, ["age", "brain_mets"]).abs().max()
    after = causal.standardized_differences(df, ["age", "brain_mets"], weights=res.weights).abs().max()
    assert after < 0.5 * before
    diag = res.diagnostics.set_index("group")
    assert 0 < diag.loc["CIA", "ess"] <= diag.loc["CIA", "n"]
    assert np.all(np.isfinite(res.weights))


def test_truncation_caps_the_weights_at_percentiles():
    df = _toy_cohort(300)
    e = causal.fit_propensity(df, ["age", "brain_mets"]).predict_proba(df)[:, 1]
    t = df["treatment"].eq("CIA").to_numpy()
    w = causal.iptw_weights(e, t, truncate=(5, 95))
    raw = causal.iptw_weights(e, t)
    assert w.max() == pytest.approx(np.percentile(raw, 95))
    assert w.min() == pytest.approx(np.percentile(raw, 5))


def test_single_treatment_group_is_a_clear_error():
    df = _toy_cohort().assign(treatment="CIA")
    with pytest.raises(causal.CausalInputError, match="both groups.*CI: 0"):
        causal.estimate_iptw(df, ["age"])


def test_covariate_constant_within_a_group_is_named():
    df = _toy_cohort()
    df.loc[df["treatment"] == "CIA", "brain_mets"] = "no"
    with pytest.raises(causal.CausalInputError, match="'brain_mets' is 'no' for every patient in CIA"):
        causal.estimate_iptw(df, ["age", "brain_mets"])


def test_covariate_constant_in_the_whole_cohort_is_dropped_with_a_warning():
    df = _toy_cohort().assign(brain_mets="no")
    with pytest.warns(causal.SeparationWarning, match="brain_mets"):
        res = causal.estimate_iptw(df, ["age", "brain_mets"])
    assert res.confounders == ("age",)


def test_rare_level_in_one_group_warns_and_keeps_weights_finite():
    df = _toy_cohort(300)
    df["histology"] = np.where(np.arange(len(df)) % 3 == 0, "squamous", "adenocarcinoma")
    ci_rows = df.index[df["treatment"] == "CI"][:3]
    df.loc[ci_rows, "histology"] = "other"
    with pytest.warns(causal.SeparationWarning, match="histology=other occurs only in CI"):
        res = causal.estimate_iptw(df, ["age", "histology"])
    assert np.all(np.isfinite(res.weights))


def test_perfect_separation_is_a_clear_error():
    df = _toy_cohort()
    df["treatment"] = np.where(df["age"] > 60, "CIA", "CI")
    with pytest.raises(causal.CausalInputError, match="perfect separation"):
        causal.estimate_iptw(df, ["age", "brain_mets"])


def test_extreme_weights_warn_with_the_ess():
    rng = np.random.default_rng(3)
    n = 300
    age = rng.normal(60, 8, n)
    cia = rng.random(n) < 1 / (1 + np.exp(-0.45 * (age - 60)))  # strong confounding
    df = pd.DataFrame({"age": age, "treatment": np.where(cia, "CIA", "CI")})
    with pytest.warns(causal.ExtremeWeightsWarning, match=r"ESS \d+\.\d of \d+ patients"):
        causal.estimate_iptw(df, ["age"], stabilized=False)


def test_no_warning_for_reasonable_weights():
    df = _toy_cohort(400)
    with warnings.catch_warnings():
        warnings.simplefilter("error", causal.ExtremeWeightsWarning)
        causal.estimate_iptw(df, ["age", "brain_mets"])


def test_stratified_resample_keeps_group_sizes():
    t = np.r_[np.ones(7, bool), np.zeros(13, bool)]
    idx = causal.stratified_resample(t, np.random.default_rng(0))
    assert t[idx].sum() == 7 and len(idx) == 20


def test_iptw_on_the_twin_uses_the_schema_groups(twin_small):
    res = causal.estimate_iptw(twin_small.data)
    assert res.treated.sum() == (twin_small.data[schema.TREATMENT] == schema.TREATED).sum()
    # the fitted propensity tracks the twin's true one
    assert np.corrcoef(res.propensity, twin_small.truth["true_propensity"])[0, 1] > 0.8

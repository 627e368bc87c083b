"""ml.stats.cox and ml.stats.logrank: the weighted Cox fit and the log-rank tests.

(The PH check, ml.stats.ph, is tested in test_ph.py and against R in test_r_zph.py.)
Known answers come from independent sources: lifelines (Cox, log-rank), hand
computations written out here (observed - expected, the sandwich on five patients), and
algebraic identities (frequency weights = replicated rows under Breslow ties; the weighted
score residuals sum to the score, which is 0 at the estimate; the derivative of the estimate
in a weight is its influence).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from lifelines import CoxPHFitter
from lifelines.statistics import logrank_test

from ml.stats import coxph
from ml.stats.cox import fit_cox
from ml.stats.errors import CausalInputError
from ml.stats.logrank import logrank, robust_logrank

TIGHT = {"precision": 1e-12}  # let lifelines' Newton steps run (nearly) to the exact MLE
"""lifelines' defaults stop up to ~1e-5 short of the MLE (a step or log-lik change below a
threshold ends the loop before the step is taken); these run it to the MLE."""


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
    ours = fit_cox(data["T"], data["E"], data[["a", "b", "c"]], w)
    ref = _lifelines(data, w)
    np.testing.assert_allclose(ours.coef, ref.params_.to_numpy(), rtol=1e-6)
    assert ours.names == ("a", "b", "c")


def test_robust_se_matches_lifelines_on_untied_data():
    data, w = _survival_data(400, seed=2, tied=False)
    ours = fit_cox(data["T"], data["E"], data[["a", "b", "c"]], w)
    ref = _lifelines(data, w)
    np.testing.assert_allclose(ours.se_robust, ref.standard_errors_.to_numpy(), rtol=1e-6)
    # the naive (model) SE is not the robust one under weights: a test that could not tell
    # them apart would be worthless
    assert not np.allclose(ours.se_model, ours.se_robust, rtol=1e-3)


def test_model_se_matches_lifelines_unweighted_with_ties():
    data, _ = _survival_data(300, seed=3, tied=True)
    ours = fit_cox(data["T"], data["E"], data[["a", "b", "c"]])
    ref = _lifelines(data, None)
    np.testing.assert_allclose(ours.coef, ref.params_.to_numpy(), rtol=1e-6)
    np.testing.assert_allclose(ours.se_model, ref.standard_errors_.to_numpy(), rtol=1e-6)
    assert ours.loglik == pytest.approx(ref.log_likelihood_, rel=1e-9)


def test_robust_se_with_ties_is_close_to_lifelines():
    """Documented difference: with tied times our score residuals follow R's Efron form,
    lifelines' ignore ties (its row order decides the risk set). On this heavily tied
    data (whole months) the SEs differ by a few per cent; without ties they agree."""
    data, w = _survival_data(400, seed=4, tied=True)
    ours = fit_cox(data["T"], data["E"], data[["a", "b", "c"]], w)
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
    fit = fit_cox(time, event, x, w, ties=ties)
    ev = coxph.evaluate(coxph.risk_sets(time, event, x, w, ties), fit.coef, residuals=True)
    influence = ev.residuals @ np.linalg.inv(ev.information)
    tied_deaths = np.flatnonzero(event & pd.Series(time).duplicated(keep=False).to_numpy())
    eps = 1e-6
    for i in [*tied_deaths[:4], *np.flatnonzero(~event)[:2]]:
        nudged = w.copy()
        nudged[i] += eps
        step = (fit_cox(time, event, x, nudged, ties=ties).coef - fit.coef) / eps
        np.testing.assert_allclose(step, influence[i], rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_weighted_score_residuals_sum_to_zero_at_the_estimate(ties):
    data, w = _survival_data(250, seed=5, tied=True)
    x = data[["a", "b", "c"]].to_numpy()
    fit = fit_cox(data["T"], data["E"], x, w, ties=ties)
    rs = coxph.risk_sets(data["T"].to_numpy(), data["E"].to_numpy().astype(bool), x, w, ties)
    ev = coxph.evaluate(rs, fit.coef, residuals=True)
    np.testing.assert_allclose(ev.gradient, 0, atol=1e-8)
    np.testing.assert_allclose((w[:, None] * ev.residuals).sum(0), ev.gradient, atol=1e-8)


def test_breslow_frequency_weights_equal_replicated_rows():
    data, _ = _survival_data(120, seed=6, tied=True)
    counts = np.random.default_rng(0).integers(1, 4, len(data))
    x = data[["a", "b"]]
    weighted = fit_cox(data["T"], data["E"], x, counts.astype(float), ties="breslow")
    rep = data.loc[data.index.repeat(counts)]
    expanded = fit_cox(rep["T"], rep["E"], rep[["a", "b"]], ties="breslow")
    np.testing.assert_allclose(weighted.coef, expanded.coef, rtol=1e-9)
    np.testing.assert_allclose(weighted.se_model, expanded.se_model, rtol=1e-9)


def test_hand_computed_sandwich_on_tiny_untied_data():
    """One covariate, five patients: score residuals written out by hand (Breslow = Efron)."""
    time = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    event = np.array([1, 1, 0, 1, 0])
    x = np.array([1.0, 0.0, 1.0, 0.0, 1.0])
    w = np.array([1.0, 2.0, 0.5, 1.5, 1.0])
    fit = fit_cox(time, event, x, w)
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
    with pytest.raises(CausalInputError, match="did not converge"):
        fit_cox(time, event, x)


def test_cox_rejects_nan_weights_rather_than_returning_nan():
    data, w = _survival_data(50, seed=7, tied=False)
    w[3] = np.nan
    with pytest.raises(CausalInputError, match="finite"):
        fit_cox(data["T"], data["E"], data[["a"]], w)


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
    res = robust_logrank(time, event, treated, w, ties="breslow")  # Breslow risk sets: O - E
    assert res.observed_minus_expected == pytest.approx(o_minus_e, rel=1e-10)
    assert 0 < res.p < 1


def test_weighted_logrank_is_invariant_to_rescaling_the_weights():
    data, w = _survival_data(200, seed=9, tied=False)
    treated = data["a"].to_numpy().astype(bool)
    a = robust_logrank(data["T"], data["E"], treated, w)
    b = robust_logrank(data["T"], data["E"], treated, 7.5 * w)
    assert a.statistic == pytest.approx(b.statistic, rel=1e-10)


def test_unit_weight_robust_logrank_is_close_to_the_classic_logrank():
    data, _ = _survival_data(600, seed=10, tied=False)
    t = data["a"].to_numpy().astype(bool)
    classic = logrank_test(data["T"][t], data["T"][~t], data["E"][t], data["E"][~t]).test_statistic
    ours = robust_logrank(data["T"], data["E"], t).statistic
    assert ours == pytest.approx(classic, rel=0.15)


# --- the classic log-rank ---------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("tied", [False, True])
def test_logrank_matches_lifelines(seed, tied):
    data, _ = _survival_data(300, seed=seed, tied=tied)
    t = data["a"].to_numpy().astype(bool)
    ref = logrank_test(data["T"][t], data["T"][~t], data["E"][t], data["E"][~t])
    ours = logrank(data["T"], data["E"], t)
    assert ours.statistic == pytest.approx(ref.test_statistic, rel=1e-10)
    assert ours.p == pytest.approx(ref.p_value, rel=1e-9)


def test_logrank_without_events_is_a_clear_error():
    with pytest.raises(CausalInputError, match="undefined"):
        logrank(np.arange(1.0, 7.0), np.zeros(6), np.arange(6) % 2 == 0)

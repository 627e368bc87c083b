"""Adjusted survival curves and RMST (`ml.stats.causal`) against hand computations on small tables.

R pins the same estimators on the twin (tests/test_r_causal.py); here: RMST is the area under the
KM step with survRM2's variance, the tau rule's four cases, the nuisance models' hazards, the
estimators' reduction without censoring, and the bootstrap's seeding and errors.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from features import schema
from ml.stats import km
from ml.stats.causal.adjusted import adjusted_survival
from ml.stats.causal.estimators import CausalSample, iptw_km, survival_on_grid
from ml.stats.causal.nuisance import baseline_hazard, fit_censoring, fit_outcome
from ml.stats.causal.rmst import area_under_step, check_tau, km_rmst, rmst2, tau_bound
from ml.stats.errors import CausalInputError

TIME = np.array([1.0, 2.0, 2.0, 3.0, 4.0])
EVENT = np.array([1, 1, 0, 1, 0])
# KM: S = 0.8 from 1, 0.6 from 2 (4 at risk, 1 death; the censored 2 still at risk), 0.3 from 3


def test_area_under_a_step_function():
    assert area_under_step([1.0, 3.0], [0.5, 0.25], 4.0) == pytest.approx(1 + 2 * 0.5 + 0.25)
    assert area_under_step([1.0, 3.0], [0.5, 0.25], 0.5) == pytest.approx(0.5)
    assert area_under_step([1.0, 3.0], [0.5, 0.25], 3.0) == pytest.approx(2.0)


@pytest.mark.parametrize(("tau", "rmst", "variance"), [
    # area 1*1 + 1*0.8 + 1*0.6 + 0.5*0.3; variance: areas after each event time squared times
    # d / (Y (Y - d)): 1.55^2 / 20 + 0.75^2 / 12 + 0.15^2 / 2
    (3.5, 2.55, 1.55**2 / 20 + 0.75**2 / 12 + 0.15**2 / 2),
    (3.0, 2.4, 1.4**2 / 20 + 0.6**2 / 12),        # tau on an event time: its term has no area
    (0.5, 0.5, 0.0),                              # before the first event
])
def test_rmst_is_the_area_under_the_km_step_with_survrm2_variance(tau, rmst, variance):
    est, var = km_rmst(TIME, EVENT, tau)
    assert est == pytest.approx(rmst, abs=1e-12)
    assert var == pytest.approx(variance, abs=1e-12)


def test_a_time_where_everyone_dies_adds_no_variance():
    est, var = km_rmst([1.0, 2.0], [1, 1], 3.0)  # S: 0.5 from 1, 0 from 2
    assert est == pytest.approx(1 + 0.5)
    assert var == pytest.approx(0.5**2 * 1 / (2 * 1))


def test_rmst2_difference_and_ratio_by_hand():
    t = np.concatenate([TIME, [0.5, 1.5, 2.5, 3.5, 4.5]])
    e = np.concatenate([EVENT, [1, 1, 1, 0, 0]])
    arm = np.array([True] * 5 + [False] * 5)
    out = rmst2(t, e, arm, tau=3.5)
    (r1, v1), (r0, v0) = km_rmst(TIME, EVENT, 3.5), km_rmst(t[5:], e[5:], 3.5)
    # control KM: 0.8 from 0.5, 0.6 from 1.5, 0.4 from 2.5 -> 0.5 + 0.8 + 0.6 + 0.4
    assert r0 == pytest.approx(2.3)
    z = stats.norm.ppf(0.975)
    diff = out.contrasts.set_index("contrast").loc["difference"]
    assert diff["estimate"] == pytest.approx(r1 - r0)
    assert diff["ci_high"] - diff["estimate"] == pytest.approx(z * np.sqrt(v1 + v0))
    assert diff["p"] == pytest.approx(2 * stats.norm.sf(abs(r1 - r0) / np.sqrt(v1 + v0)))
    ratio = out.contrasts.set_index("contrast").loc["ratio"]
    se_log = np.sqrt(v1 / r1**2 + v0 / r0**2)
    assert ratio["estimate"] == pytest.approx(r1 / r0)
    assert ratio["ci_low"] == pytest.approx(np.exp(np.log(r1 / r0) - z * se_log))
    assert ratio["p"] == pytest.approx(2 * stats.norm.sf(abs(np.log(r1 / r0)) / se_log))
    assert list(out.arms["arm"]) == [schema.TREATED, schema.CONTROL]
    assert out.tau == 3.5 and out.tau_given


@pytest.mark.parametrize(("ends", "expected"), [
    ((1, 1), 9.0),   # both arms end with an event: the later last time
    ((1, 0), 9.0),   # the arm that ends first (treated, 7) ends with an event: its curve is 0 after
    ((0, 1), 7.0),   # the arm that ends first is censored: its curve is unknown after 7
    ((0, 0), 7.0),   # both censored: the earlier last time
])
def test_tau_default_follows_survrm2s_four_cases(ends, expected):
    t = np.array([1.0, 3.0, 7.0, 2.0, 4.0, 9.0])
    e = np.array([1, 1, ends[0], 1, 1, ends[1]])
    arm = np.array([True, True, True, False, False, False])
    assert tau_bound(t, e, arm).bound == expected
    assert rmst2(t, e, arm).tau == expected


def test_a_tie_at_the_last_time_counts_as_censored():
    t = np.array([1.0, 7.0, 7.0, 2.0, 9.0])
    arm = np.array([True, True, True, False, False])
    assert tau_bound(t, np.array([1, 1, 0, 1, 1]), arm).bound == 7.0
    assert tau_bound(t, np.array([1, 1, 1, 1, 1]), arm).bound == 9.0


def test_tau_beyond_follow_up_names_the_arm_and_the_limit():
    t = np.array([1.0, 3.0, 7.0, 2.0, 4.0, 9.0])
    e = np.array([1, 1, 0, 1, 1, 1])
    arm = np.array([True, True, True, False, False, False])
    with pytest.raises(CausalInputError, match=rf"tau = 8 .*arm {schema.TREATED}.*at most 7"):
        rmst2(t, e, arm, tau=8.0)
    with pytest.raises(CausalInputError, match="positive"):
        check_tau(-1.0, t, e, arm)
    with pytest.raises(CausalInputError, match=rf"arm {schema.CONTROL} has no events"):
        rmst2(t, np.array([1, 1, 0, 0, 0, 0]), arm, tau=3.0)


def test_baseline_hazard_by_hand_at_beta_zero():
    t, e = np.array([1.0, 2.0, 2.0, 3.0, 4.0]), np.array([True, True, True, True, False])
    knots, breslow, _ = baseline_hazard(t, e, np.zeros(5), "breslow")
    _, efron, _ = baseline_hazard(t, e, np.zeros(5), "efron")
    np.testing.assert_allclose(knots, [1, 2, 3])
    np.testing.assert_allclose(breslow, [1 / 5, 2 / 4, 1 / 2])
    np.testing.assert_allclose(efron, [1 / 5, 1 / 4 + 1 / 3, 1 / 2])  # tie of 2 among 4 at risk


def test_censoring_survival_is_exp_minus_nelson_aalen():
    g = fit_censoring(np.array([1.0, 2.0, 2.0, 3.0, 4.0]), np.array([1, 0, 1, 0, 0]).astype(bool))
    np.testing.assert_allclose(g.knots, [2, 3, 4])
    np.testing.assert_allclose(g.hazard, [1 / 4, 1 / 2, 1 / 1])  # events at 2 stay at risk
    np.testing.assert_allclose(g.survival(np.array([2.0, 3.5])), np.exp([-0.25, -0.75]))
    np.testing.assert_allclose(g.survival(np.array([2.0, 3.0]), left=True), np.exp([0, -0.25]))


def _synthetic(n: int = 160, seed: int = 0, censor: bool = True) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    age = rng.normal(62, 8, n)
    ecog = rng.choice([0, 1, 2], n, p=[0.4, 0.45, 0.15])
    treated = rng.random(n) < 1 / (1 + np.exp(-(age - 62) / 8 + 0.4 * ecog - 0.2))
    hazard = 0.08 * np.exp(0.03 * (age - 62) + 0.4 * ecog - 0.5 * treated)
    death = rng.exponential(1 / hazard)
    follow = rng.uniform(10, 40, n) if censor else np.full(n, np.inf)
    return pd.DataFrame({"age": age, "ecog": ecog, "sex": rng.choice(["female", "male"], n),
                         schema.TREATMENT: np.where(treated, schema.TREATED, schema.CONTROL),
                         "pfs_months": np.round(np.minimum(death, follow), 6),
                         "pfs_event": (death <= follow).astype(int)})


def _sample(df: pd.DataFrame) -> CausalSample:
    from ml.stats.causal.adjusted import causal_sample
    return causal_sample(df, "pfs_months", "pfs_event", ("age", "ecog"), schema.TREATMENT,
                         schema.TREATED, schema.CONTROL)[0]


def test_without_censoring_the_estimators_reduce_to_their_uncensored_forms():
    sample = _sample(_synthetic(censor=False))
    grid = np.array([3.0, 8.0, 15.0])
    curves = survival_on_grid(sample, grid, ("gformula", "ipcw", "aiptw"))
    outcome = fit_outcome(sample.time, sample.event, sample.treated, sample.design)
    alive = sample.time[:, None] > grid[None, :]
    for arm in (True, False):
        w = np.where(sample.treated == arm, sample.ipw, 0.0)[:, None]
        s = outcome.survival(arm, sample.design, grid)
        np.testing.assert_allclose(curves["gformula"][arm], s.mean(0))
        np.testing.assert_allclose(curves["ipcw"][arm], 1 - (w * ~alive).mean(0))  # Horvitz-Thompson
        np.testing.assert_allclose(curves["aiptw"][arm], (s + w * (alive - s)).mean(0))  # AIPW


def test_iptw_km_with_equal_weights_is_each_arms_km():
    sample = _sample(_synthetic())
    flat = sample.take(np.arange(len(sample.time)), np.full(len(sample.time), 3.0))
    for arm in (True, False):
        m = sample.treated == arm
        expected = [km.survival_at(sample.time[m], sample.event[m], t) for t in (5.0, 12.0)]
        np.testing.assert_allclose(iptw_km(flat, arm, np.array([5.0, 12.0])), expected)


def test_adjusted_rmst_is_the_area_under_the_adjusted_curve():
    res = adjusted_survival(_synthetic(), [6, 12], tau=9.5, confounders=("age", "ecog"), replicates=0)
    for (name, arm), curve in res.curves.groupby(["estimator", "arm"]):
        row = res.rmst[(res.rmst["estimator"] == name) & (res.rmst["arm"] == arm)]
        expected = area_under_step(curve["time"].to_numpy(), curve["survival"].to_numpy(), 9.5)
        assert row["rmst"].item() == pytest.approx(expected)
        assert row["ci_low"].isna().all()
    by_tau = res.rmst_by_tau.groupby("estimator").last()
    contrasts = res.rmst_contrasts[res.rmst_contrasts["contrast"] == "difference"].set_index("estimator")
    np.testing.assert_allclose(by_tau["difference"], contrasts.loc[by_tau.index, "estimate"])
    assert (res.rmst_by_tau.groupby("estimator")["time"].max() == 9.5).all()
    diff = res.differences.set_index(["estimator", "time"])["difference"]
    at = res.at_times.set_index(["estimator", "arm", "time"])["survival"]
    assert diff["aiptw", 12.0] == pytest.approx(at["aiptw", schema.TREATED, 12.0]
                                                 - at["aiptw", schema.CONTROL, 12.0])


def test_bootstrap_is_seeded_reports_progress_and_brackets_the_estimate():
    df, calls = _synthetic(), []
    first = adjusted_survival(df, [6, 12], confounders=("age", "ecog"), replicates=20, seed=3,
                              progress=lambda done, total: calls.append((done, total)))
    again = adjusted_survival(df, [6, 12], confounders=("age", "ecog"), replicates=20, seed=3)
    assert calls == [(i, 20) for i in range(1, 21)]
    pd.testing.assert_frame_equal(first.at_times, again.at_times)
    pd.testing.assert_frame_equal(first.rmst_contrasts, again.rmst_contrasts)
    assert first.replicates == 20 and first.failed == 0
    ok = first.at_times
    assert (ok["ci_low"] <= ok["ci_high"]).all() and ok["ci_low"].notna().all()
    assert (first.rmst_contrasts["se"] > 0).all()


def test_adjusted_curves_refuse_a_tau_or_time_beyond_follow_up_and_an_arm_without_events():
    df = _synthetic()
    bound = tau_bound(df["pfs_months"], df["pfs_event"], df[schema.TREATMENT] == schema.TREATED).bound
    with pytest.raises(CausalInputError, match=r"tau = 99 .*set tau to at most"):
        adjusted_survival(df, [6], tau=99.0, confounders=("age", "ecog"), replicates=0)
    with pytest.raises(CausalInputError, match=rf"times = 99 .*at most {bound:g}"):
        adjusted_survival(df, [6, 99], confounders=("age", "ecog"), replicates=0)
    with pytest.raises(CausalInputError, match="times must be"):
        adjusted_survival(df, [], confounders=("age", "ecog"), replicates=0)
    with pytest.raises(CausalInputError, match="unknown adjusted-curve estimator"):
        adjusted_survival(df, [6], estimators=("iptw", "tmle"), confounders=("age", "ecog"), replicates=0)
    quiet = df.assign(pfs_event=np.where(df[schema.TREATMENT] == schema.CONTROL, 0, df["pfs_event"]))
    with pytest.raises(CausalInputError, match=rf"arm {schema.CONTROL} has no events"):
        adjusted_survival(quiet, [6], confounders=("age", "ecog"), replicates=0)


def test_aiptw_in_blocks_of_patients_is_the_same(monkeypatch):
    from ml.stats.causal import estimators
    sample, grid = _sample(_synthetic()), np.array([4.0, 9.0, 15.0])
    whole = survival_on_grid(sample, grid, ("aiptw",))["aiptw"]
    monkeypatch.setattr(estimators, "CELLS_PER_BLOCK", 7 * len(grid))  # a few patients per block
    blocks = survival_on_grid(sample, grid, ("aiptw",))["aiptw"]
    for arm in (True, False):
        np.testing.assert_allclose(blocks[arm], whole[arm], rtol=1e-12)


def _at(res, name: str) -> pd.Series:
    return res.at_times[res.at_times["estimator"] == name].set_index(["arm", "time"])["survival"]


def test_propensity_and_outcome_models_can_adjust_for_different_confounders():
    df = _synthetic()
    mixed = adjusted_survival(df, [6, 12], tau=9.5, confounders=("age", "ecog"), replicates=0,
                              propensity_confounders=("age",), outcome_confounders=("age", "ecog"))
    only_age = adjusted_survival(df, [6, 12], tau=9.5, confounders=("age",), replicates=0)
    both = adjusted_survival(df, [6, 12], tau=9.5, confounders=("age", "ecog"), replicates=0)
    # IPTW uses the propensity model only, the G-formula the outcome model only
    pd.testing.assert_series_equal(_at(mixed, "iptw"), _at(only_age, "iptw"))
    pd.testing.assert_series_equal(_at(mixed, "gformula"), _at(both, "gformula"))
    assert not np.allclose(_at(mixed, "iptw"), _at(both, "iptw"))
    assert mixed.confounders == ("age",) and mixed.outcome_confounders == ("age", "ecog")
    default = adjusted_survival(df, [6, 12], tau=9.5, confounders=("age", "ecog"), replicates=0,
                                propensity_confounders=("age", "ecog"), outcome_confounders=("age", "ecog"))
    pd.testing.assert_frame_equal(default.at_times, both.at_times)


def test_aiptw_with_separate_designs_is_the_aipw_formula_without_censoring():
    from ml.stats.causal.adjusted import causal_sample
    df = _synthetic(censor=False)
    sample, _ = causal_sample(df, "pfs_months", "pfs_event", ("age", "ecog"), schema.TREATMENT,
                              schema.TREATED, schema.CONTROL, propensity_confounders=("ecog",))
    assert sample.design.shape[1] < sample.x_outcome.shape[1]  # ecog terms vs age + ecog terms
    grid = np.array([3.0, 8.0, 15.0])
    curves = survival_on_grid(sample, grid, ("aiptw",))
    outcome = fit_outcome(sample.time, sample.event, sample.treated, sample.x_outcome)
    alive = sample.time[:, None] > grid[None, :]
    for arm in (True, False):
        w = np.where(sample.treated == arm, sample.ipw, 0.0)[:, None]
        s = outcome.survival(arm, sample.x_outcome, grid)
        np.testing.assert_allclose(curves["aiptw"][arm], (s + w * (alive - s)).mean(0))
    idx = np.array([3, 1, 1, 0])
    taken = sample.take(idx, np.ones(4))
    np.testing.assert_array_equal(taken.x_outcome, sample.x_outcome[idx])
    np.testing.assert_array_equal(taken.design, sample.design[idx])


def test_differences_carry_the_bootstrap_se_of_the_difference():
    res = adjusted_survival(_synthetic(), [6, 12], tau=9.5, confounders=("age", "ecog"), replicates=15,
                            seed=4, outcome_confounders=("age",))
    assert res.replicates == 15 and (res.differences["se"] > 0).all()
    rmst_se = res.rmst_contrasts.query("contrast == 'difference'").set_index("estimator")["se"]
    by_tau = res.rmst_by_tau.groupby("estimator").last()["se"]
    np.testing.assert_allclose(by_tau[rmst_se.index], rmst_se)  # same replicates, same SD
    assert adjusted_survival(_synthetic(), [6], tau=9.5, confounders=("age",),
                             replicates=0).differences["se"].isna().all()


def test_ratio_se_without_a_log_when_a_replicate_is_not_positive():
    """An AIPTW replicate can leave [0, 1]: the ratio's SE falls back to SD(ratio) / ratio."""
    from ml.stats.causal.rmst import bootstrap_contrasts

    one, zero = np.array([10.0, 12.0, 11.0, 9.0]), np.array([8.0, -1.0, 7.0, 6.0])
    out = bootstrap_contrasts(11.0, 7.0, one, zero).set_index("contrast")
    ratio = out.loc["ratio"]
    assert ratio["se"] == pytest.approx(np.std(one / zero, ddof=1) / (11.0 / 7.0))
    assert np.isfinite(ratio["p"])
    positive = bootstrap_contrasts(11.0, 7.0, one, np.array([8.0, 9.0, 7.0, 6.0])).set_index("contrast")
    assert positive.loc["ratio", "se"] == pytest.approx(np.std(np.log(one / [8.0, 9.0, 7.0, 6.0]), ddof=1))

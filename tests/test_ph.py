"""ml.stats.ph without R: a brute-force hand computation, weight-scale invariance, flags, smooth.

(R's cox.zph itself is the oracle in tests/test_r_zph.py.)
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml.stats.cox import fit_cox
from ml.stats.ph import TRANSFORMS, cox_zph, ph_test, zph_smooth


def _data(n: int, seed: int, tied: bool) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = pd.DataFrame({"a": rng.integers(0, 2, n).astype(float), "b": rng.normal(size=n)})
    t = rng.exponential(np.exp(-(0.7 * x["a"] - 0.4 * x["b"]).to_numpy())) * 10
    cens = rng.exponential(15, n)
    time = np.minimum(t, cens)
    return x, np.ceil(time) if tied else time, t <= cens, rng.uniform(0.3, 3.0, n)


def _brute_force(time, event, x, w, beta, g_of_time, ties) -> tuple[np.ndarray, float]:
    """The augmented model's score and information at gamma = 0 by explicit loops over the
    event times and Efron slots (definition, no regrouping); returns (u, GLOBAL chisq)."""
    w = w / w.mean()
    p = x.shape[1]
    risk = w * np.exp(x @ beta)
    g_events = np.array([g_of_time[t] for t in time[event]])
    u, info = np.zeros(2 * p), np.zeros((2 * p, 2 * p))
    for t in np.unique(time[event]):
        dead = np.flatnonzero((time == t) & event)
        at_risk = np.flatnonzero(time >= t)
        d, wbar, g = len(dead), w[dead].mean(), g_of_time[t] - g_events.mean()
        for i in dead:
            u[p:] += w[i] * g * x[i]
        for slot in range(d):
            share = np.ones(len(x))
            share[dead] -= slot / d if ties == "efron" else 0.0
            v = risk * share
            v_r = v[at_risk]
            mean = v_r @ x[at_risk] / v_r.sum()
            second = (x[at_risk].T * v_r) @ x[at_risk] / v_r.sum()
            cov = second - np.outer(mean, mean)
            u[p:] -= wbar * g * mean
            z = np.array([[1, g], [g, g * g]])
            info += wbar * np.kron(z, cov)
    u[:p] = 0.0
    return u, float(u @ np.linalg.solve(info, u))


@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_global_test_equals_a_brute_force_hand_computation(ties):
    x, time, event, w = _data(60, seed=1, tied=True)
    fit = fit_cox(time, event, x, w, ties=ties)
    z = cox_zph(fit, "identity")
    _, chisq = _brute_force(time, event, x.to_numpy(), w, fit.coef, {t: t for t in time}, ties)
    assert z.table.set_index("term").loc["GLOBAL", "chisq"] == pytest.approx(chisq, rel=1e-9)


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_invariant_to_the_scale_of_the_weights(transform):
    x, time, event, w = _data(200, seed=2, tied=True)
    tables = [cox_zph(fit_cox(time, event, x, c * w), transform).table for c in (0.2, 1.0, 5.0)]
    for other in tables[1:]:
        np.testing.assert_allclose(other["chisq"], tables[0]["chisq"], rtol=1e-8)
        np.testing.assert_allclose(other["p"], tables[0]["p"], rtol=1e-8)


def test_all_ones_weights_are_the_unweighted_test_and_a_zero_weight_removes_the_row():
    x, time, event, w = _data(150, seed=3, tied=True)
    plain = cox_zph(fit_cox(time, event, x)).table
    ones = cox_zph(fit_cox(time, event, x, np.ones(len(time)))).table
    np.testing.assert_allclose(ones["chisq"], plain["chisq"], rtol=1e-10)
    w0 = w.copy()
    w0[:10] = 0.0
    zero = cox_zph(fit_cox(time, event, x, w0)).table
    dropped = cox_zph(fit_cox(time[10:], event[10:], x.iloc[10:], w[10:])).table
    np.testing.assert_allclose(zero["chisq"], dropped["chisq"], rtol=1e-8)


def test_km_transform_is_one_minus_the_left_limit_of_km():
    time = np.array([1.0, 2, 2, 3, 4, 5])
    event = np.array([1, 1, 0, 1, 0, 1], bool)
    x = np.array([0.0, 1, 0, 1, 1, 0])
    z = cox_zph(fit_cox(time, event, x, names=["x"]), "km")
    # KM: S(1-) = 1, S(2-) = 5/6, S(3-) = 5/6 * 4/5 = 4/6, S(5-) = 4/6 * 2/3 = 4/9
    np.testing.assert_allclose(z.g, [0, 1 / 6, 1 - 4 / 6, 1 - 4 / 9])
    assert cox_zph(fit_cox(time, event, x, names=["x"]), "rank").g.tolist() == [1, 2.5, 4, 6]


def test_factor_columns_are_grouped_per_covariate_with_a_global_row():
    rng = np.random.default_rng(4)
    n = 300
    level = rng.integers(0, 3, n)
    x = pd.DataFrame({"stage=II": (level == 1) * 1.0, "stage=III": (level == 2) * 1.0,
                      "age": rng.normal(60, 8, n)})
    time = rng.exponential(np.exp(-0.4 * level)) * 10
    table = cox_zph(fit_cox(time, np.ones(n, bool), x)).table.set_index("term")
    assert table.loc["stage", "df"] == 2 and table.loc["stage", "level"] == "covariate"
    assert table.loc["GLOBAL", "df"] == 3 and table.loc["stage=II", "level"] == "term"
    ages = table.loc["age", "chisq"]  # a numeric covariate: its term row and covariate row agree
    assert len(ages) == 2 and ages.iloc[0] == pytest.approx(ages.iloc[1], rel=1e-12)


def test_flags_a_time_varying_effect_in_plain_language():
    rng = np.random.default_rng(1)
    n = 600
    x = rng.integers(0, 2, n).astype(float)
    # x = 1 dies early or never: crossing hazards, PH clearly violated
    t = np.where(x == 1, rng.exponential(2, n), rng.weibull(3, n) * 8)
    out = ph_test(fit_cox(t, np.ones(n), x, names=["x"]), 0.05, model="toy").set_index("level")
    assert out.loc["covariate", "ph_violated"] and "change over follow-up" in out.loc["covariate", "note"]
    assert out.loc["global", "ph_violated"] and out.loc["global", "note"] == ""  # the same test
    assert out.loc["term", "note"] == "" and (out["model"] == "toy").all()
    assert (out["transform"] == "km").all()


def test_quiet_under_proportional_hazards():
    x, time, event, _ = _data(400, seed=15, tied=False)
    out = ph_test(fit_cox(time, event, x), 0.01, model="toy")
    assert not out["ph_violated"].any() and (out["note"] == "").all()
    assert list(out["term"]) == ["a", "b", "a", "b", "GLOBAL"]


def test_unknown_transform_is_refused_by_name():
    x, time, event, _ = _data(50, seed=6, tied=False)
    with pytest.raises(ValueError, match="transform must be one of km, rank, identity, log"):
        cox_zph(fit_cox(time, event, x), "sqrt")


def test_smooth_reproduces_a_straight_line_and_its_band_contains_it():
    g = np.linspace(0, 1, 50) ** 2
    smooth = zph_smooth(g, 0.3 - 1.2 * g, var=0.5)
    np.testing.assert_allclose(smooth["fit"], 0.3 - 1.2 * smooth["g"], atol=1e-10)
    assert (smooth["low"] < smooth["fit"]).all() and (smooth["high"] > smooth["fit"]).all()
    assert zph_smooth(np.ones(10), np.arange(10.0), var=1.0) is None


def test_all_events_at_one_time_give_no_test_rather_than_an_error():
    time = np.array([5.0, 5, 5, 7, 8, 9])
    event = np.array([1, 1, 1, 0, 0, 0], bool)
    x = np.array([0.0, 1, 0, 1, 1, 0])
    out = ph_test(fit_cox(time, event, x, names=["x"]), 0.05, model="toy")
    assert out["chisq"].isna().all() and not out["ph_violated"].any()


def test_global_flag_has_its_note_when_the_model_has_several_covariates():
    rng = np.random.default_rng(1)
    n = 600
    x = rng.integers(0, 2, n).astype(float)
    t = np.where(x == 1, rng.exponential(2, n), rng.weibull(3, n) * 8)
    design = pd.DataFrame({"x": x, "z": rng.normal(size=n)})
    out = ph_test(fit_cox(t, np.ones(n), design), 0.05, model="toy").set_index("term")
    assert out.loc["GLOBAL", "ph_violated"] and "global test" in out.loc["GLOBAL", "note"]

"""ml.stats.coxph: the partial-likelihood engine on its own.

Derivatives are checked against central finite differences of the engine's own value
(so a wrong gradient or tie correction cannot hide behind a wrong value), the value
against lifelines' log-likelihood and Schoenfeld residuals, and the solver's stopping states on known cases.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from lifelines import CoxPHFitter

from ml.stats import coxph


def _tied_data(n: int = 80, p: int = 3, seed: int = 0):
    """Whole-unit times (many ties, some of them between events) and uneven weights."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, p))
    time = np.ceil(rng.exponential(4.0, n))
    event = rng.random(n) < 0.7
    w = rng.uniform(0.3, 3.0, n)
    return time, event, x, w


@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_gradient_and_information_match_finite_differences(ties):
    time, event, x, w = _tied_data()
    rs = coxph.risk_sets(time, event, x, w, ties)
    assert len(rs.uniq) < rs.n_events  # the check is only worth something with tied events
    beta = np.array([0.3, -0.5, 0.2])
    at = coxph.evaluate(rs, beta)
    h = 1e-5
    steps = np.eye(3) * h
    num_grad = [(coxph.evaluate(rs, beta + s).loglik - coxph.evaluate(rs, beta - s).loglik) / (2 * h)
                for s in steps]
    num_info = -np.array([(coxph.evaluate(rs, beta + s).gradient - coxph.evaluate(rs, beta - s).gradient)
                          / (2 * h) for s in steps])
    np.testing.assert_allclose(at.gradient, num_grad, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(at.information, num_info, rtol=1e-6, atol=1e-6)


def test_efron_and_breslow_differ_only_through_ties():
    time, event, x, w = _tied_data()
    beta = np.array([0.3, -0.5, 0.2])
    tied = [coxph.evaluate(coxph.risk_sets(time, event, x, w, t), beta).loglik for t in ("efron", "breslow")]
    assert tied[0] != pytest.approx(tied[1], rel=1e-6)
    untied = time + np.random.default_rng(1).uniform(0, 0.5, len(time))
    same = [coxph.evaluate(coxph.risk_sets(untied, event, x, w, t), beta).loglik
            for t in ("efron", "breslow")]
    assert same[0] == pytest.approx(same[1], rel=1e-12)


@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_weighted_residuals_sum_to_the_gradient(ties):
    time, event, x, w = _tied_data(seed=2)
    rs = coxph.risk_sets(time, event, x, w, ties)
    at = coxph.evaluate(rs, np.array([0.4, 0.1, -0.3]), residuals=True)
    np.testing.assert_allclose((w[:, None] * at.residuals).sum(0), at.gradient, atol=1e-10)


def test_loglik_at_the_maximum_matches_lifelines():
    time, event, x, _ = _tied_data(n=150, seed=3)
    rs = coxph.risk_sets(time, event, x, np.ones(len(time)), "efron")
    fit = coxph.newton_raphson(rs, tol=1e-12)
    assert fit.status == "converged"
    df = pd.DataFrame(x, columns=["a", "b", "c"]).assign(T=time, E=event.astype(int))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = CoxPHFitter().fit(df, "T", "E", fit_options={"precision": 1e-12})
    np.testing.assert_allclose(fit.fit.gradient, 0, atol=1e-9)
    np.testing.assert_allclose(fit.coef, ref.params_.to_numpy(), atol=1e-7)  # lifelines stops a bit earlier
    at_theirs = coxph.evaluate(rs, ref.params_.to_numpy(), hessian=False)
    assert at_theirs.loglik == pytest.approx(ref.log_likelihood_, rel=1e-12)
    assert fit.fit.loglik >= at_theirs.loglik


def test_zero_weight_is_the_same_as_removing_the_row():
    time, event, x, w = _tied_data(seed=4)
    w[np.flatnonzero(event)[:5]] = 0.0  # events tied with others: Efron's d_j must not count them
    keep = w > 0
    beta = np.array([0.2, 0.2, -0.1])
    full = coxph.evaluate(coxph.risk_sets(time, event, x, w, "efron"), beta)
    kept = coxph.evaluate(coxph.risk_sets(time[keep], event[keep], x[keep], w[keep], "efron"), beta)
    assert full.loglik == pytest.approx(kept.loglik, rel=1e-12)
    np.testing.assert_allclose(full.information, kept.information, rtol=1e-12)


def test_solver_reports_separation_and_ridge_keeps_it_finite():
    time = np.arange(1.0, 41.0)
    x = (np.arange(40) % 2.0)[:, None]
    event = x[:, 0] == 0  # the x = 1 half never has an event: the MLE is -infinity
    rs = coxph.risk_sets(time, event, x, np.ones(40), "efron")
    assert coxph.newton_raphson(rs).status == "stalled"
    ridged = coxph.newton_raphson(rs, ridge=0.1)
    assert ridged.status == "converged" and -10 < ridged.coef[0] < 0
    # at the penalised optimum the gradient of log PL / W balances the ridge
    np.testing.assert_allclose(ridged.fit.gradient / rs.total_weight, 0.1 * ridged.coef, atol=1e-9)


def test_solver_flags_a_duplicated_column():
    time, event, x, w = _tied_data(seed=5)
    rs = coxph.risk_sets(time, event, np.c_[x[:, :1], x[:, :1]], w, "efron")
    assert coxph.newton_raphson(rs).singular_start
    assert not coxph.newton_raphson(coxph.risk_sets(time, event, x, w, "efron")).singular_start


def test_bad_ties_name_is_refused():
    time, event, x, w = _tied_data()
    with pytest.raises(ValueError, match="ties must be"):
        coxph.risk_sets(time, event, x, w, "exact")


@pytest.mark.parametrize("weighted", [False, True])
def test_schoenfeld_residuals_match_lifelines_on_tied_data(weighted):
    time, event, x, w = _tied_data(n=120, seed=6)
    w = w if weighted else np.ones(len(time))
    df = pd.DataFrame(x, columns=["a", "b", "c"]).assign(T=time, E=event.astype(int), w=w)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = CoxPHFitter().fit(df, "T", "E", weights_col="w")
        theirs = ref.compute_residuals(df, kind="schoenfeld")  # events in time order, ties in row order
    rs = coxph.risk_sets(time, event, x, w, "efron")
    ours = coxph.schoenfeld_residuals(rs, ref.params_.to_numpy())
    np.testing.assert_allclose(ours, theirs.to_numpy(), rtol=1e-9, atol=1e-12)

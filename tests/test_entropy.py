"""Entropy balancing: exact balance, the entropy optimality condition, a hand-solved case, R (base R
Newton on the same dual, its own design from `model.matrix`), infeasible input, and the method
switch (logistic / ebal / overlap) that hands the analysis one kind of result."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from features import schema
from ml.stats.balance_metrics import balance_metrics, term_matrix
from ml.stats.entropy import (
    BALANCE_TOLERANCE,
    confounder_design,
    design_smd,
    entropy_weights,
    estimate_entropy_balance,
    refit_entropy_weights,
)
from ml.stats.errors import CausalInputError, ExtremeWeightsWarning
from ml.stats.weight_methods import check_method, estimate_weights
from ml.stats.weighting import DEFAULT_CONFOUNDERS, IPTW, propensity_design, stratified_resample
from tests.r_oracle import needs_r, run_r


def _toy(n: int = 400, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    age = rng.normal(62, 9, n)
    brain = rng.random(n) < 0.3
    ecog = rng.choice([0, 1, 2], size=n, p=[0.5, 0.35, 0.15])
    p = 1 / (1 + np.exp(-(0.06 * (age - 62) + 0.9 * brain - 0.5 * (ecog == 2))))
    cia = rng.random(n) < p
    return pd.DataFrame({"age": age, "brain_mets": np.where(brain, "yes", "no"), "ecog": ecog,
                         "treatment": np.where(cia, schema.TREATED, schema.CONTROL)})


TOY_CONFOUNDERS = ["age", "brain_mets", "ecog"]


def _log_linear_residual(x: np.ndarray, w: np.ndarray) -> float:
    """Largest residual of log(w) regressed on (1, x): 0 for the entropy solution (w ~ exp(lambda'x))."""
    a = np.column_stack([np.ones(len(x)), x])
    coef, *_ = np.linalg.lstsq(a, np.log(w), rcond=None)
    return float(np.max(np.abs(np.log(w) - a @ coef)))


@pytest.mark.parametrize("estimand", ["ate", "att"])
def test_exact_balance_on_every_term_of_the_twin(twin_small, estimand):
    df = twin_small.data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExtremeWeightsWarning)
        res = estimate_entropy_balance(df, estimand=estimand)
    assert res.max_abs_smd < BALANCE_TOLERANCE
    # balance on every level (the references too) and every number, cobalt's SMD convention
    terms = term_matrix(df, list(res.confounders))
    table = balance_metrics(terms, res.treated, res.weights, estimand=estimand)
    assert table["smd"].abs().max() < BALANCE_TOLERANCE
    before = balance_metrics(terms, res.treated, None, estimand=estimand)
    assert before["smd"].abs().max() > 0.05  # there was something to balance


def test_weights_are_the_entropy_solution_and_on_the_iptw_scale():
    df = _toy()
    ate = estimate_entropy_balance(df, TOY_CONFOUNDERS, "ate")
    att = estimate_entropy_balance(df, TOY_CONFOUNDERS, "att")
    x = confounder_design(df, TOY_CONFOUNDERS)[1].to_numpy()
    t = ate.treated
    for mask in (t, ~t):  # ATE: each group's log-weights are affine in its design rows
        assert _log_linear_residual(x[mask], ate.weights[mask]) < 1e-8
        assert ate.weights[mask].sum() == pytest.approx(mask.sum())
    assert np.all(att.weights[t] == 1.0)
    assert att.weights[~t].sum() == pytest.approx(t.sum())
    assert _log_linear_residual(x[~t], att.weights[~t]) < 1e-8
    # the targets: ATE the overall means, ATT the treated means
    np.testing.assert_allclose(np.average(x[~t], axis=0, weights=ate.weights[~t]), x.mean(axis=0),
                               atol=1e-9)
    np.testing.assert_allclose(np.average(x[~t], axis=0, weights=att.weights[~t]),
                               x[t].mean(axis=0), atol=1e-9)


def test_hand_solved_three_point_problem():
    # controls at x = 0, 1, 2, treated mean 0.5 (ATT): w ~ (1, r, r^2) with
    # (r + 2 r^2) / (1 + r + r^2) = 0.5  <=>  1.5 r^2 + 0.5 r - 0.5 = 0  <=>  r = (-0.5 + sqrt(3.25)) / 3
    x = np.array([[0.0], [1.0], [2.0], [0.0], [1.0]])
    t = np.array([False, False, False, True, True])
    w, _ = entropy_weights(x, t, "att")
    r = (-0.5 + np.sqrt(3.25)) / 3
    expected = np.array([1, r, r**2]) / (1 + r + r**2) * 2  # controls sum to the 2 treated
    np.testing.assert_allclose(w[~t], expected, rtol=1e-10)
    np.testing.assert_array_equal(w[t], 1.0)


def test_already_balanced_groups_keep_equal_weights():
    x = np.array([[0.0, 1.0], [2.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [2.0, 0.0]])
    t = np.array([True, True, True, False, False, False])  # equal means in both groups
    w, _ = entropy_weights(x, t, "ate")
    np.testing.assert_allclose(w, 1.0, atol=1e-12)


@pytest.mark.slow
@needs_r()
def test_weights_match_a_base_r_newton_solution_of_the_dual():
    df = _toy(300, seed=8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExtremeWeightsWarning)
        ate = estimate_entropy_balance(df, TOY_CONFOUNDERS, "ate").weights
        att = estimate_entropy_balance(df, TOY_CONFOUNDERS, "att").weights
    script = """
    X <- model.matrix(~ age + brain_mets + factor(ecog), data = d)[, -1]
    t <- d$treatment == "CIA"
    ebal <- function(x, target) {
      c <- sweep(x, 2, target)
      lam <- rep(0, ncol(c))
      for (i in 1:100) {
        w <- exp(c %*% lam); w <- as.vector(w / sum(w))
        g <- colSums(w * c)
        if (max(abs(g)) < 1e-13) break
        H <- crossprod(c, w * c) - tcrossprod(g)
        lam <- lam - solve(H, g)
      }
      w
    }
    w <- rep(1, nrow(X))
    w[t] <- ebal(X[t, ], colMeans(X)) * sum(t); w[!t] <- ebal(X[!t, ], colMeans(X)) * sum(!t)
    emit("ate", w)
    w <- rep(1, nrow(X)); w[!t] <- ebal(X[!t, ], colMeans(X[t, ])) * sum(t)
    emit("att", w)
    """
    r = run_r(script, d=df)
    np.testing.assert_allclose(ate, r["ate"], rtol=1e-7)
    np.testing.assert_allclose(att, r["att"], rtol=1e-7)


def test_a_level_absent_from_one_group_is_named():
    df = _toy()
    df.loc[df["treatment"] == schema.CONTROL, "ecog"] = np.where(
        df.loc[df["treatment"] == schema.CONTROL, "ecog"] == 2, 1,
        df.loc[df["treatment"] == schema.CONTROL, "ecog"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the separation warning of the level in one group
        with pytest.raises(CausalInputError, match=r"infeasible.*'ecog' \(term ecog=2\).*CI group"):
            estimate_entropy_balance(df, TOY_CONFOUNDERS, "ate")


def test_a_level_only_controls_have_makes_att_infeasible():
    # ATT: the treated mean of ecog=2 is 0, so controls with ECOG 2 would need weight 0
    df = _toy()
    treated = df["treatment"] == schema.TREATED
    df.loc[treated & (df["ecog"] == 2), "ecog"] = 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(CausalInputError, match=r"'ecog' \(term ecog=2\).*edge.*the CI group"):
            estimate_entropy_balance(df, TOY_CONFOUNDERS, "att")
        # ATE: the treated cannot reach the overall share of ECOG 2 either
        with pytest.raises(CausalInputError, match=r"'ecog' \(term ecog=2\).*edge.*the CIA group"):
            estimate_entropy_balance(df, TOY_CONFOUNDERS, "ate")


def test_a_target_outside_the_convex_hull_is_a_clear_error():
    # controls lie on the line x2 = x1, the treated mean does not: each range holds the target,
    # the hull does not
    x = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [0.0, 2.0], [2.0, 0.5]])
    t = np.array([False, False, False, True, True])
    with pytest.raises(CausalInputError, match="did not converge for the control group.*'a'"):
        entropy_weights(x, t, "att", terms=["a", "b"], labels=("treated", "control"))


def test_bad_estimand_is_refused():
    with pytest.raises(ValueError, match="estimand"):
        estimate_entropy_balance(_toy(), TOY_CONFOUNDERS, "ato")


def test_refit_on_a_bootstrap_resample_balances_it():
    df = _toy()
    res = estimate_entropy_balance(df, TOY_CONFOUNDERS, "ate")
    design = propensity_design(res, df)  # the stored preprocessor gives the design back
    idx = stratified_resample(res.treated, np.random.default_rng(0))
    w = refit_entropy_weights(design[idx], res.treated[idx], "ate")
    assert np.max(np.abs(design_smd(design[idx], res.treated[idx], w))) < BALANCE_TOLERANCE


# --- one entry point for the methods -------------------------------------------------------------


def test_method_switch_returns_the_same_kind_of_result():
    df = _toy()
    fields = set(IPTW.__dataclass_fields__)
    for method, estimand in (("logistic", "ATE"), ("ebal", "att"), ("overlap", "ATO")):
        res = estimate_weights(df, TOY_CONFOUNDERS, method=method, estimand=estimand)
        assert fields <= set(type(res).__dataclass_fields__)
        assert len(res.weights) == len(df) and np.all(res.weights > 0)
        assert set(res.diagnostics["group"]) == {schema.TREATED, schema.CONTROL, "all"}
    ebal = estimate_weights(df, TOY_CONFOUNDERS, method="ebal")
    assert ebal.propensity is None and ebal.method == "ebal"


def test_overlap_weights_balance_the_design_means_exactly():
    # Li, Morgan & Zaslavsky 2018: the logistic score equations make overlap weights balance
    # every term of the propensity model exactly, up to the logistic solver's tolerance (1e-4)
    df = _toy()
    res = estimate_weights(df, TOY_CONFOUNDERS, method="overlap", estimand="ato")
    assert res.estimand == "overlap"
    x = propensity_design(res, df)
    assert np.max(np.abs(design_smd(x, res.treated, np.ones(len(df))))) > 0.1
    assert np.max(np.abs(design_smd(x, res.treated, res.weights))) < 1e-5
    logistic = estimate_weights(df, TOY_CONFOUNDERS, method="logistic", estimand="ato")
    np.testing.assert_allclose(logistic.weights, res.weights)


@pytest.mark.parametrize("method, estimand, message", [
    ("ebal", "ato", "cannot target estimand 'ato'"),
    ("overlap", "ate", "cannot target estimand 'ate'"),
    ("cbps", "ate", "unknown weighting method 'cbps'"),
])
def test_method_and_estimand_that_do_not_fit_are_named(method, estimand, message):
    with pytest.raises(ValueError, match=message):
        check_method(method, estimand)


def test_truncating_entropy_weights_is_refused():
    with pytest.raises(ValueError, match="truncate cannot be combined with method 'ebal'"):
        estimate_weights(_toy(), TOY_CONFOUNDERS, method="ebal", truncate=(1, 99))


def test_default_confounders_are_the_propensity_models():
    # the design is the propensity model's: same terms, same order
    from ml.stats.weighting import estimate_iptw

    df = _toy()
    iptw = estimate_iptw(df, TOY_CONFOUNDERS)
    _, design = confounder_design(df, TOY_CONFOUNDERS)
    assert list(design.columns) == list(iptw.model.named_steps["pre"].get_feature_names_out())
    assert set(TOY_CONFOUNDERS) <= set(DEFAULT_CONFOUNDERS)

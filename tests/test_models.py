"""Model-specific behaviour and known answers (lifelines, scikit-survival).

The properties every registered model shares (clone, not-fitted error, feature names,
curves, risk order, weights, score) are in `test_estimator_contract.py`.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import xgboost
from lifelines import CoxPHFitter
from sksurv.datasets import load_whas500
from sksurv.linear_model import CoxnetSurvivalAnalysis
from sksurv.util import Surv

from features import datasets
from ml import models
from ml.models.cox import DEFAULT_RIDGE, SeparationWarning

FAST = {"rsf": {"n_estimators": 15}, "gbsa": {"n_estimators": 30}, "xgb_cox": {"n_estimators": 30},
        "xgb_aft": {"n_estimators": 30}}


@pytest.fixture(scope="module")
def twin_xy():
    data = datasets.twin(n=300, seed=11)
    pre = models.make_pipeline("cox", data.spec)[0]
    X = pre.fit_transform(data.X.iloc[:200])
    return X, data.y[:200], data.treatment_column


def _fit(name, X, y, w=None, **extra):
    est = models.make_estimator(name, random_state=0, treatment_column="treatment=CIA",
                                **{**FAST.get(name, {}), **extra})
    return est.fit(X, y, sample_weight=w)


@pytest.mark.parametrize("name,extra", [
    ("cox", {}), ("coxnet", {}), ("iptw_cox", {"truncate": None}), ("gbsa", {"subsample": 1.0}),
    ("xgb_cox", {"tree_method": "exact", "subsample": 1.0, "colsample_bytree": 1.0}),
    ("xgb_aft", {"tree_method": "exact", "subsample": 1.0, "colsample_bytree": 1.0}),
])
def test_zero_weight_is_the_same_as_removing_the_row(twin_xy, name, extra):
    """Weights enter the likelihood itself (weighted risk sets), not only per-row gradients."""
    X, y, _ = twin_xy
    keep = np.random.default_rng(5).random(len(y)) > 0.25
    weighted = _fit(name, X, y, keep.astype(float), **extra).predict(X[keep])
    removed = _fit(name, X[keep], y[keep], **extra).predict(X[keep])
    assert np.allclose(weighted, removed, atol=1e-6)


def test_pipeline_exposes_preprocessor_and_library_model():
    data = datasets.twin(n=300, seed=11)
    pipe = models.fit_full("xgb_cox", data.spec, data.X, data.y, random_state=0, n_estimators=10)
    assert set(pipe.named_steps) == {"pre", "model"}
    assert pipe.preprocessor_.transform(data.X.iloc[:2]).shape[0] == 2
    assert hasattr(pipe.model_, "booster_")
    curves = pipe.predict_survival_function(data.X.iloc[:5], return_array=True)
    assert curves.shape[0] == 5


def test_registry_rejects_unknown_names_and_needs_treatment_for_iptw():
    with pytest.raises(ValueError, match="unknown model"):
        models.make_estimator("deepsurv")
    with pytest.raises(models.SurvivalInputError, match="treatment"):
        models.make_estimator("iptw_cox")
    assert models.make_estimator("coxnet", alpha=0.3).alpha == 0.3


# ------------------------------------------------------------------ known answers


@pytest.fixture(scope="module")
def whas():
    X, y = load_whas500()
    X = X.select_dtypes("number").astype(float)
    X = (X - X.mean()) / X.std()
    return X, y


def _lifelines(X, y, weights=None):
    df = X.copy()
    df["T"], df["E"] = y["lenfol"], y["fstat"].astype(int)
    if weights is not None:
        df["w"] = weights
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return CoxPHFitter().fit(df, "T", "E", weights_col="w" if weights is not None else None)


def test_cox_matches_lifelines_with_ties_and_weights(whas):
    X, y = whas
    assert len(np.unique(y["lenfol"])) < len(y)  # tied times: Efron's correction matters
    w = np.random.default_rng(1).uniform(0.2, 3.0, len(y))
    ours = models.CoxPH(alpha=0.0).fit(X, y)
    ours_w = models.CoxPH(alpha=0.0).fit(X, y, sample_weight=w)
    assert np.allclose(ours.coef_, _lifelines(X, y).params_.to_numpy(), atol=1e-6)
    assert np.allclose(ours_w.coef_, _lifelines(X, y, w).params_.to_numpy(), atol=1e-6)
    # Breslow baseline survival against lifelines' at the same times
    ll = _lifelines(X, y)
    times = np.unique(y["lenfol"][y["fstat"]]).astype(float)[[5, 50, 150]]  # lifelines interpolates between
    theirs = ll.predict_survival_function(X.iloc[:3], times=times).to_numpy().T
    mine = np.vstack([f(times) for f in ours.predict_survival_function(X.iloc[:3])])
    assert np.allclose(mine, theirs, atol=1e-6)


def test_cox_weights_are_scale_free(whas):
    X, y = whas
    w = np.random.default_rng(2).uniform(0.5, 2.0, len(y))
    a = models.CoxPH().fit(X, y, sample_weight=w).coef_
    b = models.CoxPH().fit(X, y, sample_weight=7.5 * w).coef_
    assert np.allclose(a, b, atol=1e-8)


def test_coxnet_matches_scikit_survival(whas):
    X, y = whas
    for alpha, l1 in ((0.05, 0.5), (0.02, 1.0), (0.1, 0.1)):
        theirs = CoxnetSurvivalAnalysis(alphas=[alpha], l1_ratio=l1, tol=1e-10, max_iter=100000).fit(X, y)
        ours = models.Coxnet(alpha=alpha, l1_ratio=l1, ties="breslow").fit(X, y)
        assert np.allclose(ours.coef_, theirs.coef_.ravel(), atol=2e-4), (alpha, l1)
    lasso = models.Coxnet(alpha=0.1, l1_ratio=1.0).fit(X, y)
    assert (lasso.coef_ == 0).any()  # the L1 part gives exact zeros


def test_xgb_cox_predict_is_the_log_hazard_margin(twin_xy):
    X, y, _ = twin_xy
    est = _fit("xgb_cox", X, y)
    margin = est.booster_.predict(xgboost.DMatrix(X.to_numpy(np.float32), feature_names=list(X.columns)),
                                  output_margin=True)
    assert np.allclose(est.predict(X), margin, atol=1e-5)
    aft = _fit("xgb_aft", X, y)
    log_time = aft.booster_.predict(xgboost.DMatrix(X.to_numpy(np.float32), feature_names=list(X.columns)),
                                    output_margin=True)
    assert np.allclose(aft.predict(X), -log_time, atol=1e-5)


def test_iptw_cox_fits_its_propensity_on_the_rows_it_is_given(twin_xy):
    X, y, treatment = twin_xy
    est = _fit("iptw_cox", X.iloc[:120], y[:120])
    assert len(est.iptw_) == 120 and est.propensity_model_.n_features_in_ == X.shape[1] - 1
    treated = X[treatment].to_numpy()[:120] > 0.5
    assert np.isclose(np.sum(est.iptw_[treated]) / np.sum(est.iptw_), treated.mean(), atol=0.15)
    with pytest.raises(models.SurvivalInputError, match="no treatment column"):
        _fit("iptw_cox", X.drop(columns=[treatment]), y)


def test_models_refuse_data_without_events(twin_xy):
    X, y, _ = twin_xy
    y0 = y.copy()
    y0["event"] = False
    for name in models.MODEL_NAMES:
        with pytest.raises(models.SurvivalInputError, match="no events"):
            _fit(name, X, y0)


def test_rsf_bins_training_times_within_the_follow_up(twin_xy):
    X, y, _ = twin_xy
    binned = _fit("rsf", X, y, max_times=20)
    assert len(binned.unique_times_) <= 20
    assert binned.unique_times_.max() == y["time"].max() and binned.unique_times_.min() >= y["time"].min()
    exact = _fit("rsf", X, y, max_times=None)
    assert np.array_equal(exact.unique_times_, np.unique(y["time"]))


def test_cox_default_ridge_keeps_a_separated_fit_finite_and_alpha_0_warns():
    rng = np.random.default_rng(4)
    n = 120
    rare = np.zeros(n)
    rare[:6] = 1.0
    X = pd.DataFrame({"a": rng.normal(size=n), "rare": rare})
    event = rng.random(n) < 0.7
    event[:6] = False  # the rare level never has an event: its MLE is -infinity
    y = Surv.from_arrays(event=event, time=rng.exponential(10, n) + 0.1)
    with pytest.warns(SeparationWarning, match="rare"):
        plain = models.CoxPH(alpha=0.0).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SeparationWarning)
        default = models.CoxPH().fit(X, y)
    assert default.alpha == DEFAULT_RIDGE > 0 and models.make_estimator("cox").alpha == DEFAULT_RIDGE
    assert abs(plain.coef_[1]) > 10 and abs(default.coef_[1]) < 5
    assert np.all(np.isfinite(default.predict(X)))


def test_cox_default_ridge_barely_moves_a_well_posed_fit(whas):
    X, y = whas
    plain, default = models.CoxPH(alpha=0.0).fit(X, y), models.CoxPH().fit(X, y)
    assert np.allclose(default.coef_, plain.coef_, atol=0.05)  # standardised columns, log-HR scale
    assert np.linalg.norm(default.coef_) < np.linalg.norm(plain.coef_)  # a ridge shrinks the whole vector
    assert models.IPTWCox().alpha == DEFAULT_RIDGE


def test_xgboost_models_take_feature_names_xgboost_itself_refuses(twin_xy):
    """Category labels of any spelling (`pdl1=<1%`, brackets) reach the boosters by position;
    the wrapper keeps the user's names and still matches columns by name."""
    X, y, _ = twin_xy
    odd = X.rename(columns={X.columns[0]: "pdl1=<1%", X.columns[1]: "dose[mg]", X.columns[2]: "stage]"})
    for name in ("xgb_cox", "xgb_aft"):
        est = _fit(name, odd, y)
        assert list(est.feature_names_in_) == list(odd.columns)
        assert np.allclose(est.predict(odd), _fit(name, X, y).predict(X))  # names never enter the fit
        assert np.allclose(est.predict(odd[odd.columns[::-1]]), est.predict(odd))  # realigned by name


def test_iptw_cox_weights_are_the_analysis_weights():
    """Same confounders, same rows: the benchmark's IPTW Cox fits the analysis's propensity model
    (unpenalised MLE) and weights with the analysis's defaults (ATE, stabilized, no truncation)."""
    from ml.stats.weighting import DEFAULT_CONFOUNDERS, estimate_iptw
    from ml.workflows.analysis_config import AnalysisConfig

    defaults = models.IPTWCox()
    config = AnalysisConfig()
    assert (defaults.estimand, defaults.stabilized, defaults.truncate, defaults.propensity_C) == (
        config.estimand, config.stabilized, config.truncation, None)
    data = datasets.twin(n=300, seed=11)
    X = models.make_pipeline("cox", data.spec)[0].fit_transform(data.X)
    est = _fit("iptw_cox", X, data.y, confounders=DEFAULT_CONFOUNDERS)
    analysis = estimate_iptw(data.frame)
    np.testing.assert_allclose(est.iptw_, analysis.weights, rtol=1e-8)

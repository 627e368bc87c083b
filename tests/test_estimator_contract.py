"""The scikit-learn / scikit-survival contract, checked on EVERY model of `ml.models.REGISTRY`.

In the spirit of scikit-survival's `test_common.py`: a model added to the registry is
checked here without writing a test for it. Each model is fitted once per module on a
small fixed twin (few trees, so the whole file stays fast).
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from scipy.stats import spearmanr
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.estimator_checks import check_param_validation
from sksurv.metrics import concordance_index_censored

from features import datasets
from ml import models

NAMES = list(models.REGISTRY)
FAST = {"rsf": {"n_estimators": 10}, "gbsa": {"n_estimators": 20}, "xgb_cox": {"n_estimators": 20},
        "xgb_aft": {"n_estimators": 20}, "cox_ridge_cv": {"cv": 5}}
# proportional hazards: one risk order at every time; the others share only the direction
PROPORTIONAL_HAZARDS = {"cox", "cox_ridge_cv", "iptw_cox", "coxnet", "gbsa", "xgb_cox"}
# deterministic fits whose weights enter the likelihood: weight k == the row written k times,
# with Breslow ties (Efron's correction counts a written-out copy as a tied event) and, for
# IPTW, untruncated weights (a weighted percentile is not the percentile of the copies)
DUPLICATION_EXACT = {"cox": {"ties": "breslow"}, "coxnet": {"ties": "breslow"},
                     "iptw_cox": {"ties": "breslow", "truncate": None}}


def make(name: str, treatment_column: str | None):
    """The registry's unfitted model, made small with set_params (as a tuner would)."""
    est = models.make_estimator(name, random_state=0, treatment_column=treatment_column)
    return est.set_params(**FAST.get(name, {}))


@pytest.fixture(scope="module")
def cohort():
    """(raw X, preprocessed X, y, spec, treatment column) of a 200-patient twin."""
    data = datasets.twin(n=200, seed=11)
    pre = models.make_pipeline("cox", data.spec)[0]
    return data.X, pre.fit_transform(data.X), data.y, data.spec, data.treatment_column


@pytest.fixture(scope="module")
def fitted(cohort):
    """Every registry model fitted once on the preprocessed cohort."""
    _, Xt, y, _, treatment = cohort
    out = {}
    for name in NAMES:
        est = make(name, treatment)
        assert est.fit(Xt, y) is est  # fit returns self
        out[name] = est
    return out


@pytest.fixture(scope="module")
def pipelines(cohort):
    """Every registry model inside the pipeline built by `ml.models.make_pipeline`, fitted on raw X."""
    X, _, y, spec, treatment = cohort
    return {name: models.make_pipeline(name, spec, random_state=0, treatment_column=treatment,
                                       **FAST.get(name, {})).fit(X, y) for name in NAMES}


@pytest.mark.parametrize("name", NAMES)
def test_clone_get_set_params_round_trip(cohort, fitted, name):
    est = fitted[name]
    params = est.get_params()
    twin = clone(est)
    assert type(twin) is type(est) and twin.get_params() == params
    assert twin.set_params(**params) is twin and twin.get_params() == params
    with pytest.raises(NotFittedError):
        twin.predict(cohort[1])  # clone copies the parameters, never the fit
    with pytest.raises(TypeError):
        type(est)(*params.values())  # parameters are keyword-only


@pytest.mark.parametrize("name", NAMES)
def test_invalid_parameters_are_refused_when_fit_starts(cohort, name):
    # every parameter has a constraint, and a bad type or value raises InvalidParameterError
    est = make(name, cohort[4])
    check_param_validation(type(est).__name__, est)


@pytest.mark.parametrize("name", NAMES)
def test_unfitted_model_and_pipeline_raise_not_fitted_error(cohort, name):
    X, Xt, _, spec, treatment = cohort
    est = make(name, treatment)
    for method in (est.predict, est.predict_survival_function, est.predict_cumulative_hazard_function):
        with pytest.raises(NotFittedError):
            method(Xt)
    with pytest.raises(NotFittedError):
        models.make_pipeline(name, spec, treatment_column=treatment).predict(X)


@pytest.mark.parametrize("name", NAMES)
def test_reordered_columns_give_the_same_risks_and_curves(cohort, fitted, pipelines, name):
    X, Xt, *_ = cohort
    for model, frame in ((fitted[name], Xt), (pipelines[name], X)):
        shuffled = frame[frame.columns[::-1]]
        assert np.array_equal(model.predict(shuffled), model.predict(frame))
        assert np.array_equal(model.predict_survival_function(shuffled, return_array=True),
                              model.predict_survival_function(frame, return_array=True))


@pytest.mark.parametrize("name", NAMES)
def test_missing_or_unexpected_columns_are_refused_by_name(cohort, fitted, pipelines, name):
    X, Xt, *_ = cohort
    for model, frame in ((fitted[name], Xt), (pipelines[name], X)):
        dropped = frame.columns[1]
        with pytest.raises(ValueError, match=re.escape(str(dropped))):
            model.predict(frame.drop(columns=[dropped]))
        with pytest.raises(ValueError, match="surprise"):
            model.predict_survival_function(frame.assign(surprise=1.0))


@pytest.mark.parametrize("name", NAMES)
def test_curves_are_probabilities_non_increasing_from_one(cohort, fitted, name):
    Xt = cohort[1].iloc[:40]
    est = fitted[name]
    surv = est.predict_survival_function(Xt, return_array=True)
    assert surv.shape == (40, len(est.unique_times_))
    assert np.all((surv >= 0) & (surv <= 1))
    assert np.all(np.diff(surv, axis=1) <= 1e-12)
    functions = est.predict_survival_function(Xt.iloc[:2])
    assert np.isclose(functions[0](0.0), 1.0)
    assert np.allclose(functions[1](est.unique_times_), surv[1])


@pytest.mark.parametrize("name", NAMES)
def test_higher_risk_means_lower_survival(cohort, fitted, name):
    _, Xt, y, *_ = cohort
    est = fitted[name]
    surv = est.predict_survival_function(Xt, return_array=True)
    mid = np.searchsorted(est.unique_times_, np.median(y["time"]))
    rho = spearmanr(est.predict(Xt), surv[:, mid]).statistic
    assert rho < (-0.999 if name in PROPORTIONAL_HAZARDS else -0.8)


@pytest.mark.parametrize("name", NAMES)
def test_sample_weights_are_used(cohort, fitted, name):
    _, Xt, y, _, treatment = cohort
    w = np.random.default_rng(3).integers(1, 4, len(y))
    weighted = clone(fitted[name]).fit(Xt, y, sample_weight=w)
    assert np.max(np.abs(weighted.predict(Xt) - fitted[name].predict(Xt))) > 1e-3
    if name in DUPLICATION_EXACT:
        exact = clone(fitted[name]).set_params(**DUPLICATION_EXACT[name])
        rows = np.repeat(np.arange(len(y)), w)
        duplicated = clone(exact).fit(Xt.iloc[rows], y[rows]).predict(Xt)
        assert np.allclose(exact.fit(Xt, y, sample_weight=w).predict(Xt), duplicated, atol=1e-8)


@pytest.mark.parametrize("name", NAMES)
def test_score_is_harrells_c_of_the_risk(cohort, fitted, pipelines, name):
    X, Xt, y, *_ = cohort
    est = fitted[name]
    harrell = concordance_index_censored(y["event"], y["time"], est.predict(Xt))[0]
    assert 0.0 <= est.score(Xt, y) <= 1.0
    assert est.score(Xt, y) == pytest.approx(harrell)
    assert pipelines[name].score(X, y) == pytest.approx(
        concordance_index_censored(y["event"], y["time"], pipelines[name].predict(X))[0])

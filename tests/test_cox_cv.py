"""CoxPHCV: the ridge Cox whose penalty is chosen by cross-validated partial likelihood.

The CVPL is checked against R: for each left-out row i, b_(-i) is fitted by CoxPH (another
Newton code than CoxPHCV's warm-started one) and the log partial likelihoods l(b_(-i)) of all
rows and l_(-i)(b_(-i)) of the others are R's `coxph(..., init = b, iter.max = 0)$loglik`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from features import datasets
from ml import models
from ml.models import CoxPH, CoxPHCV
from ml.models.cox_cv import AUTO_FOLDS, LOO_MAX_ROWS
from tests.r_oracle import needs_r, run_r


@pytest.fixture(scope="module")
def small():
    """A 30-patient twin, preprocessed, four columns (the CVPL check runs 60 R fits)."""
    data = datasets.twin(n=30, seed=5)
    Xt = models.make_pipeline("cox", data.spec)[0].fit_transform(data.X)
    return Xt.iloc[:, :4], data.y


@pytest.fixture(scope="module")
def default_twin():
    data = datasets.twin()
    return models.make_pipeline("cox", data.spec)[0].fit_transform(data.X), data.y


@pytest.mark.slow
@needs_r("survival")
def test_leave_one_out_cvpl_equals_r_partial_likelihoods(small):
    X, y = small
    alpha = 0.05
    est = CoxPHCV(alphas=[alpha]).fit(X, y)
    assert est.cv_folds_ == len(y)
    betas = [CoxPH(alpha=alpha, tol=1e-12).fit(X.drop(index=X.index[i]), y[np.arange(len(y)) != i]).coef_
             for i in range(len(y))]
    frame = X.reset_index(drop=True).set_axis([f"x{j}" for j in range(X.shape[1])], axis=1)
    frame = frame.assign(time=y["time"], event=y["event"].astype(int))
    coefs = pd.DataFrame(betas, columns=[f"b{j}" for j in range(X.shape[1])])
    r = run_r("""
f <- as.formula(paste("Surv(time, event) ~", paste(grep("^x", names(d), value = TRUE), collapse = " + ")))
ll <- function(data, b) coxph(f, data = data, ties = "efron", init = b,
                              control = coxph.control(iter.max = 0))$loglik[1]
for (i in seq_len(nrow(B))) {
  b <- as.numeric(B[i, ])
  emit("full", ll(d, b)); emit("rest", ll(d[-i, ], b))
}
""", d=frame, B=coefs)
    expected = -2 * np.sum(r["full"] - r["rest"]) / len(y)
    assert est.cv_deviance_[0] == pytest.approx(expected, rel=1e-7)


def test_alpha_minimises_the_cv_deviance_and_the_final_fit_is_coxph_at_alpha(default_twin):
    X, y = default_twin
    est = CoxPHCV(cv=10, random_state=0).fit(X, y)
    assert est.alpha_ == est.alphas_[np.argmin(est.cv_deviance_)] == est.alpha
    assert 0 < np.argmin(est.cv_deviance_) < len(est.alphas_) - 1  # an interior minimum on the twin
    plain = CoxPH(alpha=est.alpha_).fit(X, y)
    assert np.array_equal(est.coef_, plain.coef_)
    assert np.array_equal(est.cum_baseline_hazard_, plain.cum_baseline_hazard_)
    assert np.array_equal(est.predict_survival_function(X, return_array=True),
                          plain.predict_survival_function(X, return_array=True))
    # shrinks the overfit default: smaller coefficients than CoxPH's tiny ridge
    assert np.linalg.norm(est.coef_) < 0.8 * np.linalg.norm(CoxPH().fit(X, y).coef_)
    assert est.cv_deviance_se_.shape == est.alphas_.shape and np.all(est.cv_deviance_se_ > 0)


def test_folds_are_seeded_and_the_weights_scale_is_irrelevant(default_twin):
    X, y = default_twin
    a = CoxPHCV(cv=5, random_state=3).fit(X, y)
    b = clone(a).fit(X, y)
    assert np.array_equal(a.cv_deviance_, b.cv_deviance_)
    c = CoxPHCV(cv=5, random_state=4).fit(X, y)
    assert not np.array_equal(a.cv_deviance_, c.cv_deviance_)
    w = np.random.default_rng(1).uniform(0.5, 2.0, len(y))
    one = CoxPHCV(cv=5, random_state=3).fit(X, y, sample_weight=w)
    three = CoxPHCV(cv=5, random_state=3).fit(X, y, sample_weight=3 * w)
    assert one.alpha_ == three.alpha_
    # the log PL with weights c*w is c times that with w plus a constant in b: per unit weight, the
    # curve is shifted, its shape (and minimum) the same
    assert np.allclose(one.cv_deviance_ - one.cv_deviance_[0], three.cv_deviance_ - three.cv_deviance_[0],
                       atol=1e-9)
    assert np.allclose(one.coef_, three.coef_, atol=1e-9)


def test_default_folds_leave_one_out_on_small_data_and_k_fold_above():
    small = datasets.twin(n=60, seed=2)
    large = datasets.twin(n=LOO_MAX_ROWS + 40, seed=2)
    grid = [0.01, 0.1]
    fitted_small = models.fit_full("cox_ridge_cv", small.spec, small.X, small.y, alphas=grid)
    fitted_large = models.fit_full("cox_ridge_cv", large.spec, large.X, large.y, alphas=grid, random_state=0)
    assert fitted_small.model_.cv_folds_ == 60
    assert fitted_large.model_.cv_folds_ == AUTO_FOLDS


def test_bad_grid_is_refused_by_name(default_twin):
    X, y = default_twin
    with pytest.raises(ValueError, match="alphas"):
        CoxPHCV(alphas=[0.1, -1.0]).fit(X, y)


@pytest.mark.slow
def test_score_and_serve_default_to_the_cross_validated_ridge_cox():
    from ml.serving import resolve

    assert resolve.DEFAULT_REGISTERED_NAME == "rechallenge-pfs-cox_ridge_cv"
    scorer = resolve.fit_scorer(data=datasets.twin(n=60, seed=2))
    assert isinstance(scorer.pipeline.model_, CoxPHCV) and scorer.pipeline.model_.alpha_ > 0


def test_copies_of_a_row_are_held_out_together(small):
    X, y = small
    rows = np.r_[np.arange(len(y)), np.arange(10)]  # the first ten rows twice, as in a bootstrap resample
    est = CoxPHCV(alphas=[0.05]).fit(X.iloc[rows], y[rows])
    assert est.cv_folds_ == len(y)  # leave-one-group-out: a copy never stays in the training rows
    kfold = CoxPHCV(alphas=[0.05], cv=5, random_state=0).fit(X.iloc[rows], y[rows])
    assert kfold.cv_folds_ == 5

"""ml.evaluation: metrics against hand computations, IPCW edge cases, resampling, the corrected t
interval, and the one fit-and-score loop (fold order of parallel folds, notes, failures)."""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sksurv.util import Surv

from ml.evaluation import folds as F
from ml.evaluation import loop as L
from ml.evaluation import metrics as E
from ml.evaluation.parallel import map_folds
from ml.models import CoxPH


def _y(time, event):
    return Surv.from_arrays(np.asarray(event, dtype=bool), np.asarray(time, dtype=float))


@pytest.fixture(scope="module")
def simulated():
    """400 rows from a known PH model: covariate x, linear predictor lp, the true curves on a grid."""
    rng = np.random.default_rng(1)
    lp = rng.normal(0, 1, 400)
    t = rng.exponential(np.exp(-lp) * 10)
    c = rng.uniform(0, 30, 400)
    grid = np.linspace(0.05, 30, 200)
    return {"X": pd.DataFrame({"x": lp}), "lp": lp, "y": _y(np.minimum(t, c), t <= c), "grid": grid,
            "surv": np.exp(-np.outer(np.exp(lp), grid) / 10)}


def test_harrell_c_by_hand():
    y = _y([1.0, 2.0, 3.0, 4.0], [True, True, False, True])
    risk = np.array([4.0, 1.0, 2.0, 3.0])
    # comparable (i earlier event, j later): (1,2) (1,3) (1,4) (2,3) (2,4) -> concordant if risk_i > risk_j
    concordant = [4 > 1, 4 > 2, 4 > 3, 1 > 2, 1 > 3]
    fs = E.score_fold(y, y, risk, horizons={"a": 2.5}, tau=10.0, calibration_horizon="a")
    assert fs.metrics["harrell_c"] == pytest.approx(sum(concordant) / len(concordant))


def test_calibration_table_observed_is_kaplan_meier_by_hand():
    y = _y([1, 2, 3, 4, 5, 6], [1, 0, 1, 1, 0, 1])
    # KM at 3.5: 1 * (1 - 1/6) * (1 - 1/4) = 0.625 (the censoring at 2 only shrinks the risk set)
    s_h = np.array([0.1, 0.2, 0.5, 0.6, 0.9, 0.95])
    assert E.calibration_table(y, s_h, 3.5, n_groups=2).shape[0] == 2
    one = E.calibration_table(y, s_h, 3.5, n_groups=1)
    assert one.loc[0, "observed"] == pytest.approx(5 / 6 * 3 / 4)
    table = E.calibration_table(y, s_h, 3.5, n_groups=3)
    assert list(table["n"]) == [2, 2, 2]
    assert table["predicted"].tolist() == pytest.approx([0.15, 0.55, 0.925])
    assert table.loc[0, "observed"] == pytest.approx(0.5)  # group 1 = lowest S = highest risk: rows 1-2


def test_corrected_t_by_hand():
    v = np.array([0.70, 0.72, 0.68, 0.75, 0.71])
    mean, lo, hi = E.corrected_t_ci(v, n_train=80, n_test=20)
    half = stats.t.ppf(0.975, 4) * math.sqrt(v.var(ddof=1) * (1 / 5 + 20 / 80))
    assert (mean, lo, hi) == pytest.approx((v.mean(), v.mean() - half, v.mean() + half))
    naive = stats.t.ppf(0.975, 4) * v.std(ddof=1) / math.sqrt(5)
    assert hi - mean > naive  # the correction widens the naive interval
    assert math.isnan(E.corrected_t_ci([0.7], 80, 20)[1])


def test_curves_are_read_as_right_continuous_steps():
    times = np.array([1.0, 2.0, 4.0])
    surv = np.array([[0.9, 0.7, 0.4]])
    assert E.curves_at(surv, times, [0.5, 1.0, 1.5, 2.0, 3.9, 10.0]).ravel().tolist() == \
        [1.0, 0.9, 0.9, 0.7, 0.7, 0.4]


def test_tau_is_capped_and_test_times_beyond_training_follow_up_are_handled():
    rng = np.random.default_rng(0)
    train = _y(rng.uniform(1, 10, 60), rng.random(60) < 0.6)
    test = _y(np.r_[rng.uniform(1, 10, 19), 25.0], np.r_[rng.random(19) < 0.6, True])
    risk = -test["time"] + rng.normal(0, 1, 20)
    fs = E.score_fold(train, test, risk, horizons={"h": 5.0}, tau=30.0, calibration_horizon="h")
    assert np.isfinite(fs.metrics["uno_c"]) and np.isfinite(fs.metrics["auc_h"])
    assert any("capped" in n for n in fs.notes)
    assert E.fold_tau(train, 30.0) < train["time"].max()


def test_score_fold_with_curves_gives_every_metric(simulated):
    y, lp, surv, grid = simulated["y"], simulated["lp"], simulated["surv"], simulated["grid"]
    fs = E.score_fold(y[:200], y[200:], lp[200:], surv=surv[200:], times=grid,
                      horizons={"5": 5.0, "10": 10.0}, tau=20.0, calibration_horizon="10")
    m = fs.metrics
    assert set(E.metric_names({"5": 5.0, "10": 10.0})) == set(m)
    assert 0.65 < m["harrell_c"] < 0.85 and 0.65 < m["auc_10"] < 0.9
    assert 0 < m["ibs"] < 0.25 and 0 < m["brier_10"] < 0.25
    assert m["calibration_slope_10"] == pytest.approx(1.0, abs=0.3)  # true model: slope ~ 1
    assert len(fs.calibration) == 3
    assert np.allclose(fs.calibration["predicted"], fs.calibration["observed"], atol=0.15)


def test_calibration_slope_detects_overfitting():
    rng = np.random.default_rng(2)
    lp = rng.normal(0, 1, 3000)
    t = rng.exponential(np.exp(-lp))
    y = _y(np.minimum(t, 3.0), t <= 3.0)
    assert E.calibration_slope(y, lp, 2.0) == pytest.approx(1.0, abs=0.1)
    assert E.calibration_slope(y, 2 * lp, 2.0) == pytest.approx(0.5, abs=0.05)  # too extreme -> < 1


def test_folds_are_stratified_repeatable_and_need_events():
    y = _y(np.arange(1, 41, dtype=float), np.r_[np.ones(10, bool), np.zeros(30, bool)])
    folds = F.make_folds(y, 5, 2, random_state=3)
    assert len(folds) == 10 and all(y["event"][f.test].sum() == 2 for f in folds)
    assert [(f.repeat, f.fold) for f in folds] == [(r, k) for r in range(2) for k in range(5)]
    again = F.make_folds(y, 5, 2, random_state=3)
    assert all(np.array_equal(a.test, b.test) for a, b in zip(folds, again, strict=True))
    few = _y(np.arange(1, 41, dtype=float), np.r_[np.ones(3, bool), np.zeros(37, bool)])
    with pytest.raises(F.EvaluationError, match="3 events for 5 folds"):
        F.make_folds(few, 5, 1, 0)


def test_summarise_pairs_with_the_baseline():
    rows = []
    for k in range(10):
        rows.append({"model": "cox", "repeat": k // 5, "fold": k % 5, "harrell_c": 0.70 + 0.01 * (k % 3)})
        rows.append({"model": "rsf", "repeat": k // 5, "fold": k % 5, "harrell_c": 0.72 + 0.01 * (k % 3)})
    board = E.summarise(pd.DataFrame(rows), ["harrell_c"], n_train=80, n_test=20).set_index("model")
    assert board.loc["cox", "delta_c_vs_cox"] == 0.0
    assert board.loc["rsf", "delta_c_vs_cox"] == pytest.approx(0.02)
    # identical fold-to-fold noise: the paired CI is degenerate, the unpaired one is not
    assert board.loc["rsf", "delta_c_vs_cox_ci_low"] == pytest.approx(0.02)
    assert board.loc["rsf", "harrell_c_ci_low"] < 0.72
    assert board.index[0] == "rsf"


# ---- the fit-and-score loop -----------------------------------------------------------
SCORING = L.Scoring(horizons={"5": 5.0, "10": 10.0}, tau=20.0, calibration_horizon="10")


def _split(simulated):
    X, y = simulated["X"], simulated["y"]
    return X.iloc[:300], y[:300], X.iloc[300:], y[300:]


def test_fit_and_score_scores_the_held_out_rows_of_the_fitted_model(simulated):
    X_train, y_train, X_test, y_test = _split(simulated)
    fs = L.fit_and_score(CoxPH(), X_train, y_train, X_test, y_test, SCORING)
    assert fs.error is None and fs.fit_seconds >= 0
    direct = E.score_fold(y_train, y_test, simulated["lp"][300:], horizons={"5": 5.0, "10": 10.0}, tau=20.0,
                          calibration_horizon="10")
    # one covariate: the fitted risk orders the rows like the true linear predictor
    assert fs.metrics["harrell_c"] == pytest.approx(direct.metrics["harrell_c"])
    assert np.isfinite(fs.metrics["ibs"]) and len(fs.calibration) == 3 and len(fs.risk) == len(y_test)
    cheap = L.fit_and_score(CoxPH(), X_train, y_train, X_test, y_test, SCORING, curves=False)
    assert cheap.metrics["uno_c"] == fs.metrics["uno_c"]
    assert math.isnan(cheap.metrics["ibs"]) and math.isnan(cheap.metrics["brier_10"])


def test_fit_warnings_become_notes_and_caught_failures_an_error(simulated):
    X_train, y_train, X_test, y_test = _split(simulated)
    fs = L.fit_and_score(CoxPH(max_iter=1), X_train, y_train, X_test, y_test, SCORING)
    assert any("did not converge" in n for n in fs.notes)
    bad = X_train.assign(x=np.nan)
    failed = L.fit_and_score(CoxPH(), bad, y_train, X_test, y_test, SCORING, catch=(ValueError,))
    assert failed.error and failed.metrics == {} and math.isnan(failed.fit_seconds)
    with pytest.raises(ValueError):
        L.fit_and_score(CoxPH(), bad, y_train, X_test, y_test, SCORING)


@pytest.mark.slow
def test_parallel_folds_come_back_in_fold_order():
    # plain stand-ins for folds keep the worker processes light (no imports to unpickle them)
    folds = [(0, k) for k in range(4)]

    def run(k, fold):  # the first fold finishes last
        time.sleep(1.0 if k == 0 else 0.0)
        return k, fold

    finished = []
    results = map_folds(run, folds, n_jobs=2, on_done=finished.append)
    assert results == [(k, (0, k)) for k in range(4)]
    assert sorted(finished) == results
    assert map_folds(run, folds) == results  # serially: the same

"""Metrics against hand computations, IPCW edge cases, resampling and the corrected t interval."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ml.evaluation import evaluate as E


def _y(time, event):
    y = np.empty(len(time), dtype=[("event", bool), ("time", float)])
    y["event"], y["time"] = event, time
    return y


def test_harrell_c_by_hand():
    # pairs comparable when the earlier time is an event: (1,2) (1,3) (1,4) (2,3) (2,4) (4? no: 3 censored)
    y = _y([1.0, 2.0, 3.0, 4.0], [True, True, False, True])
    risk = np.array([4.0, 1.0, 2.0, 3.0])
    # comparable (i earlier event, j later): (1,2) (1,3) (1,4) (2,3) (2,4) -> concordant if risk_i > risk_j
    concordant = [4 > 1, 4 > 2, 4 > 3, 1 > 2, 1 > 3]
    fs = E.score_fold(y, y, risk, horizons={"a": 2.5}, tau=10.0, calibration_horizon="a")
    assert fs.metrics["harrell_c"] == pytest.approx(sum(concordant) / len(concordant))


def test_calibration_table_and_km_by_hand():
    y = _y([1, 2, 3, 4, 5, 6], [1, 0, 1, 1, 0, 1])
    # KM at 3.5: 1 * (1 - 1/6) * (1 - 1/4) = 0.625 (the censoring at 2 only shrinks the risk set)
    assert E.km_at(y["time"], y["event"], 3.5) == pytest.approx(5 / 6 * 3 / 4)
    s_h = np.array([0.1, 0.2, 0.5, 0.6, 0.9, 0.95])
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


def test_survival_at_is_a_right_continuous_step():
    times = np.array([1.0, 2.0, 4.0])
    surv = np.array([[0.9, 0.7, 0.4]])
    assert E.survival_at(surv, times, [0.5, 1.0, 1.5, 2.0, 3.9, 10.0]).ravel().tolist() == \
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


def test_score_fold_with_curves_gives_every_metric():
    rng = np.random.default_rng(1)
    lp = rng.normal(0, 1, 400)
    t = rng.exponential(np.exp(-lp) * 10)
    c = rng.uniform(0, 30, 400)
    y = _y(np.minimum(t, c), t <= c)
    grid = np.linspace(0.05, 30, 200)
    surv = np.exp(-np.outer(np.exp(lp), grid) / 10)  # the true curves
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
    folds = E.make_folds(y, 5, 2, random_state=3)
    assert len(folds) == 10 and all(y["event"][f.test].sum() == 2 for f in folds)
    again = E.make_folds(y, 5, 2, random_state=3)
    assert all(np.array_equal(a.test, b.test) for a, b in zip(folds, again, strict=True))
    few = _y(np.arange(1, 41, dtype=float), np.r_[np.ones(3, bool), np.zeros(37, bool)])
    with pytest.raises(E.EvaluationError, match="3 events for 5 folds"):
        E.make_folds(few, 5, 1, 0)


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

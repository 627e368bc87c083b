"""Balance metrics per term (cobalt conventions) against hand computations, scipy's two-sample KS and
base R's `cov.wt` (cobalt itself is not packaged in Debian)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ml.stats.balance_metrics import (
    balance_comparison,
    balance_metrics,
    effective_sample_sizes,
    is_binary,
    term_matrix,
    weighted_ks,
    weighted_variance,
)
from tests.r_oracle import needs_r, run_r


def test_weighted_variance_by_hand():
    # x = 1..4, w = (1, 1, 2, 2): mean 17/6, sum w (x - m)^2 = 41/6, factor 6 / (36 - 10)
    x, w = np.array([1.0, 2, 3, 4]), np.array([1.0, 1, 2, 2])
    assert weighted_variance(x, w) == pytest.approx(41 / 6 * 6 / 26)
    assert weighted_variance(x) == pytest.approx(np.var(x, ddof=1))  # n - 1 without weights
    # binary: p (1 - p) with the weighted p, no small-sample factor (cobalt)
    b = np.array([1.0, 0, 1, 0])
    assert weighted_variance(b, w, binary=True) == pytest.approx(0.5 * 0.5)
    assert weighted_variance(b, np.array([3.0, 1, 0, 0]), binary=True) == pytest.approx(0.75 * 0.25)


@pytest.mark.slow
@needs_r()
def test_weighted_variance_matches_r_cov_wt():
    rng = np.random.default_rng(5)
    d = pd.DataFrame({"x": rng.normal(size=40), "w": rng.exponential(size=40)})
    r = run_r("emit('v', cov.wt(cbind(d$x), wt = d$w, method = 'unbiased')$cov)", d=d)
    assert weighted_variance(d["x"].to_numpy(), d["w"].to_numpy()) == pytest.approx(r["v"][0], rel=1e-12)


def test_weighted_ks_by_hand():
    # treated 1, 2, 3 and controls 2, 4: CDF gaps 1/3, 1/6, 1/2, 0 -> 0.5
    x = np.array([1.0, 2, 3, 2, 4])
    t = np.array([True, True, True, False, False])
    assert weighted_ks(x, t) == pytest.approx(0.5)
    # weights (1, 1, 2 | 3, 1): F1 = .25, .5, 1, 1 and F0 = 0, .75, .75, 1 -> 0.25
    assert weighted_ks(x, t, np.array([1.0, 1, 2, 3, 1])) == pytest.approx(0.25)


def test_unweighted_ks_matches_scipy():
    rng = np.random.default_rng(1)
    x = np.round(rng.normal(size=300), 1)  # ties across the groups
    t = rng.random(300) < 0.4
    assert weighted_ks(x, t) == pytest.approx(stats.ks_2samp(x[t], x[~t]).statistic)


def test_ks_of_a_binary_term_is_the_difference_in_proportions():
    x = np.array([1.0, 0, 1, 1, 0, 0, 1])
    t = np.array([True, True, True, False, False, False, False])
    w = np.array([1.0, 2, 1, 1, 3, 1, 1])
    p1, p0 = 2 / 4, 2 / 6
    assert weighted_ks(x, t, w) == pytest.approx(abs(p1 - p0))


def test_ess_by_hand():
    ess = effective_sample_sizes(np.array([True, True, True, False, False]),
                                 np.array([1.0, 1, 2, 3, 3]), labels=("CIA", "CI"))
    assert ess == pytest.approx({"CIA": 16 / 6, "CI": 2.0})
    assert effective_sample_sizes(np.array([True, False, False])) == {"treated": 1.0, "control": 2.0}


def _frame() -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    df = pd.DataFrame({
        "age": [50.0, 60, 70, 55, 65, np.nan],
        "brain_mets": ["yes", "no", "yes", "no", "no", "yes"],
        "treatment": ["CIA", "CIA", "CIA", "CI", "CI", "CI"],
    })
    t = (df["treatment"] == "CIA").to_numpy()
    w = np.array([1.0, 2.0, 1.0, 1.0, 3.0, 2.0])
    return df, t, w


def test_term_matrix_keeps_every_level_and_the_missing_values():
    df, _, _ = _frame()
    terms = term_matrix(df, ["age", "brain_mets"])
    assert list(terms.columns) == ["age", "brain_mets=no", "brain_mets=yes"]
    assert np.isnan(terms["age"].iloc[5])
    assert is_binary(terms["brain_mets=yes"].to_numpy()) and not is_binary(terms["age"].to_numpy())


def test_smd_variance_ratio_and_ks_by_hand():
    df, t, w = _frame()
    table = balance_metrics(term_matrix(df, ["age", "brain_mets"]), t, w).set_index("term")
    # age (the NaN row left out): treated 50, 60, 70 (w 1, 2, 1), controls 55, 65 (w 1, 3)
    m1, m0 = (50 + 120 + 70) / 4, (55 + 195) / 4
    s1, s0 = np.var([50, 60, 70], ddof=1), np.var([55, 65], ddof=1)  # unweighted, n - 1
    age = table.loc["age"]
    assert age["mean_treated"] == pytest.approx(m1) and age["mean_control"] == pytest.approx(m0)
    assert age["smd"] == pytest.approx((m1 - m0) / np.sqrt((s1 + s0) / 2))
    v1 = 4 / (16 - 6) * (1 * 10**2 + 2 * 0**2 + 1 * 10**2)
    v0 = 4 / (16 - 10) * (1 * 7.5**2 + 3 * 2.5**2)
    assert age["variance_ratio"] == pytest.approx(v1 / v0)
    # weighted CDFs: 50: .25/0, 55: .25/.25, 60: .75/.25, 65: .75/1, 70: 1/1 -> KS 0.5
    assert age["ks"] == pytest.approx(0.5)
    # brain_mets=yes: treated 2/4 weighted, controls 2/6; SD from the unweighted p (1 - p)
    p1, p0 = 2 / 3, 1 / 3
    yes = table.loc["brain_mets=yes"]
    assert yes["smd"] == pytest.approx((0.5 - 2 / 6) / np.sqrt((p1 * (1 - p1) + p0 * (1 - p0)) / 2))
    assert np.isnan(yes["variance_ratio"]) and yes["type"] == "binary"
    assert yes["ks"] == pytest.approx(0.5 - 2 / 6)
    assert table.loc["brain_mets=no", "smd"] == pytest.approx(-yes["smd"])


def test_att_standardises_by_the_treated_sd_and_raw_binary_is_a_difference():
    df, t, w = _frame()
    terms = term_matrix(df, ["age", "brain_mets"])
    att = balance_metrics(terms, t, w, estimand="att").set_index("term")
    m1, m0 = 60.0, 62.5
    assert att.loc["age", "smd"] == pytest.approx((m1 - m0) / np.std([50, 60, 70], ddof=1))
    raw = balance_metrics(terms, t, w, binary="raw").set_index("term")
    assert raw.loc["brain_mets=yes", "smd"] == pytest.approx(0.5 - 2 / 6)
    assert raw.loc["age", "smd"] == pytest.approx(balance_metrics(terms, t, w).set_index("term")
                                                  .loc["age", "smd"])


def test_metrics_do_not_change_when_a_groups_weights_are_rescaled():
    df, t, w = _frame()
    terms = term_matrix(df, ["age", "brain_mets"])
    base = balance_metrics(terms, t, w)
    scaled = balance_metrics(terms, t, np.where(t, 7 * w, 0.5 * w))
    pd.testing.assert_frame_equal(base, scaled)


def test_comparison_is_long_with_one_block_per_weighting():
    df, t, w = _frame()
    terms = term_matrix(df, ["age", "brain_mets"])
    both = balance_comparison(terms, t, {"unadjusted": None, "ebal": w})
    assert list(both["sample"].unique()) == ["unadjusted", "ebal"]
    assert len(both) == 2 * terms.shape[1]
    assert set(both["confounder"]) == {"age", "brain_mets"}


def test_bad_settings_are_named():
    df, t, w = _frame()
    terms = term_matrix(df, ["age"])
    with pytest.raises(ValueError, match="estimand must be one of"):
        balance_metrics(terms, t, w, estimand="atc")
    with pytest.raises(ValueError, match="binary must be"):
        balance_metrics(terms, t, w, binary="std2")

"""ml.stats.km: the one Kaplan-Meier, its median and the exponential Greenwood CI.

lifelines' KaplanMeierFitter is the independent oracle: same curve, same pointwise band, same
medians of the curve and of the band's limits, except on an exact 0.5 plateau, where we follow R
(its midpoint; lifelines gives its start): tests/test_r_conventions.py checks those against R.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from lifelines import KaplanMeierFitter
from lifelines.utils import median_survival_times

from features import schema
from ml.stats import km


def _sample(n: int, seed: int, tied: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    time = rng.exponential(10, n)
    time = np.ceil(time) if tied else time
    event = rng.random(n) < 0.7
    return time, event, rng.uniform(0.3, 3.0, n)


def _finite_or_nan(x: float) -> float:
    return float(x) if np.isfinite(x) else np.nan


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("tied", [False, True])
def test_median_and_greenwood_ci_match_lifelines(seed, tied):
    time, event, _ = _sample(int(15 + 20 * seed), seed, tied)
    ref = KaplanMeierFitter().fit(time, event)
    ci = median_survival_times(ref.confidence_interval_)
    ours = km.km_median(time, event)
    got = [ours.median, ours.ci_low, ours.ci_high]
    expected = [ref.median_survival_time_, ci.iloc[0, 0], ci.iloc[0, 1]]
    if np.any(np.abs(km.km_curve(time, event).survival - 0.5) < km.MEDIAN_TOL):
        # an exact 0.5 plateau: lifelines gives its start, R (and we) its midpoint, as
        # tests/test_r_conventions.py checks against survfit; the bounds still compare here
        got, expected = got[1:], expected[1:]
    np.testing.assert_allclose(got, [_finite_or_nan(x) for x in expected], rtol=1e-12)
    assert (ours.n, ours.events) == (len(time), int(event.sum()))


@pytest.mark.parametrize("tied", [False, True])
def test_curve_and_band_match_lifelines_at_every_event_time(tied):
    time, event, _ = _sample(120, 7, tied)
    ref = KaplanMeierFitter().fit(time, event)
    curve = km.km_curve(time, event)
    np.testing.assert_allclose(curve.survival, ref.survival_function_.loc[curve.time].iloc[:, 0],
                               rtol=1e-12)
    band = ref.confidence_interval_.loc[curve.time]
    np.testing.assert_allclose(curve.ci_low, band.iloc[:, 0], rtol=1e-12)
    np.testing.assert_allclose(curve.ci_high, band.iloc[:, 1], rtol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("weighted", [False, True])
def test_fast_median_matches_lifelines(seed, weighted):
    time, event, w = _sample(80, seed, tied=True)
    weights = w if weighted else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lifelines' note on non-integer weights
        ref = KaplanMeierFitter().fit(time, event, weights=weights).median_survival_time_
    assert km.km_median_fast(time, event, weights) == pytest.approx(_finite_or_nan(ref), nan_ok=True)


def test_median_not_reached_is_nan():
    time = np.arange(1.0, 11.0)
    event = np.r_[1, 1, np.zeros(8)]
    assert np.isnan(km.km_median_fast(time, event))
    m = km.km_median(time, event)
    assert np.isnan(m.median) and np.isnan(m.ci_high)


def test_survival_at_is_one_before_the_first_event_and_steps_after():
    time, event = np.array([2.0, 4.0, 4.0, 6.0]), np.array([1, 1, 0, 1])
    assert km.survival_at(time, event, 1.0) == 1.0
    assert km.survival_at(time, event, 5.0) == pytest.approx(0.75 * (1 - 1 / 3))


def test_plot_frame_runs_from_zero_to_the_last_follow_up():
    time, event, w = _sample(50, 3, tied=False)
    frame = km.km_frame(time, event)
    assert frame["time"].iloc[0] == 0 and frame["time"].iloc[-1] == time.max()
    assert frame["survival"].is_monotonic_decreasing
    assert (frame["ci_low"] <= frame["survival"] + 1e-12).all()
    assert km.km_frame(time, event, w)["ci_low"].isna().all()  # no Greenwood band under weights


def test_medians_by_group_cover_both_endpoints_and_groups(twin_small):
    table = km.km_medians_by_group(twin_small.data)
    assert set(table["endpoint"]) == set(schema.ENDPOINTS)
    assert set(table["group"]) == {"all", schema.TREATED, schema.CONTROL}
    cia = twin_small.data[twin_small.data[schema.TREATMENT] == schema.TREATED]
    row = table.set_index(["endpoint", "group"]).loc[("pfs", schema.TREATED)]
    assert row["median"] == km.km_median(cia[schema.PFS_TIME], cia[schema.PFS_EVENT]).median
    assert len(table) == 6

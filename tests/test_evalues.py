"""E-values against the formulas worked by hand and the published examples (VanderWeele & Ding 2017,
R EValue documentation). R's EValue is not packaged in Debian, so no R oracle here."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ml.stats.evalues import (
    evalue_rr,
    evalues_hr,
    evalues_rmst_ratio,
    evalues_rr,
    hr_to_rr,
    is_rare,
)


def test_leukemia_example_of_vanderweele_and_ding():
    # Annals 2017: RR 0.80 (0.71, 0.91) -> E-value 1.81, CI 1.43 (EValue's evalues.RR example)
    ev = evalues_rr(0.80, 0.71, 0.91)
    assert ev.evalue == pytest.approx(1.25 + math.sqrt(1.25 * 0.25))
    assert round(ev.evalue, 2) == 1.81
    assert ev.evalue_ci == pytest.approx(1 / 0.91 + math.sqrt(1 / 0.91 * (1 / 0.91 - 1)))
    assert round(ev.evalue_ci, 2) == 1.43


def test_breastfeeding_example_of_vanderweele_and_ding():
    # Annals 2017: RR 3.9 (1.8, 8.7) -> E-value 7.26, CI 3.0
    ev = evalues_rr(3.9, 1.8, 8.7)
    assert round(ev.evalue, 2) == 7.26
    assert ev.evalue_ci == pytest.approx(3.0)  # 1.8 + sqrt(1.8 * 0.8) = 1.8 + 1.2


def test_symmetry_of_the_evalue():
    # EValue's example: evalues.RR(1 / 0.80) gives the same E-value as evalues.RR(0.80)
    assert evalue_rr(1 / 0.8) == pytest.approx(evalue_rr(0.8))
    assert evalue_rr(1.0) == 1.0


def test_hazard_ratio_common_outcome_documented_example():
    # EValue's evalues.HR(0.56, 0.46, 0.69, rare = FALSE), worked by hand:
    # RR = (1 - 0.5^0.748331) / (1 - 0.5^1.336306) = 0.404708 / 0.603967 = 0.670084
    # E = 1/RR + sqrt(1/RR (1/RR - 1)) = 1.492350 + 0.857181 = 2.349531
    # upper limit 0.69 -> RR 0.773527 -> E = 1.292781 + 0.615223 = 1.908004
    ev = evalues_hr(0.56, 0.46, 0.69, rare=False)
    assert ev.rr == pytest.approx(0.670084, abs=1e-6)
    assert ev.evalue == pytest.approx(2.349531, abs=1e-6)
    assert ev.rr_high == pytest.approx(0.773527, abs=1e-6)
    assert ev.evalue_ci == pytest.approx(1.908004, abs=1e-6)
    assert "0.5^sqrt(HR)" in ev.conversion and "common" in ev.conversion


def test_hazard_ratio_rare_outcome_is_a_risk_ratio():
    ev = evalues_hr(0.56, 0.46, 0.69, rare=True)
    assert ev.rr == 0.56 and ev.rr_high == 0.69
    assert ev.evalue == pytest.approx(evalue_rr(0.56))
    assert ev.evalue_ci == pytest.approx(evalue_rr(0.69))
    assert "rare" in ev.conversion


def test_common_outcome_conversion_shrinks_towards_one_and_is_symmetric():
    for hr in (0.3, 0.56, 0.9, 1.5, 4.0):
        rr = hr_to_rr(hr, rare=False)
        assert abs(math.log(rr)) < abs(math.log(hr))
        assert hr_to_rr(1 / hr, rare=False) == pytest.approx(1 / rr)  # log-symmetric
    assert hr_to_rr(1.0, rare=False) == pytest.approx(1.0)


@pytest.mark.parametrize("lo, hi", [(0.46, 1.10), (0.9, 1.0), (1.0, 1.3)])
def test_ci_that_holds_the_null_has_evalue_one(lo, hi):
    est = min(max(0.8, lo), hi)
    assert evalues_hr(est, lo, hi, rare=True).evalue_ci == 1.0
    assert evalues_rr(est, lo, hi).evalue_ci == 1.0


def test_ci_limit_closer_to_the_null_is_used_on_either_side():
    harmful = evalues_rr(2.0, 1.5, 3.0)
    assert harmful.evalue_ci == pytest.approx(1.5 + math.sqrt(1.5 * 0.5))
    protective = evalues_rr(0.5, 1 / 3, 2 / 3)
    assert protective.evalue_ci == pytest.approx(harmful.evalue_ci)  # mirror image on the log scale


def test_point_estimate_only_gives_no_ci_evalue():
    ev = evalues_hr(0.7, rare=True)
    assert np.isnan(ev.evalue_ci)
    assert ev.evalue == pytest.approx(evalue_rr(0.7))


def test_shift_to_a_non_null_true_value():
    # E-value to move RR 2.0 down to 1.25: ratio 1.6 -> 1.6 + sqrt(1.6 * 0.6) (EValue's `true`)
    assert evalue_rr(2.0, true=1.25) == pytest.approx(1.6 + math.sqrt(1.6 * 0.6))
    ev = evalues_rr(2.0, 1.5, 3.0, true=1.25)
    assert ev.evalue_ci == pytest.approx(1.2 + math.sqrt(1.2 * 0.2))
    assert evalues_rr(2.0, 1.2, 3.0, true=1.25).evalue_ci == 1.0


def test_common_outcome_shift_converts_the_true_value_too():
    ev = evalues_hr(0.5, 0.4, 0.6, rare=False, true=0.8)
    assert ev.evalue == pytest.approx(evalue_rr(hr_to_rr(0.5, False) / hr_to_rr(0.8, False)))


def test_rmst_ratio_is_a_ratio_of_means_without_conversion():
    ev = evalues_rmst_ratio(1.25, 1.05, 1.49)
    assert ev.rr == 1.25 and ev.measure == "RMST ratio"
    assert ev.evalue == pytest.approx(1.25 + math.sqrt(1.25 * 0.25))
    assert ev.evalue_ci == pytest.approx(1.05 + math.sqrt(1.05 * 0.05))
    assert "min(T, tau)" in ev.conversion
    assert set(ev.as_dict()) >= {"evalue", "evalue_ci", "conversion"}


def test_rare_outcome_rule_is_fifteen_percent():
    assert is_rare(0.149) and not is_rare(0.15) and not is_rare(0.8)
    with pytest.raises(ValueError, match="event fraction"):
        is_rare(1.5)


@pytest.mark.parametrize("args", [(0.0,), (-1.0,), (np.inf,), (np.nan,)])
def test_bad_ratio_is_refused(args):
    with pytest.raises(ValueError, match="positive, finite ratio"):
        evalue_rr(*args)


def test_ci_not_holding_the_estimate_is_refused():
    with pytest.raises(ValueError, match="does not contain the estimate"):
        evalues_hr(0.5, 0.6, 0.9, rare=True)

"""The digital-twin generator: determinism, contract, truth, calibration, config loading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from benchmarks.twin_calibration import PUBLISHED_TARGETS, calibration_summary
from features import schema, twin
from features.contract import BY_NAME, COVARIATES, split_term

REPO = Path(__file__).resolve().parents[1]
SMOKING_HARMFUL = REPO / "experiments/cohorts/smoking_harmful.yaml"
ALLOWED = {
    "sex": {"male", "female"},
    "smoking": {"ever", "never"},
    "histology": {"adenocarcinoma", "squamous", "other"},
    "pdl1": {"<1%", "1-49%", ">=50%", "not tested"},
    "prior_response": {"CR/PR", "SD", "PD"},
    "brain_mets": {"yes", "no"},
    "liver_mets": {"yes", "no"},
    "bone_mets": {"yes", "no"},
    "ici_switch": {"yes", "no"},
    "treatment": {"CIA", "CI"},
}


@pytest.fixture(scope="module")
def config():
    return twin.load_config()


@pytest.fixture(scope="module")
def large(config):
    """One 40,000-patient draw shared by the calibration and invariant tests (~1 s)."""
    return twin.generate(n=40_000, seed=123, config=config)


@pytest.fixture(scope="module")
def large_summary(large):
    return calibration_summary(large)


# ------------------------------------------------------------------ determinism


def test_same_seed_gives_identical_csv_bytes(config):
    first, second = (twin.generate(n=500, seed=3, config=config) for _ in range(2))
    pd.testing.assert_frame_equal(first.data, second.data)
    pd.testing.assert_frame_equal(first.truth, second.truth)
    assert first.data.to_csv(index=False) == second.data.to_csv(index=False)
    assert first.truth.to_csv(index=False) == second.truth.to_csv(index=False)


def test_different_seed_gives_a_different_cohort(config):
    a, b = (twin.generate(n=500, seed=s, config=config) for s in (3, 4))
    assert not a.data.equals(b.data)


def test_defaults_come_from_the_config(config):
    cohort = twin.generate()
    assert len(cohort.data) == config.default_n == 101
    assert cohort.seed == config.default_seed
    pd.testing.assert_frame_equal(cohort.data, twin.generate(101, config.default_seed).data)


# -------------------------------------------------------------------- contract


def test_columns_dtypes_and_ids(config):
    cohort = twin.generate(n=101, seed=5, config=config)
    data = cohort.data
    assert list(data.columns) == list(twin.DATA_COLUMNS)
    assert list(cohort.truth.columns) == list(twin.TRUTH_COLUMNS)
    assert data["id"].iloc[0] == "P001" and data["id"].iloc[-1] == "P101"
    assert data["id"].is_unique and (cohort.truth["id"] == data["id"]).all()
    for column in [*ALLOWED, "id"]:
        assert data[column].dtype == object
        assert all(type(v) is str for v in data[column])
    for column in ("ecog", "pfs_event", "os_event"):
        assert pd.api.types.is_integer_dtype(data[column])
    for column in ("age", "pfs1_months", "pfs_months", "os_months"):
        assert pd.api.types.is_float_dtype(data[column])


def test_schema_accepts_the_twin(config):
    data = twin.generate(n=300, seed=9, config=config).data
    validated = schema.validate(data)
    assert len(validated) == len(data)


def test_structural_invariants(large):
    data = large.data
    assert not data.isna().any().any()
    assert (data["pfs_months"] > 0).all() and (data["os_months"] > 0).all()
    assert (data["os_months"] >= data["pfs_months"]).all()
    for event in ("pfs_event", "os_event"):
        assert set(data[event].unique()) <= {0, 1}
    # one censoring time for both endpoints: a death is also a progression event
    assert (data.loc[data["os_event"] == 1, "pfs_event"] == 1).all()
    for column, allowed in ALLOWED.items():
        assert set(data[column].unique()) == allowed, column
    assert set(data["ecog"].unique()) == {0, 1, 2}
    assert data["age"].between(35, 85).all()


def test_marginals_as_configured(large, config):
    data, cov = large.data, config.covariates
    male = data["sex"] == "male"
    ever = data["smoking"] == "ever"
    close = dict(abs=0.015)  # 40,000 draws: binomial SD <= 0.0025 overall, <= 0.006 in subgroups
    assert male.mean() == pytest.approx(cov.p_male, **close)
    assert ever[male].mean() == pytest.approx(cov.p_ever_smoker_male, **close)
    assert ever[~male].mean() == pytest.approx(cov.p_ever_smoker_female, **close)
    squamous = data["histology"] == "squamous"
    assert squamous[ever].mean() == pytest.approx(cov.p_squamous_ever_smoker, **close)
    assert squamous[~ever].mean() == pytest.approx(cov.p_squamous_never_smoker, **close)
    assert (data["histology"] == "other").mean() == pytest.approx(cov.p_other_histology, **close)
    for level, p in cov.ecog.items():
        assert (data["ecog"] == int(level)).mean() == pytest.approx(p, **close)
    for column in ("pdl1", "prior_response"):
        for level, p in getattr(cov, column).items():
            assert (data[column] == level).mean() == pytest.approx(p, **close)
    for column, p in [("brain_mets", cov.p_brain_mets), ("liver_mets", cov.p_liver_mets),
                      ("bone_mets", cov.p_bone_mets), ("ici_switch", cov.p_ici_switch)]:
        assert (data[column] == "yes").mean() == pytest.approx(p, **close)
    assert data["age"].mean() == pytest.approx(cov.age_mean, abs=0.3)
    pfs1_medians = data.groupby("prior_response")["pfs1_months"].median()
    for level, median in cov.pfs1_median_months.items():
        assert pfs1_medians[level] == pytest.approx(median, rel=0.05)


def test_categories_use_the_contracts_labels(large):
    for name in (*COVARIATES, "treatment"):
        column = BY_NAME[name]
        if column.categorical:
            assert set(large.data[name].astype(str)) == set(column.level_names()), name


@pytest.mark.parametrize("edit, message", [
    (lambda orders: orders | {"prior_response": ("CR-PR", "SD", "PD")}, "draw order of 'prior_response'"),
    (lambda orders: orders | {"sex": ("male", "male")}, "draw order of 'sex'"),
    (lambda orders: {k: v for k, v in orders.items() if k != "pdl1"}, "no draw order .*'pdl1'"),
    (lambda orders: orders | {"age": ("young", "old")}, "'age', not a categorical feature"),
])
def test_a_draw_order_that_drifts_from_the_contract_is_refused(edit, message):
    twin.check_draw_orders(twin.DRAW_ORDER)
    with pytest.raises(ValueError, match=message):
        twin.check_draw_orders(edit(dict(twin.DRAW_ORDER)))


# ----------------------------------------------------------------------- truth


def test_truth_is_consistent_with_the_observed_table(large, config):
    data, truth = large.data, large.truth
    cia = (data["treatment"] == "CIA").to_numpy()
    lp_cia, lp_ci = truth["true_lp_pfs_cia"].to_numpy(), truth["true_lp_pfs_ci"].to_numpy()
    np.testing.assert_allclose(lp_cia - lp_ci, config.pfs.log_hazard_ratios["treatment=CIA"])
    np.testing.assert_array_equal(truth["true_lp_pfs"], np.where(cia, lp_cia, lp_ci))
    for endpoint in ("pfs", "os"):
        latent = np.where(cia, truth[f"{endpoint}_time_cia"], truth[f"{endpoint}_time_ci"])
        observed = data[f"{endpoint}_months"].to_numpy()
        event = data[f"{endpoint}_event"].to_numpy() == 1
        rounded = np.maximum(latent, twin.MIN_TIME).round(twin.TIME_DECIMALS)
        np.testing.assert_array_equal(observed[event], rounded[event])
        assert (latent[event] <= truth["censor_time"].to_numpy()[event]).all()
        censored = ~event
        assert (latent[censored] > truth["censor_time"].to_numpy()[censored]).all()
    for arm in ("cia", "ci"):
        assert (truth[f"os_time_{arm}"] >= truth[f"pfs_time_{arm}"]).all()
    # CIA lowers the PFS hazard, and with common random numbers that holds patient by patient
    assert (truth["pfs_time_cia"] > truth["pfs_time_ci"]).all()
    assert truth["true_propensity"].between(0, 1, inclusive="neither").all()


def test_true_lp_is_the_configured_terms_of_the_observed_table(config):
    cohort = twin.generate(n=2000, seed=8, config=config)
    data, truth = cohort.data, cohort.truth
    lp = np.zeros(len(data))
    for name, log_hr in config.pfs.log_hazard_ratios.items():
        feature, level = split_term(name)
        values = data[feature]
        lp += log_hr * (values.to_numpy(float) if level is None else (values.astype(str) == level).to_numpy())
    np.testing.assert_allclose(truth["true_lp_pfs"], lp, rtol=1e-12, atol=1e-12)


def test_true_log_hazard_ratios(config):
    hrs = twin.true_log_hazard_ratios(config)
    expected = {"treatment=CIA": -0.60, "prior_response=CR/PR": -0.70,
                "prior_response=PD": 0.40, "smoking=ever": -0.55, "ecog=2": 0.60,
                "liver_mets=yes": 0.45, "brain_mets=yes": 0.20, "pdl1=>=50%": -0.25}
    assert {k: hrs[k] for k in expected} == pytest.approx(expected)
    noise_terms = [t for t in hrs if split_term(t)[0] in twin.NOISE_FEATURES]
    assert {split_term(t)[0] for t in noise_terms} == set(twin.NOISE_FEATURES)
    assert all(hrs[t] == 0.0 for t in noise_terms)


# ----------------------------------------------------------------- calibration

# Checked at n = 40,000 so the test runs in seconds. There a KM median still moves by
# ~1 % between seeds (SE of the CIA-arm median ~0.1 month; IPTW arms more, their
# weights inflate the variance), so the bounds are wider than the 3 % met at 200,000.
MATCHED_TOLERANCE = 0.06
"""Targets the calibration reaches (within 1 % at n = 200,000): 6 % relative."""

CALIBRATED_AT_200K = {
    "pfs_median_all": 7.96,
    "pfs_median_cia_iptw": 10.54,
    "pfs_median_ci_iptw": 6.49,
}
"""Targets no Weibull-PH twin with a constant CIA effect can reach jointly with the
others (see benchmarks/twin_calibration.py): regression-checked against the
calibrated n = 200,000 value within 3 % instead, and their known direction."""


def test_calibrated_medians_match_the_published_table(large_summary):
    for name in ("os_median_all", "pfs_median_cia", "pfs_median_ci"):
        target = PUBLISHED_TARGETS[name]
        assert large_summary[name] == pytest.approx(target, rel=MATCHED_TOLERANCE), name
    assert large_summary["p_cia"] == pytest.approx(PUBLISHED_TARGETS["p_cia"], abs=0.01)


def test_true_propensity_averages_to_the_published_share(large):
    assert large.truth["true_propensity"].mean() == pytest.approx(45 / 101, abs=0.005)


def test_structurally_unreachable_medians_still_hold_their_calibrated_values(large_summary):
    for name, calibrated in CALIBRATED_AT_200K.items():
        assert large_summary[name] == pytest.approx(calibrated, rel=0.03), name
    published = PUBLISHED_TARGETS
    assert large_summary["pfs_median_all"] > published["pfs_median_all"]
    assert large_summary["pfs_median_ci_iptw"] < published["pfs_median_ci_iptw"]


def test_iptw_median_ratio_keeps_the_published_treatment_contrast(large_summary):
    ratio = large_summary["pfs_median_cia_iptw"] / large_summary["pfs_median_ci_iptw"]
    published = PUBLISHED_TARGETS["pfs_median_cia_iptw"] / 6.89
    assert ratio == pytest.approx(published, rel=0.06)


def test_confounding_makes_crude_ci_look_worse_than_weighted(large_summary):
    assert large_summary["pfs_median_ci"] < large_summary["pfs_median_ci_iptw"]


# --------------------------------------------------- independent check (lifelines)


def _cox_log_hrs(data: pd.DataFrame) -> pd.Series:
    """Cox PH fit (lifelines) on all covariates, treatment coding as in the truth."""
    from lifelines import CoxPHFitter  # the independent oracle, heavy: imported by these tests only

    covariates = pd.get_dummies(
        data.drop(columns=["id", "pfs_months", "pfs_event", "os_months", "os_event"]),
        columns=["sex", "smoking", "histology", "pdl1", "prior_response", "brain_mets",
                 "liver_mets", "bone_mets", "ici_switch", "treatment", "ecog"],
        dtype=float,
    )
    reference = ["sex_female", "smoking_never", "histology_adenocarcinoma", "pdl1_<1%",
                 "prior_response_SD", "brain_mets_no", "liver_mets_no", "bone_mets_no",
                 "ici_switch_no", "treatment_CI", "ecog_0"]
    frame = covariates.drop(columns=reference).assign(
        time=data["pfs_months"], event=data["pfs_event"])
    fitter = CoxPHFitter().fit(frame, duration_col="time", event_col="event")
    return fitter.params_


@pytest.mark.parametrize("config_path, smoking_log_hr", [(None, -0.55), (SMOKING_HARMFUL, 0.55)])
def test_cox_recovers_the_configured_log_hazard_ratios(config_path, smoking_log_hr):
    config = twin.load_config(config_path)
    assert config.pfs.log_hazard_ratios["smoking=ever"] == smoking_log_hr
    params = _cox_log_hrs(twin.generate(n=8_000, seed=77, config=config).data)
    # 8,000 patients, ~85 % events: SE of each log HR ~0.03, so 0.1 is > 3 SE
    assert params["smoking_ever"] == pytest.approx(smoking_log_hr, abs=0.1)
    assert params["treatment_CIA"] == pytest.approx(-0.60, abs=0.1)


def test_smoking_harmful_differs_from_default_only_in_smoking():
    default, harmful = twin.load_config(), twin.load_config(SMOKING_HARMFUL)
    hrs = dict(harmful.pfs.log_hazard_ratios, **{"smoking=ever": -0.55})
    assert hrs == default.pfs.log_hazard_ratios
    assert harmful.propensity == default.propensity and harmful.pps == default.pps
    assert harmful.covariates == default.covariates


# ------------------------------------------------------------------ config load


def _write_variant(tmp_path: Path, edit) -> Path:
    raw = yaml.safe_load(twin.DEFAULT_CONFIG_PATH.read_text())
    edit(raw)
    path = tmp_path / "variant.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_load_config_rejects_an_unknown_key(tmp_path):
    path = _write_variant(tmp_path, lambda raw: raw["pfs"].update(shpe=1.2))
    with pytest.raises(ValueError, match="unknown key 'shpe'"):
        twin.load_config(path)


def test_load_config_rejects_an_unknown_term(tmp_path):
    path = _write_variant(tmp_path,
                          lambda raw: raw["pfs"]["log_hazard_ratios"].update({"ecog=3": 0.1}))
    with pytest.raises(ValueError, match=r"unknown key 'ecog=3'"):
        twin.load_config(path)


def test_load_config_rejects_a_missing_key(tmp_path):
    path = _write_variant(tmp_path, lambda raw: raw["censoring"].pop("cutoff_months"))
    with pytest.raises(ValueError, match="missing key 'cutoff_months'"):
        twin.load_config(path)


def test_load_config_round_trips_the_default(tmp_path):
    path = _write_variant(tmp_path, lambda raw: None)
    assert twin.load_config(path) == twin.load_config()


def test_generate_rejects_nonpositive_n(config):
    with pytest.raises(ValueError, match="n must be >= 1"):
        twin.generate(n=0, config=config)

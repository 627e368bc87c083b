"""Data set adapters: one frame shape for the twin, scikit-survival's sets and any table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features import datasets as D
from features.errors import InputWarning
from features.pipeline import build_preprocessor, cohort_spec
from features.schema import validate
from features.twin import DEFAULT_CONFIG_PATH, load_config

SMOKING_HARMFUL = DEFAULT_CONFIG_PATH.with_name("smoking_harmful.yaml")


@pytest.mark.parametrize("name", D.PUBLIC)
def test_public_sets_share_one_shape(name):
    data = D.load(name)
    assert {data.time, data.event} <= set(data.frame.columns)
    assert set(data.spec.columns).isdisjoint({data.time, data.event})
    y = data.y
    assert y.dtype.names == ("event", "time") and (y["time"] > 0).all() and y["event"].any()
    assert len(data.horizons) == 2 and data.tau > 0 and data.time_unit == "days"
    if data.treatment is not None:
        assert data.spec.categorical[data.treatment][1] == data.treated
    assert "chapter" not in data.frame and "txgrp" not in data.frame  # post-baseline / treatment recode


def test_twin_carries_the_oracle(twin_small):
    data = D.twin(n=300, seed=11)
    assert np.allclose(data.truth, twin_small.truth["true_lp_pfs"])
    assert data.treatment_column == "treatment=CIA" and data.horizons == {"6": 6.0, "12": 12.0}
    assert data.calibration_horizon == "12"


def _table():
    rng = np.random.default_rng(0)
    return pd.DataFrame({"id": np.arange(60), "t": rng.uniform(1, 20, 60), "d": rng.random(60) < 0.5,
                         "age": rng.normal(60, 5, 60), "arm": rng.choice(["a", "b"], 60),
                         "grade": rng.choice(["I", "II", None], 60)})


def test_any_table_is_inferred_and_keeps_missing_values():
    data = D.from_table(_table(), "t", "d", drop=["id"], treatment="arm", treated="b")
    assert data.spec.numeric == ("age",) and set(data.spec.categorical) == {"arm", "grade"}
    assert data.treatment_column == "arm=b" and data.frame["grade"].isna().any()


@pytest.mark.parametrize("change,message", [
    (lambda df: df.drop(columns=["t"]), "no time column 't'"),
    (lambda df: df.assign(d=2), "must hold 0/1"),
    (lambda df: df.assign(d=0), "no events"),
    (lambda df: df.assign(t=-1.0), "<= 0"),
    (lambda df: df.assign(arm=np.arange(60) % 3), "two groups"),
])
def test_bad_tables_are_refused_with_a_clear_message(change, message):
    with pytest.raises(D.DatasetError, match=message):
        D.from_table(change(_table()), "t", "d", drop=["id"], treatment="arm")


def test_an_entirely_missing_feature_is_accepted_and_left_out_with_a_warning():
    with pytest.warns(InputWarning, match="age entirely missing"):
        data = D.from_table(_table().assign(age=np.nan), "t", "d", drop=["id"], treatment="arm")
    assert "age" not in data.spec.columns and "grade" in data.spec.columns


# ------------------------------------------------------------------ cohort tables


@pytest.fixture(scope="module")
def cohort_table(twin_small):
    """The session's twin cohort as a user's validated table would come: shuffled, own index."""
    return validate(twin_small.data).sample(frac=1.0, random_state=0).set_index("id", drop=False)


def test_a_cohort_table_takes_the_contracts_features_and_the_studys_horizons(cohort_table):
    data = D.from_cohort(cohort_table, "os", name="site A", source="a.csv")
    assert data.spec == cohort_spec(include_treatment=True)
    assert list(data.frame.columns) == [*data.spec.columns, "os_months", "os_event"]
    assert data.frame.index.equals(pd.RangeIndex(len(cohort_table)))
    assert (data.time, data.event, data.treatment_column) == ("os_months", "os_event", "treatment=CIA")
    assert data.horizons == D.TWIN_HORIZONS and data.tau == D.TWIN_TAU
    assert (data.name, data.source, data.truth) == ("site A", "a.csv", None)
    np.testing.assert_array_equal(data.y["time"], cohort_table["os_months"])


def test_the_twin_is_a_cohort_table_with_its_truth(twin_small):
    data = D.twin(n=300, seed=11)
    expected = D.from_cohort(twin_small.data, "pfs")
    pd.testing.assert_frame_equal(data.frame.reset_index(drop=True), expected.frame)
    assert list(data.frame.index) == list(twin_small.data["id"])  # rows named by patient id
    assert data.spec == expected.spec
    assert data.source == "features.twin.generate(n=300, seed=11)"


@pytest.mark.parametrize("call, message", [
    (lambda df: D.from_cohort(df, "dfs"), "unknown endpoint 'dfs'"),
    (lambda df: D.from_cohort(df.drop(columns=["ecog", "pfs_event"])), "no column.*ecog, pfs_event"),
])
def test_a_table_that_is_not_a_cohort_is_refused(twin_small, call, message):
    with pytest.raises(D.DatasetError, match=message):
        call(twin_small.data)


def test_twin_draws_from_a_given_config(twin_small):
    harmful = load_config(SMOKING_HARMFUL)
    data = D.twin(n=300, seed=11, config=harmful)
    pd.testing.assert_frame_equal(data.X, D.twin(n=300, seed=11).X)  # same covariates, same arms
    smokers = (data.X["smoking"] == "ever").to_numpy()
    shift = data.truth - twin_small.truth["true_lp_pfs"].to_numpy()
    np.testing.assert_allclose(shift[smokers], 0.55 - (-0.55))
    np.testing.assert_allclose(shift[~smokers], 0.0, atol=1e-12)
    assert data.source == f"features.twin.generate(n=300, seed=11, config {harmful.version})"


def test_the_os_endpoint_has_no_oracle():
    data = D.twin(n=50, seed=1, endpoint="os")
    assert data.truth is None and any("no true linear predictor" in note for note in data.notes)


def test_cohort_features_are_named_as_the_models_see_them(twin_small):
    spec = cohort_spec(include_treatment=True)
    names = build_preprocessor(spec).fit(twin_small.data[spec.columns]).get_feature_names_out()
    assert list(names) == [
        "age", "pfs1_months", "sex=male", "smoking=ever", "histology=squamous", "histology=other",
        "pdl1=1-49%", "pdl1=>=50%", "pdl1=not tested", "prior_response=CR/PR", "prior_response=PD",
        "brain_mets=yes", "liver_mets=yes", "bone_mets=yes", "ici_switch=yes", "ecog=1", "ecog=2",
        "treatment=CIA",
    ]


def test_excluded_covariates_leave_the_spec_but_the_treatment_stays():
    spec = cohort_spec(include_treatment=True, exclude=("age", "ecog", "treatment"))
    assert "age" not in spec.columns and "ecog" not in spec.columns
    assert spec.categorical["treatment"] == ("CI", "CIA")
    assert cohort_spec(include_treatment=False).columns[-1] == "ecog"


# ---------------------------------------------------------------- survival target


def test_survival_target_is_structured_event_time(twin_small):
    y = D.survival_target(twin_small.data, "os")
    assert y.dtype.names == ("event", "time")
    assert y["event"].dtype == bool and y["time"].dtype == float
    np.testing.assert_array_equal(y["time"], twin_small.data["os_months"])
    np.testing.assert_array_equal(y["event"], twin_small.data["os_event"] == 1)


def test_survival_target_of_a_table_without_censoring(twin_small):
    everyone_progressed = twin_small.data.assign(pfs_event=1)
    assert D.survival_target(everyone_progressed)["event"].all()
    data = D.from_table(_table().assign(d=1), "t", "d", drop=["id"])
    assert data.y["event"].all()


# ------------------------------------------------------- events and the treated arm


@pytest.mark.parametrize("yes, no", [("Yes", "No"), ("yes", "no"), ("TRUE", "False"), ("y", "N"),
                                     (" Yes ", "no "), (True, False), (1.0, 0.0)])
def test_event_words_are_accepted_and_converted(yes, no):
    df = _table()
    df["d"] = df["d"].map({True: yes, False: no})
    data = D.from_table(df, "t", "d", drop=["id"])
    np.testing.assert_array_equal(data.frame["d"], _table()["d"].astype(int))
    assert data.frame["d"].dtype == int


def test_other_event_values_are_named_with_the_column():
    df = _table().astype({"d": object})
    df.loc[[4, 9], "d"] = ["dead", "alive"]
    message = r"event column 'd'.*yes/no.*2 row\(s\).*rows 5, 10; found: dead, alive"
    with pytest.raises(D.DatasetError, match=message):
        D.from_table(df, "t", "d", drop=["id"])


def test_a_treated_value_not_in_the_treatment_column_is_named_with_it():
    with pytest.raises(D.DatasetError, match="treated value 'CIA' does not occur in the treatment "
                                             r"column 'arm' \(its values: a, b\)"):
        D.from_table(_table(), "t", "d", drop=["id"], treatment="arm", treated="CIA")


def test_a_treated_value_without_a_treatment_column_is_refused():
    with pytest.raises(D.DatasetError, match="treated value 'b' given without a treatment column"):
        D.from_table(_table(), "t", "d", drop=["id"], treated="b")


def test_infinite_times_are_named_with_their_rows():
    df = _table()
    df.loc[2, "t"] = np.inf
    with pytest.raises(D.DatasetError, match="time column 't'.*rows 3; found: inf"):
        D.from_table(df, "t", "d", drop=["id"])


def test_a_covariate_empty_on_every_row_is_left_out_of_a_cohorts_features(twin_small):
    df = twin_small.data.assign(pdl1=np.nan, age=np.nan)
    data = D.from_cohort(df)
    assert "pdl1" not in data.spec.columns and "age" not in data.spec.columns
    assert "ecog" in data.spec.columns
    assert any("age, pdl1 empty on every row" in note for note in data.notes)
    assert build_preprocessor(data.spec).fit_transform(data.X).shape[1] == 18 - 1 - 3  # age, 3 pdl1 terms

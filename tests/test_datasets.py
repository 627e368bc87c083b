"""Data set adapters: one frame shape for the twin, scikit-survival's sets and any table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features import datasets as D


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
    (lambda df: df.assign(age=np.nan), "entirely missing"),
    (lambda df: df.assign(t=-1.0), "<= 0"),
    (lambda df: df.assign(arm=np.arange(60) % 3), "two groups"),
])
def test_bad_tables_are_refused_with_a_clear_message(change, message):
    with pytest.raises(D.DatasetError, match=message):
        D.from_table(change(_table()), "t", "d", drop=["id"], treatment="arm")

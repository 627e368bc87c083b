"""The cohort contract: each kind of bad table gives the promised message."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features import schema
from features.contract import BY_NAME, COLUMNS, SPEC
from features.errors import InputWarning
from features.pipeline import build_preprocessor, infer_spec
from features.schema import CohortValidationError, validate


def good_table(n: int = 6) -> pd.DataFrame:
    """A small valid cohort built by hand (independent of the twin generator)."""
    rng = np.random.default_rng(0)
    pfs = np.round(rng.uniform(1, 20, n), 2)
    return pd.DataFrame({
        "id": [f"P{i:02d}" for i in range(n)],
        "age": rng.uniform(40, 80, n).round(1),
        "sex": ["male", "female"] * (n // 2),
        "smoking": ["ever", "never"] * (n // 2),
        "ecog": [0, 1, 2] * (n // 3),
        "histology": ["adenocarcinoma", "squamous", "other"] * (n // 3),
        "pdl1": ["<1%", "1-49%", ">=50%", "not tested", "<1%", "1-49%"][:n],
        "prior_response": ["CR/PR", "SD", "PD"] * (n // 3),
        "pfs1_months": rng.uniform(1, 15, n).round(2),
        "brain_mets": ["yes", "no"] * (n // 2),
        "liver_mets": ["no", "yes"] * (n // 2),
        "bone_mets": ["no"] * n,
        "ici_switch": ["yes"] * n,
        "treatment": ["CIA", "CI"] * (n // 2),
        "pfs_months": pfs,
        "pfs_event": [1, 0] * (n // 2),
        "os_months": pfs + 3.0,
        "os_event": [1, 0] * (n // 2),
    })


def problems_of(df: pd.DataFrame) -> list[schema.Problem]:
    with pytest.raises(CohortValidationError) as info:
        validate(df)
    return info.value.problems


def only_problem(df: pd.DataFrame) -> schema.Problem:
    problems = problems_of(df)
    assert len(problems) == 1, [p.describe() for p in problems]
    return problems[0]


def test_valid_table_passes_and_is_typed():
    out = validate(good_table())
    assert list(out.columns) == list(COLUMNS)
    assert out["pfs_event"].dtype == "int64"
    assert out["age"].dtype == "float64"
    assert out["ecog"].dtype == "float64"


def test_empty_table():
    p = only_problem(good_table().iloc[0:0])
    assert "empty" in p.expected


def test_missing_column_is_named():
    p = only_problem(good_table().drop(columns="smoking"))
    assert p.column == "smoking" and "missing" in p.expected


def test_extra_column_is_named():
    p = only_problem(good_table().assign(hospital="A"))
    assert p.column == "hospital" and "no such column" in p.expected


def test_wrong_type_names_rows_and_values():
    df = good_table().astype({"age": object})
    df.loc[2, "age"] = "sixty"
    p = only_problem(df)
    assert (p.column, p.expected, p.rows, p.found) == ("age", "a number", ("P02",), ("sixty",))


@pytest.mark.parametrize("col", ["pfs_months", "os_months"])
@pytest.mark.parametrize("value", [0.0, -1.5])
def test_non_positive_times(col, value):
    df = good_table()
    df.loc[1, col] = value
    problems = problems_of(df)
    assert any(p.column == col and "> 0" in p.expected and p.rows == ("P01",) for p in problems)


@pytest.mark.parametrize("col", ["pfs_event", "os_event"])
def test_event_not_zero_one(col):
    df = good_table()
    df.loc[3, col] = 2
    p = only_problem(df)
    assert p.column == col and "0 or 1" in p.expected and p.rows == ("P03",)


def test_os_shorter_than_pfs():
    df = good_table()
    df.loc[4, "os_months"] = df.loc[4, "pfs_months"] - 0.5
    p = only_problem(df)
    assert "os_months >= pfs_months" in p.expected and p.rows == ("P04",)


def test_duplicate_ids():
    df = good_table()
    df.loc[5, "id"] = "P00"
    p = only_problem(df)
    assert p.column == "id" and "unique" in p.expected and p.rows == ("P00",)


def test_unknown_category_names_value():
    df = good_table()
    df.loc[0, "smoking"] = "former"
    p = only_problem(df)
    assert p.column == "smoking" and p.found == ("former",) and "ever" in p.expected


@pytest.mark.parametrize("col", ["pfs_months", "pfs_event", "os_months", "os_event", "treatment"])
def test_nan_in_required_column(col):
    df = good_table()
    df[col] = df[col].astype(object)
    df.loc[2, col] = np.nan
    problems = problems_of(df)
    assert any(p.column == col and "every row" in p.expected and p.rows == ("P02",)
               for p in problems)


def test_optional_covariates_may_be_missing_and_are_kept():
    df = good_table()
    df.loc[0, "age"] = np.nan
    df.loc[1, "pdl1"] = np.nan
    df.loc[2, "ecog"] = np.nan
    out = validate(df)
    assert len(out) == len(df)
    assert out["age"].isna().sum() == 1 and out["pdl1"].isna().sum() == 1


def test_all_problems_reported_at_once():
    df = good_table().astype({"age": object})
    df.loc[0, "age"] = "x"
    df.loc[1, "sex"] = "M"
    df.loc[2, "pfs_event"] = 5
    with pytest.raises(CohortValidationError) as info:
        validate(df)
    text = str(info.value)
    assert "3 problem(s)" in text
    for fragment in ("column 'age'", "column 'sex'", "column 'pfs_event'", "P00", "P01", "P02"):
        assert fragment in text


# ------------------------------------------------- checks generated from the contract

NUMBERS = [c for c in SPEC if c.kind == "number"]
CATEGORY_LEVELS = [(c.name, level) for c in SPEC if c.categorical for level in c.levels]


@pytest.mark.parametrize("column", NUMBERS, ids=lambda c: c.name)
def test_numbers_outside_the_contract_range_are_named(column):
    df = good_table()
    df.loc[1, column.name] = column.high + 1
    df.loc[2, column.name] = column.low if not column.low_inclusive else column.low - 1
    p = only_problem(df)
    assert p.column == column.name and p.rows == ("P01", "P02")
    assert p.expected == f"a value in {column.interval()} {column.unit}"


@pytest.mark.parametrize("column", NUMBERS, ids=lambda c: c.name)
def test_closed_range_ends_are_accepted(column):
    df = good_table()
    df.loc[1, column.name] = column.high
    if column.low_inclusive:
        df.loc[2, column.name] = column.low
    out = validate(df)
    assert out.loc[1, column.name] == column.high


@pytest.mark.parametrize("name, level", CATEGORY_LEVELS)
def test_every_level_of_the_contract_is_accepted(name, level):
    df = good_table()
    df.loc[0, name] = level
    assert validate(df).loc[0, name] == level


@pytest.mark.parametrize("name", [c.name for c in SPEC if c.kind == "category"])
def test_labels_outside_the_contract_are_named_with_the_allowed_ones(name):
    df = good_table()
    df.loc[0, name] = "unheard-of"
    p = only_problem(df)
    assert (p.column, p.rows, p.found) == (name, ("P00",), ("unheard-of",))
    assert p.expected == f"one of {', '.join(BY_NAME[name].levels)}"


def test_ecog_must_be_one_of_its_scores():
    df = good_table().astype({"ecog": float})
    df.loc[1, "ecog"] = 1.5
    df.loc[2, "ecog"] = 3.0
    p = only_problem(df)
    assert (p.column, p.expected, p.rows) == ("ecog", "a score of 0, 1 or 2", ("P01", "P02"))


def test_problems_follow_the_contracts_column_order():
    df = good_table()
    df.loc[1, "os_event"] = 2
    df.loc[2, "pfs_months"] = 0.0
    df.loc[3, "age"] = 5.0
    df.loc[4, "os_months"] = df.loc[4, "pfs_months"] - 0.5
    assert [p.column for p in problems_of(df)] == ["os_months/pfs_months", "age", "pfs_months", "os_event"]


def test_out_of_range_age():
    df = good_table()
    df.loc[1, "age"] = 300
    p = only_problem(df)
    assert p.column == "age" and "[18, 110]" in p.expected and p.found == ("300.0",)


def test_preprocessor_learns_levels_when_none_are_given():
    df = pd.DataFrame({"x": [1.0, 2.0, np.nan, 4.0], "arm": ["a", "b", "a", None]})
    spec = infer_spec(df, min_level_rows=None)  # 4 rows: with pooling every level would be rare
    out = build_preprocessor(spec).fit_transform(df)
    assert list(out.columns) == ["x", "arm=b"]
    assert out["x"].isna().sum() == 0  # imputed, not dropped


# ------------------------------------------------------- problems that used to hide


def test_a_duplicate_id_does_not_hide_the_other_problems():
    df = good_table()
    df.loc[5, "id"] = "P00"
    df.loc[5, "age"] = 5.0
    df.loc[2, "pfs_event"] = 7
    text = [p.describe() for p in problems_of(df)]
    assert len(text) == 3, text
    assert "unique patient ids" in text[0] and "ids: P00" in text[0]
    assert any("column 'age'" in t and "ids: P00 (row 6)" in t for t in text)  # which P00: the row says
    assert any("column 'pfs_event'" in t and "ids: P02" in t for t in text)


def test_missing_ids_and_a_missing_id_column_do_not_hide_the_other_problems():
    df = good_table().astype({"id": object})
    df.loc[1, "id"] = None
    df.loc[1, "age"] = 500.0
    columns = {p.column: p.rows for p in problems_of(df)}
    assert columns == {"id": ("row 2",), "age": ("row 2",)}
    columns = {p.column: p.rows for p in problems_of(good_table().drop(columns="id").assign(age=5.0))}
    assert columns["id"] == () and columns["age"][:2] == ("row 1", "row 2")


@pytest.mark.parametrize("col", ["pfs_months", "os_months", "pfs1_months", "age"])
@pytest.mark.parametrize("value", [np.inf, -np.inf, "inf", "-Infinity"])
def test_infinite_values_are_not_finite_numbers(col, value):
    df = good_table().astype({col: object})
    df.loc[1, col] = value
    p = only_problem(df)  # not "OS shorter than PFS", not out of range
    assert (p.column, p.expected, p.rows) == (col, "a finite number", ("P01",))


@pytest.mark.parametrize("marker", ["NaN", "nan", "", "  ", "NA", "N/A", "null", "None", "."])
def test_text_meaning_missing_is_a_missing_covariate(marker):
    df = good_table().astype({"age": object, "smoking": object})
    df.loc[1, "age"] = marker
    df.loc[2, "smoking"] = marker
    out = validate(df)
    assert np.isnan(out.loc[1, "age"]) and pd.isna(out.loc[2, "smoking"])


def test_text_meaning_missing_in_a_required_column_is_a_missing_value():
    df = good_table().astype({"pfs_months": object})
    df.loc[3, "pfs_months"] = "NA"
    p = only_problem(df)
    assert p.column == "pfs_months" and "every row" in p.expected and p.rows == ("P03",)


def test_covariates_empty_on_every_row_pass_with_a_warning(tmp_path):
    df = good_table().assign(age=np.nan, pdl1=np.nan, ecog=np.nan)
    df.to_csv(tmp_path / "c.csv", index=False)  # read back, the empty label column is a float one
    from_file = pd.read_csv(tmp_path / "c.csv")
    assert from_file["pdl1"].dtype == float
    with pytest.warns(InputWarning, match="covariate.*age, ecog, pdl1 empty on every row"):
        out = validate(from_file)
    assert out[["age", "pdl1", "ecog"]].isna().all().all() and out["pdl1"].dtype == object


@pytest.mark.parametrize("yes, no", [("yes", "no"), ("Yes", "No"), ("Y", "n"), ("TRUE", "false"),
                                     (True, False), ("1", "0")])
def test_event_words_are_events(yes, no):
    df = good_table().astype({"pfs_event": object, "os_event": object})
    df["pfs_event"] = [yes, no] * 3
    df["os_event"] = [no, yes] * 3
    out = validate(df)
    assert list(out["pfs_event"]) == [1, 0] * 3 and out["pfs_event"].dtype == "int64"
    assert list(out["os_event"]) == [0, 1] * 3


def test_an_unknown_event_word_is_named():
    df = good_table().astype({"pfs_event": object})
    df.loc[2, "pfs_event"] = "maybe"
    p = only_problem(df)
    assert (p.column, p.rows, p.found) == ("pfs_event", ("P02",), ("maybe",))
    assert "yes/no" in p.expected


def test_a_missing_time_column_is_not_also_an_order_problem():
    assert [p.column for p in problems_of(good_table().drop(columns="os_months"))] == ["os_months"]


def test_rows_are_named_whatever_the_index():
    df = good_table().set_index("id", drop=False)
    df.iloc[3, df.columns.get_loc("age")] = 5.0
    assert only_problem(df).rows == ("P03",)

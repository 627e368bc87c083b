"""A mapping's dates turned into the cohort's months and events; bad dates refused with their rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features import io
from features.schema import CohortValidationError
from tests.test_schema import good_table

DATES_MAPPING = """
columns: {id: PatientID}
dates: {start: start_2L, progression: prog_date, death: death_date, last_contact: last_seen}
"""
MONTH = 365.25 / 12  # days


def dated_table() -> pd.DataFrame:
    """The good table with dates for its outcomes: one row per way a follow-up can end."""
    df = good_table().drop(columns=["pfs_months", "pfs_event", "os_months", "os_event"])
    df = df.rename(columns={"id": "PatientID"})
    df["start_2L"] = ["2021-01-01", "2021-02-01", "2021-03-01", "2021-04-01", "2021-05-01", "2021-06-01"]
    df["prog_date"] = ["2021-04-01", None, "2021-05-15", None, "2021-06-01", None]
    df["death_date"] = [None, "2021-09-01", "2022-01-01", None, None, None]
    df["last_seen"] = ["2021-12-01", "2021-09-01", None, "2022-04-01", "2021-10-01", "2021-07-01"]
    return df


def days(a: str, b: str) -> float:
    return (pd.Timestamp(b) - pd.Timestamp(a)).days


# PFS: progression, else death, else last contact; OS: death, else last contact
EXPECTED = pd.DataFrame({
    "pfs_months": [days("2021-01-01", "2021-04-01"), days("2021-02-01", "2021-09-01"),
                   days("2021-03-01", "2021-05-15"), days("2021-04-01", "2022-04-01"),
                   days("2021-05-01", "2021-06-01"), days("2021-06-01", "2021-07-01")],
    "pfs_event": [1, 1, 1, 0, 1, 0],
    "os_months": [days("2021-01-01", "2021-12-01"), days("2021-02-01", "2021-09-01"),
                  days("2021-03-01", "2022-01-01"), days("2021-04-01", "2022-04-01"),
                  days("2021-05-01", "2021-10-01"), days("2021-06-01", "2021-07-01")],
    "os_event": [0, 1, 1, 0, 0, 0],
}).assign(pfs_months=lambda d: d.pfs_months / MONTH, os_months=lambda d: d.os_months / MONTH)


def load(tmp_path, df: pd.DataFrame, mapping: str = DATES_MAPPING, name: str = "dated.csv") -> pd.DataFrame:
    path = tmp_path / name
    if name.endswith(".csv"):
        df.to_csv(path, index=False)
    else:
        df.to_parquet(path, index=False)
    (tmp_path / "map.yaml").write_text(mapping)
    return io.load_cohort(path, tmp_path / "map.yaml")


def problems(tmp_path, df: pd.DataFrame, mapping: str = DATES_MAPPING) -> str:
    with pytest.raises(CohortValidationError) as info:
        load(tmp_path, df, mapping)
    return str(info.value)


def test_iso_dates_give_months_and_events(tmp_path):
    out = load(tmp_path, dated_table())
    pd.testing.assert_frame_equal(out[list(EXPECTED.columns)], EXPECTED, check_dtype=False)
    assert list(out["id"]) == list(good_table()["id"])
    assert "start_2L" not in out.columns  # the dates were used, not kept


def test_a_date_format_reads_other_spellings(tmp_path):
    df = dated_table()
    for col in ("start_2L", "prog_date", "death_date", "last_seen"):
        df[col] = pd.to_datetime(df[col]).dt.strftime("%d/%m/%Y")
    out = load(tmp_path, df, DATES_MAPPING + 'date_format: "%d/%m/%Y"\n')
    pd.testing.assert_frame_equal(out[list(EXPECTED.columns)], EXPECTED, check_dtype=False)


def test_iso_variants_and_time_zones(tmp_path):
    df = dated_table()
    df["start_2L"] = ["20210101", "2021-02-01T00:00", "2021-03-01 00:00:00", "2021-04-01T02:00+02:00",
                      "2021-05-01", "2021-06-01"]
    out = load(tmp_path, df)
    pd.testing.assert_frame_equal(out[list(EXPECTED.columns)], EXPECTED, check_dtype=False)


def test_dates_stored_as_dates_in_parquet(tmp_path):
    df = dated_table()
    for col in ("start_2L", "prog_date", "death_date", "last_seen"):
        df[col] = pd.to_datetime(df[col])
    out = load(tmp_path, df, name="dated.parquet")
    pd.testing.assert_frame_equal(out[list(EXPECTED.columns)], EXPECTED, check_dtype=False)


def test_unparsable_dates_are_listed_with_their_rows(tmp_path):
    df = dated_table()
    df.loc[1, "prog_date"] = "soon"
    df.loc[3, "last_seen"] = "2021-03"  # a month without its day is too coarse
    df.loc[4, "start_2L"] = "01/05/2021"  # not ISO, and no date_format given
    text = problems(tmp_path, df)
    assert "3 problem(s)" in text
    assert "column 'prog_date': expected a date of progression" in text and "ids: P01; found: soon" in text
    assert "column 'last_seen'" in text and "ids: P03; found: 2021-03" in text
    assert "column 'start_2L'" in text and "ISO 8601" in text and "date_format" in text


def test_a_wrong_date_format_names_the_format(tmp_path):
    text = problems(tmp_path, dated_table(), DATES_MAPPING + 'date_format: "%d/%m/%Y"\n')
    assert "in the format %d/%m/%Y (e.g. 04/03/2021)" in text and "P00" in text


@pytest.mark.parametrize("row, column, value, later, earlier", [
    (0, "prog_date", "2020-12-01", "progression", "the start of second-line therapy (start_2L)"),
    (1, "death_date", "2021-01-15", "death", "the start of second-line therapy (start_2L)"),
    (2, "death_date", "2021-05-01", "death", "progression (prog_date)"),
    (3, "last_seen", "2021-03-31", "last contact", "the start of second-line therapy (start_2L)"),
    (4, "last_seen", "2021-05-20", "last contact", "progression (prog_date)"),
])
def test_impossible_orders_are_refused_with_their_rows(tmp_path, row, column, value, later, earlier):
    df = dated_table()
    df.loc[row, column] = value
    text = problems(tmp_path, df)
    assert f"column '{column}': expected {later} on or after {earlier}; it is before it" in text
    assert f"ids: P0{row}" in text


def test_every_date_problem_comes_in_one_error(tmp_path):
    df = dated_table()
    df.loc[0, "prog_date"] = "2020-12-01"
    df.loc[2, "death_date"] = "2021-05-01"
    df.loc[4, "start_2L"] = None
    df.loc[5, "last_seen"] = None
    text = problems(tmp_path, df)
    assert "4 problem(s)" in text
    assert "start_2L': expected a date of the start of second-line therapy on every row" in text
    assert "death_date/last_seen': expected a death or last-contact date on every row" in text
    for row in ("P00", "P02", "P04", "P05"):
        assert row in text


def test_rows_are_named_by_number_without_an_id():
    df = dated_table()
    df.loc[2, "prog_date"] = "2021-02-01"
    with pytest.raises(CohortValidationError, match="ids: row 3"):
        io.apply_mapping(df.drop(columns="PatientID"), io.ColumnMapping.model_validate(
            {"dates": {"start": "start_2L", "progression": "prog_date", "last_contact": "last_seen"}}))


def test_first_line_pfs_from_dates(tmp_path):
    df = dated_table().drop(columns="pfs1_months")
    df["start_1L"] = ["2020-01-01", "2020-03-01", None, "2020-06-01", "2020-07-01", "2020-08-01"]
    df["prog_1L"] = ["2020-11-01", "2020-12-01", "2021-01-01", "2021-03-01", "2021-04-01", "2021-05-01"]
    mapping = DATES_MAPPING.replace("last_seen}", "last_seen, first_line_start: start_1L, "
                                    "first_line_progression: prog_1L}")
    out = load(tmp_path, df, mapping)
    assert out.loc[0, "pfs1_months"] == pytest.approx(days("2020-01-01", "2020-11-01") / MONTH)
    assert np.isnan(out.loc[2, "pfs1_months"])  # a missing first-line date: a missing covariate
    df.loc[1, "prog_1L"] = "2021-03-01"  # after the second line started
    df.loc[3, "prog_1L"] = "2020-05-01"  # before the first line started
    text = problems(tmp_path, df, mapping)
    assert "column 'start_2L': expected the start of second-line therapy on or after first-line " \
           "progression (prog_1L)" in text and "ids: P01" in text
    assert "column 'prog_1L': expected first-line progression on or after the start of first-line " \
           "therapy (start_1L)" in text and "ids: P03" in text


def test_dates_and_times_for_the_same_column_clash(tmp_path):
    df = dated_table().assign(pfs_months=3.0)
    with pytest.raises(io.MappingError, match="pfs_months are in the table and the mapping's dates"):
        load(tmp_path, df)


def test_a_date_column_missing_from_the_table_is_named(tmp_path):
    with pytest.raises(io.MappingError, match="last_seen"):
        load(tmp_path, dated_table().drop(columns="last_seen"))


def test_first_line_dates_go_together(tmp_path):
    (tmp_path / "m.yaml").write_text("dates: {start: s, last_contact: l, first_line_start: f}\n")
    with pytest.raises(io.MappingError, match="first_line_start and first_line_progression go together"):
        io.load_mapping(tmp_path / "m.yaml")


def test_a_date_column_cannot_also_be_dropped(tmp_path):
    (tmp_path / "m.yaml").write_text("dates: {start: s, last_contact: l}\ndrop: [l]\n")
    with pytest.raises(io.MappingError, match="drop: l is a column of dates"):
        io.load_mapping(tmp_path / "m.yaml")


def test_blank_and_missing_words_in_a_frame_are_missing_dates(tmp_path):
    df = dated_table()
    df.loc[0, "death_date"] = ""
    df.loc[3, "prog_date"] = "NA"
    mapping = io.ColumnMapping.model_validate(
        {"columns": {"id": "PatientID"}, "dates": {"start": "start_2L", "progression": "prog_date",
                                                   "death": "death_date", "last_contact": "last_seen"}})
    out = io.apply_mapping(df, mapping)
    assert list(out["pfs_event"]) == list(EXPECTED["pfs_event"])
    assert list(out["os_event"]) == list(EXPECTED["os_event"])

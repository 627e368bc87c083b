"""Reading user tables through a column mapping."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from features import io
from features.errors import DatasetError, InputWarning
from features.schema import CohortValidationError
from tests.test_schema import good_table


def user_table() -> pd.DataFrame:
    """The good table as a hospital might export it: own names, labels and days."""
    df = good_table()
    return pd.DataFrame({
        "PatientID": df["id"], "Age": df["age"], "Gender": df["sex"].map({"male": "M", "female": "F"}),
        "Smoker": df["smoking"].map({"ever": "Yes", "never": "No"}), "ECOG": df["ecog"],
        "histology": df["histology"], "pdl1": df["pdl1"], "prior_response": df["prior_response"],
        "pfs1_months": df["pfs1_months"] * io.DAYS_PER_MONTH, "brain_mets": df["brain_mets"],
        "liver_mets": df["liver_mets"], "bone_mets": df["bone_mets"], "ici_switch": df["ici_switch"],
        "arm": df["treatment"], "PFS_days": df["pfs_months"] * io.DAYS_PER_MONTH,
        "progressed": df["pfs_event"], "OS_days": df["os_months"] * io.DAYS_PER_MONTH,
        "died": df["os_event"], "site": "Hospital A",
    })


MAPPING_YAML = """
columns:
  id: PatientID
  age: Age
  sex: Gender
  smoking: Smoker
  ecog: ECOG
  treatment: arm
  pfs_months: PFS_days
  pfs_event: progressed
  os_months: OS_days
  os_event: died
values:
  sex: {M: male, F: female}
  smoking: {Yes: ever, No: never}
time_unit: days
drop: [site]
"""


def test_mapping_round_trip_csv(tmp_path):
    path = tmp_path / "user.csv"
    user_table().to_csv(path, index=False)
    (tmp_path / "map.yaml").write_text(MAPPING_YAML)
    out = io.load_cohort(path, tmp_path / "map.yaml")
    expected = good_table()
    assert list(out["smoking"]) == list(expected["smoking"])  # YAML's Yes/No booleans handled
    assert list(out["sex"]) == list(expected["sex"])
    np.testing.assert_allclose(out["pfs_months"], expected["pfs_months"], rtol=1e-9)
    np.testing.assert_allclose(out["pfs1_months"], expected["pfs1_months"], rtol=1e-9)
    np.testing.assert_allclose(out["os_months"], expected["os_months"], rtol=1e-9)


def test_parquet_round_trip(tmp_path):
    path = io.write_table(good_table(), tmp_path / "c.parquet")
    out = io.load_cohort(path)
    assert out["id"].tolist() == good_table()["id"].tolist()


def test_unmapped_label_reported_by_validation(tmp_path):
    df = user_table()
    df.loc[0, "Smoker"] = "Former"
    df.to_csv(tmp_path / "u.csv", index=False)
    (tmp_path / "m.yaml").write_text(MAPPING_YAML)
    with pytest.raises(CohortValidationError) as info:
        io.load_cohort(tmp_path / "u.csv", tmp_path / "m.yaml")
    assert "column 'smoking'" in str(info.value) and "Former" in str(info.value)


def test_mapping_typo_fails_at_load(tmp_path):
    (tmp_path / "m.yaml").write_text("colums:\n  id: PatientID\n")
    with pytest.raises(io.MappingError, match="colums"):
        io.load_mapping(tmp_path / "m.yaml")


def test_mapping_unknown_target_column(tmp_path):
    (tmp_path / "m.yaml").write_text("columns:\n  smoker_status: Smoker\n")
    with pytest.raises(io.MappingError, match="smoker_status"):
        io.load_mapping(tmp_path / "m.yaml")


def test_mapping_names_absent_source_column(tmp_path):
    good_table().to_csv(tmp_path / "c.csv", index=False)
    (tmp_path / "m.yaml").write_text("columns:\n  id: PatientNumber\n")
    with pytest.raises(io.MappingError, match="PatientNumber"):
        io.load_cohort(tmp_path / "c.csv", tmp_path / "m.yaml")


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        io.read_table(tmp_path / "nope.csv")


def test_write_table_leaves_no_partial_file(tmp_path):
    bad = pd.DataFrame({"a": [object()]})  # parquet cannot store a bare object
    with pytest.raises(ValueError):
        io.write_table(bad, tmp_path / "x.parquet")
    assert list(tmp_path.iterdir()) == []


def test_write_tables_writes_every_table_or_none(tmp_path):
    good, unwritable = good_table(), pd.DataFrame({"a": [object()]})
    with pytest.raises(ValueError):
        io.write_tables({tmp_path / "a.csv": good, tmp_path / "b.parquet": unwritable})
    assert list(tmp_path.iterdir()) == []  # the first table, written, was removed again
    written = io.write_tables({tmp_path / "a.csv": good, tmp_path / "b.parquet": good})
    assert [p.name for p in written] == ["a.csv", "b.parquet"]
    pd.testing.assert_frame_equal(pd.read_parquet(written[1]), good)


# ------------------------------------------------------- files that are not tables


def write_bytes(tmp_path, name: str, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("name, data, message", [
    ("empty.csv", b"", "is empty: expected a header line"),
    ("blank.csv", b"\n \n", "is empty"),
    ("header.csv", b"id,age,sex\n", "has a header but no rows"),
    ("noise.csv", bytes(range(256)) * 8, "binary data"),
    ("book.csv", b"PK\x03\x04" + b"\x00" * 64, "export it as CSV"),
    ("old.csv", b"\xd0\xcf\x11\xe0" + b"\x00" * 64, "Excel .xls"),
    ("data.csv", b"PAR1" + b"\x00" * 64, "give it the extension .parquet"),
    ("table.xlsx", b"id,age\nP1,50\n", "unsupported file type '.xlsx'"),
    ("broken.parquet", b"PAR1 not really", "not a readable Parquet file"),
    ("text.parquet", b"id,age\nP1,50\n", "is it a CSV file"),
    ("empty.parquet", b"", "is empty"),
    ("ragged.csv", b"id,age\nP1,50\nP2,60,extra\n", "Expected 2 fields in line 3"),
])
def test_unreadable_files_give_one_table_error_naming_the_file(tmp_path, name, data, message):
    path = write_bytes(tmp_path, name, data)
    with pytest.raises(io.TableError, match=message) as info:
        io.read_table(path)
    assert name in str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, DatasetError)


def test_header_only_parquet_is_refused(tmp_path):
    path = io.write_table(good_table().iloc[:0], tmp_path / "c.parquet")
    with pytest.raises(io.TableError, match="header but no rows"):
        io.read_table(path)


def test_a_directory_is_not_a_table(tmp_path):
    (tmp_path / "d.csv").mkdir()
    with pytest.raises(io.TableError, match="not a file"):
        io.read_table(tmp_path / "d.csv")


@pytest.mark.parametrize("sep, name", [(";", "c.csv"), ("\t", "c.tsv"), ("|", "c.csv")])
def test_the_delimiter_is_detected(tmp_path, sep, name):
    good_table().to_csv(tmp_path / name, index=False, sep=sep)
    out = io.load_cohort(tmp_path / name)
    pd.testing.assert_frame_equal(out, io.load_cohort(io.write_table(good_table(), tmp_path / "ref.csv")))


def test_a_semicolon_file_with_decimal_commas_reads_numbers(tmp_path):
    good_table().to_csv(tmp_path / "eu.csv", index=False, sep=";", decimal=",")
    assert "," in (tmp_path / "eu.csv").read_text().splitlines()[1]
    out = io.load_cohort(tmp_path / "eu.csv")
    np.testing.assert_allclose(out["age"], good_table()["age"])
    np.testing.assert_allclose(out["pfs_months"], good_table()["pfs_months"])


def test_an_ambiguous_delimiter_is_refused_with_a_hint_and_can_be_given(tmp_path):
    path = tmp_path / "odd.csv"
    path.write_text("a;b,c\n1;2,3\n4;5,6\n")
    with pytest.raises(io.TableError, match="ambiguous: comma .* and semicolon") as info:
        io.read_table(path)
    assert "delimiter:" in str(info.value)
    assert list(io.read_table(path, delimiter=";").columns) == ["a", "b,c"]
    (tmp_path / "m.yaml").write_text("delimiter: ','\n")
    assert list(io.read_mapped(path, tmp_path / "m.yaml").columns) == ["a;b", "c"]


def test_a_single_column_file_hints_at_the_delimiter(tmp_path):
    path = tmp_path / "colon.csv"
    path.write_text("id:age\nP1:50\nP2:60\n")
    with pytest.raises(io.TableError, match="single column.*delimiter"):
        io.read_table(path)


def test_a_latin1_file_is_read_with_a_warning(tmp_path):
    df = good_table().astype({"histology": object})
    df.loc[0, "histology"] = "adénocarcinome"
    df.to_csv(tmp_path / "latin.csv", index=False, encoding="latin-1")
    with pytest.warns(InputWarning, match="latin.csv is not UTF-8.*Latin-1"):
        out = io.read_table(tmp_path / "latin.csv")
    assert out.loc[0, "histology"] == "adénocarcinome"
    mapping = "encoding: latin-1\nvalues: {histology: {adénocarcinome: adenocarcinoma}}\n"
    (tmp_path / "m.yaml").write_text(mapping, encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the encoding is said: no warning
        out = io.load_cohort(tmp_path / "latin.csv", tmp_path / "m.yaml")
    assert out.loc[0, "histology"] == "adenocarcinoma"


def test_a_wrong_or_unknown_encoding_is_named(tmp_path):
    (tmp_path / "c.csv").write_bytes("id,é\nP1,1\n".encode("latin-1"))
    with pytest.raises(io.TableError, match="not valid utf-8: byte 0xe9"):
        io.read_table(tmp_path / "c.csv", encoding="utf-8")
    with pytest.raises(io.TableError, match="unknown text encoding 'klingon'"):
        io.read_table(tmp_path / "c.csv", encoding="klingon")


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16"])
def test_byte_order_marks_are_understood(tmp_path, encoding):
    good_table().to_csv(tmp_path / "c.csv", index=False, encoding=encoding)
    assert list(io.read_table(tmp_path / "c.csv").columns)[0] == "id"


# ------------------------------------------------------------- bad mapping files


@pytest.mark.parametrize("text, message", [
    ("", "is empty: expected a YAML mapping"),
    ("# nothing but a comment\n", "is empty"),
    ("- id\n- age\n", "expected a YAML mapping.*found a list"),
    ("just words\n", "expected a YAML mapping.*found a str"),
    ("columns: [id\n", "not valid YAML"),
    ("colums:\n  id: PatientID\n", "unknown key 'colums'"),
    ("dates: {start: s, last_contact: l, progresion: p}\n", "unknown key 'dates.progresion'"),
    ("dates: {start: s, progression: p}\n", "dates needs last_contact"),
    ("date_format: '%d/%m/%Y'\n", "date_format is given but no dates"),
    ("columns: {pfs_months: PFS}\ndates: {start: s, last_contact: l}\n", "pfs_months and dates: both"),
    ("delimiter: ':'\n", "delimiter"),
    ("time_unit: fortnights\n", "time_unit"),
])
def test_a_bad_mapping_file_is_named_with_its_key(tmp_path, text, message):
    (tmp_path / "m.yaml").write_text(text)
    with pytest.raises(io.MappingError, match=message) as info:
        io.load_mapping(tmp_path / "m.yaml")
    assert "m.yaml" in str(info.value)


def test_a_mapping_that_is_not_text_is_named(tmp_path):
    (tmp_path / "m.yaml").write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(io.MappingError, match="m.yaml is not UTF-8"):
        io.load_mapping(tmp_path / "m.yaml")


# -------------------------------------------------------------------- the unit rule


def days_table(**scale) -> pd.DataFrame:
    df = good_table()
    for col, factor in scale.items():
        df[col] = df[col] * factor
    return df


def test_days_without_a_time_unit_are_refused_naming_column_and_median(tmp_path):
    df = days_table(pfs_months=io.DAYS_PER_MONTH, os_months=io.DAYS_PER_MONTH)
    df.to_csv(tmp_path / "c.csv", index=False)
    median = df["pfs_months"].median()
    with pytest.raises(io.TimeUnitError, match="time_unit: days") as info:
        io.load_cohort(tmp_path / "c.csv")
    assert f"'pfs_months' has median {median:g}" in str(info.value) and "'os_months'" in str(info.value)
    assert "c.csv" in str(info.value)
    (tmp_path / "m.yaml").write_text("time_unit: days\n")
    out = io.load_cohort(tmp_path / "c.csv", tmp_path / "m.yaml")
    np.testing.assert_allclose(out["pfs_months"], good_table()["pfs_months"])


def test_a_first_line_pfs_in_days_alone_is_refused(tmp_path):
    days_table(pfs1_months=9.0).to_csv(tmp_path / "c.csv", index=False)  # medians 3-130
    with pytest.raises(io.TimeUnitError, match="'pfs1_months' has median") as info:
        io.load_cohort(tmp_path / "c.csv")
    assert "pfs_months'" not in str(info.value).replace("pfs1_months'", "")


def test_months_said_as_months_pass_the_unit_rule(tmp_path):
    df = days_table(pfs_months=10.0, os_months=10.0)  # long follow-up, really in months
    df.to_csv(tmp_path / "c.csv", index=False)
    (tmp_path / "m.yaml").write_text("time_unit: months\n")
    assert io.load_cohort(tmp_path / "c.csv", tmp_path / "m.yaml")["pfs_months"].median() > 60


def test_the_unit_rule_threshold():
    df = good_table().assign(pfs_months=60.0, os_months=60.0)
    io.check_time_unit(df)  # a median of exactly 60 passes
    with pytest.raises(io.TimeUnitError, match="60.5"):
        io.check_time_unit(df.assign(os_months=60.5))


def test_write_table_refuses_an_unknown_type(tmp_path):
    with pytest.raises(io.TableError, match="unsupported output type '.xlsx'"):
        io.write_table(good_table(), tmp_path / "c.xlsx")

"""Reading user tables through a column mapping."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features import io
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


def test_unsupported_suffix(tmp_path):
    (tmp_path / "c.xlsx").write_text("x")
    with pytest.raises(ValueError, match="xlsx"):
        io.read_table(tmp_path / "c.xlsx")


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

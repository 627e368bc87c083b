"""PD-L1 "not tested" is a category; a missing PD-L1 is imputed: the two never meet.

Through the contract, the table schema (with the old spellings read as the contract says), the
patient model and its OpenAPI schema, the page's form fields, the preprocessing pipeline, the
scorer's imputation note, and the twin (the same random stream as config 1.0.0, only the label
renamed).
"""

from __future__ import annotations

import hashlib
import warnings

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from features import io, schema, twin
from features.contract import BY_NAME, MISSING_LABEL, NOT_TESTED, design_terms, term
from features.errors import InputWarning
from features.patient import EXAMPLE_PATIENT, PatientIn, form_fields
from features.pipeline import build_preprocessor, cohort_spec

PDL1 = BY_NAME["pdl1"]

MAIN_TWIN_SHA256 = {
    "data": "aaa43c51c697db0acc2721362375846062f7ca61886a1af58b99a28c6f97e6f3",
    "truth": "95865e4c8fc566c72110b94e65db09e3fc9b2656c715f59acd3e39fbdae97c56",
}
"""sha256 of `rechallenge cohort generate --out d.csv --truth t.csv` (n 101, seed 1709) as
written by config 1.0.0, where PD-L1 not tested was labelled "unknown" (commit 056e1af)."""


def test_not_tested_is_a_level_with_its_own_term_and_missing_is_not_a_level():
    assert PDL1.levels[-1] == NOT_TESTED and PDL1.levels[0] == "<1%"
    assert term("pdl1", NOT_TESTED) == "pdl1=not tested" and "pdl1=not tested" in design_terms()
    assert MISSING_LABEL not in PDL1.levels and "unknown" not in PDL1.levels
    assert "unknown" in PDL1.ambiguous and PDL1.synonym_map()["unknown"] == NOT_TESTED


def _table(pdl1: list[object]) -> pd.DataFrame:
    rows = twin.generate(n=len(pdl1), seed=3).data
    return rows.assign(pdl1=pdl1)


def test_the_schema_keeps_not_tested_and_missing_apart_and_reads_old_spellings():
    spellings = ["not tested", " NT ", "Not done", "untested", np.nan, "", ">=50%"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no ambiguous spelling here: no warning
        out = schema.validate(_table(spellings))
    assert list(out["pdl1"].iloc[:4]) == [NOT_TESTED] * 4
    assert out["pdl1"].iloc[4:6].isna().all() and out["pdl1"].iloc[6] == ">=50%"


def test_unknown_is_read_as_not_tested_with_one_warning_saying_so():
    with pytest.warns(InputWarning) as caught:
        out = schema.validate(_table(["unknown", "Unknown", np.nan, "<1%"]), source="their.csv")
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "their.csv: pdl1 'unknown' read as 'not tested' (2 row(s))" in message
    assert "leave it empty" in message and "most frequent level" in message
    assert list(out["pdl1"].iloc[:2]) == [NOT_TESTED] * 2 and pd.isna(out["pdl1"].iloc[2])


def test_a_misspelt_level_is_still_refused_naming_the_levels():
    expected = r"one of <1%, 1-49%, >=50%, not tested.*found: nott"
    with pytest.raises(schema.CohortValidationError, match=expected):
        schema.validate(_table(["nott", "<1%"]))


def test_the_patient_model_takes_not_tested_and_null_as_different_things():
    assert PatientIn(**{**EXAMPLE_PATIENT, "pdl1": NOT_TESTED}).pdl1 == NOT_TESTED
    assert PatientIn(**{**EXAMPLE_PATIENT, "pdl1": None}).pdl1 is None
    with pytest.raises(ValidationError, match="'<1%', '1-49%', '>=50%' or 'not tested'"):
        PatientIn(**{**EXAMPLE_PATIENT, "pdl1": "unknown"})  # the API takes the contract's labels only
    field = PatientIn.model_json_schema()["properties"]["pdl1"]
    options = [branch.get("enum", [branch.get("type")]) for branch in field["anyOf"]]
    assert options == [["<1%", "1-49%", ">=50%", NOT_TESTED], ["null"]]
    assert f"null if {MISSING_LABEL} (imputed as in training" in field["description"]


def test_the_form_offers_not_tested_and_missing_separately():
    by_name = {f["name"]: f for f in form_fields()}
    pdl1 = by_name["pdl1"]
    assert NOT_TESTED in pdl1["options"] and MISSING_LABEL not in pdl1["options"]
    assert pdl1["missing"]["label"] == MISSING_LABEL and pdl1["missing"]["value"] is None
    assert "sent as null and imputed as in training: the most frequent level" in pdl1["missing"]["help"]
    assert "not a missing value" in pdl1["help"]
    assert by_name["treatment"]["missing"] is None  # required: no missing choice
    assert by_name["age"]["missing"]["label"] == MISSING_LABEL


def test_the_pipeline_gives_not_tested_its_column_and_imputes_missing(twin_data):
    pre = build_preprocessor(cohort_spec()).fit(twin_data.X)
    most_frequent = twin_data.X["pdl1"].value_counts().idxmax()
    assert most_frequent != NOT_TESTED
    rows = pd.concat([twin_data.X.iloc[:1]] * 3, ignore_index=True)
    rows["pdl1"] = [NOT_TESTED, np.nan, most_frequent]
    out = pre.transform(rows)
    pdl1_columns = [c for c in out.columns if c.startswith("pdl1=")]
    assert "pdl1=not tested" in pdl1_columns
    assert out.loc[0, "pdl1=not tested"] == 1.0
    assert out.loc[1, "pdl1=not tested"] == 0.0
    pd.testing.assert_series_equal(out.loc[1, pdl1_columns], out.loc[2, pdl1_columns], check_names=False)


def test_the_scorer_lists_only_a_missing_pdl1_as_imputed(fitted_scorer, twin_data):
    scorer = fitted_scorer("cox")
    most_frequent = twin_data.X["pdl1"].value_counts().idxmax()
    patients = [{**EXAMPLE_PATIENT, "pdl1": v} for v in (NOT_TESTED, None, most_frequent)]
    out = scorer.score(pd.DataFrame(patients))
    assert list(out["imputed"]) == ["", "pdl1", ""]
    risk = out["risk_score"].to_numpy()
    assert risk[1] == pytest.approx(risk[2], rel=1e-12)  # missing: scored as the most frequent level
    assert abs(risk[0] - risk[1]) > 1e-6  # not tested: its own coefficient


def _sha256(df: pd.DataFrame, tmp_path, name: str) -> str:
    path = io.write_table(df, tmp_path / f"{name}.csv")  # the writer `cohort generate` uses
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_twin_draws_config_1_0_0_byte_for_byte_with_only_the_label_renamed(tmp_path):
    cohort = twin.generate()
    assert cohort.config.version == "1.1.0" and (cohort.data["pdl1"] == NOT_TESTED).any()
    old_label = cohort.data.assign(pdl1=cohort.data["pdl1"].replace({NOT_TESTED: "unknown"}))
    assert _sha256(old_label, tmp_path, "data") == MAIN_TWIN_SHA256["data"]
    assert _sha256(cohort.truth, tmp_path, "truth") == MAIN_TWIN_SHA256["truth"]
    assert _sha256(cohort.data, tmp_path, "new") != MAIN_TWIN_SHA256["data"]


def test_an_old_twin_table_reads_back_as_the_new_one():
    cohort = twin.generate(n=200, seed=5)
    old = cohort.data.assign(pdl1=cohort.data["pdl1"].replace({NOT_TESTED: "unknown"}))
    with pytest.warns(InputWarning, match="pdl1 'unknown' read as 'not tested'"):
        read = schema.validate(old)
    pd.testing.assert_frame_equal(read, schema.validate(cohort.data))


def test_the_twin_truth_names_the_not_tested_term():
    cfg = twin.load_config()
    assert "pdl1=not tested" in cfg.pfs.log_hazard_ratios and "pdl1=unknown" not in cfg.pfs.log_hazard_ratios
    assert set(cfg.covariates.pdl1) == set(PDL1.levels)

"""One patient's baseline record, generated from the cohort contract (`features.contract.SPEC`).

- `PatientIn`: the pydantic model the CLI, the pyfunc and the HTTP service check a patient
  against (and the OpenAPI schema documents): every model input key is required, null
  marks a missing value (not recorded: imputed as in training, `MISSING_HOW`) unless the
  column is `required`, unknown keys are refused. A real category is a label, never null:
  PD-L1 "not tested" is the level `not tested`, distinct from a missing PD-L1 (null);
- `clear_rows`: the same checks vectorised, for tables of many patients;
- `form_fields`: the page's form; every optional field offers, apart from its levels, the
  choice `MISSING_LABEL` ("missing / not recorded"), which sends null.

Kinds, levels, ranges (with `low_inclusive`), labels, units and help all come from the
contract's `Column`s, so the three cannot drift apart.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, create_model

from features.contract import BY_NAME, FEATURES, ID, MISSING_HOW, MISSING_LABEL, Column, level_name

PATIENT_FIELDS: tuple[str, ...] = (ID, *FEATURES)
"""The keys of a patient record: an optional id and the model inputs."""
MAX_ID_LENGTH = 64

EXAMPLE_PATIENT: dict[str, Any] = {
    "id": "example-1", "age": 63, "sex": "male", "smoking": "ever", "ecog": 1,
    "histology": "adenocarcinoma", "pdl1": "1-49%", "prior_response": "SD", "pfs1_months": 6.5,
    "brain_mets": "no", "liver_mets": "no", "bone_mets": "yes", "ici_switch": "no", "treatment": "CI",
}


def _no_bool(value: Any) -> Any:
    # pydantic's lax mode would read true/false as 1/0; a boolean age is a wrong type
    if isinstance(value, bool):
        raise ValueError("Input should be a number, not a boolean")
    return value


def _value_type(col: Column) -> Any:
    """The type of a known value: an integer score, a bounded number, or one of the labels."""
    if col.kind == "ordinal":
        return Annotated[int, BeforeValidator(_no_bool), Field(ge=int(col.low), le=int(col.high))]
    if col.kind == "number":
        low = {"ge": col.low} if col.low_inclusive else {"gt": col.low}
        return Annotated[float, BeforeValidator(_no_bool), Field(le=col.high, allow_inf_nan=False, **low)]
    return Literal[col.levels]


def _allowed(col: Column) -> str:
    if col.kind == "number":
        return f"a number in {col.interval()}"
    return f"one of {', '.join(col.level_names())}"


def _description(col: Column) -> str:
    unit = f" ({col.unit})" if col.unit else ""
    planned = " (planned)" if col.role == "treatment" else ""
    missing = "" if col.required else f"; null if {MISSING_LABEL} ({MISSING_HOW})"
    text = f"{col.label}{unit}{planned}: {_allowed(col)}{missing}"
    return f"{text}. {col.help}" if col.help else text


def _field(col: Column) -> tuple[Any, Any]:
    kind = _value_type(col)
    return (kind if col.required else kind | None), Field(..., title=col.label, description=_description(col))


def _patient_model() -> type[BaseModel]:
    fields: dict[str, Any] = {
        ID: (str | None, Field(None, max_length=MAX_ID_LENGTH, description="patient id (optional)")),
    }
    fields |= {name: _field(BY_NAME[name]) for name in FEATURES}
    return create_model(
        "PatientIn", __config__=ConfigDict(extra="forbid", json_schema_extra={"examples": [EXAMPLE_PATIENT]}),
        __doc__="One patient's baseline record at the start of second-line therapy (the cohort "
                "contract). Every key is required; null marks a missing value (not recorded), imputed as "
                "in training; a real category such as PD-L1 'not tested' is its label, not null.",
        **fields)


PatientIn = _patient_model()
PATIENTS = TypeAdapter(list[PatientIn])
"""Validates a list of patient records at once."""


# ---------------------------------------------------------------------- vectorised check


def _plain_number(x: Any) -> bool:
    return isinstance(x, int | float | np.integer | np.floating) and not isinstance(x, bool | np.bool_)


def _in_range(col: Column, values: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """Plain finite numbers within the column's range (whole numbers for a score)."""
    plain = np.fromiter((_plain_number(x) for x in values), dtype=bool, count=len(values))
    number = np.where(plain & ~missing, values, np.nan).astype(np.float64)
    with np.errstate(invalid="ignore"):
        above_low = number >= col.low if col.low_inclusive else number > col.low
        ok = plain & np.isfinite(number) & above_low & (number <= col.high)
        if col.kind == "ordinal":
            ok &= number == np.round(number)
    return ok


def _known_label(col: Column, values: np.ndarray) -> np.ndarray:
    text = np.fromiter((isinstance(x, str) for x in values), dtype=bool, count=len(values))
    return text & np.isin(values, np.array(col.levels, dtype=object))


def _clear_values(col: Column, values: np.ndarray) -> np.ndarray:
    missing = pd.isna(values)
    ok = _in_range(col, values, missing) if col.numeric else _known_label(col, values)
    return ok | (missing & (not col.required))


def clear_rows(frame: pd.DataFrame) -> np.ndarray:
    """Rows of `frame` (columns `PATIENT_FIELDS`) that certainly pass `PatientIn`: text ids,
    plain numbers in range, known labels, unknowns only where allowed.

    Conservative: anything else (text numbers, booleans, unknown labels, long ids) is left
    to `PatientIn`, which accepts or rejects it with its own message.
    """
    ids = frame[ID].to_numpy(dtype=object)
    clear = np.fromiter((isinstance(x, str) and len(x) <= MAX_ID_LENGTH for x in ids), dtype=bool,
                        count=len(ids)) | pd.isna(ids)
    for name in FEATURES:
        clear &= _clear_values(BY_NAME[name], frame[name].to_numpy(dtype=object))
    return clear


# ---------------------------------------------------------------------- the page's form


def _form_field(col: Column) -> dict[str, Any]:
    default = EXAMPLE_PATIENT[col.name]
    field = {"name": col.name, "label": col.label, "unit": col.unit, "help": col.help,
             "required": col.required, **_missing_choice(col)}
    if col.kind == "ordinal":
        return {**field, "kind": "select", "numeric": True, "options": list(col.level_names()),
                "default": level_name(default)}
    if col.kind == "number":
        return {**field, "kind": "number", "min": col.low, "max": col.high,
                "low_inclusive": col.low_inclusive, "interval": col.interval(), "default": default}
    return {**field, "kind": "select", "numeric": False, "options": list(col.level_names()),
            "default": default}


def _missing_choice(col: Column) -> dict[str, Any]:
    """How an optional field offers "missing": a choice of its own, sent as null."""
    if col.required:
        return {"missing": None}
    return {"missing": {"label": MISSING_LABEL, "value": None,
                        "help": f"{MISSING_LABEL}: sent as null and {MISSING_HOW}."}}


def form_fields() -> list[dict[str, Any]]:
    """The page's form fields, one per model input, in the contract's order."""
    return [_form_field(BY_NAME[name]) for name in FEATURES]

"""Patient rows in, the typed model-input frame out (or every problem, named).

    frame = parse_patients(patients)     # a DataFrame, one record, or a list of records

Rows are checked against `features.patient.PatientIn` (generated from the cohort contract):
every model input key must be present (null = missing / not recorded, imputed as in training), categories
and ranges are the contract's, unknown keys are refused. The same check and the same
messages serve the CLI, the pyfunc and the HTTP service. A table is checked vectorised
first (`features.patient.clear_rows`); only rows it cannot clear go through pydantic.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ValidationError

from features.contract import BY_NAME, FEATURES, ID, OUTCOMES
from features.patient import PATIENT_FIELDS, PATIENTS, clear_rows

SCORE_FEATURES: tuple[str, ...] = FEATURES
"""The model inputs: the baseline covariates and the (planned) treatment."""
IGNORED_COLUMNS = OUTCOMES
"""Columns of a cohort table that scoring drops silently (outcomes are not model inputs)."""
MAX_PROBLEMS_SHOWN = 20
MAX_PROBLEMS = 200         # a table's check stops collecting after this many
PARSE_BLOCK = 2000         # rows per pydantic call on a table (problems are counted between blocks)

Patients = pd.DataFrame | Mapping[str, Any] | Sequence[Mapping[str, Any]]


class ScoringInputError(ValueError):
    """Patient rows that break the contract; `problems` = [{"field", "message"}, ...]."""

    def __init__(self, problems: list[dict[str, str]]):
        self.problems = problems
        lines = [f"{p['field']}: {p['message']}" for p in problems[:MAX_PROBLEMS_SHOWN]]
        if len(problems) > MAX_PROBLEMS_SHOWN:
            lines.append(f"... and {len(problems) - MAX_PROBLEMS_SHOWN} more problem(s)")
        super().__init__("\n".join(lines))


def _no_patient() -> ScoringInputError:
    return ScoringInputError([{"field": "patients", "message": "at least one patient is required"}])


def error_field(loc: Sequence[Any], skip: Iterable[Any] = ()) -> str:
    """`('patients', 2, 'age')` -> `patients[2].age` (location parts in `skip` are dropped)."""
    skip = set(skip)
    text = ""
    for part in loc:
        if part in skip:
            continue
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "body"


def error_message(error: Mapping[str, Any]) -> str:
    """pydantic's message, reworded where it would not tell a clinician what to do."""
    kind, msg = error.get("type", ""), str(error.get("msg", "invalid value"))
    if kind == "missing":
        return "field required (give null if the value is missing / not recorded: it is imputed)"
    if kind == "extra_forbidden":
        return f"unknown field; allowed: {', '.join(PATIENT_FIELDS)}"
    return msg.removeprefix("Value error, ")


def problems_from(errors: Iterable[Mapping[str, Any]], prefix: str = "",
                  skip: Iterable[Any] = ()) -> list[dict[str, str]]:
    """pydantic errors as [{"field", "message"}] (`prefix` before each field name)."""
    skip = tuple(skip)
    return [{"field": f"{prefix}{error_field(err.get('loc', ()), skip)}", "message": error_message(err)}
            for err in errors]


def _row_problems(errors: Iterable[Mapping[str, Any]],
                  rows: np.ndarray | None = None) -> list[dict[str, str]]:
    """Problems of a list of records, named `row <n>: <field>`; `rows` maps list position to
    table row (default: the same)."""
    out = []
    for err in errors:
        loc = list(err.get("loc", ()))
        row = None
        if loc and isinstance(loc[0], int):
            position = loc.pop(0)
            row = int(rows[position]) if rows is not None else position
        prefix = f"row {row + 1}: " if row is not None else ""
        out.append({"field": f"{prefix}{error_field(loc)}", "message": error_message(err)})
    return out


def _records(patients: Patients) -> list[dict]:
    if isinstance(patients, pd.DataFrame):
        frame = patients.drop(columns=[c for c in IGNORED_COLUMNS if c in patients.columns])
        frame = frame.astype(object).where(frame.notna(), None)
        return frame.to_dict("records")
    if isinstance(patients, Mapping):
        return [dict(patients)]
    return [dict(p) if isinstance(p, Mapping) else p for p in patients]


def parse_patients(patients: Patients, single: bool | None = None) -> pd.DataFrame:
    """Check patient rows against the contract; return the typed model-input frame.

    `patients`: a DataFrame (outcome columns dropped), one record or a list of records.
    Raises `ScoringInputError` naming every bad field (`age`, or `row 4: age` for several).
    Missing ids become `patient-<row>`.
    """
    if isinstance(patients, pd.DataFrame):
        return _parse_frame(patients)
    records = _records(patients)
    if not records:
        raise _no_patient()
    single = len(records) == 1 if single is None else single
    try:
        parsed = PATIENTS.validate_python(records)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        problems = problems_from(errors, skip=(0,)) if single else _row_problems(errors)
        raise ScoringInputError(problems) from None
    return frame_from_models(parsed)


def _numeric_ids(ids: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(ids) and not pd.api.types.is_bool_dtype(ids)


def _text_ids(ids: pd.Series) -> list[str | None]:
    """Numeric ids read from a CSV: their text, without a spurious '.0'."""
    return [None if pd.isna(x) else (str(int(x)) if float(x).is_integer() else str(x)) for x in ids]


def _parse_frame(table: pd.DataFrame) -> pd.DataFrame:
    """parse_patients for a table: a vectorised check, pydantic only for rows it cannot clear."""
    frame = table.drop(columns=[c for c in IGNORED_COLUMNS if c in table.columns]).reset_index(drop=True)
    if len(frame) == 0:
        raise _no_patient()
    if ID in frame.columns and _numeric_ids(frame[ID]):
        frame[ID] = _text_ids(frame[ID])
    columns = set(frame.columns)
    if not columns <= set(PATIENT_FIELDS) or not set(SCORE_FEATURES) <= columns:
        return _parse_rows(frame, np.arange(len(frame)))  # pydantic names the odd columns
    if ID not in columns:
        frame[ID] = None
    typed = typed_frame(frame)
    doubtful = np.flatnonzero(~clear_rows(frame))
    if len(doubtful):
        checked = _parse_rows(frame, doubtful)
        for j, column in enumerate(typed.columns):  # column by column: dtypes stay as they are
            typed.iloc[doubtful, j] = checked[column].to_numpy(dtype=typed[column].dtype)
    return typed


def _parse_rows(frame: pd.DataFrame, rows: np.ndarray) -> pd.DataFrame:
    """pydantic on the given rows of a table (errors numbered by table row), in blocks, until
    MAX_PROBLEMS problems are found."""
    problems: list[dict[str, str]] = []
    parsed = []
    for start in range(0, len(rows), PARSE_BLOCK):
        part = rows[start:start + PARSE_BLOCK]
        try:
            parsed += PATIENTS.validate_python(_records(frame.iloc[part]))
        except ValidationError as exc:
            problems += _row_problems(exc.errors(include_url=False, include_input=False), part)
            if len(problems) >= MAX_PROBLEMS:
                break
    if problems:
        raise ScoringInputError(problems)
    typed = frame_from_models(parsed)
    ids = frame[ID].to_numpy(dtype=object)[rows] if ID in frame.columns else np.full(len(rows), None)
    fill = pd.isna(ids)
    typed.loc[fill, ID] = [f"patient-{r + 1}" for r in rows[fill]]  # numbered as in the whole table
    return typed


def frame_from_models(parsed: Sequence[BaseModel]) -> pd.DataFrame:
    """The typed model-input frame from already validated `PatientIn` objects."""
    return typed_frame({c: [getattr(p, c) for p in parsed] for c in PATIENT_FIELDS})


def typed_frame(frame: pd.DataFrame | Mapping[str, Sequence[Any]]) -> pd.DataFrame:
    """Columns `PATIENT_FIELDS`: numbers as float64 (NaN = missing), labels as object (NaN =
    missing); missing ids become `patient-<row>`. No check: parse first."""
    n = len(frame) if isinstance(frame, pd.DataFrame) else len(frame[ID])
    ids = np.asarray(frame[ID], dtype=object)
    missing = pd.isna(ids)
    if missing.any():
        ids = ids.copy()
        ids[missing] = [f"patient-{i + 1}" for i in np.flatnonzero(missing)]
    out: dict[str, np.ndarray] = {ID: np.array([str(i) for i in ids], dtype=object)}
    for column in SCORE_FEATURES:
        values = np.asarray(frame[column], dtype=object)
        if BY_NAME[column].numeric:
            out[column] = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
        else:
            # NaN, not None: scikit-learn's SimpleImputer sees only NaN as missing in object columns
            out[column] = np.where(pd.isna(values), np.nan, values)
    return pd.DataFrame(out, index=pd.RangeIndex(n))


def training_frame(X: pd.DataFrame) -> pd.DataFrame:
    """The typed frame of training rows (raw covariates, with or without ids)."""
    missing = [c for c in SCORE_FEATURES if c not in X.columns]
    if missing:
        raise ValueError(f"training rows lack the column '{missing[0]}'")
    X = X.copy()
    if ID not in X.columns:
        X.insert(0, ID, None)
    return typed_frame(X[list(PATIENT_FIELDS)])

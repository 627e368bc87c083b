"""The cohort table's validation: `validate(df)` against the contract (`features.contract`).

The pandera schema is generated from the contract's column list (kinds, levels, ranges,
required columns), so a column is declared once. Validation never stops at the first
problem: every problem in the table is collected and reported in one
`CohortValidationError`, each naming the column, the offending row ids and what was expected.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pandera.pandas as pa

from features.contract import (  # noqa: F401  (re-exported: the contract's names)
    CATEGORICAL_COVARIATES,
    CATEGORIES,
    COLUMNS,
    CONTROL,
    COVARIATES,
    ENDPOINTS,
    ID,
    NUMERIC_COVARIATES,
    NUMERIC_RANGES,
    ORDINAL_LEVELS,
    OS_EVENT,
    OS_TIME,
    OUTCOMES,
    PFS_EVENT,
    PFS_TIME,
    SPEC,
    TREATED,
    TREATMENT,
    YES_NO,
    Column,
)

NUMBER_COLUMNS: tuple[str, ...] = tuple(c.name for c in SPEC if c.numeric)
"""Columns parsed as numbers: numeric and ordinal covariates, times and events."""
MAX_ROWS_SHOWN = 8


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a cohort table."""

    column: str
    expected: str
    rows: tuple[str, ...] = ()
    found: tuple[str, ...] = ()

    def describe(self) -> str:
        text = f"column '{self.column}': expected {self.expected}"
        if self.rows:
            shown = ", ".join(self.rows[:MAX_ROWS_SHOWN])
            more = f" (+{len(self.rows) - MAX_ROWS_SHOWN} more)" if len(self.rows) > MAX_ROWS_SHOWN else ""
            text += f"; {len(self.rows)} row(s) fail, ids: {shown}{more}"
        if self.found:
            text += f"; found: {', '.join(self.found[:MAX_ROWS_SHOWN])}"
        return text


@dataclass
class CohortValidationError(ValueError):
    """Raised with every problem found in a cohort table."""

    problems: list[Problem] = field(default_factory=list)
    source: str = "cohort table"

    def __str__(self) -> str:
        lines = [f"{self.source} is not a valid cohort: {len(self.problems)} problem(s)"]
        lines += [f"  - {p.describe()}" for p in self.problems]
        return "\n".join(lines)


def validate(df: pd.DataFrame, source: str = "cohort table") -> pd.DataFrame:
    """Check `df` against the cohort contract and return a typed copy.

    Numeric covariates and times come back as float64, events as int64, ids and
    category labels as str (missing covariates stay NaN). Raises
    `CohortValidationError` listing every problem found.
    """
    problems = _structure_problems(df)
    if any(p.column in (ID, "<table>") for p in problems):
        raise CohortValidationError(problems, source)
    typed, coercion_problems = _coerce(df)
    problems += coercion_problems
    problems += _value_problems(typed, {p.column: set(p.rows) for p in coercion_problems})
    if problems:
        raise CohortValidationError(problems, source)
    typed[[PFS_EVENT, OS_EVENT]] = typed[[PFS_EVENT, OS_EVENT]].astype("int64")
    return typed[list(COLUMNS)].reset_index(drop=True)


def _structure_problems(df: pd.DataFrame) -> list[Problem]:
    if not isinstance(df, pd.DataFrame):
        return [Problem("<table>", f"a pandas DataFrame, got {type(df).__name__}")]
    if len(df) == 0:
        return [Problem("<table>", "at least one patient row, the table is empty")]
    problems = []
    missing = [c for c in COLUMNS if c not in df.columns]
    extra = [str(c) for c in df.columns if c not in COLUMNS]
    problems += [Problem(c, "this column, which is missing") for c in missing]
    problems += [
        Problem(c, f"no such column (allowed: {', '.join(COLUMNS)}); map or drop it") for c in extra
    ]
    dup = df.columns[df.columns.duplicated()].unique()
    problems += [Problem(str(c), "each column once, it appears more than once") for c in dup]
    if ID in df.columns and not len(dup):
        problems += _id_problems(df[ID])
    return problems


def _id_problems(ids: pd.Series) -> list[Problem]:
    problems = []
    missing = ids.isna()
    if missing.any():
        problems.append(Problem(ID, "a patient id on every row", _row_labels(ids, missing)))
    as_text = ids[~missing].astype(str)
    dup = as_text.duplicated(keep=False)
    if dup.any():
        problems.append(
            Problem(ID, "unique patient ids", tuple(dict.fromkeys(as_text[dup])), ())
        )
    return problems


def _row_labels(ids: pd.Series, mask: pd.Series) -> tuple[str, ...]:
    """Ids of the masked rows; the row number where the id itself is missing."""
    return tuple(f"row {i + 1}" for i in np.flatnonzero(mask.to_numpy()))


def _coerce(df: pd.DataFrame) -> tuple[pd.DataFrame, list[Problem]]:
    """Parse numbers and normalise labels, reporting values that cannot be parsed."""
    out = df.copy()
    out[ID] = out[ID].astype(str)
    problems = []
    for col in NUMBER_COLUMNS:
        if col not in out.columns:
            continue
        raw = out[col]
        parsed = pd.to_numeric(raw, errors="coerce")
        if pd.api.types.is_bool_dtype(raw):
            parsed = raw.astype(float)
        bad = parsed.isna() & raw.notna()
        if bad.any():
            problems.append(
                Problem(col, "a number", tuple(out.loc[bad, ID]), tuple(map(str, raw[bad].unique())))
            )
        out[col] = parsed.astype("float64")
    for col in CATEGORIES:
        if col in out.columns:
            out[col] = out[col].map(lambda v: v if pd.isna(v) else str(v).strip())
    return out, problems


def _value_check(col: Column) -> pa.Check:
    """The check of one column's values, its message saying what is expected in words."""
    if col.kind == "time":
        above = ">" if not col.low_inclusive else ">="
        check = pa.Check.gt if not col.low_inclusive else pa.Check.ge
        return check(col.low, error=f"a time {above} {col.low:g} ({col.unit})")
    if col.kind == "number":
        unit = f" {col.unit}" if col.unit else ""
        return pa.Check.in_range(col.low, col.high, include_min=col.low_inclusive,
                                 error=f"a value in {col.interval()}{unit}")
    names = col.level_names()
    if col.kind == "event":
        return pa.Check.isin(list(col.levels), error=f"an event indicator {_either(names)}")
    if col.kind == "ordinal":
        return pa.Check.isin(list(col.levels), error=f"a score of {_either(names)}")
    return pa.Check.isin(list(col.levels), error=f"one of {', '.join(names)}")


def _either(names: tuple[str, ...]) -> str:
    """("0", "1", "2") -> "0, 1 or 2"."""
    return f"{', '.join(names[:-1])} or {names[-1]}" if len(names) > 1 else names[0]


def _cohort_schema() -> pa.DataFrameSchema:
    """The pandera schema, generated from the contract: one value check per column."""
    columns = {
        col.name: pa.Column(object if col.kind == "category" else float, _value_check(col),
                            nullable=not col.required)
        for col in SPEC if col.kind != "id"
    }
    return pa.DataFrameSchema(
        columns,
        checks=[
            pa.Check(
                lambda d: (d[OS_TIME] >= d[PFS_TIME]) | d[OS_TIME].isna() | d[PFS_TIME].isna(),
                error=f"{OS_TIME} >= {PFS_TIME} (overall survival cannot end before PFS)",
                name="os_after_pfs",
            )
        ],
        strict=False,
    )


def _value_problems(df: pd.DataFrame, unparsable: dict[str, set[str]]) -> list[Problem]:
    """Range, category, missingness and cross-column checks (pandera, lazy).

    The cross-column problem comes first, then the columns' problems in the contract's order.
    """
    schema = _cohort_schema()
    schema = schema.select_columns([c for c in schema.columns if c in df.columns])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        try:
            schema.validate(df, lazy=True)
            return []
        except pa.errors.SchemaErrors as err:
            cases = err.failure_cases
    ids = df[ID]
    problems = []
    table_wide = cases["schema_context"] == "DataFrameSchema"
    for check, group in cases[table_wide].groupby("check", sort=False):
        rows = tuple(dict.fromkeys(ids.iloc[int(i)] for i in group["index"].dropna()))
        problems.append(Problem(f"{OS_TIME}/{PFS_TIME}", str(check), rows))
    by_column = [
        problem
        for (column, check), group in cases[~table_wide].groupby(["column", "check"], sort=False)
        if (problem := _column_problem(str(column), str(check), group, ids, unparsable)) is not None
    ]
    return problems + sorted(by_column, key=lambda p: COLUMNS.index(p.column))


def _column_problem(column: str, check: str, group: pd.DataFrame, ids: pd.Series,
                    unparsable: dict[str, set[str]]) -> Problem | None:
    """One failed check of one column, or None if it only repeats an unparsable value."""
    rows = [ids.iloc[int(i)] for i in group["index"].dropna().unique()]
    if check == "not_nullable":
        # an unparsable value became NaN and was reported already as "a number"
        rows = [r for r in rows if r not in unparsable.get(column, set())]
        if not rows:
            return None
        check = "a value on every row (this column may not be missing)"
    found = tuple(dict.fromkeys(str(v) for v in group["failure_case"] if pd.notna(v)))
    return Problem(column, check, tuple(rows), found)

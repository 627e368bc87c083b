"""The cohort table's validation: `validate(df)` against the contract (`features.contract`).

The pandera schema is generated from the contract's column list (kinds, levels, ranges,
required columns), so a column is declared once. Validation never stops at the first
problem: every problem in the table is collected and reported in one
`CohortValidationError`, each naming the column, the offending row ids and what was expected.
A duplicate or missing id does not hide the other problems: rows are then named by id and
row number (`P07 (row 12)`) or by row number alone (`row 12`).

Missing values: NaN, None, and text that spreadsheets and statistics packages write for
"missing" (`MISSING_MARKERS`: "", "NA", "N/A", "NaN", "null", "None", ".", ... in any case) are
missing, not wrong. A covariate may be missing, even on every row (it is then accepted, with an
`InputWarning`: it carries no information); an outcome or the treatment may not. An infinite
number is refused as "a finite number". Event indicators are 0/1 or a word of
`contract.EVENT_WORDS` (yes/no, y/n, true/false).

Other spellings of a level: a category column's `synonyms` in the contract (PD-L1 "NT", "not
done", "unknown" -> "not tested") are read as that level, in any case. An ambiguous spelling
(PD-L1 "unknown": not tested, or not recorded?) is read as the contract says, with one
`InputWarning` per table saying how many rows were read so and how to write a missing value.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
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
    EVENT_WORDS,
    ID,
    MISSING_HOW,
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
from features.errors import InputWarning

NUMBER_COLUMNS: tuple[str, ...] = tuple(c.name for c in SPEC if c.numeric)
"""Columns parsed as numbers: numeric and ordinal covariates, times and events."""
EVENT_COLUMNS: tuple[str, ...] = tuple(c.name for c in SPEC if c.kind == "event")
MAX_ROWS_SHOWN = 8
MISSING_MARKERS = frozenset({"", ".", "na", "n/a", "#n/a", "nan", "-nan", "nat", "null", "none", "<na>"})
"""Text read as a missing value (compared stripped and lower-cased)."""
EVENT_EXPECTED = "an event indicator: 0/1, yes/no, y/n or true/false"


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
    problems = _table_problems(df)
    if problems:
        raise CohortValidationError(problems, source)
    df = blank_missing(df).reset_index(drop=True)  # pandera reports rows by position
    df = read_synonyms(df, source)
    labels = row_labels(df)
    problems = _column_problems(df) + _id_problems(df)
    typed, coercion_problems = _coerce(df, labels)
    problems += coercion_problems
    problems += _value_problems(typed, labels, {p.column: set(p.rows) for p in coercion_problems})
    if problems:
        raise CohortValidationError(problems, source)
    _warn_empty_covariates(typed, source)
    typed[[PFS_EVENT, OS_EVENT]] = typed[[PFS_EVENT, OS_EVENT]].astype("int64")
    return typed[list(COLUMNS)]


def _table_problems(df: object) -> list[Problem]:
    """What makes the table unreadable as a whole: checked first, alone."""
    if not isinstance(df, pd.DataFrame):
        return [Problem("<table>", f"a pandas DataFrame, got {type(df).__name__}")]
    if len(df) == 0:
        return [Problem("<table>", "at least one patient row, the table is empty")]
    dup = df.columns[df.columns.duplicated()].unique()
    return [Problem(str(c), "each column once, it appears more than once") for c in dup]


def _column_problems(df: pd.DataFrame) -> list[Problem]:
    missing = [c for c in COLUMNS if c not in df.columns]
    extra = [str(c) for c in df.columns if c not in COLUMNS]
    problems = [Problem(c, "this column, which is missing") for c in missing]
    problems += [
        Problem(c, f"no such column (allowed: {', '.join(COLUMNS)}); map or drop it") for c in extra
    ]
    return problems


def _id_problems(df: pd.DataFrame) -> list[Problem]:
    if ID not in df.columns:
        return []
    ids = df[ID]
    problems = []
    missing = ids.isna()
    if missing.any():
        rows = tuple(f"row {i + 1}" for i in np.flatnonzero(missing.to_numpy()))
        problems.append(Problem(ID, "a patient id on every row", rows))
    as_text = ids[~missing].astype(str)
    dup = as_text.duplicated(keep=False)
    if dup.any():
        problems.append(
            Problem(ID, "unique patient ids", tuple(dict.fromkeys(as_text[dup])), ())
        )
    return problems


def row_labels(df: pd.DataFrame) -> pd.Series:
    """How each row is named in a message: its id; with its row number if the id is repeated;
    its row number alone if it has no id (rows numbered from 1, the header not counted)."""
    numbers = pd.Series([f"row {i + 1}" for i in range(len(df))], index=df.index)
    if ID not in df.columns:
        return numbers
    ids = df[ID]
    text = ids.astype(str)
    repeated = text.duplicated(keep=False) & ids.notna()
    labels = text.where(~repeated, text + " (" + numbers + ")")
    return labels.where(ids.notna(), numbers)


def blank_missing(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of `df` where text meaning "missing" (`MISSING_MARKERS`) is NaN."""
    out = df.copy()
    for col in out.columns:
        if out[col].dtype == object:
            marker = out[col].map(lambda v: isinstance(v, str) and v.strip().lower() in MISSING_MARKERS)
            out[col] = out[col].mask(marker.astype(bool), np.nan)
    return out


def read_synonyms(df: pd.DataFrame, source: str = "cohort table") -> pd.DataFrame:
    """A copy of `df` with each category column's synonyms (`Column.synonyms`) read as their
    level; one `InputWarning` for the ambiguous spellings found, saying how they were read."""
    out = df.copy()
    read_as: list[str] = []
    for col in SPEC:
        if col.kind != "category" or not col.synonyms or col.name not in out.columns:
            continue
        synonyms = col.synonym_map()
        key = out[col.name].map(lambda v: v.strip().lower() if isinstance(v, str) else None)
        hit = key.isin(list(synonyms))
        out[col.name] = out[col.name].where(~hit, key.map(synonyms))
        for spelling in col.ambiguous:
            count = int((key == spelling.strip().lower()).sum())
            if count:
                read_as.append(f"{col.name} '{spelling}' read as '{synonyms[spelling]}' "
                               f"({count} row(s))")
    if read_as:
        warnings.warn(f"{source}: {'; '.join(read_as)}, as the cohort contract says; if it means "
                      f"the value was not recorded, leave it empty (a missing value is {MISSING_HOW})",
                      InputWarning, stacklevel=3)
    return out


def parse_events(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Event indicators as floats (1 = the event) and a mask of the values that are not one.

    Numbers stay numbers (a 2 is for the range check to refuse); words follow
    `contract.EVENT_WORDS`; missing stays NaN and is not flagged.
    """
    if pd.api.types.is_bool_dtype(values):
        return values.astype(float), pd.Series(False, index=values.index)
    numbers = pd.to_numeric(values, errors="coerce")
    words = values.map(lambda v: EVENT_WORDS.get(str(v).strip().lower(), np.nan)
                       if isinstance(v, str | bool | np.bool_) else np.nan)
    parsed = numbers.where(numbers.notna(), words).astype("float64")
    return parsed, parsed.isna() & values.notna()


def _warn_empty_covariates(df: pd.DataFrame, source: str) -> None:
    empty = [c for c in COVARIATES if df[c].isna().all()]
    if empty:
        warnings.warn(f"{source}: covariate(s) {', '.join(empty)} empty on every row: accepted as "
                      "missing, but they carry no information", InputWarning, stacklevel=3)


def _coerce(df: pd.DataFrame, labels: pd.Series) -> tuple[pd.DataFrame, list[Problem]]:
    """Parse numbers and normalise labels, reporting values that cannot be parsed or are infinite.

    An unparsable or infinite value becomes NaN, so the range and missing-value checks do not
    report it a second time.
    """
    out = df.copy()
    if ID in out.columns:
        out[ID] = out[ID].astype(str)
    problems = []
    for col in NUMBER_COLUMNS:
        if col in out.columns:
            out[col], found = _parse_numbers(out[col], col in EVENT_COLUMNS)
            problems += [Problem(col, expected, tuple(labels[mask]), _values(df[col][mask]))
                         for expected, mask in found if mask.any()]
    for col in CATEGORIES:
        if col in out.columns:
            # object dtype even when every label is missing (a CSV reads an empty column as float)
            out[col] = out[col].map(lambda v: v if pd.isna(v) else str(v).strip()).astype(object)
    return out, problems


def _parse_numbers(raw: pd.Series, event: bool) -> tuple[pd.Series, list[tuple[str, pd.Series]]]:
    """Numbers (NaN where not one) and the masks of the values that are not a finite number."""
    if event:
        parsed, unparsable = parse_events(raw)
        expected = EVENT_EXPECTED
    else:
        parsed = raw.astype(float) if pd.api.types.is_bool_dtype(raw) else pd.to_numeric(raw, errors="coerce")
        unparsable, expected = parsed.isna() & raw.notna(), "a number"
    parsed = parsed.astype("float64")
    infinite = pd.Series(np.isinf(parsed.to_numpy()), index=raw.index)
    return parsed.mask(infinite), [(expected, unparsable), ("a finite number", infinite)]


def _values(values: Iterable[object]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(map(str, values)))


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


def _cohort_schema(present: Iterable[str]) -> pa.DataFrameSchema:
    """The pandera schema of the `present` columns, generated from the contract: one value check
    per column, and OS >= PFS when both times are there."""
    present = set(present)
    columns = {
        col.name: pa.Column(object if col.kind == "category" else float, _value_check(col),
                            nullable=not col.required)
        for col in SPEC if col.kind != "id" and col.name in present
    }
    checks = []
    if {OS_TIME, PFS_TIME} <= present:
        checks.append(pa.Check(
            lambda d: (d[OS_TIME] >= d[PFS_TIME]) | d[OS_TIME].isna() | d[PFS_TIME].isna(),
            error=f"{OS_TIME} >= {PFS_TIME} (overall survival cannot end before PFS)",
            name="os_after_pfs",
        ))
    return pa.DataFrameSchema(columns, checks=checks, strict=False)


def _value_problems(df: pd.DataFrame, labels: pd.Series,
                    unparsable: dict[str, set[str]]) -> list[Problem]:
    """Range, category, missingness and cross-column checks (pandera, lazy).

    The cross-column problem comes first, then the columns' problems in the contract's order.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        try:
            _cohort_schema(df.columns).validate(df, lazy=True)
            return []
        except pa.errors.SchemaErrors as err:
            cases = err.failure_cases
    problems = []
    table_wide = cases["schema_context"] == "DataFrameSchema"
    for check, group in cases[table_wide].groupby("check", sort=False):
        rows = tuple(dict.fromkeys(labels.iloc[int(i)] for i in group["index"].dropna()))
        problems.append(Problem(f"{OS_TIME}/{PFS_TIME}", str(check), rows))
    by_column = [
        problem
        for (column, check), group in cases[~table_wide].groupby(["column", "check"], sort=False)
        if (problem := _column_problem(str(column), str(check), group, labels, unparsable)) is not None
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

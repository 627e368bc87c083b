"""Survival times from dates: a mapping's `dates:` turned into months and event indicators.

A hospital table often holds dates, not durations. Given the dates of

- `start`: the start of second-line therapy (the rechallenge), on every row;
- `progression`, `death`: the event dates, empty when the event did not happen;
- `last_contact`: the last date the patient was known alive (the censoring date);
- optionally `first_line_start` and `first_line_progression`: the first line's PFS,

the cohort's times are, in months of 365.25 / 12 days:

- `pfs_months`: start -> progression, else death, else last contact; `pfs_event` = 1 if
  there is a progression or a death date;
- `os_months`: start -> death, else last contact; `os_event` = 1 if there is a death date;
- `pfs1_months` (when both first-line dates are mapped): first-line start -> first-line
  progression; missing on a row lacking either date (a covariate may be missing).

Dates are ISO 8601 (`2021-03-04`, `20210304`, `2021-03-04T10:30`, with or without a time zone)
unless the mapping gives a `date_format` (`%d/%m/%Y`). Unparsable dates and impossible
orders (progression, death or last contact before the start; death or last contact before
progression; first-line progression before its start or after the second line's start)
are refused in one `CohortValidationError`, each problem listing its rows.
"""

from __future__ import annotations

from datetime import date, datetime

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, model_validator

from features.contract import OS_EVENT, OS_TIME, PFS_EVENT, PFS_TIME
from features.schema import MISSING_MARKERS, CohortValidationError, Problem, row_labels

DAYS_PER_MONTH = 365.25 / 12
FIRST_LINE_PFS = "pfs1_months"
ISO_DATE = r"^(\d{4}-\d{2}-\d{2}|\d{8})([T ].+)?$"
"""A full ISO 8601 date (a day is needed: a month alone is too coarse for times in months)."""
ROLE_WORDS = {
    "start": "the start of second-line therapy", "progression": "progression", "death": "death",
    "last_contact": "last contact", "first_line_start": "the start of first-line therapy",
    "first_line_progression": "first-line progression",
}
ORDER = (  # (earlier, later): the later date may not come before the earlier one
    ("start", "progression"), ("start", "death"), ("start", "last_contact"),
    ("progression", "death"), ("progression", "last_contact"),
    ("first_line_start", "first_line_progression"), ("first_line_progression", "start"),
)


class DateColumns(BaseModel):
    """Which of the user's columns hold which date (their names, before any renaming)."""

    model_config = ConfigDict(extra="forbid")

    start: str
    progression: str | None = None
    death: str | None = None
    last_contact: str | None = None
    first_line_start: str | None = None
    first_line_progression: str | None = None

    @model_validator(mode="after")
    def _complete(self) -> DateColumns:
        if self.death is None and self.last_contact is None:
            raise ValueError("dates needs last_contact (or death): overall survival needs an "
                             "end of follow-up")
        if (self.first_line_start is None) != (self.first_line_progression is None):
            raise ValueError("first_line_start and first_line_progression go together "
                             "(first-line PFS is the time between them)")
        return self

    def roles(self) -> dict[str, str]:
        """Role -> the user's column, for the dates given."""
        return {role: col for role, col in self.model_dump().items() if col is not None}

    def derived(self) -> tuple[str, ...]:
        """The cohort columns these dates give."""
        first_line = (FIRST_LINE_PFS,) if self.first_line_start is not None else ()
        return (PFS_TIME, PFS_EVENT, OS_TIME, OS_EVENT, *first_line)


def times_from_dates(df: pd.DataFrame, dates: DateColumns, date_format: str | None = None,
                     source: str = "table") -> pd.DataFrame:
    """`df` with the cohort's times and events computed from its date columns (which are removed).

    Rows are named by the `id` column if there is one. Raises CohortValidationError listing
    every unparsable date, missing start or end of follow-up, and impossible order.
    """
    labels = row_labels(df)
    roles = dates.roles()
    parsed: dict[str, pd.Series] = {}
    problems: list[Problem] = []
    given = pd.Series(False, index=df.index)  # rows with an unparsable date: reported once, as that
    for role, column in roles.items():
        parsed[role], bad = parse_dates(df[column], date_format)
        given |= bad
        if bad.any():
            problems.append(Problem(column, f"a date of {ROLE_WORDS[role]}, {_format_words(date_format)}",
                                    tuple(labels[bad]), tuple(dict.fromkeys(map(str, df[column][bad])))))
    problems += _missing_dates(parsed, roles, labels[~given])
    problems += _impossible_orders(parsed, roles, labels)
    if problems:
        raise CohortValidationError(problems, source)
    out = df.drop(columns=list(roles.values()))
    for column, values in _times(parsed).items():
        out[column] = values
    return out


def parse_dates(values: pd.Series, date_format: str | None = None) -> tuple[pd.Series, pd.Series]:
    """Dates as naive timestamps (UTC for those with a time zone), and the mask of unparsable values.

    An empty cell or a word meaning missing (`schema.MISSING_MARKERS`) is a missing date."""
    if pd.api.types.is_datetime64_any_dtype(values):
        stamps = pd.to_datetime(values, utc=True).dt.tz_localize(None)
        return stamps, pd.Series(False, index=values.index)
    values = values.mask(values.map(_means_missing).astype(bool))
    is_stamp = values.map(lambda v: isinstance(v, date | datetime)).astype(bool)
    text = values.where(~is_stamp).map(_as_text).astype(object)
    if date_format is None:
        text = text.where(text.str.match(ISO_DATE, na=False))
    stamps = pd.to_datetime(text, format=date_format or "ISO8601", errors="coerce", utc=True)
    if is_stamp.any():
        stamps[is_stamp] = pd.to_datetime(values[is_stamp].map(pd.Timestamp), utc=True)
    stamps = stamps.dt.tz_localize(None)
    return stamps, stamps.isna() & values.notna()


def _means_missing(value: object) -> bool:
    return isinstance(value, str) and value.strip().lower() in MISSING_MARKERS


def _as_text(value: object) -> object:
    """A date as its text: 20210304.0 (a column of numbers with gaps reads as floats) -> "20210304"."""
    if pd.isna(value):
        return np.nan
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _format_words(date_format: str | None) -> str:
    if date_format is None:
        return "ISO 8601 (e.g. 2021-03-04), or give date_format in the mapping"
    return f"in the format {date_format} (e.g. {datetime(2021, 3, 4).strftime(date_format)})"


def _missing_dates(parsed: dict[str, pd.Series], roles: dict[str, str],
                   labels: pd.Series) -> list[Problem]:
    """Rows (of those `labels` names) without a start date, or without an end of follow-up."""
    problems = []
    no_start = parsed["start"].isna()[labels.index]
    if no_start.any():
        problems.append(Problem(roles["start"], f"a date of {ROLE_WORDS['start']} on every row",
                                tuple(labels[no_start])))
    ends = [parsed[r].isna()[labels.index] for r in ("death", "last_contact") if r in parsed]
    no_end = np.logical_and.reduce(ends)
    if no_end.any():
        columns = "/".join(roles[r] for r in ("death", "last_contact") if r in roles)
        problems.append(Problem(columns, "a death or last-contact date on every row (the end of "
                                "follow-up)", tuple(labels[no_end])))
    return problems


def _impossible_orders(parsed: dict[str, pd.Series], roles: dict[str, str],
                       labels: pd.Series) -> list[Problem]:
    problems = []
    for earlier, later in ORDER:
        if earlier in parsed and later in parsed:
            wrong = parsed[later] < parsed[earlier]  # False where either date is missing
            if wrong.any():
                problems.append(Problem(
                    roles[later], f"{ROLE_WORDS[later]} on or after {ROLE_WORDS[earlier]} "
                    f"({roles[earlier]}); it is before it", tuple(labels[wrong])))
    return problems


def _months(start: pd.Series, end: pd.Series) -> pd.Series:
    return (end - start) / pd.Timedelta(days=1) / DAYS_PER_MONTH


def _times(parsed: dict[str, pd.Series]) -> dict[str, pd.Series]:
    start = parsed["start"]
    missing = pd.Series(pd.NaT, index=start.index, dtype="datetime64[ns]")
    progression, death, last = (parsed.get(r, missing) for r in ("progression", "death", "last_contact"))
    times = {
        PFS_TIME: _months(start, progression.fillna(death).fillna(last)),
        PFS_EVENT: (progression.notna() | death.notna()).astype(int),
        OS_TIME: _months(start, death.fillna(last)),
        OS_EVENT: death.notna().astype(int),
    }
    if "first_line_start" in parsed:
        times[FIRST_LINE_PFS] = _months(parsed["first_line_start"], parsed["first_line_progression"])
    return times

"""Read a user's cohort table (CSV or Parquet) through a column mapping into a validated frame.

A mapping is a small YAML file that renames the user's columns to ours, translates
their category labels to ours, converts times to months or derives them from dates, e.g.::

    columns:            # our column: your column
      id: patient_id
      pfs_months: PFS_days
      pfs_event: progressed
    values:             # our column: {your label: our label}
      smoking: {"Yes": ever, "No": never}
    time_unit: days     # days | weeks | months | years (pfs_months, os_months, pfs1_months)
    drop: [site]        # your columns to ignore
    # instead of pfs_/os_ times and events (see features.dates):
    dates: {start: start_2L, progression: prog_date, death: death_date, last_contact: last_seen}
    date_format: "%d/%m/%Y"   # optional; ISO 8601 otherwise
    delimiter: ";"      # optional: the file's delimiter, detected otherwise (features.tables)
    encoding: latin-1   # optional: the file's encoding, UTF-8 (or a noted Latin-1) otherwise

The unit rule: a time given as a number with no `time_unit` must look like months. When the
median of `pfs_months` or `os_months`, or of `pfs1_months`, is over 60 (five years: days or
weeks, not months, in this setting), the table is refused with a `TimeUnitError` naming the
column and its median; `time_unit: months` says they really are months.

Nothing else happens here: no imputation, no feature engineering.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from features import schema
from features.contract import COLUMNS, MONTH_COLUMNS
from features.dates import DAYS_PER_MONTH, DateColumns, times_from_dates
from features.errors import MappingError, TableError, TimeUnitError
from features.tables import DELIMITERS, read_table

__all__ = [
    "DAYS_PER_MONTH", "TIME_FACTORS", "ColumnMapping", "MappingError", "TableError", "TimeUnitError",
    "apply_mapping", "check_time_unit", "load_cohort", "load_mapping", "read_mapped", "read_table",
    "write_table", "write_tables",
]

TABLE_SUFFIXES = (".csv", ".parquet", ".pq")
TIME_FACTORS = {"days": 1 / DAYS_PER_MONTH, "weeks": 7 / DAYS_PER_MONTH, "months": 1.0,
                "years": 12.0}
MONTHS_PLAUSIBLE_MEDIAN = 60.0
"""The largest median of a time column that passes for months when no `time_unit` is given."""
_TRUE_WORDS = ("true", "yes", "y", "on")
_FALSE_WORDS = ("false", "no", "n", "off")


class ColumnMapping(BaseModel):
    """A user's column names and labels translated to the cohort contract."""

    model_config = ConfigDict(extra="forbid")

    columns: dict[str, str] = Field(default_factory=dict)
    values: dict[str, dict[str, str | int | float]] = Field(default_factory=dict)
    time_unit: Literal["days", "weeks", "months", "years"] | None = None
    """None: not said; times are taken as months if they look like months (the unit rule)."""
    drop: list[str] = Field(default_factory=list)
    dates: DateColumns | None = None
    date_format: str | None = None
    delimiter: Literal[DELIMITERS] | None = None  # type: ignore[valid-type]
    encoding: str | None = None

    @field_validator("columns", "values")
    @classmethod
    def _known_targets(cls, v: dict) -> dict:
        unknown = [k for k in v if k not in COLUMNS]
        if unknown:
            raise ValueError(
                f"unknown cohort column(s) {unknown}; ours are: {', '.join(COLUMNS)}"
            )
        return v

    @field_validator("values", mode="before")
    @classmethod
    def _label_keys_as_text(cls, v: dict) -> dict:
        # YAML 1.1 reads Yes/No as booleans: keep them as the words the user typed.
        return {col: {_label_key(k): val for k, val in (labels or {}).items()}
                for col, labels in (v or {}).items()}

    @model_validator(mode="after")
    def _dates_or_times(self) -> ColumnMapping:
        if self.dates is None:
            if self.date_format is not None:
                raise ValueError("date_format is given but no dates: to read")
            return self
        both = [c for c in self.dates.derived() if c in self.columns]
        if both:
            raise ValueError(f"columns: {', '.join(both)} and dates: both give them; keep one")
        dropped = [c for c in self.dates.roles().values() if c in self.drop]
        if dropped:
            raise ValueError(f"drop: {', '.join(dropped)} is a column of dates: it cannot be dropped")
        return self

    @property
    def time_factor(self) -> float:
        """What a given time is multiplied by to be in months."""
        return TIME_FACTORS[self.time_unit or "months"]


def _label_key(value: object) -> str:
    if isinstance(value, bool):
        return "<true>" if value else "<false>"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip().lower()


def _lookup_keys(value: object) -> tuple[str, ...]:
    key = _label_key(value)
    if key in _TRUE_WORDS:
        return (key, "<true>")
    if key in _FALSE_WORDS:
        return (key, "<false>")
    return (key,)


def load_mapping(path: str | Path) -> ColumnMapping:
    """Parse and check a mapping YAML; a problem fails here, naming the file and the key."""
    path = Path(path)
    raw = _mapping_yaml(path)
    try:
        return ColumnMapping.model_validate(raw)
    except ValidationError as exc:
        details = "; ".join(_mapping_problem(e) for e in exc.errors())
        raise MappingError(f"{path}: invalid mapping: {details}") from None


def _mapping_yaml(path: Path) -> dict:
    """The mapping file's YAML, which must be a non-empty mapping of keys."""
    if not path.is_file():
        raise MappingError(f"mapping file not found: {path}" if not path.exists()
                           else f"mapping {path} is not a file")
    keys = ", ".join(ColumnMapping.model_fields)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise MappingError(f"mapping {path} is not UTF-8 text: expected a YAML file") from None
    except yaml.YAMLError as exc:
        raise MappingError(f"mapping {path}: not valid YAML: {exc}") from None
    if raw is None:
        raise MappingError(f"mapping {path} is empty: expected a YAML mapping with some of the "
                           f"keys {keys}")
    if not isinstance(raw, dict):
        raise MappingError(f"mapping {path}: expected a YAML mapping (key: value lines, keys "
                           f"{keys}), found a {type(raw).__name__}")
    return raw


def _mapping_problem(error: Mapping) -> str:
    """One pydantic error in the mapping's words: the key path, then what is wrong."""
    where = ".".join(map(str, error["loc"]))
    if error["type"] == "extra_forbidden":
        parent = ColumnMapping if len(error["loc"]) == 1 else DateColumns
        return f"unknown key '{where}' (allowed: {', '.join(parent.model_fields)})"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def apply_mapping(df: pd.DataFrame, mapping: ColumnMapping, *, source: str = "table") -> pd.DataFrame:
    """Rename, relabel and rescale a user's table (or derive its times from dates) into the
    cohort contract's terms. Raises MappingError (a column the mapping names is not in the data;
    TimeUnitError: the unit rule) or CohortValidationError (bad dates, with their rows)."""
    date_columns = list(mapping.dates.roles().values()) if mapping.dates else []
    missing = [theirs for theirs in (*mapping.columns.values(), *mapping.drop, *date_columns)
               if theirs not in df.columns]
    if missing:
        raise MappingError(
            f"{source}: the mapping names column(s) not in the data: {missing}; "
            f"the data has: {', '.join(map(str, df.columns))}"
        )
    out = df.drop(columns=mapping.drop).rename(
        columns={theirs: ours for ours, theirs in mapping.columns.items()}
    )
    for col, labels in mapping.values.items():
        if col in out.columns:
            out[col] = out[col].map(lambda v, lab=labels: _relabel(v, lab))
    for col in MONTH_COLUMNS:
        if col in out.columns and mapping.time_factor != 1.0:
            # unparsable values stay as they are, for validation to report
            numeric = pd.to_numeric(out[col], errors="coerce")
            out[col] = out[col].where(numeric.isna(), numeric * mapping.time_factor)
    if mapping.time_unit is None:
        check_time_unit(out, source)
    if mapping.dates is not None:
        out = _derive_times(out, mapping, source)
    return out


def _derive_times(df: pd.DataFrame, mapping: ColumnMapping, source: str) -> pd.DataFrame:
    clash = [c for c in mapping.dates.derived() if c in df.columns]
    if clash:
        raise MappingError(f"{source}: column(s) {', '.join(clash)} are in the table and the "
                           "mapping's dates: give them too; drop one (drop: [...])")
    return times_from_dates(df, mapping.dates, mapping.date_format, source)


def check_time_unit(df: pd.DataFrame, source: str = "table") -> None:
    """The unit rule: times with no `time_unit` must look like months (median <= 60)."""
    large = {}
    for col in MONTH_COLUMNS:
        if col in df.columns:
            times = pd.to_numeric(df[col], errors="coerce")
            median = times[np.isfinite(times)].median()  # an infinite time is validation's to report
            if median > MONTHS_PLAUSIBLE_MEDIAN:
                large[col] = median
    if large:
        found = ", ".join(f"'{col}' has median {median:g}" for col, median in large.items())
        raise TimeUnitError(
            f"{source}: {found}: more than {MONTHS_PLAUSIBLE_MEDIAN:g} months, so these times "
            "look like days or weeks; say their unit in a mapping file (--mapping) with "
            "`time_unit: days` (or `time_unit: weeks`), or `time_unit: months` if they really are months")


def _relabel(value: object, labels: dict[str, object]) -> object:
    if pd.isna(value):
        return value
    for key in _lookup_keys(value):
        if key in labels:
            return labels[key]
    return value  # left as is: validation reports it as an unknown category


def _as_mapping(mapping: str | Path | ColumnMapping | None) -> ColumnMapping:
    if mapping is None:
        return ColumnMapping()
    return mapping if isinstance(mapping, ColumnMapping) else load_mapping(mapping)


def read_mapped(path: str | Path, mapping: str | Path | ColumnMapping | None = None) -> pd.DataFrame:
    """Read a table (with the mapping's delimiter and encoding, detected where not given) and map
    it into the contract's terms, without validating it (see load_cohort)."""
    mapping = _as_mapping(mapping)
    df = read_table(path, delimiter=mapping.delimiter, encoding=mapping.encoding)
    return apply_mapping(df, mapping, source=str(path))


def load_cohort(path: str | Path, mapping: str | Path | ColumnMapping | None = None
                ) -> pd.DataFrame:
    """Read, map and validate a cohort file; raises CohortValidationError listing every problem.

    Without a mapping the table must use our column names, and its times must pass the unit
    rule. Raises FileNotFoundError, TableError, MappingError or CohortValidationError.
    """
    return schema.validate(read_mapped(path, mapping), source=str(path))


def write_table(df: pd.DataFrame, path: str | Path) -> Path:
    """Write CSV or Parquet atomically: a failed write leaves no partial file."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise TableError(f"{path}: unsupported output type '{suffix}', expected .csv or .parquet")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    try:
        if suffix == ".csv":
            df.to_csv(tmp, index=False, lineterminator="\n")
        else:
            df.to_parquet(tmp, index=False)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_tables(tables: Mapping[str | Path, pd.DataFrame]) -> list[Path]:
    """Write every table, or none: a failure removes the ones already written."""
    written: list[Path] = []
    try:
        for path, df in tables.items():
            written.append(write_table(df, path))
    except Exception:
        for path in written:
            path.unlink(missing_ok=True)  # leave nothing half-written behind
        raise
    return written

"""Read a user's cohort table (CSV or Parquet) through a column mapping into a validated frame.

A mapping is a small YAML file that renames the user's columns to ours, translates
their category labels to ours and converts times to months, e.g.::

    columns:            # our column: your column
      id: patient_id
      pfs_months: PFS_days
      pfs_event: progressed
    values:             # our column: {your label: our label}
      smoking: {"Yes": ever, "No": never}
    time_unit: days     # days | weeks | months | years (pfs_months, os_months, pfs1_months)
    drop: [site]        # your columns to ignore

Nothing else happens here: no imputation, no feature engineering.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from features import schema
from features.contract import COLUMNS, ID, MONTH_COLUMNS

TABLE_SUFFIXES = (".csv", ".parquet", ".pq")
DAYS_PER_MONTH = 365.25 / 12
TIME_FACTORS = {"days": 1 / DAYS_PER_MONTH, "weeks": 7 / DAYS_PER_MONTH, "months": 1.0,
                "years": 12.0}
_TRUE_WORDS = ("true", "yes", "y", "on")
_FALSE_WORDS = ("false", "no", "n", "off")


class MappingError(ValueError):
    """A column-mapping file that cannot be used."""


class ColumnMapping(BaseModel):
    """A user's column names and labels translated to the cohort contract."""

    model_config = ConfigDict(extra="forbid")

    columns: dict[str, str] = Field(default_factory=dict)
    values: dict[str, dict[str, str | int | float]] = Field(default_factory=dict)
    time_unit: Literal["days", "weeks", "months", "years"] = "months"
    drop: list[str] = Field(default_factory=list)

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
    """Parse and check a mapping YAML; a typo fails here, naming the key."""
    path = Path(path)
    if not path.is_file():
        raise MappingError(f"mapping file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
        return ColumnMapping.model_validate(raw)
    except yaml.YAMLError as exc:
        raise MappingError(f"{path}: not valid YAML: {exc}") from exc
    except ValidationError as exc:
        details = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or '<top>'}: {e['msg']}" for e in exc.errors()
        )
        raise MappingError(f"{path}: invalid mapping: {details}") from exc


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV or Parquet file as it is (ids kept as text)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return pd.read_csv(path, dtype={ID: str})
    if suffix in (".parquet", ".pq"):
        return pd.read_parquet(path)
    raise ValueError(f"{path}: unsupported file type '{suffix}', expected .csv or .parquet")


def apply_mapping(df: pd.DataFrame, mapping: ColumnMapping) -> pd.DataFrame:
    """Rename, relabel and rescale a user's table into the cohort contract's terms."""
    missing = [theirs for theirs in (*mapping.columns.values(), *mapping.drop)
               if theirs not in df.columns]
    if missing:
        raise MappingError(
            f"the mapping names column(s) not in the data: {missing}; "
            f"the data has: {', '.join(map(str, df.columns))}"
        )
    out = df.drop(columns=mapping.drop).rename(
        columns={theirs: ours for ours, theirs in mapping.columns.items()}
    )
    for col, labels in mapping.values.items():
        if col in out.columns:
            out[col] = out[col].map(lambda v, lab=labels: _relabel(v, lab))
    factor = TIME_FACTORS[mapping.time_unit]
    for col in MONTH_COLUMNS:
        if col in out.columns and factor != 1.0:
            # unparsable values stay as they are, for validation to report
            numeric = pd.to_numeric(out[col], errors="coerce")
            out[col] = out[col].where(numeric.isna(), numeric * factor)
    return out


def _relabel(value: object, labels: dict[str, object]) -> object:
    if pd.isna(value):
        return value
    for key in _lookup_keys(value):
        if key in labels:
            return labels[key]
    return value  # left as is: validation reports it as an unknown category


def load_cohort(path: str | Path, mapping: str | Path | ColumnMapping | None = None
                ) -> pd.DataFrame:
    """Read, map and validate a cohort file; raises CohortValidationError listing every problem."""
    df = read_table(path)
    if mapping is not None:
        mapping = mapping if isinstance(mapping, ColumnMapping) else load_mapping(mapping)
        df = apply_mapping(df, mapping)
    return schema.validate(df, source=str(path))


def write_table(df: pd.DataFrame, path: str | Path) -> Path:
    """Write CSV or Parquet atomically: a failed write leaves no partial file."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise ValueError(f"{path}: unsupported output type '{suffix}', expected .csv or .parquet")
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

"""Reading a table file as it was exported: CSV (any of four delimiters, UTF-8 or Latin-1) or Parquet.

Every way a file can fail to be a table ends in one `TableError` naming the file and what
was expected, never a raw pandas, pyarrow or codec error:

- the file type comes from the extension: `.csv` / `.tsv` (text) or `.parquet` / `.pq`;
- an empty file, a file with a header and no rows, and a binary file (a workbook, a Parquet
  or zip file renamed `.csv`) are refused;
- text is read as UTF-8 (a byte-order mark is allowed; UTF-16 with its mark too). A file
  that is not UTF-8 is read as Windows-1252 / Latin-1 (how spreadsheets export on Windows)
  with an `InputWarning` saying so; give `encoding` to read it otherwise;
- the delimiter is found, not assumed: `,` `;` tab or `|`, the one that splits the header
  and the first lines into the same number (> 1) of fields. If none or several do, the
  file is refused with a hint to give `delimiter`. With a delimiter other than `,`, numbers
  written with a decimal comma (`12,5`) are read as numbers.
"""

from __future__ import annotations

import codecs
import csv
import re
import warnings
from io import StringIO
from pathlib import Path

import pandas as pd

from features.contract import ID
from features.errors import InputWarning, TableError

TEXT_SUFFIXES = (".csv", ".tsv")
PARQUET_SUFFIXES = (".parquet", ".pq")
DELIMITERS = (",", ";", "\t", "|")
DELIMITER_NAMES = {",": "comma (,)", ";": "semicolon (;)", "\t": "tab", "|": "pipe (|)"}
FALLBACK_ENCODING = "cp1252"
"""Windows-1252: Latin-1 plus the printable characters spreadsheets put in 0x80-0x9F."""
SAMPLE_CHARS = 65_536
SAMPLE_ROWS = 50
_MAGIC = (
    (b"PAR1", "a Parquet file: give it the extension .parquet"),
    (b"PK\x03\x04", "a zip archive (an Excel .xlsx workbook?): export it as CSV"),
    (b"\xd0\xcf\x11\xe0", "an Excel .xls workbook: export it as CSV"),
    (b"\x1f\x8b", "a gzip-compressed file: decompress it first"),
)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
_DECIMAL_COMMA = re.compile(r"^[+-]?\d+(,\d+)?$")


def read_table(path: str | Path, *, delimiter: str | None = None,
               encoding: str | None = None) -> pd.DataFrame:
    """Read a CSV or Parquet file as it is (a column named `id` kept as text).

    `delimiter` and `encoding` apply to text files; left out, they are detected (see the
    module's notes). Raises FileNotFoundError for a missing file, TableError otherwise.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"data file not found: {path}")
    if not path.is_file():
        raise TableError(f"{path} is not a file: expected a .csv or .parquet table")
    suffix = path.suffix.lower()
    if suffix in PARQUET_SUFFIXES:
        df = _read_parquet(path)
    elif suffix in TEXT_SUFFIXES:
        df = _read_text(path, delimiter, encoding)
    else:
        raise TableError(f"{path}: unsupported file type '{suffix or '(none)'}'; "
                         "expected a .csv (or .tsv) text table or a .parquet file")
    if len(df) == 0:
        raise TableError(f"{path} has a header but no rows: expected one row per patient under it")
    return df


def _read_bytes(path: Path, limit: int = -1) -> bytes:
    """The file's bytes (the first `limit` of them, if given); an empty file is refused."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(limit)
    except OSError as exc:
        raise TableError(f"{path} cannot be read: {exc.strerror or exc}") from None
    if not raw.strip():
        raise TableError(f"{path} is empty: expected a header line naming the columns, "
                         "then one row per patient")
    return raw


def _read_parquet(path: Path) -> pd.DataFrame:
    head = _read_bytes(path, limit=4096)
    try:
        return pd.read_parquet(path)
    except (ValueError, OSError) as exc:  # pyarrow's ArrowInvalid is a ValueError, ArrowIOError an OSError
        looks_like_text = not _CONTROL.search(head.decode("latin-1"))
        hint = "; it looks like text: is it a CSV file (extension .csv)?" if looks_like_text else ""
        raise TableError(f"{path} is not a readable Parquet file ({exc}){hint}") from None


def _read_text(path: Path, delimiter: str | None, encoding: str | None) -> pd.DataFrame:
    raw = _read_bytes(path)
    text = _decode(path, raw, encoding)
    sep = delimiter if delimiter is not None else detect_delimiter(text, path)
    try:
        df = pd.read_csv(StringIO(text), sep=sep, dtype={ID: str})
    except (pd.errors.ParserError, ValueError) as exc:
        raise TableError(f"{path} could not be read as a {_delimiter_name(sep)}-separated table: "
                         f"{str(exc).strip()}; expected every line to have as many fields as "
                         "the header (is a text field unquoted, or the delimiter another?)") from None
    if sep != ",":
        df = _decimal_commas(df)
    return df


def _decode(path: Path, raw: bytes, encoding: str | None) -> str:
    """The file's text: the given encoding, else UTF-8 (BOM allowed), else Windows-1252 with a warning."""
    if encoding is not None:
        return _decode_as(path, raw, encoding)
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return _decode_as(path, raw, "utf-16")
    _refuse_binary(path, raw)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        where = f"byte 0x{raw[exc.start]:02x} at position {exc.start}"
    try:
        text = raw.decode(FALLBACK_ENCODING)
    except UnicodeDecodeError:
        text = raw.decode("latin-1")  # every byte is a Latin-1 character
    warnings.warn(f"{path} is not UTF-8 ({where}): read as Windows-1252 / Latin-1. If labels "
                  "look wrong, save the file as UTF-8 or give its encoding (mapping key "
                  "`encoding:`)", InputWarning, stacklevel=4)
    return text


def _decode_as(path: Path, raw: bytes, encoding: str) -> str:
    try:
        return raw.decode(encoding)
    except LookupError:
        raise TableError(f"{path}: unknown text encoding '{encoding}' "
                         "(expected e.g. utf-8, latin-1, cp1252)") from None
    except UnicodeDecodeError as exc:
        raise TableError(f"{path} is not valid {encoding}: byte 0x{raw[exc.start]:02x} at "
                         f"position {exc.start}; give the file's real encoding") from None


def _refuse_binary(path: Path, raw: bytes) -> None:
    for magic, what in _MAGIC:
        if raw.startswith(magic):
            raise TableError(f"{path} is not a text table: it is {what}")
    head = raw[:8192].decode("latin-1")
    if "\x00" in head or len(_CONTROL.findall(head)) > max(1, len(head) // 200):
        raise TableError(f"{path} is not a text table: it holds binary data; expected a CSV "
                         "file (text, one line per patient)")


def detect_delimiter(text: str, source: str | Path = "table") -> str:
    """The one of `DELIMITERS` that splits the header and the first rows into equally many fields.

    Raises TableError when no candidate does, or when several do (then the caller must say).
    """
    sample = text[:SAMPLE_CHARS]
    if len(text) > SAMPLE_CHARS:
        sample = sample[: sample.rfind("\n") + 1]  # a cut last line would look ragged
    widths = {sep: _field_counts(sample, sep) for sep in DELIMITERS}
    regular = [sep for sep, counts in widths.items() if len(set(counts)) == 1 and counts[0] > 1]
    if len(regular) == 1:
        return regular[0]
    tried = ", ".join(DELIMITER_NAMES[sep] for sep in DELIMITERS)
    if len(regular) > 1:
        found = " and ".join(f"{DELIMITER_NAMES[s]} ({widths[s][0]} columns)" for s in regular)
        raise TableError(f"{source}: the delimiter is ambiguous: {found} each split every line "
                         "evenly; say which with `delimiter:` in the mapping")
    header = {sep: counts[0] for sep, counts in widths.items() if counts}
    best = max(DELIMITERS, key=lambda sep: header.get(sep, 0))
    if header.get(best, 0) > 1:
        return best  # ragged rows: the reader names the first bad line
    raise TableError(f"{source}: found a single column (tried {tried}); expected a table with "
                     "one column per variable; if it uses another delimiter, give it with "
                     "`delimiter:` in the mapping")


def _field_counts(sample: str, sep: str) -> list[int]:
    rows = csv.reader(StringIO(sample), delimiter=sep)
    counts = []
    for row in rows:
        if row:
            counts.append(len(row))
        if len(counts) >= SAMPLE_ROWS:
            break
    return counts


def _delimiter_name(sep: str) -> str:
    return DELIMITER_NAMES.get(sep, repr(sep))


def _decimal_commas(df: pd.DataFrame) -> pd.DataFrame:
    """Text columns holding only numbers written `12,5` as numbers (European exports)."""
    for col in df.columns:
        if col == ID or df[col].dtype != object:
            continue
        text = df[col].dropna().astype(str).str.strip()
        if len(text) and text.str.match(_DECIMAL_COMMA).all() and text.str.contains(",").any():
            df[col] = pd.to_numeric(df[col].str.strip().str.replace(",", ".", regex=False))
    return df

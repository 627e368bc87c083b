"""Publication tables with great_tables (`GT(...).as_raw_html()`), ids fixed so that the same
content gives the same bytes."""

from __future__ import annotations

import math

import pandas as pd
from great_tables import GT


def _cell(value: object, digits: int) -> object:
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return f"{value:.{digits}f}"
    return value


def gt_html(frame: pd.DataFrame, table_id: str, title: str = "", subtitle: str = "", digits: int = 2,
            spanners: dict[str, list[str]] | None = None, note: str = "", groups: str | None = None,
            stub: str | None = None, labels: dict[str, str] | None = None) -> str:
    """One table as HTML: numbers to `digits` places, blank for missing, optional column spanners, row
    groups (`groups`: the column naming each row's group) and row labels (`stub`)."""
    shown = frame.copy()
    for column in shown.columns:
        if pd.api.types.is_float_dtype(shown[column]) or shown[column].dtype == object:
            shown[column] = [_cell(v, digits) for v in shown[column]]
    table = GT(shown.reset_index(drop=True), rowname_col=stub, groupname_col=groups,
               id=f"tbl-{table_id}")  # never a section's id
    if title:
        table = table.tab_header(title=title, subtitle=subtitle or None)
    for label, columns in (spanners or {}).items():
        table = table.tab_spanner(label=label, columns=columns)
    if note:
        table = table.tab_source_note(note)
    if labels:
        table = table.cols_label(**labels)
    return table.as_raw_html()


def ci_text(mean: float, low: float, high: float, digits: int = 3) -> str:
    if mean is None or not math.isfinite(mean):
        return ""
    if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ({low:.{digits}f} to {high:.{digits}f})"


def p_text(p: float) -> str:
    if p is None or not math.isfinite(p):
        return ""
    return "<0.001" if p < 0.001 else f"{p:.3f}"

"""The cohort contract, declared once.

Every column of a cohort table is one `Column` below. Everything else that needs the
contract is generated from this list: the pandera table schema and `validate`
(`features.schema`), the patient model and the page's form fields of the scoring service
(`features.patient`), the twin's labels and design terms (`features.twin`) and the
preprocessing spec (`features.pipeline.cohort_spec`).

One term-naming scheme everywhere: a level of a categorical feature is `feature=level`
(`smoking=ever`, `ecog=2`), in SMD tables, Cox tables, SHAP summaries and the twin's truth.
The first level of each categorical column is its reference level.

A real category is never the same thing as a missing value. PD-L1 "not tested" is a level
(`pdl1=not tested`, its own column in a model); a missing value (NaN in a table, null in the
API, "missing / not recorded" on the page's form) is imputed from the training rows
(`MISSING_HOW`). Old spellings of a level are read through the column's `synonyms`, each
written here; an ambiguous one (`ambiguous`, e.g. PD-L1 "unknown") is read as the contract
says and `features.schema.validate` warns once per table saying how it was read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["id", "number", "ordinal", "category", "time", "event"]
Role = Literal["id", "covariate", "treatment", "outcome"]

TERM_SEPARATOR = "="


@dataclass(frozen=True)
class Column:
    """One column of the cohort table."""

    name: str
    kind: Kind
    label: str
    role: Role = "covariate"
    help: str = ""
    unit: str = ""
    levels: tuple[str | float, ...] = ()
    """Categories or ordinal scores; the first one is the reference level."""
    low: float | None = None
    high: float | None = None
    low_inclusive: bool = True
    required: bool = False
    """A value is needed on every row (covariates may be missing: they are imputed)."""
    synonyms: tuple[tuple[str, str], ...] = ()
    """Other spellings of a level in a table, (spelling, level); compared stripped, any case."""
    ambiguous: tuple[str, ...] = ()
    """Spellings among `synonyms` that could also mean a missing value: read as the synonym
    says, with a warning."""

    @property
    def numeric(self) -> bool:
        return self.kind in ("number", "ordinal", "time", "event")

    @property
    def categorical(self) -> bool:
        """Modelled as categories (one-hot against the reference level)."""
        return self.kind in ("category", "ordinal")

    def interval(self) -> str:
        """The allowed range in words, e.g. "[18, 110]" or "(0, 600]"."""
        left = "[" if self.low_inclusive else "("
        return f"{left}{self.low:g}, {self.high:g}]"

    def level_names(self) -> tuple[str, ...]:
        return tuple(level_name(v) for v in self.levels)

    def synonym_map(self) -> dict[str, str]:
        """{lower-cased spelling: level} of the column's synonyms."""
        return {spelling.strip().lower(): level for spelling, level in self.synonyms}


YES_NO = ("no", "yes")
EVENT_WORDS: dict[str, float] = {"1": 1.0, "0": 0.0, "true": 1.0, "false": 0.0, "yes": 1.0, "no": 0.0,
                                 "y": 1.0, "n": 0.0}
"""How an event indicator may be written (any case, surrounding spaces ignored): 1 = the event."""
TREATED, CONTROL = "CIA", "CI"
NOT_TESTED = "not tested"
"""PD-L1 not tested: a real category (its own term `pdl1=not tested`), not a missing value."""
MISSING_LABEL = "missing / not recorded"
"""How a missing value (NaN, null) is offered and shown; it is imputed, never a level."""
MISSING_HOW = ("imputed as in training: the most frequent level of the training rows for a "
               "category, their median for a number")
"""What happens to a missing covariate (`features.pipeline.build_preprocessor`)."""

SPEC: tuple[Column, ...] = (
    Column("id", "id", "Patient id", role="id", required=True),
    Column("age", "number", "Age", unit="years", low=18.0, high=110.0,
           help="Age at the start of second-line treatment."),
    Column("sex", "category", "Sex", levels=("female", "male")),
    Column("smoking", "category", "Smoking history", levels=("never", "ever"),
           help="Ever-smoker: current or former."),
    Column("ecog", "ordinal", "ECOG performance status", levels=(0.0, 1.0, 2.0), low=0.0, high=2.0,
           help="0 fully active, 1 restricted in strenuous activity, 2 ambulatory but unable to work."),
    Column("histology", "category", "Histology", levels=("adenocarcinoma", "squamous", "other")),
    Column("pdl1", "category", "PD-L1 tumour proportion score",
           levels=("<1%", "1-49%", ">=50%", NOT_TESTED),
           synonyms=(("not tested", NOT_TESTED), ("nt", NOT_TESTED), ("not done", NOT_TESTED),
                     ("untested", NOT_TESTED), ("unknown", NOT_TESTED)),
           ambiguous=("unknown",),
           help="Percentage of tumour cells staining for PD-L1; 'not tested' when no PD-L1 test "
                "was done (a category of its own, not a missing value)."),
    Column("prior_response", "category", "Best response to first-line immunotherapy",
           levels=("SD", "CR/PR", "PD"),
           help="RECIST best response: SD stable disease, CR/PR complete or partial response, "
                "PD progressive disease."),
    Column("pfs1_months", "number", "First-line PFS", unit="months", low=0.0, high=600.0,
           low_inclusive=False, help="Progression-free survival on first-line chemo-immunotherapy."),
    Column("brain_mets", "category", "Brain metastases", levels=YES_NO),
    Column("liver_mets", "category", "Liver metastases", levels=YES_NO),
    Column("bone_mets", "category", "Bone metastases", levels=YES_NO),
    Column("ici_switch", "category", "Switched ICI", levels=YES_NO,
           help="Rechallenged with a different immune checkpoint inhibitor than in first line."),
    Column("treatment", "category", "Second-line regimen", role="treatment", levels=(CONTROL, TREATED),
           required=True, help="CI chemo-immunotherapy; CIA chemo-immunotherapy plus an anti-angiogenic."),
    Column("pfs_months", "time", "PFS", role="outcome", unit="months", low=0.0, low_inclusive=False,
           required=True, help="Progression-free survival of the rechallenge."),
    Column("pfs_event", "event", "Progression or death", role="outcome", levels=(0.0, 1.0), required=True),
    Column("os_months", "time", "OS", role="outcome", unit="months", low=0.0, low_inclusive=False,
           required=True, help="Overall survival from the rechallenge."),
    Column("os_event", "event", "Death", role="outcome", levels=(0.0, 1.0), required=True),
)

BY_NAME: dict[str, Column] = {c.name: c for c in SPEC}
COLUMNS: tuple[str, ...] = tuple(c.name for c in SPEC)
"""Every column of a cohort table, in canonical order."""

ID = "id"
TREATMENT = "treatment"
PFS_TIME, PFS_EVENT = "pfs_months", "pfs_event"
OS_TIME, OS_EVENT = "os_months", "os_event"
OUTCOMES: tuple[str, ...] = tuple(c.name for c in SPEC if c.role == "outcome")
ENDPOINTS: dict[str, tuple[str, str]] = {"pfs": (PFS_TIME, PFS_EVENT), "os": (OS_TIME, OS_EVENT)}

COVARIATES: tuple[str, ...] = tuple(c.name for c in SPEC if c.role == "covariate")
"""Baseline covariates; any of them may be missing (NaN) and is imputed later."""
FEATURES: tuple[str, ...] = (*COVARIATES, TREATMENT)
"""The model inputs: the baseline covariates and the (planned) treatment."""

CATEGORIES: dict[str, tuple[str, ...]] = {
    c.name: c.levels for c in SPEC if c.kind == "category"  # type: ignore[misc]
}
"""Allowed labels of the categorical columns; the first is the reference level."""
ORDINAL_LEVELS: dict[str, tuple[float, ...]] = {
    c.name: c.levels for c in SPEC if c.kind == "ordinal"  # type: ignore[misc]
}
"""Numeric covariates that are summarised and modelled as categories."""
NUMERIC_RANGES: dict[str, tuple[float, float]] = {
    c.name: (c.low, c.high) for c in SPEC if c.kind in ("number", "ordinal")  # type: ignore[misc]
}
"""Ranges of the numeric covariates (closed, except where `low_inclusive` is False)."""
CATEGORICAL_COVARIATES: tuple[str, ...] = tuple(c for c in COVARIATES if c in CATEGORIES)
NUMERIC_COVARIATES: tuple[str, ...] = tuple(c for c in COVARIATES if c in NUMERIC_RANGES)
CONTINUOUS_COVARIATES: tuple[str, ...] = tuple(c for c in COVARIATES if BY_NAME[c].kind == "number")
"""Numeric covariates modelled as numbers (ordinal scores are modelled as categories)."""
ORDINAL_COVARIATES: tuple[str, ...] = tuple(c for c in COVARIATES if c in ORDINAL_LEVELS)
MONTH_COLUMNS: tuple[str, ...] = tuple(c.name for c in SPEC if c.unit == "months")
"""Durations, in months in a cohort table (a user's table may give them in other units)."""


def level_name(level: object) -> str:
    """How a level is written in a term: 1.0 -> "1", "ever" -> "ever"."""
    if isinstance(level, float):
        return str(int(level)) if level.is_integer() else f"{level:g}"
    return str(level)


def term(feature: str, level: object) -> str:
    """The one name of a level of a categorical feature: `feature=level`."""
    return f"{feature}{TERM_SEPARATOR}{level_name(level)}"


def split_term(name: str) -> tuple[str, str | None]:
    """`smoking=ever` -> ("smoking", "ever"); a numeric term `age` -> ("age", None)."""
    feature, sep, level = name.partition(TERM_SEPARATOR)
    return (feature, level) if sep else (name, None)


def design_terms(columns: tuple[str, ...] = COVARIATES) -> tuple[str, ...]:
    """The treatment-coded design terms of `columns`: numeric as is, one term per non-reference level."""
    terms: list[str] = []
    for name in columns:
        col = BY_NAME[name]
        if col.categorical:
            terms += [term(name, level) for level in col.levels[1:]]
        else:
            terms.append(name)
    return tuple(terms)

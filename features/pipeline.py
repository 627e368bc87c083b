"""From a validated table to a feature matrix: `build_preprocessor(spec)`.

The preprocessor is returned unfitted; it is fitted on training folds only, inside
the same scikit-learn Pipeline as the model, so no imputation or scaling statistic
ever sees held-out rows.

Rare levels: in a spec inferred from a user or public table (`infer_spec`), a level seen
in fewer than `min_level_rows` training rows is pooled with the other rare levels of its
feature into one column `feature=infrequent` (scikit-learn's `min_frequency`), fitted per
training fold; a level never seen in training lands there too. A level of a few rows is
where a Cox model separates (its log hazard ratio runs off to infinity) and where trees
split on noise. A feature whose levels are all rare (a training set of a few dozen rows)
becomes one pooled level and so drops out of the matrix. The cohort contract's declared
levels (`cohort_spec`) are kept as they are. `infrequent_levels(fitted)` says which levels
a fitted preprocessor pooled.

Integer columns are numbers: `infer_spec` cannot tell a count (nodes, age) from a code
(an institution id). A code is declared categorical (`categorical=[...]`); its rare
levels are then pooled like any other.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from features.contract import (
    BY_NAME,
    CATEGORICAL_COVARIATES,
    CONTINUOUS_COVARIATES,
    ORDINAL_COVARIATES,
    TERM_SEPARATOR,
    TREATMENT,
    term,
)
from features.errors import InputWarning

ONE_HOT_SEPARATOR = TERM_SEPARATOR  # one-hot columns are named like contract terms
INFREQUENT_LEVEL = "infrequent"
"""The level name of the pooled rare levels: the column `feature=infrequent`."""
MIN_LEVEL_ROWS = 10
"""Default for inferred specs: a level seen in fewer training rows is pooled as infrequent."""
_SKLEARN_INFREQUENT = "infrequent_sklearn"


@dataclass(frozen=True)
class FeatureSpec:
    """Which columns are numeric and which categorical (with their levels, reference first)."""

    numeric: tuple[str, ...] = ()
    categorical: dict[str, tuple[object, ...] | None] = field(default_factory=dict)
    min_level_rows: int | None = None  # pool levels seen in fewer training rows (None: keep all)

    @property
    def columns(self) -> list[str]:
        return [*self.numeric, *self.categorical]


def cohort_spec(include_treatment: bool = True,
                exclude: Sequence[str] = ()) -> FeatureSpec:
    """The features of a rechallenge cohort, from the contract: every baseline covariate (+ treatment).

    Continuous covariates are numeric; categories and ordinal scores are categorical with the
    contract's levels (ECOG's effect is not linear: ECOG 2 carries the risk). Column order: the
    continuous covariates, the categories, the ordinal scores, then the treatment; a fitted
    model's inputs follow this order.
    """
    numeric = tuple(c for c in CONTINUOUS_COVARIATES if c not in exclude)
    as_levels = [c for c in (*CATEGORICAL_COVARIATES, *ORDINAL_COVARIATES) if c not in exclude]
    if include_treatment:
        as_levels.append(TREATMENT)
    categorical: dict[str, tuple[object, ...] | None] = {c: BY_NAME[c].levels for c in as_levels}
    return FeatureSpec(numeric=numeric, categorical=categorical)


def infer_spec(df: pd.DataFrame, exclude: Sequence[str] = (),
               categorical: Sequence[str] = (), numeric: Sequence[str] = (),
               max_levels: int = 30, min_level_rows: int | None = MIN_LEVEL_ROWS) -> FeatureSpec:
    """Guess numeric vs categorical for a user table; `categorical`/`numeric` override.

    Numeric columns, integer codes included, are numeric; booleans and text are categorical.
    A text column with more than `max_levels` distinct values is refused (it is probably an
    id or free text), with a message naming it; a declared categorical column is not. Levels
    seen in fewer than `min_level_rows` training rows are pooled (None: never). A column
    missing on every row is accepted and left out of the spec, with an `InputWarning` naming it
    (as `features.datasets.from_cohort` does for the contract's covariates).
    """
    num, cat = [], {}
    for col in df.columns:
        if col in exclude:
            continue
        if col in categorical:
            cat[col] = None
        elif col in numeric or pd.api.types.is_numeric_dtype(df[col]) and col not in categorical:
            if pd.api.types.is_bool_dtype(df[col]):
                cat[col] = None
            else:
                num.append(col)
        else:
            n_levels = df[col].nunique(dropna=True)
            if n_levels > max_levels:
                raise ValueError(
                    f"column '{col}' is text with {n_levels} distinct values (more than "
                    f"{max_levels}); drop it or declare it categorical"
                )
            cat[col] = None
    empty = [str(c) for c in df.columns if c not in exclude and df[c].isna().all()]
    if empty:
        warnings.warn(f"feature column(s) {', '.join(empty)} entirely missing: accepted, but left out of "
                      "the features (imputing them would give a constant, which carries no information)",
                      InputWarning, stacklevel=2)
        num = [c for c in num if c not in empty]
        cat = {c: lv for c, lv in cat.items() if c not in empty}
    return FeatureSpec(numeric=tuple(num), categorical=cat, min_level_rows=min_level_rows)


def build_preprocessor(spec: FeatureSpec, scale: bool = True,
                       drop_reference: bool = True) -> ColumnTransformer:
    """Unfitted ColumnTransformer: impute (median / most frequent), scale, one-hot.

    One-hot columns are named `feature=level`; with `drop_reference` the first level
    (the reference of a Cox table) is dropped so linear models are identifiable. With
    `spec.min_level_rows`, rare levels share one column `feature=infrequent` (if the
    reference itself is rare, that pooled level becomes the reference).
    Output is a pandas DataFrame.
    """
    numeric_steps = [("impute", SimpleImputer(strategy="median"))]
    if scale:
        numeric_steps.append(("scale", StandardScaler()))
    levels = list(spec.categorical.values())
    if all(lv is None for lv in levels):
        categories = "auto"  # learned from the training fold
    elif any(lv is None for lv in levels):
        unknown = [c for c, lv in spec.categorical.items() if lv is None]
        raise ValueError(f"categorical levels must be given for all features or none; missing for {unknown}")
    else:
        categories = [list(lv) for lv in levels]
    encoder = OneHotEncoder(
        categories=categories,
        drop="first" if drop_reference else None,
        sparse_output=False,
        feature_name_combiner=_term,  # `ecog=1`, the contract's one naming scheme
        **_rare_level_options(spec.min_level_rows),
    )
    categorical_steps = Pipeline([
        ("missing", FunctionTransformer(_missing_as_nan, feature_names_out="one-to-one")),
        ("impute", SimpleImputer(strategy="most_frequent")),
        ("onehot", encoder),
    ])
    transformers = []
    if spec.numeric:
        transformers.append(("num", Pipeline(numeric_steps), list(spec.numeric)))
    if spec.categorical:
        transformers.append(("cat", categorical_steps, list(spec.categorical)))
    ct = ColumnTransformer(transformers, remainder="drop", verbose_feature_names_out=False)
    return ct.set_output(transform="pandas")


def _rare_level_options(min_level_rows: int | None) -> dict[str, object]:
    if min_level_rows is None:
        return {"handle_unknown": "ignore"}  # an unseen level: every column 0 (the reference)
    # an unseen level joins the pooled rare levels when the training fold has some
    return {"handle_unknown": "infrequent_if_exist", "min_frequency": min_level_rows}


def _term(feature: str, level: object) -> str:
    return term(feature, INFREQUENT_LEVEL if level == _SKLEARN_INFREQUENT else level)


def infrequent_levels(preprocessor) -> dict[str, tuple[object, ...]]:
    """The levels a FITTED preprocessor (from `build_preprocessor`, alone or as the first step
    of a Pipeline) pooled into `feature=infrequent`, per feature that has any."""
    ct = preprocessor[0] if isinstance(preprocessor, Pipeline) else preprocessor
    if "cat" not in ct.named_transformers_:
        return {}
    encoder = ct.named_transformers_["cat"].named_steps["onehot"]
    pooled = getattr(encoder, "infrequent_categories_", None) or [None] * len(encoder.categories_)
    return {str(col): tuple(levels) for col, levels in zip(encoder.feature_names_in_, pooled, strict=True)
            if levels is not None and len(levels)}


def describe_infrequent(pooled: Sequence[dict[str, tuple[object, ...]]], min_level_rows: int | None,
                        where: str = "the training rows") -> str:
    """One line naming the levels pooled by any of the fitted preprocessors (e.g. one per
    training fold): 'histology: levels x, y grouped as infrequent ...'; '' when none were."""
    merged: dict[str, list[object]] = {}
    for levels in pooled:
        for col, values in levels.items():
            merged.setdefault(col, [])
            merged[col] += [v for v in values if v not in merged[col]]
    if not merged:
        return ""
    parts = "; ".join(f"{col}: level{'s' if len(values) > 1 else ''} {', '.join(map(str, values))}"
                      for col, values in merged.items())
    return f"{parts} grouped as '{INFREQUENT_LEVEL}' (fewer than {min_level_rows} rows in {where})"


def _missing_as_nan(X: pd.DataFrame) -> pd.DataFrame:
    """None and pd.NA count as missing, like NaN (the imputer only recognises NaN)."""
    return X.astype(object).where(pd.notna(X), np.nan)


def original_feature(column: str, spec: FeatureSpec) -> str:
    """The input feature a transformed column comes from (`smoking=ever` -> `smoking`)."""
    if column in spec.numeric:
        return column
    base = column.split(ONE_HOT_SEPARATOR, 1)[0]
    if base in spec.categorical:
        return base
    raise KeyError(f"column '{column}' does not come from the feature spec")

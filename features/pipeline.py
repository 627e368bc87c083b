"""From a validated table to a feature matrix: `build_preprocessor(spec)`.

The preprocessor is returned unfitted; it is fitted on training folds only, inside
the same scikit-learn Pipeline as the model, so no imputation or scaling statistic
ever sees held-out rows.
"""

from __future__ import annotations

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

ONE_HOT_SEPARATOR = TERM_SEPARATOR  # one-hot columns are named like contract terms


@dataclass(frozen=True)
class FeatureSpec:
    """Which columns are numeric and which categorical (with their levels, reference first)."""

    numeric: tuple[str, ...] = ()
    categorical: dict[str, tuple[object, ...] | None] = field(default_factory=dict)

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
               max_levels: int = 30) -> FeatureSpec:
    """Guess numeric vs categorical for a user table; `categorical`/`numeric` override.

    A non-numeric column with more than `max_levels` distinct values is refused (it
    is probably an id or free text), with a message naming it.
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
    for col in df.columns:
        if col in exclude:
            continue
        if df[col].isna().all():
            raise ValueError(f"feature column '{col}' is entirely missing; drop it")
    return FeatureSpec(numeric=tuple(num), categorical=cat)


def build_preprocessor(spec: FeatureSpec, scale: bool = True,
                       drop_reference: bool = True) -> ColumnTransformer:
    """Unfitted ColumnTransformer: impute (median / most frequent), scale, one-hot.

    One-hot columns are named `feature=level`; with `drop_reference` the first level
    (the reference of a Cox table) is dropped so linear models are identifiable.
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
        handle_unknown="ignore",
        sparse_output=False,
        feature_name_combiner=term,  # `ecog=1`, the contract's one naming scheme
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

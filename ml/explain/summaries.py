"""SHAP summaries per original feature: one-hot columns summed back, ranks, directions.

`feature_shap` folds the one-hot columns (`feature=level`, `features.contract`'s term
names) back into their feature; `summarise` ranks the features by mean |SHAP| and reads
the direction of each (per level for a categorical one); `to_shap` hands the folded
values to shap's own plots.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import shap

from features.contract import level_name, split_term
from features.pipeline import FeatureSpec, original_feature
from ml.explain.explanation import Explanation


def sign(x: float) -> int:
    """+1, -1 or 0; 0 also for NaN."""
    return int(np.sign(x)) if np.isfinite(x) else 0


def _encoded_levels(feature: str, columns: Sequence[str]) -> set[str]:
    """The levels of `feature` that have a one-hot column among `columns`."""
    return {level for name, level in map(split_term, columns) if name == feature and level is not None}


def infer_feature_spec(raw: pd.DataFrame, columns: Sequence[str]) -> FeatureSpec:
    """A FeatureSpec covering the explained columns, read off the raw table.

    A raw column is numeric if it appears as itself among `columns`, categorical if
    it appears as `column=level` one-hot columns (levels in order of first appearance
    of the raw values; the reference is the level without a column).
    """
    numeric, categorical = [], {}
    for col in raw.columns:
        if col in columns:
            numeric.append(col)
        elif _encoded_levels(col, columns):
            categorical[col] = None
    return FeatureSpec(numeric=tuple(numeric), categorical=categorical)


def _spec_of(expl: Explanation, spec: FeatureSpec | None) -> FeatureSpec:
    return spec or infer_feature_spec(expl.raw_or_data, expl.columns)


def feature_shap(expl: Explanation, spec: FeatureSpec | None = None) -> pd.DataFrame:
    """SHAP values per original feature (one-hot columns summed), patients x features."""
    spec = _spec_of(expl, spec)
    groups = [original_feature(c, spec) for c in expl.columns]
    values = pd.DataFrame(expl.values, columns=expl.columns, index=expl.data.index)
    return values.T.groupby(groups, sort=False).sum().T


def _reference_level(feature: str, spec: FeatureSpec, raw_values: pd.Series,
                     columns: Sequence[str]) -> Any:
    """The spec's first level, else the observed level that has no one-hot column."""
    levels = spec.categorical.get(feature)
    if levels:
        return levels[0]
    encoded = _encoded_levels(feature, columns)
    rest = [v for v in pd.unique(raw_values.dropna()) if str(v) not in encoded]
    return rest[0] if rest else None


def level_effects(shap_feature: pd.Series, raw_values: pd.Series, reference: Any) -> dict[str, float]:
    """Mean SHAP at each non-reference level minus mean SHAP at the reference level."""
    ref = shap_feature[raw_values == reference]
    ref_mean = float(ref.mean()) if len(ref) else 0.0
    out = {}
    for level in pd.unique(raw_values.dropna()):
        if level == reference:
            continue
        out[level_name(level)] = float(shap_feature[raw_values == level].mean()) - ref_mean
    return out


def _categorical_row(phi: pd.Series, values: pd.Series, reference: Any) -> dict[str, Any]:
    effects = level_effects(phi, values, reference)
    top = max(effects, key=lambda k: abs(effects[k])) if effects else None
    return {"reference": level_name(reference) if reference is not None else None,
            "direction_by_level": {lvl: sign(v) for lvl, v in effects.items()},
            "level_effects": effects,
            "direction": sign(effects[top]) if top is not None else 0}


def _numeric_row(phi: pd.Series, values: pd.Series) -> dict[str, Any]:
    x = values.astype(float)
    corr = x.corr(phi, method="spearman") if x.nunique() > 1 and phi.nunique() > 1 else 0.0
    return {"reference": None, "direction_by_level": {}, "level_effects": {}, "direction": sign(corr)}


def summarise(expl: Explanation, spec: FeatureSpec | None = None) -> pd.DataFrame:
    """Per original feature: mean_abs_shap, rank (1 = largest), direction, level effects.

    direction (+1 raises the explained output, -1 lowers it, 0 none):
    - numeric: sign of the Spearman correlation between the feature value and its SHAP;
    - binary categorical: sign of mean SHAP at the non-reference level minus at the
      reference level (e.g. smoking: ever vs never);
    - multi-level categorical: per level vs the reference in `direction_by_level`
      (prior_response: CR/PR and PD vs SD); `direction` is then the sign at the level
      with the largest |effect|.
    """
    raw = expl.raw_or_data
    spec = _spec_of(expl, spec)
    per_feature = feature_shap(expl, spec)
    rows = []
    for feat in per_feature.columns:
        phi, values = per_feature[feat], raw.loc[per_feature.index, feat]
        row: dict[str, Any] = {"feature": feat, "mean_abs_shap": float(phi.abs().mean())}
        if feat in spec.categorical:
            row.update(_categorical_row(phi, values, _reference_level(feat, spec, values, expl.columns)))
        else:
            row.update(_numeric_row(phi, values))
        rows.append(row)
    table = pd.DataFrame(rows).sort_values("mean_abs_shap", ascending=False, kind="stable")
    table.insert(2, "rank", np.arange(1, len(table) + 1))
    return table.reset_index(drop=True)


def summary_record(expl: Explanation, summary: pd.DataFrame) -> dict[str, Any]:
    """A JSON-ready dict of one explanation's summary."""
    features = {
        r.feature: {"mean_abs_shap": float(r.mean_abs_shap), "rank": int(r.rank),
                    "direction": int(r.direction), "direction_by_level": dict(r.direction_by_level),
                    "level_effects": {k: float(v) for k, v in r.level_effects.items()},
                    "reference": r.reference}
        for r in summary.itertuples()
    }
    return {"output": expl.output, "scale": expl.scale, "method": expl.method, "exact": expl.exact,
            "base_value": expl.base_value, "additivity_error": expl.additivity_error(),
            "n": int(len(expl.data)), "features": features}


def feature_codes(raw: pd.DataFrame, features: Sequence[str], spec: FeatureSpec) -> pd.DataFrame:
    """Values per original feature as numbers: numeric as they are, categories as level codes
    (reference = 0, then the spec's level order or order of appearance)."""
    out = {}
    for feat in features:
        col = raw[feat]
        if feat in spec.categorical:
            levels = spec.categorical.get(feat) or tuple(pd.unique(col.dropna()))
            out[feat] = col.map({lvl: i for i, lvl in enumerate(levels)}).astype(float)
        else:
            out[feat] = pd.to_numeric(col, errors="coerce").astype(float)
    return pd.DataFrame(out, index=raw.index)


def to_shap(expl: Explanation, spec: FeatureSpec | None = None) -> shap.Explanation:
    """A `shap.Explanation` with one column per original feature (one-hot summed), coloured by
    `feature_codes` and displayed with the raw values, for shap's own plots."""
    raw = expl.raw_or_data
    spec = _spec_of(expl, spec)
    values = feature_shap(expl, spec)
    features = list(values.columns)
    data = feature_codes(raw.loc[values.index], features, spec)
    return shap.Explanation(values=values.to_numpy(), base_values=np.full(len(values), expl.base_value),
                            data=data.to_numpy(), feature_names=features,
                            display_data=raw.loc[values.index, features].to_numpy())

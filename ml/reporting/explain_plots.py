"""Figures for `ml.explain` results: beeswarm, mean-|SHAP| bar, per-patient waterfall.

Display only: every function takes a computed `Explanation` and draws it with shap's
own plots, one-hot columns summed back to their original feature. Beeswarm and bar
draw on a given matplotlib `ax`; shap's waterfall cannot, so it returns a new figure.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from features.pipeline import FeatureSpec
from ml.explain.explainers import Explanation, feature_shap, infer_feature_spec


def _feature_values(raw: pd.DataFrame, features: list[str], spec: FeatureSpec) -> pd.DataFrame:
    """Colour values per original feature: numbers as they are, categories as level codes
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


def to_shap(expl: Explanation, spec: FeatureSpec | None = None) -> Any:
    """A `shap.Explanation` with one column per original feature (one-hot summed)."""
    import shap

    raw = expl.raw if expl.raw is not None else expl.data
    spec = spec or infer_feature_spec(raw, expl.columns)
    values = feature_shap(expl, spec)
    data = _feature_values(raw.loc[values.index], list(values.columns), spec)
    return shap.Explanation(values=values.to_numpy(), base_values=np.full(len(values), expl.base_value),
                            data=data.to_numpy(), feature_names=list(values.columns),
                            display_data=raw.loc[values.index, list(values.columns)].to_numpy())


def _title(expl: Explanation, model: str) -> str:
    return f"{model}: SHAP of {expl.output} ({expl.scale})".strip(": ")


def plot_beeswarm(expl: Explanation, ax: Any, model: str = "", spec: FeatureSpec | None = None,
                  max_display: int = 15) -> Any:
    """Beeswarm of per-feature SHAP values; colour = feature value (category code)."""
    import shap

    shap.plots.beeswarm(to_shap(expl, spec), max_display=max_display, ax=ax, show=False,
                        plot_size=None)
    ax.set_title(_title(expl, model), fontsize=10)
    return ax


def plot_bar(expl: Explanation, ax: Any, model: str = "", spec: FeatureSpec | None = None,
             max_display: int = 15) -> Any:
    """Mean |SHAP| per original feature."""
    import shap

    shap.plots.bar(to_shap(expl, spec), max_display=max_display, ax=ax, show=False)
    ax.set_title(_title(expl, model), fontsize=10)
    return ax


def plot_waterfall(expl: Explanation, patient: Any, model: str = "", spec: FeatureSpec | None = None,
                   max_display: int = 12) -> Any:
    """Waterfall for one patient (an index label of the explained rows); returns the figure."""
    import matplotlib.pyplot as plt
    import shap

    if patient not in expl.data.index:
        raise KeyError(f"patient {patient!r} is not among the explained rows")
    row = expl.data.index.get_loc(patient)
    fig = plt.figure(figsize=(8, 6))
    shap.plots.waterfall(to_shap(expl, spec)[row], max_display=max_display, show=False)
    fig = plt.gcf()
    fig.suptitle(f"{_title(expl, model)}, patient {patient}", fontsize=10)
    return fig

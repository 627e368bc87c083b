"""The fitted preprocessor and model replayed with numpy, for fast scoring of few patients.

scikit-learn's transform and the models' own predict methods cost tens of milliseconds per
call whatever the number of rows (input validation, pandas output, DMatrix building); for
one patient that is most of the scoring time. `FastPreprocessor` and `FastModel` replay the
fitted state; `SurvivalScorer.fit` uses them only where they reproduce scikit-learn's
numbers on the training rows, and keeps the originals otherwise.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from features.contract import NUMERIC_COVARIATES, NUMERIC_RANGES
from ml.models.base import clean_curves


class FastPreprocessor:
    """The fitted `features.pipeline` ColumnTransformer replayed with numpy.

    scikit-learn's transform costs tens of milliseconds per call whatever the number of
    rows (input validation, pandas output); for one patient that is most of the scoring
    time. This replays the fitted statistics (median / most-frequent imputation,
    standardisation, one-hot with the reference level dropped). `SurvivalScorer.fit`
    checks it against scikit-learn's own transform and falls back to it when they differ
    or the preprocessor has another shape.
    """

    def __init__(self, ct: Any):
        self.columns = [str(c) for c in ct.get_feature_names_out()]
        self.blocks: list[tuple[str, list[str], dict[str, Any]]] = [
            _replay_block(trans, list(cols)) for name, trans, cols in ct.transformers_
            if name != "remainder" and trans != "drop"]

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        position = {c: i for i, c in enumerate(X.columns)}
        cells = X.to_numpy(dtype=object)  # one conversion: per-column access costs more for one row
        parts = []
        for kind, cols, p in self.blocks:
            if kind == "num":
                a = cells[:, [position[c] for c in cols]].astype(np.float64)
                a = np.where(np.isnan(a), p["fill"], a)
                parts.append((a - p["mean"]) / p["scale"])
            else:
                for col, fill, levels in zip(cols, p["fill"], p["levels"], strict=True):
                    v = cells[:, position[col]]
                    v = np.where(pd.isna(v), fill, v)
                    parts.append(np.column_stack([v == lvl for lvl in levels]).astype(np.float64)
                                 if levels else np.zeros((len(v), 0)))
        return pd.DataFrame(np.hstack(parts), columns=self.columns, index=X.index)


def _replay_block(trans: Any, cols: list[str]) -> tuple[str, list[str], dict[str, Any]]:
    """(kind, columns, fitted statistics) of one ColumnTransformer block; TypeError if the
    replay does not know its shape."""
    if not isinstance(trans, Pipeline):
        raise TypeError(f"unsupported transformer {type(trans).__name__}")
    steps = dict(trans.steps)
    # a "missing" step (None / NA -> NaN) is what the replay's pd.isna does anyway; the
    # probe in `fast_preprocessor` checks that it changes nothing else
    extra = set(steps) - {"missing"}
    if "missing" in steps and type(steps["missing"]).__name__ != "FunctionTransformer":
        raise TypeError("unsupported 'missing' step")
    if extra in ({"impute", "scale"}, {"impute"}):
        scale = steps.get("scale")
        return "num", cols, {
            "fill": np.asarray(steps["impute"].statistics_, dtype=np.float64),
            "mean": np.asarray(scale.mean_ if scale is not None else 0.0, dtype=np.float64),
            "scale": np.asarray(scale.scale_ if scale is not None else 1.0, dtype=np.float64)}
    if extra == {"impute", "onehot"}:
        enc = steps["onehot"]
        drop = enc.drop_idx_ if enc.drop_idx_ is not None else [None] * len(cols)
        levels = [[lvl for k, lvl in enumerate(cats) if d is None or k != d]
                  for cats, d in zip(enc.categories_, drop, strict=True)]
        return "cat", cols, {"fill": list(steps["impute"].statistics_), "levels": levels}
    raise TypeError(f"unsupported steps {list(steps)}")


class FastModel:
    """Risk and survival curves in one pass, checked against the model's own methods.

    Breslow-type models (Cox, Coxnet, IPTW-Cox, GBSA, XGBoost Cox): one linear predictor
    gives both the risk and S(t|x) = exp(-H0(t) exp(lp)); XGBoost's margin comes from
    `inplace_predict` (no DMatrix). Random survival forests: one `apply` over the trees
    gives both the CHF (risk = its sum over event times) and the mean tree survival.
    `fast_model` uses this only where it reproduces `predict` and
    `predict_survival_function` on training rows.
    """

    def __init__(self, model: Any):
        self.model = model
        self.kind = "generic"
        if hasattr(model, "cum_baseline_hazard_") and hasattr(model, "_log_hazard"):
            self.kind = "breslow"
            self.h0 = np.asarray(model.cum_baseline_hazard_, dtype=np.float64)
            self.booster = getattr(model, "booster_", None)
        elif type(getattr(model, "model_", None)).__name__ == "RandomSurvivalForest" and not getattr(
                model.model_, "low_memory", True):
            self.kind = "forest"

    def _lp(self, Xt: pd.DataFrame) -> np.ndarray:
        if self.booster is not None:
            return np.asarray(self.booster.inplace_predict(Xt.to_numpy(np.float32), predict_type="margin"),
                              dtype=np.float64)
        return np.asarray(self.model._log_hazard(Xt), dtype=np.float64)

    def breslow_summaries(self, Xt: pd.DataFrame, times: np.ndarray, horizons: np.ndarray,
                          grid: np.ndarray | None) -> tuple[np.ndarray, ...]:
        """(risk, S at horizons, median, S on grid or None) without the patients x times matrix:
        S(t) = exp(-H0(t) r) with r = exp(lp), and the median is the first time with
        H0(t) >= ln 2 / r (H0 is non-decreasing): a binary search per patient."""
        lp = self._lp(Xt)
        r = np.exp(np.clip(lp, -700, 700))

        def at(points: np.ndarray) -> np.ndarray:
            idx = np.searchsorted(times, points, side="right") - 1
            h = np.where(idx >= 0, self.h0[np.clip(idx, 0, None)], 0.0)
            surv = np.exp(-(r[:, None] * h))
            surv[:, points > times[-1]] = np.nan
            return surv

        with np.errstate(divide="ignore", over="ignore"):
            first = np.searchsorted(self.h0, np.log(2.0) / r, side="left")
        median = np.where(first < len(times), times[np.clip(first, 0, len(times) - 1)], np.nan)
        return lp, at(horizons), median, (at(grid) if grid is not None else None)

    def outputs(self, Xt: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(risk, survival matrix on the model's unique_times_)."""
        if self.kind == "breslow":
            lp = self._lp(Xt)
            hazard = np.exp(np.clip(lp, -700, 700))[:, None] * self.h0
            return lp, clean_curves(np.exp(-hazard))
        if self.kind == "forest":
            return self._forest_outputs(Xt)
        risk = np.asarray(self.model.predict(Xt), dtype=np.float64)
        return risk, np.asarray(self.model.predict_survival_function(Xt, return_array=True), dtype=np.float64)

    def _forest_outputs(self, Xt: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        forest = self.model.model_
        x32 = np.ascontiguousarray(Xt.to_numpy(np.float32))
        chf = np.zeros((len(Xt), len(forest.unique_times_)))
        surv = np.zeros_like(chf)
        for tree in forest.estimators_:
            value = tree.tree_.value[tree.tree_.apply(x32)]  # the low-level tree: no checks
            chf += value[:, :, 0]
            surv += value[:, :, 1]
        n = len(forest.estimators_)
        return (chf / n)[:, forest.is_event_time_].sum(1), clean_curves(surv / n)

    def agrees(self, Xt: pd.DataFrame) -> bool:
        risk, surv = self.outputs(Xt)
        ref_risk = np.asarray(self.model.predict(Xt), dtype=np.float64)
        ref_surv = np.asarray(self.model.predict_survival_function(Xt, return_array=True), dtype=np.float64)
        tol = 1e-6 * max(1.0, float(np.max(np.abs(ref_risk))))
        return (surv.shape == ref_surv.shape and np.allclose(risk, ref_risk, rtol=0, atol=tol)
                and np.allclose(surv, ref_surv, rtol=0, atol=1e-7))


def fast_preprocessor(pipeline: Any, features: pd.DataFrame) -> FastPreprocessor | None:
    """The numpy replay of the preprocessor if it reproduces scikit-learn's transform on the
    training rows and on rows with each covariate missing in turn; else None."""
    if len(pipeline.steps) != 2:
        return None
    try:
        fast = FastPreprocessor(pipeline.steps[0][1])
    except (TypeError, AttributeError, ValueError):
        return None
    probe = features.head(50).reset_index(drop=True)
    holes = pd.concat([probe.head(1)] * (2 * len(probe.columns)), ignore_index=True)
    for i, column in enumerate(probe.columns):
        holes[column] = holes[column].astype(object)
        holes.loc[2 * i, column] = np.nan
        holes.loc[2 * i + 1, column] = None if column not in NUMERIC_RANGES else np.nan
    probe = pd.concat([probe, holes], ignore_index=True)
    for column in NUMERIC_COVARIATES:
        if column in probe:
            probe[column] = probe[column].astype("float64")
    reference = pipeline.steps[0][1].transform(probe)
    mine = fast.transform(probe)
    same = list(reference.columns) == list(mine.columns) and np.allclose(
        reference.to_numpy(np.float64), mine.to_numpy(np.float64), rtol=0, atol=1e-12)
    return fast if same else None


def fast_model(model: Any, Xt: pd.DataFrame) -> FastModel:
    """The one-pass replay of `model` if it reproduces the model's own outputs on the
    (transformed) training rows `Xt`; else the model's own methods (kind "generic")."""
    replay = FastModel(model)
    if replay.kind != "generic" and not replay.agrees(Xt):
        replay.kind = "generic"
    return replay

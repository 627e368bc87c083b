"""Individual PFS scoring: one patient's (or many patients') risk, risk group, curve and reasons.

    scorer = SurvivalScorer(fitted_pipeline).fit(X_train)      # cut-offs fixed on training rows
    result = scorer.predict_result(patients)                   # ScoreResult (arrays), no I/O
    scorer.score(patients)                                     # the flat table (the pyfunc output)
    scorer.score_records(patients, curve=True)                 # JSON-ready records (HTTP service)

A `SurvivalScorer` holds a fitted `SurvivalPipeline` (preprocessor -> model), the risk
distribution of the training rows (risk-group cut-offs at the training tertiles, and
percentiles), and what the explanation needs (the training mean of the feature matrix for
linear SHAP; tree explainers use the training cover of their nodes). For every patient:

- `risk_score`: the model's own risk (higher = worse; a log hazard for Cox-type models,
  the ensemble mortality for forests), `risk_percentile` among the training patients,
- `risk_group`: low / intermediate / high (training tertiles of the risk score),
- `surv_3m` .. `surv_24m`: P(PFS > t months) read off the predicted survival curve,
- `median_pfs_months` (NaN when the curve never drops to 0.5: "not reached"),
- the features pushing this patient's risk up and down: SHAP values on the risk scale,
  one-hot columns summed back into their original feature.

Input is checked by `ml.serving.inputs.parse_patients` (the cohort contract); results are
`ml.serving.results`; the numpy replays that make one patient fast are `ml.serving.replay`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from features.contract import BY_NAME, ID
from features.patient import EXAMPLE_PATIENT
from ml.serving.explainer import RiskExplainer, feature_groups
from ml.serving.inputs import SCORE_FEATURES, parse_patients, training_frame
from ml.serving.replay import fast_model, fast_preprocessor
from ml.serving.results import (
    HORIZONS,
    RISK_GROUPS,
    TOP_K,
    ScoreResult,
    medians,
    output_columns,
    step_values,
    to_frame,
    to_records,
)
from ml.tracking.models import ANY_TYPE, PyfuncContract

__all__ = ["SCORE_FEATURES", "SurvivalScorer"]

CURVE_STEP = 0.25          # months between points of a curve sent to the page
CURVE_MAX = 36.0           # months shown on the page's curve (or the last training time)
CHUNK = 20_000             # rows per block when building curves (bounds memory on big batches)
PROBE_ROWS = 50            # training rows on which the fast replays must match the originals
# The survival pyfunc ships these packages' source (its pickles name their classes), and
# pins the distributions of the third-party modules they import when a scorer is unpickled
# and scores (listed from sys.modules after doing so in a clean interpreter; a test loads
# the model in a fresh venv that has only the pinned requirements).
PYFUNC_CODE = ("ml", "features")
PYFUNC_IMPORTS = ("numpy", "pandas", "scipy", "sklearn", "sksurv", "xgboost", "shap", "pandera",
                  "pydantic", "cloudpickle", "joblib")


class SurvivalScorer:
    """Scores patients with a fitted survival pipeline; see the module docstring.

    Parameters (stored as given, sklearn style): `pipeline` (a fitted `SurvivalPipeline`),
    `horizons` (months), `top_k` (features listed each way), `background_size` (training
    rows kept for explanations that need a background), `model_name` (family label) and
    `random_state` (only for a permutation fallback). `fit(X)` learns the cut-offs on the
    training rows X (raw covariates, as the pipeline was fitted on).
    """

    def __init__(self, pipeline: Any, horizons: Sequence[float] = HORIZONS, top_k: int = TOP_K,
                 background_size: int = 200, model_name: str = "", random_state: int | None = 0):
        self.pipeline = pipeline
        self.horizons = horizons
        self.top_k = top_k
        self.background_size = background_size
        self.model_name = model_name
        self.random_state = random_state

    # ------------------------------------------------------------------ fit

    def fit(self, X: pd.DataFrame, y: Any = None) -> SurvivalScorer:
        """Fix risk-group cut-offs (training tertiles) and the explanation background on X."""
        features = training_frame(X)[list(SCORE_FEATURES)]
        risk = np.asarray(self.pipeline.predict(features), dtype=np.float64)
        if not np.all(np.isfinite(risk)):
            raise ValueError("the model gives non-finite risk scores on its training rows")
        self.risk_quantiles_ = np.quantile(risk, np.linspace(0, 1, 101))
        self.cutoffs_ = np.quantile(risk, [1 / 3, 2 / 3])
        Xt = self.pipeline.preprocessor_.transform(features)
        self.columns_ = list(Xt.columns)
        self._fit_explainer(features, Xt)
        self.fast_preprocessor_ = fast_preprocessor(self.pipeline, features)
        self.fast_model_ = fast_model(self.pipeline.steps[-1][1], Xt.head(PROBE_ROWS))
        self.times_ = np.asarray(self.pipeline.unique_times_, dtype=np.float64)
        self.n_train_ = len(features)
        self._check_explanation(features.head(5))
        return self

    def _fit_explainer(self, features: pd.DataFrame, Xt: pd.DataFrame) -> None:
        """The explainer on a random background of `background_size` training rows."""
        rng = np.random.default_rng(self.random_state)
        keep = np.sort(rng.choice(len(features), min(self.background_size, len(features)), replace=False))
        background_raw = features.iloc[keep].reset_index(drop=True)
        self.explainer_ = RiskExplainer(self.pipeline, Xt.iloc[keep].reset_index(drop=True),
                                        background_raw, self.random_state)
        self.explainer_.center(Xt)
        self.feature_groups_ = feature_groups(self.columns_, features)

    def _check_explanation(self, rows: pd.DataFrame) -> None:
        """SHAP must add up to the model's risk (differences between rows, exact methods)."""
        if not self.explainer_.exact:
            return
        Xt = self._transform(rows)
        phi = self.explainer_.values(Xt, rows).sum(1)
        risk = np.asarray(self.pipeline.predict(rows), dtype=np.float64)
        err = np.max(np.abs((phi - phi[0]) - (risk - risk[0])))
        if err > 1e-5 * max(1.0, float(np.max(np.abs(risk)))):
            raise ValueError(f"SHAP values of the {self.explainer_.kind} explainer do not add up to the "
                             f"model's risk (off by {err:.3g})")

    def _transform(self, features: pd.DataFrame) -> pd.DataFrame:
        fast = getattr(self, "fast_preprocessor_", None)
        if fast is not None:
            return fast.transform(features)
        return self.pipeline.preprocessor_.transform(features)

    def warm(self) -> SurvivalScorer:
        """Build cached explainers now (e.g. before a server takes traffic)."""
        self.explainer_.warm()
        return self

    # ------------------------------------------------------------------ predict

    def predict(self, patients: Any) -> np.ndarray:
        """Risk score (higher = worse), sklearn style."""
        X = parse_patients(patients)
        return np.asarray(self.pipeline.predict(X[list(SCORE_FEATURES)]), dtype=np.float64)

    def predict_result(self, patients: Any, curve: bool = False, explain: bool = True) -> ScoreResult:
        """Check the input and compute every output (no formatting)."""
        return self.result_for(parse_patients(patients), curve=curve, explain=explain)

    def result_for(self, X: pd.DataFrame, curve: bool = False, explain: bool = True) -> ScoreResult:
        """Outputs for an already parsed frame (`parse_patients`)."""
        fast = getattr(self, "fast_preprocessor_", None)
        features = X if fast is not None else X[list(SCORE_FEATURES)]  # the replay picks its columns
        Xt = self._transform(features)
        horizons = np.asarray(self.horizons, dtype=np.float64)
        grid = self.curve_grid() if curve else None
        if self.fast_model_.kind == "breslow":
            risk, surv_h, median, curves = self.fast_model_.breslow_summaries(Xt, self.times_, horizons, grid)
        else:
            risk, surv_h, median, curves = self._summaries_from_curves(Xt, horizons, grid)
        return ScoreResult(
            ids=X[ID].to_numpy(), risk=risk, percentile=self.percentile(risk), group=self.group(risk),
            horizons=tuple(float(h) for h in horizons), survival=surv_h, median=median,
            contributions=self._contributions(Xt, features, X.index, explain), values=features,
            imputed=_imputed(X), curve_times=grid, curves=curves)

    def _contributions(self, Xt: pd.DataFrame, features: pd.DataFrame, index: pd.Index,
                       explain: bool) -> pd.DataFrame:
        """SHAP per original feature (patients x features); no columns when not asked for."""
        if not explain:
            return pd.DataFrame(np.zeros((len(index), 0)), index=index)
        phi = self.explainer_.values(Xt, features)
        return pd.DataFrame(phi @ self.feature_groups_.to_numpy(), index=index,
                            columns=self.feature_groups_.columns)

    def _summaries_from_curves(self, Xt: pd.DataFrame, horizons: np.ndarray,
                               grid: np.ndarray | None) -> tuple[np.ndarray, ...]:
        """(risk, S at horizons, median, S on grid or None) read off whole curves, in blocks."""
        risks, surv_h, median, curves = [], [], [], []
        for start in range(0, len(Xt), CHUNK):
            risk_block, block = self.fast_model_.outputs(Xt.iloc[start:start + CHUNK])
            risks.append(risk_block)
            surv_h.append(step_values(self.times_, block, horizons))
            median.append(medians(self.times_, block))
            if grid is not None:
                curves.append(step_values(self.times_, block, grid))
        return (np.concatenate(risks), np.vstack(surv_h), np.concatenate(median),
                np.vstack(curves) if grid is not None else None)

    def score(self, patients: Any) -> pd.DataFrame:
        """The flat table of `output_columns(horizons)`, one row per patient."""
        return to_frame(self.predict_result(patients))

    def score_records(self, patients: Any, curve: bool = False) -> list[dict[str, Any]]:
        return to_records(self.predict_result(patients, curve=curve))

    # ------------------------------------------------------------------ pieces

    def group(self, risk: np.ndarray) -> np.ndarray:
        """low (<= 1st training tertile), intermediate, high (> 2nd tertile)."""
        idx = np.searchsorted(self.cutoffs_, np.asarray(risk, dtype=np.float64), side="left")
        return np.asarray(RISK_GROUPS, dtype=object)[idx]

    def percentile(self, risk: np.ndarray) -> np.ndarray:
        """Percent of training patients with a lower or equal risk (interpolated)."""
        q = self.risk_quantiles_
        pct = np.interp(np.asarray(risk, dtype=np.float64), q, np.linspace(0, 100, len(q)))
        return np.round(pct, 1)

    def curve_grid(self) -> np.ndarray:
        end = min(CURVE_MAX, float(self.times_[-1]))
        return np.round(np.arange(0.0, end + 1e-9, CURVE_STEP), 4)

    def info(self) -> dict[str, Any]:
        """What the page and /health show about the model."""
        return {
            "model": self.model_name or type(self.pipeline.steps[-1][1]).__name__,
            "risk_scale": self.explainer_.scale,
            "explanation": self.explainer_.description,
            "cutoffs": [float(c) for c in self.cutoffs_],
            "n_train": int(self.n_train_),
            "horizons_months": [float(h) for h in self.horizons],
            "follow_up_months": float(self.times_[-1]),
        }

    def pyfunc_contract(self) -> PyfuncContract:
        """What the survival pyfunc takes and gives, for `ml.tracking` to log as its signature.

        Numeric inputs are typed "any": MLflow refuses to convert JSON integers (int64) to
        double, so `"age": 63` would fail its schema check; the scorer checks them itself
        against the cohort contract (range, type) and answers 400 naming the field."""
        inputs = {ID: "string", **{c: ANY_TYPE if BY_NAME[c].numeric else "string" for c in SCORE_FEATURES}}
        return PyfuncContract(inputs=inputs, outputs=output_columns(self.horizons), optional=(ID,),
                              example=(EXAMPLE_PATIENT,), code=PYFUNC_CODE, imports=PYFUNC_IMPORTS)


def _imputed(X: pd.DataFrame) -> list[list[str]]:
    """Per patient, the model inputs that were unknown (imputed as in training)."""
    names = np.array(SCORE_FEATURES)
    position = {c: i for i, c in enumerate(X.columns)}
    mask = pd.isna(X.to_numpy(dtype=object)[:, [position[c] for c in names]])
    return [list(names[row]) for row in mask] if mask.any() else [[]] * len(X)

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
- pointwise 95 % intervals of S at the horizons, of the curve and of the median
  (`ml.serving.uncertainty`: the delta method for Cox models, as R's survfit.coxph; a
  bootstrap of the whole pipeline for the other families, B = `ci_bootstrap`), with the
  method named in `ci_method`,
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
from ml.serving.clinical import HORIZON, clinical_effects, typical_values
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
from ml.serving.uncertainty import METHODS, bootstrap_band, bootstrap_refits, delta_model, delta_text
from ml.tracking.models import ANY_TYPE, PyfuncContract

__all__ = ["SCORE_FEATURES", "SurvivalScorer"]

CURVE_STEP = 0.25          # months between points of a curve sent to the page
CURVE_MAX = 36.0           # months shown on the page's curve (or the last training time)
CHUNK = 20_000             # rows per block when building curves (bounds memory on big batches)
BAND_CHUNK = 1_000         # rows per block of interval bands (each on every training time)
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
    rows kept for explanations that need a background), `model_name` (family label),
    `random_state` (a permutation fallback; the bootstrap's resamples) and `ci_bootstrap` (B
    bootstrap refits made at `fit` and kept with the scorer, for the intervals of a model
    the delta method does not cover; 0 = none, B can also be given when scoring). `fit(X, y)`
    learns the cut-offs on the training rows X (raw covariates, as the pipeline was fitted
    on); with the outcomes y, a model other than a Cox model keeps the training rows (covariates
    and outcomes) so that a bootstrap band can be computed later.
    """

    def __init__(self, pipeline: Any, horizons: Sequence[float] = HORIZONS, top_k: int = TOP_K,
                 background_size: int = 200, model_name: str = "", random_state: int | None = 0,
                 ci_bootstrap: int = 0):
        self.pipeline = pipeline
        self.horizons = horizons
        self.top_k = top_k
        self.background_size = background_size
        self.model_name = model_name
        self.random_state = random_state
        self.ci_bootstrap = ci_bootstrap

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
        self._keep_for_bootstrap(features, y)
        return self

    def _keep_for_bootstrap(self, features: pd.DataFrame, y: Any) -> None:
        """Training rows (and the refits asked for) for a model the delta method does not cover."""
        self.train_, self.refits_, self.events_ = None, None, None
        if y is None:
            return
        if len(y) != len(features):
            raise ValueError(f"y has {len(y)} rows for {len(features)} training rows")
        # kept for every family: the both-arms contrast resamples them (ml.serving.contrast)
        self.train_ = (features.reset_index(drop=True), np.asarray(y))
        self.events_ = int(np.sum(np.asarray(y)["event"]))
        if self.ci_bootstrap > 0 and delta_model(self.pipeline) is None:
            self.refits_ = bootstrap_refits(self.pipeline, *self.train_, self.ci_bootstrap, self.random_state)

    def _fit_explainer(self, features: pd.DataFrame, Xt: pd.DataFrame) -> None:
        """The explainer on a random background of `background_size` training rows."""
        rng = np.random.default_rng(self.random_state)
        keep = np.sort(rng.choice(len(features), min(self.background_size, len(features)), replace=False))
        background_raw = features.iloc[keep].reset_index(drop=True)
        self.explainer_ = RiskExplainer(self.pipeline, Xt.iloc[keep].reset_index(drop=True),
                                        background_raw, self.random_state)
        self.explainer_.center(Xt)
        self.feature_groups_ = feature_groups(self.columns_, features)
        self.typical_ = typical_values(background_raw)

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

    def predict_result(self, patients: Any, curve: bool = False, explain: bool = True,
                       ci_bootstrap: int | None = None) -> ScoreResult:
        """Check the input and compute every output (no formatting)."""
        return self.result_for(parse_patients(patients), curve=curve, explain=explain,
                               ci_bootstrap=ci_bootstrap)

    def result_for(self, X: pd.DataFrame, curve: bool = False, explain: bool = True,
                   ci_bootstrap: int | None = None) -> ScoreResult:
        """Outputs for an already parsed frame (`parse_patients`).

        ci_bootstrap: B refits for the bootstrap band of a non-Cox model (None: the refits
        made at `fit`, if any; 0: no band). Cox models always get their delta-method band."""
        fast = getattr(self, "fast_preprocessor_", None)
        features = X if fast is not None else X[list(SCORE_FEATURES)]  # the replay picks its columns
        Xt = self._transform(features)
        horizons = np.asarray(self.horizons, dtype=np.float64)
        grid = self.curve_grid() if curve else None
        risk, surv_h, median, curves = self._point_summaries(Xt, horizons, grid)
        contributions = self._contributions(Xt, features, X.index, explain)
        clinical, scale = (None, "")
        if explain:
            clinical, scale = clinical_effects(self.explainer_.kind, contributions, X[list(SCORE_FEATURES)],
                                               getattr(self, "typical_", {}), self._survival_at)
        return ScoreResult(
            ids=X[ID].to_numpy(), risk=risk, percentile=self.percentile(risk), group=self.group(risk),
            horizons=tuple(float(h) for h in horizons), survival=surv_h, median=median,
            contributions=contributions, values=features, clinical=clinical, clinical_scale=scale,
            imputed=_imputed(X), curve_times=grid, curves=curves,
            **self._intervals(X[list(SCORE_FEATURES)], Xt, horizons, grid, ci_bootstrap))

    def _point_summaries(self, Xt: pd.DataFrame, horizons: np.ndarray,
                         grid: np.ndarray | None) -> tuple[np.ndarray, ...]:
        """(risk, S at horizons, median, S on grid or None), without intervals."""
        if self.fast_model_.kind == "breslow":
            return self.fast_model_.breslow_summaries(Xt, self.times_, horizons, grid)
        return self._summaries_from_curves(Xt, horizons, grid)

    def _survival_at(self, rows: pd.DataFrame) -> np.ndarray:
        """P(PFS > 12 months) of raw input rows (no interval)."""
        return self._point_summaries(self._transform(rows), np.array([HORIZON]), None)[1][:, 0]

    # ------------------------------------------------------------------ uncertainty

    def _intervals(self, features: pd.DataFrame, Xt: pd.DataFrame, horizons: np.ndarray,
                   grid: np.ndarray | None, ci_bootstrap: int | None) -> dict[str, Any]:
        """The ScoreResult fields of the pointwise 95 % intervals (see `ml.serving.uncertainty`),
        in blocks of rows: the band on every training time (for the median) stays small."""
        band, method = self._band(ci_bootstrap)
        grid = grid if grid is not None else np.zeros(0)
        points = np.concatenate([horizons, self.times_, grid])
        h, t = len(horizons), len(self.times_)
        if band is None or not len(Xt):
            low = high = np.full((len(Xt), len(points)), np.nan)
            parts = [_band_parts(low, high, self.times_, h, t)]
        else:
            parts = [_band_parts(*band(features.iloc[i:i + BAND_CHUNK], Xt.iloc[i:i + BAND_CHUNK], points),
                                 self.times_, h, t) for i in range(0, len(Xt), BAND_CHUNK)]
        names = ("survival_low", "survival_high", "median_low", "median_high", "curves_low", "curves_high")
        out: dict[str, Any] = {name: np.concatenate([p[k] for p in parts]) for k, name in enumerate(names)}
        if not len(grid):
            out["curves_low"] = out["curves_high"] = None
        return {**out, "ci_method": method}

    def _band(self, ci_bootstrap: int | None) -> tuple[Any, str]:
        """(band(features, Xt, points) -> (low, high), or None; the method's description)."""
        model = delta_model(self.pipeline)
        if model is not None:
            return (lambda features, Xt, points: model.predict_survival_ci(Xt, points)[1:]), delta_text(model)
        refits, reason = self._refits(ci_bootstrap)
        if refits is None:
            return None, METHODS["none"].format(reason=reason)
        return (lambda features, Xt, points: bootstrap_band(refits, features, points)), refits.text()

    def _refits(self, n_boot: int | None) -> tuple[Any, str]:
        """(the bootstrap refits to use or None, why there are none)."""
        stored = getattr(self, "refits_", None)
        if n_boot is None:
            return stored, "not a Cox model, and the scorer was fitted without bootstrap refits (B = 0)"
        if n_boot <= 0:
            return None, "the bootstrap was turned off (B = 0)"
        if stored is not None and stored.requested == n_boot and stored.seed == self.random_state:
            return stored, ""
        train = getattr(self, "train_", None)
        if train is None:
            return None, "not a Cox model, and the scorer keeps no training rows to resample"
        self.refits_ = bootstrap_refits(self.pipeline, *train, n_boot, self.random_state)
        return self.refits_, ""

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
            "uncertainty": self.ci_description(),
        }

    def ci_description(self) -> str:
        """How the intervals of a scoring without `ci_bootstrap` are computed."""
        model = delta_model(self.pipeline)
        if model is not None:
            return delta_text(model)
        refits = getattr(self, "refits_", None)
        if refits is not None:
            return refits.text()
        return METHODS["none"].format(reason="not a Cox model, and no bootstrap refits were made")

    def prepare_bootstrap(self, n_boot: int) -> str:
        """Make B bootstrap refits now (a model the delta method does not cover), e.g. before a
        server takes traffic: scoring without `ci_bootstrap` then uses them. Returns how the
        intervals are computed. B = 0 drops the refits (no intervals)."""
        if delta_model(self.pipeline) is None:
            self.refits_ = self._refits(n_boot)[0]
        return self.ci_description()

    def pyfunc_contract(self) -> PyfuncContract:
        """What the survival pyfunc takes and gives, for `ml.tracking` to log as its signature.

        Numeric inputs are typed "any": MLflow refuses to convert JSON integers (int64) to
        double, so `"age": 63` would fail its schema check; the scorer checks them itself
        against the cohort contract (range, type) and answers 400 naming the field."""
        inputs = {ID: "string", **{c: ANY_TYPE if BY_NAME[c].numeric else "string" for c in SCORE_FEATURES}}
        return PyfuncContract(inputs=inputs, outputs=output_columns(self.horizons), optional=(ID,),
                              example=(EXAMPLE_PATIENT,), code=PYFUNC_CODE, imports=PYFUNC_IMPORTS)


def _band_parts(low: np.ndarray, high: np.ndarray, times: np.ndarray, h: int,
                t: int) -> tuple[np.ndarray, ...]:
    """A band on (horizons, training times, grid) cut into its horizons, medians and grid."""
    at_times = slice(h, h + t)
    return (low[:, :h], high[:, :h], medians(times, low[:, at_times]), medians(times, high[:, at_times]),
            low[:, h + t:], high[:, h + t:])


def _imputed(X: pd.DataFrame) -> list[list[str]]:
    """Per patient, the model inputs that were missing (null/NaN, imputed as in training); a
    real category such as PD-L1 'not tested' is a value, never listed here."""
    names = np.array(SCORE_FEATURES)
    position = {c: i for i, c in enumerate(X.columns)}
    mask = pd.isna(X.to_numpy(dtype=object)[:, [position[c] for c in names]])
    return [list(names[row]) for row in mask] if mask.any() else [[]] * len(X)

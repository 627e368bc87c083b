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

Input is checked against the cohort contract (`features.schema`) by the pydantic model
`PatientIn`: every covariate key must be present (null = unknown, imputed like in
training), categories and ranges are the contract's, unknown keys are refused. The same
check and the same messages serve the CLI, the pyfunc and the HTTP service.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError, create_model

from features import schema

HORIZONS: tuple[float, ...] = (3.0, 6.0, 12.0, 24.0)
RISK_GROUPS = ("low", "intermediate", "high")
NOT_REACHED = "not reached"
EFFECT_EPS = 1e-12         # |SHAP| below this pushes nowhere
TOP_K = 3
CURVE_STEP = 0.25          # months between points of a curve sent to the page
CURVE_MAX = 36.0           # months shown on the page's curve (or the last training time)
CHUNK = 20_000             # rows per block when building curves (bounds memory on big batches)
MAX_ID_LENGTH = 64
MAX_PROBLEMS_SHOWN = 20
MAX_PROBLEMS = 200         # a table's check stops collecting after this many
DEFAULT_REGISTERED_NAME = "rechallenge-pfs-cox"
DEFAULT_MODEL_URI = f"models:/{DEFAULT_REGISTERED_NAME}@champion"
IGNORED_COLUMNS = schema.OUTCOMES
"""Columns of a cohort table that scoring drops silently (outcomes are not model inputs)."""

SCORE_FEATURES: tuple[str, ...] = (*schema.COVARIATES, schema.TREATMENT)
"""The model inputs: the baseline covariates and the (planned) treatment."""


def horizon_column(t: float) -> str:
    return f"surv_{t:g}m"


OUTPUT_COLUMNS: dict[str, str] = {
    "id": "string", "risk_score": "double", "risk_percentile": "double", "risk_group": "string",
    **{horizon_column(t): "double" for t in HORIZONS},
    "median_pfs_months": "double", "median_pfs": "string", "top_up": "string", "top_down": "string",
    "imputed": "string",
}
"""The columns of `SurvivalScorer.score` and their MLflow types."""


# ====================================================================== input contract


class ScoringInputError(ValueError):
    """Patient rows that break the contract; `problems` = [{"field", "message"}, ...]."""

    def __init__(self, problems: list[dict[str, str]]):
        self.problems = problems
        lines = [f"{p['field']}: {p['message']}" for p in problems[:MAX_PROBLEMS_SHOWN]]
        if len(problems) > MAX_PROBLEMS_SHOWN:
            lines.append(f"... and {len(problems) - MAX_PROBLEMS_SHOWN} more problem(s)")
        super().__init__("\n".join(lines))


def _no_bool(value: Any) -> Any:
    # pydantic's lax mode would read true/false as 1/0; a boolean age is a wrong type
    if isinstance(value, bool):
        raise ValueError("Input should be a number, not a boolean")
    return value


def _numeric_field(column: str) -> tuple[Any, Any]:
    lo, hi = schema.NUMERIC_RANGES[column]
    if column in schema.ORDINAL_LEVELS:
        levels = schema.ORDINAL_LEVELS[column]
        kind = Annotated[int, BeforeValidator(_no_bool), Field(ge=int(min(levels)), le=int(max(levels)))]
        return kind | None, Field(..., description=f"{column}: one of {', '.join(f'{v:g}' for v in levels)}; "
                                  "null if unknown")
    bound = {"gt": lo} if column == "pfs1_months" else {"ge": lo}
    kind = Annotated[float, BeforeValidator(_no_bool), Field(le=hi, allow_inf_nan=False, **bound)]
    interval = f"({lo:g}, {hi:g}]" if "gt" in bound else f"[{lo:g}, {hi:g}]"
    return kind | None, Field(..., description=f"{column}: a number in {interval}; null if unknown")


def _categorical_field(column: str) -> tuple[Any, Any]:
    labels = schema.CATEGORIES[column]
    if column == schema.TREATMENT:
        return Literal[labels], Field(..., description=f"planned regimen: {' or '.join(labels)}")
    return Literal[labels] | None, Field(..., description=f"{column}: one of {', '.join(labels)}; "
                                         "null if unknown")


def _patient_model() -> type[BaseModel]:
    fields: dict[str, Any] = {
        "id": (str | None, Field(None, max_length=MAX_ID_LENGTH, description="patient id (optional)")),
    }
    for column in SCORE_FEATURES:
        fields[column] = (_numeric_field(column) if column in schema.NUMERIC_RANGES
                          else _categorical_field(column))
    return create_model(
        "PatientIn", __config__=ConfigDict(extra="forbid", json_schema_extra={"examples": [EXAMPLE_PATIENT]}),
        __doc__="One patient's baseline record at the start of second-line therapy (the cohort "
                "contract). Every key is required; null marks an unknown value, imputed as in training.",
        **fields)


EXAMPLE_PATIENT: dict[str, Any] = {
    "id": "example-1", "age": 63, "sex": "male", "smoking": "ever", "ecog": 1,
    "histology": "adenocarcinoma", "pdl1": "1-49%", "prior_response": "SD", "pfs1_months": 6.5,
    "brain_mets": "no", "liver_mets": "no", "bone_mets": "yes", "ici_switch": "no", "treatment": "CI",
}
PatientIn = _patient_model()
_PATIENTS = TypeAdapter(list[PatientIn])


def error_field(loc: Sequence[Any], skip: Iterable[Any] = ()) -> str:
    """`('patients', 2, 'age')` -> `patients[2].age` (location parts in `skip` are dropped)."""
    skip = set(skip)
    text = ""
    for part in loc:
        if part in skip:
            continue
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "body"


def error_message(error: Mapping[str, Any]) -> str:
    """pydantic's message, reworded where it would not tell a clinician what to do."""
    kind, msg = error.get("type", ""), str(error.get("msg", "invalid value"))
    if kind == "missing":
        return "field required (give null if the value is unknown)"
    if kind == "extra_forbidden":
        return f"unknown field; allowed: {', '.join(('id', *SCORE_FEATURES))}"
    if msg.startswith("Value error, "):
        msg = msg.removeprefix("Value error, ")
    return msg


def problems_from(errors: Iterable[Mapping[str, Any]], prefix: str = "",
                  skip: Iterable[Any] = ()) -> list[dict[str, str]]:
    skip = tuple(skip)
    out = []
    for err in errors:
        loc = error_field(err.get("loc", ()), skip)
        out.append({"field": f"{prefix}{loc}" if prefix else loc, "message": error_message(err)})
    return out


def _records(patients: pd.DataFrame | Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> list[dict]:
    if isinstance(patients, pd.DataFrame):
        frame = patients.drop(columns=[c for c in IGNORED_COLUMNS if c in patients.columns])
        frame = frame.astype(object).where(frame.notna(), None)
        return frame.to_dict("records")
    if isinstance(patients, Mapping):
        return [dict(patients)]
    return [dict(p) if isinstance(p, Mapping) else p for p in patients]


def parse_patients(patients: pd.DataFrame | Mapping[str, Any] | Sequence[Mapping[str, Any]],
                   single: bool | None = None) -> pd.DataFrame:
    """Check patient rows against the contract; return the typed model-input frame.

    `patients`: a DataFrame (outcome columns dropped), one record or a list of records.
    Raises `ScoringInputError` naming every bad field (`age`, or `patients[3].age` /
    `row 4: age` for several). Missing ids become `patient-<row>`.
    """
    if isinstance(patients, pd.DataFrame):
        return _parse_frame(patients)
    records = _records(patients)
    if not records:
        raise ScoringInputError([{"field": "patients", "message": "at least one patient is required"}])
    single = len(records) == 1 if single is None else single
    try:
        parsed = _PATIENTS.validate_python(records)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        if single:
            raise ScoringInputError(problems_from(errors, skip=(0,))) from None
        raise ScoringInputError(_row_problems(errors)) from None
    return frame_from_models(parsed)


def _plain_number(x: Any) -> bool:
    return isinstance(x, int | float | np.integer | np.floating) and not isinstance(x, bool | np.bool_)


def _clear_rows(frame: pd.DataFrame) -> np.ndarray:
    """Rows that certainly pass `PatientIn` (plain numbers in range, known labels, text ids).

    Conservative: anything else (text numbers, booleans, unknown labels, long ids) is left
    to pydantic, which accepts or rejects it with its own message.
    """
    n = len(frame)
    clear = np.ones(n, dtype=bool)
    ids = frame["id"].to_numpy(dtype=object)
    text_ids = np.array([isinstance(x, str) and len(x) <= MAX_ID_LENGTH for x in ids], dtype=bool)
    clear &= text_ids | pd.isna(ids)
    for column in SCORE_FEATURES:
        values = frame[column].to_numpy(dtype=object)
        missing = pd.isna(values)
        if column in schema.NUMERIC_RANGES:
            plain = np.fromiter((_plain_number(x) for x in values), dtype=bool, count=n)
            number = np.where(plain & ~missing, values, np.nan).astype(np.float64)
            lo, hi = schema.NUMERIC_RANGES[column]
            with np.errstate(invalid="ignore"):
                ok = np.isfinite(number) & (number <= hi) & ((number > lo) if column == "pfs1_months"
                                                             else (number >= lo))
                if column in schema.ORDINAL_LEVELS:
                    ok &= number == np.round(number)
            clear &= missing | (plain & ok)
        else:
            labels = np.array(schema.CATEGORIES[column], dtype=object)
            known = np.isin(values, labels) & np.fromiter((isinstance(x, str) for x in values), bool, count=n)
            clear &= known | (missing & (column != schema.TREATMENT))
    return clear


def _parse_frame(table: pd.DataFrame) -> pd.DataFrame:
    """parse_patients for a table: a vectorised check, pydantic only for rows it cannot clear."""
    frame = table.drop(columns=[c for c in IGNORED_COLUMNS if c in table.columns]).reset_index(drop=True)
    if len(frame) == 0:
        raise ScoringInputError([{"field": "patients", "message": "at least one patient is required"}])
    if "id" in frame.columns:
        ids = frame["id"]
        if pd.api.types.is_numeric_dtype(ids) and not pd.api.types.is_bool_dtype(ids):
            # numeric ids read from a CSV: their text, without a spurious '.0'
            frame["id"] = [None if pd.isna(x) else (str(int(x)) if float(x).is_integer() else str(x))
                           for x in ids]
    expected = {"id", *SCORE_FEATURES}
    columns = set(frame.columns)
    if not columns <= expected or not set(SCORE_FEATURES) <= columns:
        return _parse_rows(frame, np.arange(len(frame)))
    if "id" not in columns:
        frame["id"] = None
    clear = _clear_rows(frame)
    typed = _typed(frame)
    if not clear.all():
        doubtful = np.flatnonzero(~clear)
        checked = _parse_rows(frame, doubtful)
        for j, column in enumerate(typed.columns):  # column by column: dtypes stay as they are
            typed.iloc[doubtful, j] = checked[column].to_numpy(dtype=typed[column].dtype)
    return typed


def _parse_rows(frame: pd.DataFrame, rows: np.ndarray, block: int = 2000) -> pd.DataFrame:
    """pydantic on the given rows of a table (errors numbered by table row), in blocks, until
    MAX_PROBLEMS problems are found."""
    problems: list[dict[str, str]] = []
    parsed = []
    for start in range(0, len(rows), block):
        part = rows[start:start + block]
        records = _records(frame.iloc[part])
        try:
            parsed += _PATIENTS.validate_python(records)
        except ValidationError as exc:
            for err in exc.errors(include_url=False, include_input=False):
                loc = list(err.get("loc", ()))
                row = int(part[loc.pop(0)]) if loc and isinstance(loc[0], int) else None
                prefix = f"row {row + 1}: " if row is not None else ""
                problems.append({"field": f"{prefix}{error_field(loc)}", "message": error_message(err)})
            if len(problems) >= MAX_PROBLEMS:
                break
    if problems:
        raise ScoringInputError(problems)
    typed = frame_from_models(parsed)
    ids = frame["id"].to_numpy(dtype=object)[rows] if "id" in frame.columns else np.full(len(rows), None)
    fill = pd.isna(ids)
    typed.loc[fill, "id"] = [f"patient-{r + 1}" for r in rows[fill]]  # numbered as in the whole table
    return typed


def frame_from_models(parsed: Sequence[BaseModel]) -> pd.DataFrame:
    """The typed model-input frame from already validated `PatientIn` objects."""
    return _typed({c: [getattr(p, c) for p in parsed] for c in ("id", *SCORE_FEATURES)})


def _row_problems(errors: Iterable[Mapping[str, Any]]) -> list[dict[str, str]]:
    out = []
    for err in errors:
        loc = list(err.get("loc", ()))
        row = f"row {loc.pop(0) + 1}: " if loc and isinstance(loc[0], int) else ""
        out.append({"field": f"{row}{error_field(loc)}", "message": error_message(err)})
    return out


def _typed(frame: pd.DataFrame | Mapping[str, Sequence[Any]]) -> pd.DataFrame:
    """Numbers as float64 (NaN = unknown), labels as object (NaN = unknown); ids filled."""
    n = len(frame) if isinstance(frame, pd.DataFrame) else len(frame["id"])
    ids = np.asarray(frame["id"], dtype=object)
    missing = pd.isna(ids)
    if missing.any():
        ids = ids.copy()
        ids[missing] = [f"patient-{i + 1}" for i in np.flatnonzero(missing)]
    out: dict[str, np.ndarray] = {"id": np.array([str(i) for i in ids], dtype=object)}
    for column in SCORE_FEATURES:
        values = np.asarray(frame[column], dtype=object)
        if column in schema.NUMERIC_RANGES:
            out[column] = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
        else:
            # NaN, not None: scikit-learn's SimpleImputer sees only NaN as missing in object columns
            out[column] = np.where(pd.isna(values), np.nan, values)
    return pd.DataFrame(out, index=pd.RangeIndex(n))


# ====================================================================== results


@dataclass
class ScoreResult:
    """Everything computed for a batch of patients (arrays aligned with `ids`)."""

    ids: np.ndarray
    risk: np.ndarray
    percentile: np.ndarray
    group: np.ndarray
    horizons: tuple[float, ...]
    survival: np.ndarray            # patients x horizons, P(PFS > t)
    median: np.ndarray              # NaN = not reached
    contributions: pd.DataFrame     # patients x original features, SHAP on the risk scale
    values: pd.DataFrame            # the patients' input values (before imputation)
    imputed: list[list[str]]
    curve_times: np.ndarray | None = None
    curves: np.ndarray | None = None   # patients x curve_times
    notes: list[str] = field(default_factory=list)

    def top_indices(self, k: int = TOP_K) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(up columns, up effects, down columns, down effects): each patients x k, largest
        first; effects of the wrong sign (fewer than k features push that way) are NaN."""
        c = self.contributions.to_numpy(np.float64)
        k = min(k, c.shape[1])
        up = np.argsort(-c, axis=1, kind="stable")[:, :k]
        down = np.argsort(c, axis=1, kind="stable")[:, :k]
        up_eff = np.take_along_axis(c, up, 1)
        down_eff = np.take_along_axis(c, down, 1)
        return up, np.where(up_eff > EFFECT_EPS, up_eff, np.nan), down, np.where(down_eff < -EFFECT_EPS,
                                                                                 down_eff, np.nan)

    def top_features(self, i: int, k: int = TOP_K) -> tuple[list[dict], list[dict]]:
        """(pushing risk up, pushing risk down) for patient i, largest first."""
        return self.all_top_features(k, rows=[i])[0]

    def all_top_features(self, k: int = TOP_K, rows: Sequence[int] | None = None) -> list[tuple[list, list]]:
        up, up_eff, down, down_eff = self.top_indices(k)
        names = list(self.contributions.columns)
        values = self.values[names].to_numpy(dtype=object)
        out = []
        for i in range(len(up)) if rows is None else rows:
            pair = []
            for cols, effs in ((up[i], up_eff[i]), (down[i], down_eff[i])):
                pair.append([{"feature": names[j], "value": _value_text(values[i, j]), "effect": float(e)}
                             for j, e in zip(cols, effs, strict=True) if np.isfinite(e)])
            out.append((pair[0], pair[1]))
        return out

    def top_text(self, k: int = TOP_K) -> tuple[np.ndarray, np.ndarray]:
        """`feature=value (+effect); ...` per patient, up and down (vectorised for big batches)."""
        up, up_eff, down, down_eff = self.top_indices(k)
        names = np.asarray(self.contributions.columns, dtype=object)
        values = self.values[list(names)].to_numpy(dtype=object)
        rows = np.arange(len(up))
        texts = []
        for cols, effs in ((up, up_eff), (down, down_eff)):
            joined = np.full(len(rows), "", dtype=object)
            for r in range(cols.shape[1]):
                j, e = cols[:, r], effs[:, r]
                shown = np.isfinite(e)
                if not shown.any():
                    break
                vals = values[rows[shown], j[shown]]
                items = zip(names[j[shown]], vals, e[shown], strict=True)
                part = np.array([f"{n}={_value_text(v)} ({x:+.3f})" for n, v, x in items], dtype=object)
                sep = np.where(joined[shown] == "", "", "; ")
                joined[shown] = joined[shown] + sep + part
            texts.append(joined)
        return texts[0], texts[1]


def _value_text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "unknown"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def median_text(median: float) -> str:
    return NOT_REACHED if not np.isfinite(median) else f"{median:.1f} months"


def to_frame(result: ScoreResult) -> pd.DataFrame:
    """The flat table: one row per patient (the pyfunc output, the CLI's CSV)."""
    top_up, top_down = result.top_text()
    out = pd.DataFrame({
        "id": result.ids.astype(str),
        "risk_score": result.risk,
        "risk_percentile": result.percentile,
        "risk_group": result.group.astype(str),
        **{horizon_column(t): result.survival[:, j] for j, t in enumerate(result.horizons)},
        "median_pfs_months": result.median,
        "median_pfs": [median_text(m) for m in result.median],
        "top_up": top_up,
        "top_down": top_down,
        "imputed": [", ".join(cols) for cols in result.imputed],
    })
    return out


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def to_records(result: ScoreResult) -> list[dict[str, Any]]:
    """JSON-ready records (no NaN: unknown numbers are null), with structured explanations."""
    records = []
    tops = result.all_top_features()
    for i in range(len(result.ids)):
        up, down = tops[i]
        rec: dict[str, Any] = {
            "id": str(result.ids[i]),
            "risk_score": float(result.risk[i]),
            "risk_percentile": float(result.percentile[i]),
            "risk_group": str(result.group[i]),
            "survival": {horizon_column(t): _finite(result.survival[i, j])
                         for j, t in enumerate(result.horizons)},
            "median_pfs_months": _finite(result.median[i]),
            "median_pfs": median_text(result.median[i]),
            "top_up": up,
            "top_down": down,
            "imputed": result.imputed[i],
        }
        if result.curves is not None:
            rec["curve"] = {"months": [round(float(t), 4) for t in result.curve_times],
                            "survival": [round(float(s), 6) for s in result.curves[i]]}
        records.append(rec)
    return records


# ====================================================================== the scorer


def _step_values(times: np.ndarray, surv: np.ndarray, at: np.ndarray) -> np.ndarray:
    """S at `at` from curves on `times` (right-continuous steps, S = 1 before the first
    time, NaN beyond the last training time where the model knows nothing)."""
    idx = np.searchsorted(times, at, side="right") - 1
    out = np.where(idx[None, :] >= 0, surv[:, np.clip(idx, 0, None)], 1.0)
    out[:, at > times[-1]] = np.nan
    return out


def _medians(times: np.ndarray, surv: np.ndarray) -> np.ndarray:
    """First time at which S(t) <= 0.5; NaN if the curve never gets there (not reached)."""
    below = surv <= 0.5
    first = below.argmax(axis=1)
    return np.where(below.any(axis=1), times[first], np.nan)


class _FastPreprocessor:
    """The fitted `features.pipeline` ColumnTransformer replayed with numpy.

    scikit-learn's transform costs tens of milliseconds per call whatever the number of
    rows (input validation, pandas output); for one patient that is most of the scoring
    time. This replays the fitted statistics (median / most-frequent imputation,
    standardisation, one-hot with the reference level dropped). `SurvivalScorer.fit`
    checks it against scikit-learn's own transform and falls back to it when they differ
    or the preprocessor has another shape.
    """

    def __init__(self, ct: Any):
        from sklearn.pipeline import Pipeline

        self.columns = [str(c) for c in ct.get_feature_names_out()]
        self.blocks: list[tuple[str, list[str], dict[str, Any]]] = []
        for name, trans, cols in ct.transformers_:
            if name == "remainder" or trans == "drop":
                continue
            if not isinstance(trans, Pipeline):
                raise TypeError(f"unsupported transformer {type(trans).__name__}")
            steps = dict(trans.steps)
            # a "missing" step (None / NA -> NaN) is what the replay's pd.isna does anyway; the
            # probe in `_fast_preprocessor` checks that it changes nothing else
            extra = set(steps) - {"missing"}
            if "missing" in steps and type(steps["missing"]).__name__ != "FunctionTransformer":
                raise TypeError("unsupported 'missing' step")
            if extra in ({"impute", "scale"}, {"impute"}):
                scale = steps.get("scale")
                self.blocks.append(("num", list(cols), {
                    "fill": np.asarray(steps["impute"].statistics_, dtype=np.float64),
                    "mean": np.asarray(scale.mean_ if scale is not None else 0.0, dtype=np.float64),
                    "scale": np.asarray(scale.scale_ if scale is not None else 1.0, dtype=np.float64)}))
            elif extra == {"impute", "onehot"}:
                enc = steps["onehot"]
                drop = enc.drop_idx_ if enc.drop_idx_ is not None else [None] * len(cols)
                levels = [[lvl for k, lvl in enumerate(cats) if d is None or k != d]
                          for cats, d in zip(enc.categories_, drop, strict=True)]
                self.blocks.append(("cat", list(cols), {"fill": list(steps["impute"].statistics_),
                                                        "levels": levels}))
            else:
                raise TypeError(f"unsupported steps {list(steps)}")

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


class _FastModel:
    """Risk and survival curves in one pass, checked against the model's own methods.

    Breslow-type models (Cox, Coxnet, IPTW-Cox, GBSA, XGBoost Cox): one linear predictor
    gives both the risk and S(t|x) = exp(-H0(t) exp(lp)); XGBoost's margin comes from
    `inplace_predict` (no DMatrix). Random survival forests: one `apply` over the trees
    gives both the CHF (risk = its sum over event times) and the mean tree survival.
    `SurvivalScorer.fit` uses this only where it reproduces `predict` and
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
        from ml.models.base import clean_curves

        if self.kind == "breslow":
            lp = self._lp(Xt)
            hazard = np.exp(np.clip(lp, -700, 700))[:, None] * self.h0
            return lp, clean_curves(np.exp(-hazard))
        if self.kind == "forest":
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
        risk = np.asarray(self.model.predict(Xt), dtype=np.float64)
        return risk, np.asarray(self.model.predict_survival_function(Xt, return_array=True), dtype=np.float64)

    def agrees(self, Xt: pd.DataFrame) -> bool:
        risk, surv = self.outputs(Xt)
        ref_risk = np.asarray(self.model.predict(Xt), dtype=np.float64)
        ref_surv = np.asarray(self.model.predict_survival_function(Xt, return_array=True), dtype=np.float64)
        tol = 1e-6 * max(1.0, float(np.max(np.abs(ref_risk))))
        return (surv.shape == ref_surv.shape and np.allclose(risk, ref_risk, rtol=0, atol=tol)
                and np.allclose(surv, ref_surv, rtol=0, atol=1e-7))


class _RiskExplainer:
    """SHAP values of the risk score for the model families of `ml.models`, built once.

    Linear Cox models: coef * (x - training mean) (exact). sksurv forests / boosting:
    exact path-dependent TreeSHAP on the trees converted by `ml.explain`. XGBoost:
    shap's TreeSHAP on the booster (AFT margins negated, so higher = riskier). Anything
    else: `ml.explain.explain` (permutation SHAP against the training background).
    """

    def __init__(self, pipeline: Any, background: pd.DataFrame, background_raw: pd.DataFrame,
                 random_state: int | None = 0):
        from ml.explain import explainers as explain

        self.pipeline = pipeline
        self.background = background
        self.background_raw = background_raw
        self.random_state = random_state
        final = pipeline.steps[-1][1]
        inner = explain.unwrap(final)
        self.kind, self.scale = "generic", "model risk score"
        if explain._is(inner, *explain._TREE_MODELS, "GradientBoostingSurvivalAnalysis"):
            self.kind = "tree"
            self.scale = explain._tree_scale(inner, explain.RISK, explain.DEFAULT_HORIZON)[0]
            self.inner = inner
        elif explain._is(inner, "Booster", "XGBRegressor", "XGBModel"):
            self.kind = "xgboost"
            self.inner = inner.get_booster() if hasattr(inner, "get_booster") else inner
            aft = "aft" in explain._xgb_objective(self.inner)
            self.sign, self.scale = (-1.0, "minus log time") if aft else (1.0, "log-hazard")
        elif hasattr(inner, "coef_") or hasattr(inner, "params_"):
            self.kind, self.scale = "linear", "log-hazard"
            self.coef = explain.linear_coefficients(inner)
            self.mean = background.to_numpy(np.float64).mean(0)
        self._explainer = None

    def _shap_tree(self):
        if self._explainer is None:
            import shap

            from ml.explain import explainers as explain

            model = explain.tree_ensemble_dict(self.inner, explain.RISK)
            self._explainer = shap.TreeExplainer(model, feature_perturbation="tree_path_dependent")
        return self._explainer

    def warm(self) -> None:
        if self.kind == "tree":
            self._shap_tree()

    def values(self, Xt: pd.DataFrame, raw: pd.DataFrame) -> np.ndarray:
        if self.kind == "linear":
            return (Xt.to_numpy(np.float64) - self.mean) * self.coef
        if self.kind == "tree":
            return np.asarray(self._shap_tree().shap_values(Xt.to_numpy(np.float64), check_additivity=False))
        if self.kind == "xgboost":
            import xgboost

            # nthread=1: a DMatrix with the default thread pool costs ~15 ms to build, whatever its size.
            # XGBoost's own TreeSHAP (what shap's TreeExplainer calls for a booster); last column = bias
            dm = xgboost.DMatrix(Xt.to_numpy(np.float32), feature_names=list(Xt.columns), nthread=1)
            contributions = np.asarray(self.inner.predict(dm, pred_contribs=True), dtype=np.float64)
            return self.sign * contributions[:, :-1]
        from ml.explain import explainers as explain

        expl = explain.explain(self.pipeline, raw, background=self.background_raw,
                               random_state=self.random_state)
        return expl.values

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_explainer"] = None  # shap's explainer is rebuilt on first use after loading
        return state


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
        X = _typed(_with_id(X))
        features = X[list(SCORE_FEATURES)]
        risk = np.asarray(self.pipeline.predict(features), dtype=np.float64)
        if not np.all(np.isfinite(risk)):
            raise ValueError("the model gives non-finite risk scores on its training rows")
        self.risk_quantiles_ = np.quantile(risk, np.linspace(0, 1, 101))
        self.cutoffs_ = np.quantile(risk, [1 / 3, 2 / 3])
        rng = np.random.default_rng(self.random_state)
        keep = rng.choice(len(features), min(self.background_size, len(features)), replace=False)
        background_raw = features.iloc[np.sort(keep)].reset_index(drop=True)
        Xt = self.pipeline.preprocessor_.transform(features)
        self.columns_ = list(Xt.columns)
        self.explainer_ = _RiskExplainer(self.pipeline, Xt.iloc[np.sort(keep)].reset_index(drop=True),
                                         background_raw, self.random_state)
        if self.explainer_.kind == "linear":
            self.explainer_.mean = Xt.to_numpy(np.float64).mean(0)  # the whole training mean
        self.feature_groups_ = _feature_groups(self.columns_, features)
        self.fast_preprocessor_ = _fast_preprocessor(self.pipeline, features)
        fast_model = _FastModel(self.pipeline.steps[-1][1])
        if fast_model.kind != "generic" and not fast_model.agrees(Xt.head(50)):
            fast_model.kind = "generic"
        self.fast_model_ = fast_model
        self.times_ = np.asarray(self.pipeline.unique_times_, dtype=np.float64)
        self.n_train_ = len(features)
        self._check_explanation(features.head(5))
        return self

    def _check_explanation(self, rows: pd.DataFrame) -> None:
        """SHAP must add up to the model's risk (differences between rows, exact methods)."""
        if self.explainer_.kind not in ("linear", "tree", "xgboost"):
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
        X = parse_patients(patients)
        return self.result_for(X, curve=curve, explain=explain)

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
        if explain:
            phi = self.explainer_.values(Xt, features)
            contributions = pd.DataFrame(phi @ self.feature_groups_.to_numpy(), index=X.index,
                                         columns=self.feature_groups_.columns)
        else:
            contributions = pd.DataFrame(np.zeros((len(X), 0)), index=X.index)
        names = np.array(SCORE_FEATURES)
        position = {c: i for i, c in enumerate(X.columns)}
        imputed_mask = pd.isna(X.to_numpy(dtype=object)[:, [position[c] for c in names]])
        return ScoreResult(
            ids=X["id"].to_numpy(), risk=risk, percentile=self.percentile(risk), group=self.group(risk),
            horizons=tuple(float(h) for h in horizons), survival=surv_h, median=median,
            contributions=contributions, values=features,
            imputed=[list(names[row]) for row in imputed_mask] if imputed_mask.any() else [[]] * len(X),
            curve_times=grid, curves=curves)

    def _summaries_from_curves(self, Xt: pd.DataFrame, horizons: np.ndarray,
                               grid: np.ndarray | None) -> tuple[np.ndarray, ...]:
        """(risk, S at horizons, median, S on grid or None) read off whole curves, in blocks."""
        risks, surv_h, median, curves = [], [], [], []
        for start in range(0, len(Xt), CHUNK):
            risk_block, block = self.fast_model_.outputs(Xt.iloc[start:start + CHUNK])
            risks.append(risk_block)
            surv_h.append(_step_values(self.times_, block, horizons))
            median.append(_medians(self.times_, block))
            if grid is not None:
                curves.append(_step_values(self.times_, block, grid))
        return (np.concatenate(risks), np.vstack(surv_h), np.concatenate(median),
                np.vstack(curves) if grid is not None else None)

    def score(self, patients: Any) -> pd.DataFrame:
        """The flat table of `OUTPUT_COLUMNS`, one row per patient."""
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
            "explanation": {"linear": "exact linear SHAP", "tree": "exact TreeSHAP (path-dependent)",
                            "xgboost": "exact TreeSHAP (XGBoost)"}.get(self.explainer_.kind,
                                                                      "permutation SHAP (approximate)"),
            "cutoffs": [float(c) for c in self.cutoffs_],
            "n_train": int(self.n_train_),
            "horizons_months": [float(h) for h in self.horizons],
            "follow_up_months": float(self.times_[-1]),
        }


def _with_id(X: pd.DataFrame) -> pd.DataFrame:
    X = X.copy()
    if "id" not in X.columns:
        X.insert(0, "id", None)
    for column in SCORE_FEATURES:
        if column not in X.columns:
            raise ValueError(f"training rows lack the column '{column}'")
    return X[["id", *SCORE_FEATURES]]


def _fast_preprocessor(pipeline: Any, features: pd.DataFrame) -> _FastPreprocessor | None:
    """The numpy replay of the preprocessor if it reproduces scikit-learn's transform on the
    training rows and on rows with each covariate missing in turn; else None."""
    if len(pipeline.steps) != 2:
        return None
    try:
        fast = _FastPreprocessor(pipeline.steps[0][1])
    except (TypeError, AttributeError, ValueError):
        return None
    probe = features.head(50).reset_index(drop=True)
    holes = pd.concat([probe.head(1)] * (2 * len(probe.columns)), ignore_index=True)
    for i, column in enumerate(probe.columns):
        holes[column] = holes[column].astype(object)
        holes.loc[2 * i, column] = np.nan
        holes.loc[2 * i + 1, column] = None if column not in schema.NUMERIC_RANGES else np.nan
    probe = pd.concat([probe, holes], ignore_index=True)
    for column in schema.NUMERIC_COVARIATES:
        if column in probe:
            probe[column] = probe[column].astype("float64")
    reference = pipeline.steps[0][1].transform(probe)
    mine = fast.transform(probe)
    same = list(reference.columns) == list(mine.columns) and np.allclose(
        reference.to_numpy(np.float64), mine.to_numpy(np.float64), rtol=0, atol=1e-12)
    return fast if same else None


def _feature_groups(columns: Sequence[str], raw: pd.DataFrame) -> pd.DataFrame:
    """0/1 matrix (transformed column x original feature): sums one-hot SHAP back."""
    from features.pipeline import original_feature
    from ml.explain import infer_feature_spec

    spec = infer_feature_spec(raw, columns)
    origin = [original_feature(c, spec) for c in columns]
    features = list(dict.fromkeys(origin))
    matrix = np.zeros((len(columns), len(features)))
    for i, name in enumerate(origin):
        matrix[i, features.index(name)] = 1.0
    return pd.DataFrame(matrix, index=list(columns), columns=features)


# ====================================================================== building and loading


def fit_scorer(model: str = "cox", data: Any = None, random_state: int | None = 0,
               **params: Any) -> SurvivalScorer:
    """Fit model family `model` on `data` (a `features.datasets.SurvivalData`; default: the
    study-sized twin cohort) and wrap it with cut-offs fixed on the same rows."""
    from features import datasets
    from ml import models

    data = data if data is not None else datasets.twin()
    pipeline = models.fit_full(model, data.spec, data.X, data.y, random_state=random_state,
                               treatment_column=data.treatment_column, **params)
    return SurvivalScorer(pipeline, model_name=model, random_state=random_state).fit(data.X)


def scorer_from(obj: Any, reference: Any = None) -> tuple[SurvivalScorer, list[str]]:
    """A SurvivalScorer from what a model URI held: the scorer itself (the survival pyfunc),
    or a bare fitted pipeline (e.g. a model registered by `rechallenge tune` with the
    sklearn flavour), whose cut-offs are then fixed on a reference cohort (default: the
    study-sized twin) and said so in the returned notes."""
    if isinstance(obj, SurvivalScorer):
        return obj, []
    if not hasattr(obj, "predict_survival_function") or not hasattr(obj, "steps"):
        raise ValueError(f"the model is a {type(obj).__name__}, not a survival pipeline or scorer")
    from features import datasets

    data = reference if reference is not None else datasets.twin()
    scorer = SurvivalScorer(obj, model_name=type(obj.steps[-1][1]).__name__).fit(data.X)
    note = (f"the model carries no risk-group cut-offs: they were fixed on {data.name} "
            "(the default reference cohort)")
    return scorer, [note]


def resolve_scorer(model_uri: str | None = None) -> tuple[SurvivalScorer, str, list[str]]:
    """(scorer, URI, notes) for the CLI and the service.

    With `model_uri`: what it holds (a survival pyfunc, or a sklearn-flavoured pipeline).
    Without: the champion of `rechallenge-pfs-cox`; if the registry has none, the default
    cox model is fitted on the study-sized twin cohort and registered there as the
    champion, and a note says so. Raises ValueError when the URI holds nothing usable.
    """
    from ml.tracking import mlflow_io as tracking

    if model_uri:
        scorer, notes = scorer_from(tracking.load_survival_model(model_uri))
        return scorer, model_uri, notes
    if tracking.champion(DEFAULT_REGISTERED_NAME) is not None:
        scorer, notes = scorer_from(tracking.load_survival_model(DEFAULT_MODEL_URI))
        return scorer, DEFAULT_MODEL_URI, notes
    from features import datasets

    data = datasets.twin()
    scorer = fit_scorer("cox", data)
    tags = {"data": data.name, "origin": "default model (rechallenge score)"}
    reg = tracking.register_survival_model(scorer, DEFAULT_REGISTERED_NAME, tags=tags)
    note = (f"no model was registered as {DEFAULT_REGISTERED_NAME}: fitted the default cox model on "
            f"{data.name} and registered it as version {reg['version']} with alias champion")
    return scorer, reg["uri"], [note]


def plot_survival(result: ScoreResult, i: int, ax: Any) -> Any:
    """Patient i's predicted PFS curve on `ax` (needs `curve=True`), with the median and horizons."""
    if result.curves is None:
        raise ValueError("the result has no curves: compute it with curve=True")
    ax.step(result.curve_times, result.curves[i], where="post", color="#23395d", lw=2)
    ax.axhline(0.5, color="0.6", ls="--", lw=0.8)
    median = result.median[i]
    if np.isfinite(median) and median <= result.curve_times[-1]:
        ax.axvline(median, ymax=0.5, color="#c62828", ls="--", lw=0.8)
    for j, t in enumerate(result.horizons):
        if np.isfinite(result.survival[i, j]) and t <= result.curve_times[-1]:
            ax.plot([t], [result.survival[i, j]], "o", color="#23395d", ms=4)
    ax.set(xlim=(0, result.curve_times[-1]), ylim=(0, 1.02), xlabel="months since start of rechallenge",
           ylabel="P(PFS > t)",
           title=f"{result.ids[i]}: {result.group[i]} risk, median PFS {median_text(median)}")
    ax.grid(alpha=0.3)
    return ax

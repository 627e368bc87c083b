"""Survival data sets in one frame shape, for the benchmark and any other model run.

`SurvivalData` = a DataFrame holding the time and event columns and the features, plus
what is needed to model it: the feature spec (numeric / categorical with levels), the
treatment column if there is one (for IPTW), horizons and the truncation time for the
metrics, and, for the digital twin, the true linear predictor (the oracle risk score).

Sources: the digital twin (`twin`), scikit-survival's bundled real data sets
(`public`: veterans, gbsg2, whas500, aids, flchain), and any user table (`from_table`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from features import schema
from features.pipeline import ONE_HOT_SEPARATOR, FeatureSpec, cohort_spec, infer_spec
from features.twin import TwinConfig

PUBLIC = ("veterans", "gbsg2", "whas500", "aids", "flchain")
DATASETS = ("twin", *PUBLIC)
TWIN_HORIZONS = {"6": 6.0, "12": 12.0}
TWIN_TAU = 24.0
QUANTILE_HORIZONS = {"q25": 0.25, "q50": 0.50}
TAU_QUANTILE = 0.8


class DatasetError(ValueError):
    """A table that cannot be used as survival data (missing column, no events, ...)."""


@dataclass
class SurvivalData:
    name: str
    frame: pd.DataFrame
    time: str
    event: str
    spec: FeatureSpec
    horizons: dict[str, float]
    tau: float
    time_unit: str = "months"
    treatment: str | None = None
    treated: str | None = None
    truth: np.ndarray | None = None
    source: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def X(self) -> pd.DataFrame:
        return self.frame[self.spec.columns]

    @property
    def y(self) -> np.ndarray:
        y = np.empty(len(self.frame), dtype=[("event", bool), ("time", float)])
        y["event"] = self.frame[self.event].to_numpy().astype(bool)
        y["time"] = self.frame[self.time].to_numpy(dtype=float)
        return y

    @property
    def treatment_column(self) -> str | None:
        """Name of the treated-group indicator after one-hot encoding, e.g. 'treatment=CIA'."""
        if self.treatment is None:
            return None
        return f"{self.treatment}{ONE_HOT_SEPARATOR}{self.treated}"

    @property
    def calibration_horizon(self) -> str:
        """Label of the horizon used for calibration (the latest one)."""
        return max(self.horizons, key=self.horizons.get)


def twin(n: int | None = None, seed: int | None = None, endpoint: str = "pfs",
         config: TwinConfig | None = None) -> SurvivalData:
    """The digital-twin cohort (twin.generate defaults: n = 101, the named seed, the default
    cohort config), rows labelled by patient id."""
    from features import twin as twin_module

    if endpoint not in schema.ENDPOINTS:
        raise DatasetError(f"unknown endpoint '{endpoint}'; choose from {', '.join(schema.ENDPOINTS)}")
    cohort = twin_module.generate(n=n, seed=seed, config=config)
    time, event = schema.ENDPOINTS[endpoint]
    spec = cohort_spec(include_treatment=True)
    frame = cohort.data.set_index(schema.ID)[[*spec.columns, time, event]].copy()
    truth_col = f"true_lp_{endpoint}"
    truth = cohort.truth[truth_col].to_numpy(dtype=float) if truth_col in cohort.truth else None
    notes = [] if truth is not None else [f"no true linear predictor for {endpoint}: no oracle row"]
    return SurvivalData(
        name=f"twin (n={len(frame)}, seed {cohort.seed})", frame=frame, time=time, event=event, spec=spec,
        horizons=dict(TWIN_HORIZONS), tau=TWIN_TAU, treatment=schema.TREATMENT, treated=schema.TREATED,
        truth=truth, source=f"features.twin.generate(n={len(frame)}, seed={cohort.seed})", notes=notes,
    )


def _sksurv_frame(name: str) -> tuple[pd.DataFrame, np.ndarray, str | None, str | None, list[str]]:
    from sksurv import datasets as sk

    drops, notes = [], []
    treatment = treated = None
    if name == "veterans":
        X, y = sk.load_veterans_lung_cancer()
        treatment, treated = "Treatment", "test"
    elif name == "gbsg2":
        X, y = sk.load_gbsg2()
        treatment, treated = "horTh", "yes"
    elif name == "whas500":
        X, y = sk.load_whas500()
    elif name == "aids":
        X, y = sk.load_aids(endpoint="aids")
        treatment, treated = "tx", "1"
        drops = ["txgrp"]
        notes.append("aids: 'txgrp' dropped (a recoding of the treatment arm 'tx')")
    elif name == "flchain":
        X, y = sk.load_flchain()
        drops = ["chapter"]
        notes.append("flchain: 'chapter' dropped (cause of death, recorded after baseline)")
    else:
        raise DatasetError(f"unknown data set '{name}'; choose from {', '.join(DATASETS)}")
    return X.drop(columns=drops), y, treatment, treated, notes


def public(name: str) -> SurvivalData:
    """A scikit-survival data set; times in days; horizons at event-time quantiles."""
    X, y, treatment, treated, notes = _sksurv_frame(name)
    event_name, time_name = y.dtype.names
    frame = X.copy()
    categorical: dict[str, tuple | None] = {}
    for col in frame.columns:
        if isinstance(frame[col].dtype, pd.CategoricalDtype):
            categorical[col] = tuple(str(c) for c in frame[col].cat.categories)
            frame[col] = frame[col].astype(object).where(frame[col].notna(), np.nan).map(
                lambda v: v if pd.isna(v) else str(v))
    numeric = tuple(c for c in frame.columns if c not in categorical)
    frame["time"] = np.asarray(y[time_name], dtype=float)
    frame["event"] = np.asarray(y[event_name]).astype(int)
    nonpositive = frame["time"] <= 0
    if nonpositive.any():
        notes.append(f"{name}: {int(nonpositive.sum())} row(s) with follow-up time 0 dropped")
        frame = frame[~nonpositive].reset_index(drop=True)
    data = from_table(frame, "time", "event", treatment=treatment, treated=treated, name=name,
                      categorical=tuple(categorical), numeric=numeric, time_unit="days",
                      source=f"sksurv.datasets ({name})")
    # keep the data set's own level order (first level = reference)
    levels = {c: lv for c, lv in categorical.items() if c in data.spec.categorical}
    data.spec = FeatureSpec(numeric=data.spec.numeric, categorical={**data.spec.categorical, **levels})
    if treatment is not None:
        control = next(v for v in levels[treatment] if v != treated)
        data.spec.categorical[treatment] = (control, treated)
    data.notes = notes + data.notes
    return data


def from_table(df: pd.DataFrame, time: str, event: str, *, treatment: str | None = None,
               treated: str | None = None, drop: Sequence[str] = (), categorical: Sequence[str] = (),
               numeric: Sequence[str] = (), name: str = "table", time_unit: str = "as given",
               horizons: dict[str, float] | None = None, tau: float | None = None,
               source: str = "") -> SurvivalData:
    """Any survival table: `time`/`event` named, every other column (not dropped) a feature.

    Numeric vs categorical is inferred (override with `categorical` / `numeric`); missing
    feature values are allowed (imputed inside each training fold). Raises DatasetError
    for a missing or invalid outcome column, a treatment column that is not two groups,
    or a feature that is entirely missing.
    """
    for role, col in (("time", time), ("event", event)):
        if col not in df.columns:
            columns = ", ".join(map(str, df.columns))
            raise DatasetError(f"no {role} column '{col}' in the table (columns: {columns})")
    unknown = [c for c in drop if c not in df.columns]
    if unknown:
        raise DatasetError(f"cannot drop {', '.join(unknown)}: no such column")
    frame = df.drop(columns=list(drop)).reset_index(drop=True)
    times = pd.to_numeric(frame[time], errors="coerce")
    if times.isna().any() or not np.all(np.isfinite(times)) or (times <= 0).any():
        bad = int((times.isna() | ~np.isfinite(times) | (times <= 0)).sum())
        raise DatasetError(f"time column '{time}': {bad} row(s) missing, not a number or <= 0")
    events = frame[event]
    if pd.api.types.is_bool_dtype(events):
        events = events.astype(int)
    events = pd.to_numeric(events, errors="coerce")
    if events.isna().any() or not events.isin([0, 1]).all():
        raise DatasetError(f"event column '{event}' must hold 0/1 (or true/false) on every row")
    if events.sum() == 0:
        raise DatasetError(f"event column '{event}' has no events: nothing to model")
    frame[time], frame[event] = times.astype(float), events.astype(int)
    notes: list[str] = []
    if treatment is not None:
        frame, treated = _treatment(frame, treatment, treated)
    try:
        spec = infer_spec(frame, exclude=(time, event), categorical=tuple(categorical),
                          numeric=tuple(numeric))
    except ValueError as exc:
        raise DatasetError(str(exc)) from None
    for col, levels in list(spec.categorical.items()):
        if levels is None:
            # labels as text, levels fixed up front (vocabulary only; nothing is fitted here)
            frame[col] = frame[col].map(lambda v: v if pd.isna(v) else str(v))
            spec.categorical[col] = tuple(sorted(frame[col].dropna().unique()))
    if treatment is not None:
        control = next(v for v in sorted(frame[treatment].dropna().unique()) if v != treated)
        spec.categorical[treatment] = (control, treated)
    if not spec.columns:
        raise DatasetError("no feature columns left besides time and event")
    y_time, y_event = frame[time].to_numpy(), frame[event].to_numpy().astype(bool)
    if horizons is None:
        horizons = {k: float(np.quantile(y_time[y_event], q)) for k, q in QUANTILE_HORIZONS.items()}
        notes.append("horizons at the 25th and 50th percentiles of the event times: " +
                     ", ".join(f"{k} = {v:.4g} {time_unit}" for k, v in horizons.items()))
    if tau is None:
        tau = float(np.quantile(y_time, TAU_QUANTILE))
    return SurvivalData(name=name, frame=frame, time=time, event=event, spec=spec, horizons=horizons,
                        tau=tau, time_unit=time_unit, treatment=treatment, treated=treated,
                        source=source or name, notes=notes)


def _treatment(frame: pd.DataFrame, treatment: str, treated: str | None) -> tuple[pd.DataFrame, str]:
    if treatment not in frame.columns:
        raise DatasetError(f"no treatment column '{treatment}' in the table")
    col = frame[treatment]
    if col.isna().any():
        raise DatasetError(f"treatment column '{treatment}' has {int(col.isna().sum())} missing value(s)")
    values = col.map(lambda v: str(int(v)) if isinstance(v, float) and float(v).is_integer() else str(v))
    levels = sorted(values.unique())
    if len(levels) != 2:
        raise DatasetError(f"treatment column '{treatment}' must hold two groups, found {len(levels)}: "
                           f"{', '.join(levels[:10])}")
    treated = levels[-1] if treated is None else str(treated)
    if treated not in levels:
        raise DatasetError(f"treated value '{treated}' not in column '{treatment}' ({', '.join(levels)})")
    frame = frame.copy()
    frame[treatment] = values
    return frame, treated


def load(name: str, n: int | None = None, seed: int | None = None, endpoint: str = "pfs") -> SurvivalData:
    """A named data set: 'twin' (with n / seed / endpoint) or one of PUBLIC."""
    if name == "twin":
        return twin(n=n, seed=seed, endpoint=endpoint)
    if name in PUBLIC:
        return public(name)
    raise DatasetError(f"unknown data set '{name}'; choose from {', '.join(DATASETS)}")

"""Survival data sets in one frame shape: the only place a `SurvivalData` is made.

`SurvivalData` = a DataFrame holding the time and event columns and the features, plus
what is needed to model it: the feature spec (numeric / categorical with levels), the
treatment column if there is one (for IPTW), horizons and the truncation time for the
metrics, and, for the digital twin, the true linear predictor (the oracle risk score).

Sources: the digital twin (`twin`), a cohort table of the contract (`from_cohort`),
scikit-survival's bundled real data sets (`public`: veterans, gbsg2, whas500, aids, flchain),
and any user table (`from_table`). The survival target is always scikit-survival's structured
array, built by `Surv.from_arrays` (`survival_target`, `SurvivalData.y`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sksurv import datasets as sksurv_datasets
from sksurv.util import Surv

from features.contract import COVARIATES, ENDPOINTS, EVENT_WORDS, ID, TREATED, TREATMENT
from features.errors import DatasetError
from features.pipeline import ONE_HOT_SEPARATOR, FeatureSpec, cohort_spec, infer_spec
from features.schema import parse_events
from features.twin import TwinConfig, generate

PUBLIC = ("veterans", "gbsg2", "whas500", "aids", "flchain")
DATASETS = ("twin", *PUBLIC)
TWIN_HORIZONS = {"6": 6.0, "12": 12.0}
TWIN_TAU = 24.0
QUANTILE_HORIZONS = {"q25": 0.25, "q50": 0.50}
TAU_QUANTILE = 0.8


def _surv(event: object, time: object) -> np.ndarray:
    # events as booleans first: from_arrays refuses a 0/1 array holding one value only,
    # which a data set without censoring (or one fold of it) is
    return Surv.from_arrays(event=np.asarray(event).astype(bool), time=np.asarray(time, dtype=float))


def survival_target(df: pd.DataFrame, endpoint: str = "pfs") -> np.ndarray:
    """The one outcome type of a cohort table: a structured array (event: bool, time: float), months."""
    time, event = _endpoint_columns(endpoint)
    return _surv(df[event], df[time])


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
        return _surv(self.frame[self.event], self.frame[self.time])

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


# ------------------------------------------------------------------- cohort tables


def _endpoint_columns(endpoint: str) -> tuple[str, str]:
    if endpoint not in ENDPOINTS:
        raise DatasetError(f"unknown endpoint '{endpoint}'; choose from {', '.join(ENDPOINTS)}")
    return ENDPOINTS[endpoint]


def from_cohort(df: pd.DataFrame, endpoint: str = "pfs", name: str = "cohort",
                source: str = "") -> SurvivalData:
    """A cohort table of the contract (validated: `features.schema.validate`) as SurvivalData.

    The features are the contract's covariates and the treatment (`cohort_spec`); a covariate
    empty on every row carries no information and is left out (with a note). The horizons
    (6 and 12 months) and the truncation time (24 months) are the study's.
    """
    time, event = _endpoint_columns(endpoint)
    columns = [*cohort_spec(include_treatment=True).columns, time, event]
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DatasetError(f"not a cohort table: no column(s) {', '.join(missing)}")
    empty = tuple(c for c in COVARIATES if df[c].isna().all())
    spec = cohort_spec(include_treatment=True, exclude=empty)
    notes = [f"covariate(s) {', '.join(empty)} empty on every row: left out of the features"] if empty else []
    return SurvivalData(
        name=name, frame=df[[*spec.columns, time, event]].reset_index(drop=True), time=time,
        event=event, spec=spec, horizons=dict(TWIN_HORIZONS), tau=TWIN_TAU, treatment=TREATMENT,
        treated=TREATED, source=source or name, notes=notes)


def twin(n: int | None = None, seed: int | None = None, endpoint: str = "pfs",
         config: TwinConfig | None = None) -> SurvivalData:
    """A digital-twin cohort, with its true linear predictor as the oracle.

    Defaults as in `features.twin.generate`: n = 101, the config's named seed, the default config.
    """
    cohort = generate(n=n, seed=seed, config=config)
    n_drawn = len(cohort.data)
    call = f"n={n_drawn}, seed={cohort.seed}" + (f", config {config.version}" if config else "")
    data = from_cohort(cohort.data, endpoint, name=f"twin (n={n_drawn}, seed {cohort.seed})",
                       source=f"features.twin.generate({call})")
    data.frame.index = pd.Index(cohort.data[ID].to_numpy(), name=ID)  # rows named by patient id
    truth_col = f"true_lp_{endpoint}"
    if truth_col in cohort.truth:
        data.truth = cohort.truth[truth_col].to_numpy(dtype=float)
    else:
        data.notes.append(f"no true linear predictor for {endpoint}: no oracle row")
    return data


# -------------------------------------------------------------------- public sets


@dataclass(frozen=True)
class _PublicSet:
    """How one of scikit-survival's data sets is read: loader, treatment arm, dropped columns."""

    load: Callable[[], tuple[pd.DataFrame, np.ndarray]]
    treatment: str | None = None
    treated: str | None = None
    drop: tuple[str, ...] = ()
    note: str = ""


_PUBLIC_SETS = {
    "veterans": _PublicSet(sksurv_datasets.load_veterans_lung_cancer, "Treatment", "test"),
    "gbsg2": _PublicSet(sksurv_datasets.load_gbsg2, "horTh", "yes"),
    "whas500": _PublicSet(sksurv_datasets.load_whas500),
    "aids": _PublicSet(lambda: sksurv_datasets.load_aids(endpoint="aids"), "tx", "1", ("txgrp",),
                       "aids: 'txgrp' dropped (a recoding of the treatment arm 'tx')"),
    "flchain": _PublicSet(sksurv_datasets.load_flchain, drop=("chapter",),
                          note="flchain: 'chapter' dropped (cause of death, recorded after baseline)"),
}


def _as_text_categories(X: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, tuple[str, ...]]]:
    """Categorical columns as plain text labels, with their levels in the data set's own order."""
    frame = X.copy()
    levels: dict[str, tuple[str, ...]] = {}
    for col in frame.columns:
        if isinstance(frame[col].dtype, pd.CategoricalDtype):
            levels[col] = tuple(str(c) for c in frame[col].cat.categories)
            frame[col] = frame[col].astype(object).where(frame[col].notna(), np.nan).map(
                lambda v: v if pd.isna(v) else str(v))
    return frame, levels


def public(name: str) -> SurvivalData:
    """A scikit-survival data set; times in days; horizons at event-time quantiles."""
    if name not in _PUBLIC_SETS:
        raise DatasetError(f"unknown data set '{name}'; choose from {', '.join(DATASETS)}")
    known = _PUBLIC_SETS[name]
    X, y = known.load()
    frame, categorical = _as_text_categories(X.drop(columns=list(known.drop)))
    notes = [known.note] if known.note else []
    event_name, time_name = y.dtype.names
    numeric = tuple(c for c in frame.columns if c not in categorical)
    frame["time"] = np.asarray(y[time_name], dtype=float)
    frame["event"] = np.asarray(y[event_name]).astype(int)
    nonpositive = frame["time"] <= 0
    if nonpositive.any():
        notes.append(f"{name}: {int(nonpositive.sum())} row(s) with follow-up time 0 dropped")
        frame = frame[~nonpositive].reset_index(drop=True)
    data = from_table(frame, "time", "event", treatment=known.treatment, treated=known.treated,
                      name=name, categorical=tuple(categorical), numeric=numeric, time_unit="days",
                      source=f"sksurv.datasets ({name})")
    # keep the data set's own level order (first level = reference)
    levels = {c: lv for c, lv in categorical.items() if c in data.spec.categorical}
    data.spec = FeatureSpec(numeric=data.spec.numeric, categorical={**data.spec.categorical, **levels},
                            min_level_rows=data.spec.min_level_rows)
    if known.treatment is not None:
        control = next(v for v in levels[known.treatment] if v != known.treated)
        data.spec.categorical[known.treatment] = (control, known.treated)
    data.notes = notes + data.notes
    return data


# --------------------------------------------------------------------- any table


def from_table(df: pd.DataFrame, time: str, event: str, *, treatment: str | None = None,
               treated: str | None = None, drop: Sequence[str] = (), categorical: Sequence[str] = (),
               numeric: Sequence[str] = (), name: str = "table", time_unit: str = "as given",
               horizons: dict[str, float] | None = None, tau: float | None = None,
               source: str = "") -> SurvivalData:
    """Any survival table: `time`/`event` named, every other column (not dropped) a feature.

    Numeric vs categorical is inferred (override with `categorical` / `numeric`); missing
    feature values are allowed (imputed inside each training fold). Events are 0/1 or the
    words of `contract.EVENT_WORDS` (yes/no, y/n, true/false, any case). Raises DatasetError
    for a missing or invalid outcome column, a treatment column that is not two groups, a
    `treated` value that is not one of them (or given without a treatment column), or a
    feature that is entirely missing.
    """
    if treated is not None and treatment is None:
        raise DatasetError(f"treated value '{treated}' given without a treatment column: "
                           "name the column that holds it")
    frame = _outcome_frame(df, time, event, drop)
    if treatment is not None:
        frame, treated = _treatment(frame, treatment, treated)
    spec = _feature_spec(frame, (time, event), categorical, numeric)
    if treatment is not None:
        control = next(v for v in sorted(frame[treatment].dropna().unique()) if v != treated)
        spec.categorical[treatment] = (control, treated)
    if not spec.columns:
        raise DatasetError("no feature columns left besides time and event")
    notes: list[str] = []
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


def _outcome_frame(df: pd.DataFrame, time: str, event: str, drop: Sequence[str]) -> pd.DataFrame:
    """The table without the dropped columns, its times as float (> 0) and events as 0/1 int."""
    for role, col in (("time", time), ("event", event)):
        if col not in df.columns:
            columns = ", ".join(map(str, df.columns))
            raise DatasetError(f"no {role} column '{col}' in the table (columns: {columns})")
    unknown = [c for c in drop if c not in df.columns]
    if unknown:
        raise DatasetError(f"cannot drop {', '.join(unknown)}: no such column")
    frame = df.drop(columns=list(drop)).reset_index(drop=True)
    frame[time], frame[event] = _times(frame[time], time), _events(frame[event], event)
    return frame


def _times(values: pd.Series, column: str) -> pd.Series:
    times = pd.to_numeric(values, errors="coerce")
    bad = times.isna() | ~np.isfinite(times) | (times <= 0)
    if bad.any():
        raise DatasetError(f"time column '{column}': {int(bad.sum())} row(s) missing, not a number "
                           f"or <= 0 ({_rows_and_values(values, bad)}); expected a time > 0 on every row")
    return times.astype(float)


def _events(values: pd.Series, column: str) -> pd.Series:
    events, _ = parse_events(values)
    bad = ~events.isin([0.0, 1.0])
    if bad.any():
        words = "/".join(w for w in EVENT_WORDS if not w.isdigit())
        raise DatasetError(f"event column '{column}' must hold 0/1 (or {words}) on every row; "
                           f"{int(bad.sum())} row(s) do not ({_rows_and_values(values, bad)})")
    if events.sum() == 0:
        raise DatasetError(f"event column '{column}' has no events: nothing to model")
    return events.astype(int)


def _rows_and_values(values: pd.Series, bad: pd.Series, shown: int = 8) -> str:
    """ "rows 3, 9; found: x, nan" for a message (rows numbered from 1, as in the file)."""
    rows = [str(i + 1) for i in np.flatnonzero(bad.to_numpy())]
    found = list(dict.fromkeys(map(str, values[bad])))
    more = f" (+{len(rows) - shown} more)" if len(rows) > shown else ""
    return f"rows {', '.join(rows[:shown])}{more}; found: {', '.join(found[:shown])}"


def _feature_spec(frame: pd.DataFrame, outcome: tuple[str, str], categorical: Sequence[str],
                  numeric: Sequence[str]) -> FeatureSpec:
    """The inferred spec, the levels of every categorical feature fixed up front.

    Labels become text and the levels are the sorted labels: a vocabulary only, nothing is
    fitted here. Converts `frame`'s categorical columns in place.
    """
    try:
        spec = infer_spec(frame, exclude=outcome, categorical=tuple(categorical), numeric=tuple(numeric))
    except ValueError as exc:
        raise DatasetError(str(exc)) from None
    for col, levels in list(spec.categorical.items()):
        if levels is None:
            frame[col] = frame[col].map(lambda v: v if pd.isna(v) else str(v))
            spec.categorical[col] = tuple(sorted(frame[col].dropna().unique()))
    return spec


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
        raise DatasetError(f"treated value '{treated}' does not occur in the treatment column "
                           f"'{treatment}' (its values: {', '.join(levels)})")
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

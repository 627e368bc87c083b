"""The report's pieces made from the workflows' results: plain frames and `ml.reporting.report`
content types (the KM panels, the forest rows, the decision curves, the nomogram, the SHAP frames).
No I/O, no MLflow."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features import schema
from features.contract import COVARIATES
from ml import models
from ml.evaluation.decision_curve import decision_curves
from ml.evaluation.folds import make_folds
from ml.explain import feature_shap
from ml.reporting.nomogram import level_label
from ml.reporting.report.content import KMPanel, Nomogram, Study
from ml.stats import km
from ml.stats.cox_tables import ENDPOINT_NAMES
from ml.stats.km import step_at
from ml.stats.km_band import reverse_km_median, weighted_km_band
from ml.workflows.analysis_result import AnalysisResult

GROUPS = (schema.TREATED, schema.CONTROL)
RISK_TABLE_STEP = 6.0


def study(df: pd.DataFrame, source: str, is_twin: bool) -> Study:
    """Section 1: n, events, reverse-KM follow-up and missingness per variable."""
    events, follow = {}, {}
    for ep, (tcol, ecol) in schema.ENDPOINTS.items():
        events[ENDPOINT_NAMES[ep]] = int(df[ecol].sum())
        follow[ENDPOINT_NAMES[ep]] = reverse_km_median(df[tcol], df[ecol].astype(bool))
    columns = [c for c in (*COVARIATES, schema.TREATMENT) if c in df.columns]
    missing = pd.DataFrame({"variable": columns, "missing": [int(df[c].isna().sum()) for c in columns]})
    missing["percent"] = 100 * missing["missing"] / len(df)
    sizes = {g: int((df[schema.TREATMENT] == g).sum()) for g in GROUPS}
    return Study(title="Immunotherapy rechallenge: progression-free survival", source=source,
                 is_twin=is_twin, n=len(df), groups=GROUPS, group_sizes=sizes, events=events,
                 follow_up=follow, missing=missing)


def table_one(result: AnalysisResult) -> pd.DataFrame:
    """Before and after weighting side by side (n (%), median [IQR], SMD, missing)."""
    before, after = result.table_one_before, result.table_one_after
    out = before[["variable", "level"]].copy()
    for g in GROUPS:
        out[f"{g} before"] = before[g].to_numpy()
    out["SMD before"] = before["smd"].to_numpy()
    for g in GROUPS:
        out[f"{g} after"] = after[g].to_numpy()
    out["SMD after"] = after["smd"].to_numpy()
    out["missing"] = before["missing"].to_numpy()
    return out


def love_frame(result: AnalysisResult) -> pd.DataFrame:
    """love_plot input (sample, term, confounder = its covariate, weighted_on, smd) with one row per
    binary covariate (its non-reference level; the reference row is the same difference with the
    sign flipped), as cobalt shows binaries."""
    smd = result.smd
    levels = smd.groupby("covariate")["term"].transform("size")
    first = ~smd.duplicated("covariate")
    keep = smd[~((levels == 2) & first)]
    keep = keep.assign(weighted_on=keep["confounder"], confounder=keep["covariate"])
    long = [keep.assign(sample=name, smd=keep[col]) for name, col in (("unweighted", "before"),
                                                                       ("IPTW", "after"))]
    return pd.concat(long, ignore_index=True)[["sample", "term", "confounder", "weighted_on", "smd"]]


def _p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def _hr(row: dict) -> str:
    return f"HR {row['hr']:.2f} ({row['ci_low']:.2f}-{row['ci_high']:.2f})"


def _panel_curves(df, result: AnalysisResult, ep: str, weighted: bool, band_b: int, seed: int):
    tcol, ecol = schema.ENDPOINTS[ep]
    time, event = df[tcol].to_numpy(float), df[ecol].to_numpy().astype(bool)
    treated = result.iptw.treated
    curves = {}
    band = (weighted_km_band(df, result.iptw, time, event, np.unique(time), band_b, seed)
            if weighted and band_b else None)
    for g, flag in zip(GROUPS, (True, False), strict=True):
        m = treated == flag
        w = result.iptw.weights[m] if weighted else None
        curve = km.km_frame(time[m], event[m], w)
        if band is not None:
            grid = np.unique(time)
            curve["ci_low"] = step_at(grid, band[flag][0], curve["time"])
            curve["ci_high"] = step_at(grid, band[flag][1], curve["time"])
        curves[g] = curve
    return curves, time, event


def km_panel(df: pd.DataFrame, result: AnalysisResult, ep: str, weighted: bool, band_b: int,
             seed: int) -> KMPanel:
    """One survminer-style panel: curves, censoring, medians, real patients at risk, p and HR."""
    curves, time, event = _panel_curves(df, result, ep, weighted, band_b, seed)
    treated = result.iptw.treated
    weighting = "iptw" if weighted else "unweighted"
    med = result.medians[(result.medians.endpoint == ep) & (result.medians.weighting == weighting)]
    medians = dict(zip(med.group, med["median"], strict=True))
    risk_times = np.arange(0, time.max() + 1e-9, RISK_TABLE_STEP)
    at_risk = {g: [int(np.sum(time[treated == flag] >= t)) for t in risk_times]
               for g, flag in zip(GROUPS, (True, False), strict=True)}
    lr = result.logrank.set_index(["endpoint", "weighting"]).loc[(ep, weighting)]
    name = ENDPOINT_NAMES[ep]
    if weighted:
        cox = result.iptw_cox[ep]
        text = f"weighted log-rank (robust score) {_p(lr.p)}\nIPTW Cox {_hr(cox)}, {GROUPS[0]} vs {GROUPS[1]}"
        band = (f"band: pointwise 95% bootstrap ({band_b} resamples, propensity re-fitted)" if band_b
                else "no band (bootstrap not run)")
        title = f"{name}, IPTW-weighted ({result.iptw.estimand.upper()} pseudo-population)"
    else:
        text = f"log-rank {_p(lr.p)}\nCox {_hr(result.crude_cox[ep])}, {GROUPS[0]} vs {GROUPS[1]}"
        band, title = "band: 95% Greenwood (log-log)", f"{name}, unweighted"
    censored = {g: time[(treated == flag) & ~event] for g, flag in zip(GROUPS, (True, False), strict=True)}
    return KMPanel(title=title, curves=curves, censored=censored, medians=medians, risk_times=risk_times,
                   at_risk=at_risk, annotation=text, band=band, ylabel=f"{name} probability")


def survival_table(result: AnalysisResult) -> pd.DataFrame:
    rows = []
    for r in result.medians[result.medians.group != "all"].itertuples():
        rows.append({"endpoint": ENDPOINT_NAMES[r.endpoint], "weighting": r.weighting, "group": r.group,
                     "n": r.n, "events": r.events, "median": r.median, "ci_low": r.ci_low,
                     "ci_high": r.ci_high, "CI method": r.ci_method})
    return pd.DataFrame(rows)


def ph_table(result: AnalysisResult) -> pd.DataFrame:
    rows = pd.concat(result.ph_tests.values(), ignore_index=True)
    return rows[rows["level"].isin(["covariate", "global"]) | (rows["model"].str.startswith("IPTW"))][
        ["model", "term", "level", "chisq", "df", "p", "ph_violated"]].reset_index(drop=True)


# --- decision curves -------------------------------------------------------------------------------


def _survival_at(pipeline, X: pd.DataFrame, horizon: float) -> np.ndarray:
    out = []
    for fn in pipeline.predict_survival_function(X):
        out.append(float(fn(min(horizon, float(fn.x[-1])))))
    return np.asarray(out)


def out_of_fold_risk(data, names, horizons: dict[str, float], seed: int, folds: int = 5) -> dict:
    """{horizon: {model: out-of-fold P(event by horizon)}} from one stratified K-fold split."""
    y = data.y
    risk = {h: {name: np.full(len(y), np.nan) for name in names} for h in horizons}
    for fold in make_folds(y, folds, 1, seed):
        X_train, X_test = data.X.iloc[fold.train], data.X.iloc[fold.test]
        for name in names:
            est = models.fit_full(name, data.spec, X_train, y[fold.train], random_state=seed,
                                  treatment_column=data.treatment_column)
            for h, at in horizons.items():
                risk[h][name][fold.test] = 1 - _survival_at(est, X_test, at)
    return risk


def dca_frame(data, names, thresholds: np.ndarray, seed: int) -> pd.DataFrame:
    risk = out_of_fold_risk(data, names, data.horizons, seed)
    y = data.y
    parts = [decision_curves(risk[h], y["time"], y["event"], at, thresholds).assign(horizon=h)
             for h, at in data.horizons.items()]
    return pd.concat(parts, ignore_index=True)


# --- nomogram -------------------------------------------------------------------------------------


def _reference_row(X: pd.DataFrame, spec) -> pd.DataFrame:
    row = X.iloc[:1].copy()
    for c in spec.numeric:
        row[c] = float(X[c].median())
    for c, levels in spec.categorical.items():
        row[c] = levels[0] if levels else X[c].mode().iloc[0]
    return row


def _contributions(pipeline, ref: pd.DataFrame, lp_ref: float, column: str, values) -> list[float]:
    rows = pd.concat([ref] * len(values), ignore_index=True)
    rows[column] = list(values)
    if column in ref.select_dtypes("category").columns:
        rows[column] = rows[column].astype(ref[column].dtype)
    return list(pipeline.predict(rows) - lp_ref)


def _axis_values(X: pd.DataFrame, spec, column: str) -> tuple[list[str], list | None, list]:
    if column in spec.numeric:
        lo, hi = np.nanpercentile(X[column].astype(float), [1, 99])
        ticks = np.unique(np.round(np.linspace(lo, hi, 6), 1))
        return [f"{t:g}" for t in ticks], list(ticks), list(ticks)
    levels = spec.categorical[column] or sorted(X[column].dropna().unique())
    return [level_label(v) for v in levels], None, list(levels)


def _outcome_ticks(s_ref, lp_ref: float, offset: float, per_point: float, horizons) -> dict:
    """Total-points positions of S(h) values and of median survival times."""
    out = {}
    for label, h in horizons.items():
        s_h = float(s_ref(min(h, float(s_ref.x[-1]))))
        values = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1]
        lp = [lp_ref + np.log(np.log(s) / np.log(s_h)) for s in values]
        out[f"S({label})"] = ([f"{s:.1f}" for s in values], [(v - offset) / per_point for v in lp])
    medians, positions = [], []
    for m in (3, 6, 9, 12, 18, 24):
        s_m = float(s_ref(min(m, float(s_ref.x[-1]))))
        if 0 < s_m < 1:
            medians.append(f"{m:g}")
            positions.append((lp_ref + np.log(np.log(0.5) / np.log(s_m)) - offset) / per_point)
    out["median (months)"] = (medians, positions)
    return out


def nomogram(data, model: str, seed: int) -> tuple[Nomogram, object]:
    """The nomogram of `model` (a Cox-type linear predictor) fitted on all rows; also the pipeline."""
    pipeline = models.fit_full(model, data.spec, data.X, data.y, random_state=seed,
                               treatment_column=data.treatment_column)
    ref = _reference_row(data.X, data.spec)
    lp_ref = float(pipeline.predict(ref)[0])
    raw = []
    for column in data.spec.columns:
        labels, ticks, values = _axis_values(data.X, data.spec, column)
        raw.append((column, labels, ticks, _contributions(pipeline, ref, lp_ref, column, values)))
    width = max(max(c) - min(c) for *_, c in raw) or 1.0
    per_point = width / 100
    axes = [(col, labels, ticks, [(v - min(c)) / per_point for v in c]) for col, labels, ticks, c in raw]
    offset = lp_ref + sum(min(c) for *_, c in raw)
    s_ref = pipeline.predict_survival_function(ref)[0]
    outcomes = {"linear predictor": ([f"{v:.1f}" for v in np.arange(-3, 3.01, 0.5)],
                                     [(v - offset) / per_point for v in np.arange(-3, 3.01, 0.5)])}
    outcomes |= _outcome_ticks(s_ref, lp_ref, offset, per_point, data.horizons)
    note = ("points: each covariate's contribution to the linear predictor x'b relative to its lowest value, "
            f"scaled so the widest covariate spans 0-100 ({per_point:.4f} log-hazard per point); "
            "S(h) = S_ref(h)^exp(lp - lp_ref) with the model's Breslow baseline")
    return Nomogram(model=model, axes=axes, lp_offset=offset, lp_per_point=per_point,
                    outcomes=outcomes, note=note), pipeline


# --- SHAP -----------------------------------------------------------------------------------------


def shap_frame(expl, spec) -> pd.DataFrame:
    """Long frame (feature, level, numeric, shap): per patient each feature's SHAP (levels summed)."""
    per_feature = feature_shap(expl, spec)
    raw = expl.raw_or_data.loc[per_feature.index]
    parts = []
    for feature in per_feature.columns:
        numeric = feature in spec.numeric
        values = raw[feature]
        parts.append(pd.DataFrame({
            "feature": feature, "level": values.astype(str).to_numpy(),
            "numeric": values.astype(float).to_numpy() if numeric else np.nan,
            "shap": per_feature[feature].to_numpy(float)}))
    return pd.concat(parts, ignore_index=True)

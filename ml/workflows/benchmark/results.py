"""The benchmark's results as plain data: benchmark.json, the leaderboard table, KM curves by risk."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from ml.stats import km
from ml.workflows.benchmark import internal
from ml.workflows.benchmark.run import BASELINE, BenchmarkResult

CI_METHOD = ("95 % CI across the repeats x folds resamples by the Nadeau-Bengio corrected "
             "resampled t (variance x (1/J + n_test/n_train), t with J-1 df); the paired "
             "difference to Cox uses the same correction on per-fold differences")
RISK_GROUPS = ("low", "medium", "high")


def _clean(value: Any) -> Any:
    if isinstance(value, float | np.floating):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def _model_entry(row: dict[str, Any], metrics: list[str]) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    for m in [*metrics, "delta_c_vs_cox"]:
        entry[m] = {"mean": _clean(row[m]), "ci_low": _clean(row[f"{m}_ci_low"]),
                    "ci_high": _clean(row[f"{m}_ci_high"])}
    entry["fit_seconds"] = _clean(row.get("fit_seconds", math.nan))
    entry["n_resamples"] = _clean(row["n_resamples"])
    return entry


def to_json(result: BenchmarkResult) -> dict[str, Any]:
    """benchmark.json: per model each metric's mean / ci_low / ci_high, delta_c_vs_cox,
    fit_seconds, and for the internally validated models `internal_validation` (apparent,
    optimism, corrected per metric); NaN -> null."""
    per_model = {row["model"]: _model_entry(row, result.metrics)
                 for row in result.leaderboard.to_dict("records")}
    for model, validated in result.internal.items():
        per_model[model]["internal_validation"] = {
            metric: {k: _clean(v) for k, v in values.items()}
            for metric, values in internal.summary_block(validated).items()}
    cfg = result.config
    return {
        "dataset": result.data_name, "n": result.n, "events": result.events,
        "endpoint": cfg.endpoint if cfg.data is None and cfg.dataset == "twin" else None,
        "resampling": {"folds": cfg.folds, "repeats": cfg.repeats, "stratified_by": "event",
                       "seed": cfg.seed},
        "horizons": result.horizons, "tau": result.tau, "time_unit": result.time_unit,
        "calibration_horizon": max(result.horizons, key=result.horizons.get),
        "ci_method": CI_METHOD, "baseline": BASELINE, "models": per_model,
        "internal_validation": {"bootstrap": cfg.validation.bootstrap, "seed": cfg.seed,
                                "models": list(result.internal), "method": internal.METHOD},
        "skipped": result.skipped, "notes": result.notes, "seconds": round(result.seconds, 2),
    }


def leaderboard_csv(result: BenchmarkResult) -> pd.DataFrame:
    return result.leaderboard.copy()


def km_by_risk(risk: pd.DataFrame) -> pd.DataFrame:
    """Kaplan-Meier curve (ml.stats.km) of each model's out-of-fold risk tertiles.

    One row per step: model, group, n, time, survival; each curve starts at (0, 1) and ends
    at the group's last follow-up time, for a step plot.
    """
    columns = ["model", "group", "n", "time", "survival"]
    if risk.empty:
        return pd.DataFrame(columns=columns)
    rows = []
    for model in dict.fromkeys(risk["model"]):
        df = risk[risk["model"] == model]
        for group in RISK_GROUPS:
            g = df[df["group"] == group]
            if len(g):
                times, surv = km.weighted_km(g["time"], g["event"])
                t = np.r_[0.0, times, g["time"].max()]
                s = np.r_[1.0, surv, surv[-1] if len(surv) else 1.0]
                rows.append(pd.DataFrame({"model": model, "group": group, "n": len(g), "time": t,
                                          "survival": s}))
    return pd.concat(rows, ignore_index=True)

"""A tuning run's results as tables and records: outer estimates, their CIs, trial records."""

from __future__ import annotations

from typing import Any

import pandas as pd

from ml.evaluation.metrics import corrected_t_ci
from ml.workflows.tuning.config import OBJECTIVES

VARIANT_ORDER = {"tuned": 0, "default": 1, "tuned - default": 2}
VARIANT_PREFIX = {"tuned": "", "default": "default.", "tuned - default": "gap."}
"""How each variant's outer estimates are named in MLflow: the tuned model's under the plain
metric names (the vocabulary of every run kind), the default's and the gap's prefixed."""
_NOT_METRICS = ("fold", "variant", "n_train", "n_test")


def summarise_outer(outer: pd.DataFrame) -> pd.DataFrame:
    """Mean and corrected-t 95% CI per variant and metric, and of the paired tuned-default gap.

    Every metric the outer folds were scored on (the objectives first, then AUC, Brier and
    calibration slope at the horizons)."""
    n_train, n_test = int(outer["n_train"].mean()), int(outer["n_test"].mean())
    metrics = [*OBJECTIVES, *(c for c in outer.columns if c not in (*_NOT_METRICS, *OBJECTIVES))]
    wide = outer.pivot(index="fold", columns="variant", values=metrics)
    rows = []
    for metric in metrics:
        series = {v: wide[(metric, v)] for v in ("tuned", "default")}
        series["tuned - default"] = series["tuned"] - series["default"]
        for variant, values in series.items():
            mean, lo, hi = corrected_t_ci(values.to_numpy(), n_train, n_test)
            rows.append({"metric": metric, "variant": variant, "mean": mean, "ci_low": lo, "ci_high": hi,
                         "folds": len(values)})
    return pd.DataFrame(rows)


def summary_table(summary: pd.DataFrame, objective: str) -> pd.DataFrame:
    """The tuned vs default outer estimates of the objectives as one table (the objective first)."""
    order = [objective, *(m for m in OBJECTIVES if m != objective)]
    s = summary[summary["metric"].isin(order)].copy()
    s["metric"] = pd.Categorical(s["metric"], order, ordered=True)
    s = s.sort_values(["metric", "variant"], key=lambda c: c if c.name == "metric" else c.map(VARIANT_ORDER))
    s["95% CI"] = [f"{lo:.3f} to {hi:.3f}" for lo, hi in zip(s["ci_low"], s["ci_high"], strict=True)]
    return s[["metric", "variant", "mean", "95% CI", "folds"]].reset_index(drop=True)


def outer_metrics(summary: pd.DataFrame) -> dict[str, float]:
    """The outer estimates as flat MLflow metrics: `uno_c`, `uno_c_ci_low` (tuned),
    `default.uno_c`, `gap.uno_c_ci_high` (tuned - default), ... (see VARIANT_PREFIX)."""
    out = {}
    for r in summary.itertuples(index=False):
        key = f"{VARIANT_PREFIX[r.variant]}{r.metric}"
        out.update({key: r.mean, f"{key}_ci_low": r.ci_low, f"{key}_ci_high": r.ci_high})
    return out


def trial_runs(trials: pd.DataFrame, objective: str) -> list[dict[str, Any]]:
    """Plain records for ml.tracking.log_child_runs: one per trial."""
    runs = []
    for t in trials.itertuples(index=False):
        runs.append({
            "name": f"{t.study} trial {t.number}", "params": t.params, "state": t.state,
            "metrics": {f"inner_{objective}": t.value} if t.value is not None else {},
            "step_metrics": {f"inner_{objective}_running_mean": t.intermediate},
            "tags": {"study": t.study, "trial_number": t.number, "worker_pid": t.pid, "host": t.host},
            "start": t.start, "end": t.end,
        })
    return runs

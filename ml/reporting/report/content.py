"""What the report shows, as plain typed data (frames, numbers, text): the workflow fills it,
the section builders draw and lay it out. Nothing here knows how a number was computed; each
part carries the text saying so."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd


@dataclass
class Study:
    title: str
    source: str
    is_twin: bool
    n: int
    groups: tuple[str, str]             # (treated, control) labels
    group_sizes: dict[str, int]
    events: dict[str, int]              # endpoint name -> events
    follow_up: dict[str, float]         # endpoint name -> reverse-KM median follow-up (months)
    missing: pd.DataFrame               # variable, missing, percent
    time_unit: str = "months"


@dataclass
class KMPanel:
    """One KM plot: per group the step curve (time, survival, ci_low, ci_high), censoring times,
    the median, and the real patients at risk at `risk_times`."""

    title: str
    curves: dict[str, pd.DataFrame]
    censored: dict[str, np.ndarray]
    medians: dict[str, float]
    risk_times: np.ndarray
    at_risk: dict[str, list[int]]
    annotation: str                     # p value and HR, printed on the plot
    band: str                           # what the band is
    ylabel: str = "survival probability"


@dataclass
class Nomogram:
    """A linear predictor drawn as points (rms `nomogram` layout).

    axes: per covariate (label, tick labels, tick values (numeric) or None, points per tick);
    lp = `lp_offset` + total points * `lp_per_point`; `outcomes`: per scale (e.g. "S(6)") the
    tick labels and their total-points positions."""

    model: str
    axes: list[tuple[str, list[str], list[float] | None, list[float]]]
    lp_offset: float
    lp_per_point: float
    outcomes: dict[str, tuple[list[str], list[float]]]
    note: str = ""


@dataclass
class ReportContent:
    """Everything one report shows (each part None or a statement when it could not be made)."""

    study: Study
    command: str
    settings: dict[str, Any]
    table_one: pd.DataFrame | None = None          # variable, level, <groups> before, after, smd, missing
    balance: pd.DataFrame | None = None            # sample, term, confounder, weighted_on, smd
    balance_threshold: float = 0.1
    ess: dict[str, float] = field(default_factory=dict)
    propensity: tuple[np.ndarray, ...] | None = None   # (propensity, treated flag, IPTW weights)
    km_panels: list[KMPanel] = field(default_factory=list)
    survival_table: pd.DataFrame | None = None     # medians, log-rank, HRs
    iptw_cox: dict[str, dict] = field(default_factory=dict)       # endpoint -> IPTW Cox row
    causal: dict[str, Any] | None = None           # analysis.json's `causal` block when present
    forest: dict[str, tuple[pd.DataFrame, pd.DataFrame]] = field(default_factory=dict)  # ep -> (terms, joint)
    ph_table: pd.DataFrame | None = None
    ph_figures: dict[str, Any] = field(default_factory=dict)       # title -> matplotlib Figure
    leaderboard: pd.DataFrame | None = None
    model_labels: dict[str, str] = field(default_factory=dict)
    internal: pd.DataFrame | None = None           # metric, apparent, optimism, corrected
    calibration: tuple[pd.DataFrame, pd.DataFrame] | None = None  # (by risk group, smoothed) with bands
    horizons: dict[str, float] = field(default_factory=lambda: {"6": 6.0, "12": 12.0})
    dca: pd.DataFrame | None = None                # horizon, model, threshold, net_benefit
    nomogram: Nomogram | None = None
    shap: list[dict[str, Any]] = field(default_factory=list)       # per model: name, scale, frames
    signal_check: pd.DataFrame | None = None
    methods: dict[str, dict[str, str]] = field(default_factory=dict)  # workflow -> key -> text
    versions: dict[str, str] = field(default_factory=dict)
    seeds: dict[str, int] = field(default_factory=dict)
    run_ids: dict[str, str] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)      # section key -> why not shown
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # part -> seconds

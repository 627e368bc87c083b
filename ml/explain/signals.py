"""The signal check: does a model's risk summary recover the twin's true effects?

The truth is a mapping of term names (`feature=level`, `features.contract`) to true
log hazard ratios; a summary (`ml.explain.summaries.summarise` of a risk explanation)
passes when every signal feature ranks near the top with the true direction at each
of its levels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from features.contract import split_term
from ml.explain.summaries import sign

TREATMENT_FEATURE = "treatment"
SIGNALS = ("smoking", "prior_response")


def expected_directions(true_log_hr: Mapping[str, float]) -> dict[str, dict[str, int]]:
    """{feature: {level: sign of the true log HR}} from terms like 'smoking=ever'.

    Numeric terms (no '=') map to level ''. Zero effects are left out.
    """
    out: dict[str, dict[str, int]] = {}
    for term, value in true_log_hr.items():
        feature, level = split_term(term)
        if value != 0:
            out.setdefault(feature, {})[level or ""] = sign(value)
    return out


@dataclass(frozen=True)
class SignalCheck:
    """Whether one model's risk summary recovers the true signals."""

    model: str
    passed: bool
    features: dict[str, dict[str, Any]] = field(default_factory=dict)
    noise_ranks: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"pass": self.passed, "features": self.features, "noise_ranks": self.noise_ranks}


def _feature_result(row: pd.Series, rank: int, expected: dict[str, int], top_k: int) -> dict[str, Any]:
    found = row["direction_by_level"] or {"": row["direction"]}
    directions_ok = all(found.get(level) == s for level, s in expected.items())
    return {"rank": rank, "direction_found": found, "direction_true": expected,
            "direction_ok": directions_ok, "pass": rank <= top_k and directions_ok and bool(expected)}


def signal_check(summary: pd.DataFrame, true_log_hr: Mapping[str, float], model: str = "",
                 signals: Sequence[str] = SIGNALS, noise: Sequence[str] = (), top_k: int = 3,
                 exclude: Sequence[str] = (TREATMENT_FEATURE,)) -> SignalCheck:
    """Ranks and directions of the signal features against the truth (risk scale).

    Pass = every signal feature ranks in the top `top_k` among non-excluded features
    and each of its levels with a non-zero true effect has the true sign.
    `summary` must explain a risk output (higher = worse), like the log HRs.
    """
    truth = expected_directions(true_log_hr)
    ranked = summary[~summary["feature"].isin(exclude)].reset_index(drop=True)
    rank_of = {f: i + 1 for i, f in enumerate(ranked["feature"])}
    results = {}
    for feat in signals:
        if feat not in rank_of:
            raise ValueError(f"signal feature '{feat}' is not among the explained features")
        row = ranked.loc[ranked["feature"] == feat].iloc[0]
        results[feat] = _feature_result(row, rank_of[feat], truth.get(feat, {}), top_k)
    noise_ranks = {f: rank_of[f] for f in noise if f in rank_of}
    passed = all(r["pass"] for r in results.values())
    return SignalCheck(model=model, passed=passed, features=results, noise_ranks=noise_ranks)


def recovery_table(checks: Sequence[SignalCheck]) -> pd.DataFrame:
    """Across repeated draws: per model, how often both signals were recovered, and
    where each noise feature ranked (median rank, best rank)."""
    rows = []
    for model in dict.fromkeys(c.model for c in checks):
        mine = [c for c in checks if c.model == model]
        row: dict[str, Any] = {"model": model, "draws": len(mine),
                               "recovered": sum(c.passed for c in mine)}
        row["recovery_rate"] = row["recovered"] / len(mine)
        for feat in mine[0].features:
            row[f"{feat}_ok_rate"] = float(np.mean([c.features[feat]["pass"] for c in mine]))
        for feat in mine[0].noise_ranks:
            ranks = [c.noise_ranks[feat] for c in mine]
            row[f"{feat}_median_rank"] = float(np.median(ranks))
            row[f"{feat}_best_rank"] = int(np.min(ranks))
        rows.append(row)
    return pd.DataFrame(rows)

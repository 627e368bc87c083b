"""A nomogram of a linear-predictor model (the layout of R rms `nomogram`): one points axis per
covariate (0 at its lowest contribution; the covariate with the widest range spans 0-100), the
total points, and the outcomes the total maps to (the linear predictor, S(h) at horizons, the
median). `total_points` and `linear_predictor` read it back for one patient, so the drawing can be
checked against the model."""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np


def level_label(value) -> str:
    """A level as text, a whole number without its ".0" (ECOG 1, whether stored as 1 or 1.0)."""
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def points_of(axis: tuple, value) -> float:
    """Points of one covariate value: the level's, or linear interpolation between numeric ticks
    (the linear predictor is linear in a numeric covariate)."""
    _, labels, values, points = axis
    if values is None:
        return float(points[labels.index(level_label(value))])
    values, points = np.asarray(values, float), np.asarray(points, float)
    slope = (points[-1] - points[0]) / (values[-1] - values[0])
    return float(points[0] + slope * (float(value) - values[0]))


def total_points(nomogram, patient: Mapping[str, object]) -> float:
    return sum(points_of(axis, patient[axis[0]]) for axis in nomogram.axes)


def linear_predictor(nomogram, total: float) -> float:
    return nomogram.lp_offset + total * nomogram.lp_per_point


def _axis(ax, y: float, label: str, positions, tick_labels, colour: str = "black") -> None:
    positions = np.asarray(positions, float)
    if not len(positions):
        return
    ax.plot([positions.min(), positions.max()], [y, y], color=colour, linewidth=0.9)
    for x, text in zip(positions, tick_labels, strict=True):
        ax.plot([x, x], [y, y + 0.12], color=colour, linewidth=0.8)
        ax.text(x, y + 0.17, text, ha="center", va="bottom", fontsize=6.5, rotation=0)
    ax.text(-3, y, label, ha="right", va="center", fontsize=8)


def nomogram_figure(nomogram, title: str):
    rows = len(nomogram.axes) + 2 + len(nomogram.outcomes)
    fig, ax = plt.subplots(figsize=(10, 0.42 * rows + 1.0))
    y = rows
    _axis(ax, y, "Points", np.arange(0, 101, 10), [str(v) for v in range(0, 101, 10)], "#555555")
    for axis in nomogram.axes:
        y -= 1
        _axis(ax, y, axis[0], axis[3], axis[1])
    totals = [p for axis in nomogram.axes for p in (max(axis[3]),)]
    top = float(np.ceil(sum(totals) / 20) * 20)
    y -= 1
    scale = 100 / top if top > 0 else 1.0  # total points drawn on the same width as "Points"
    ticks = np.arange(0, top + 1, 20)
    _axis(ax, y, "Total points", ticks * scale, [f"{t:g}" for t in ticks], "#555555")
    for name, (labels, positions) in nomogram.outcomes.items():
        y -= 1
        keep = [(x, t) for x, t in zip(positions, labels, strict=True) if 0 <= x <= top]
        _axis(ax, y, name, [x * scale for x, _ in keep], [t for _, t in keep], "#0072B2")
    ax.set_xlim(-35, 105)
    ax.set_ylim(y - 0.6, rows + 0.8)
    ax.axis("off")
    ax.set_title(title, fontsize=10, loc="left")
    if nomogram.note:
        fig.text(0.01, 0.005, nomogram.note, fontsize=7, color="#555555", va="bottom", wrap=True)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig

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
    """One scale: a line, ticks, labels above (below when a tick is close to the previous label)."""
    positions = np.asarray(positions, float)
    if not len(positions):
        return
    ax.plot([positions.min(), positions.max()], [y, y], color=colour, linewidth=0.9)
    order = np.argsort(positions)
    last_above = -np.inf
    for i in order:
        x, text = positions[i], tick_labels[i]
        ax.plot([x, x], [y, y + 0.12], color=colour, linewidth=0.8)
        above = x - last_above > 1.2 * max(len(text), 2)
        ax.text(x, y + 0.17 if above else y - 0.08, text, ha="center", va="bottom" if above else "top",
                fontsize=6.5)
        last_above = x if above else last_above
    ax.text(-3, y, label, ha="right", va="center", fontsize=8)


def _nice_step(top: float) -> float:
    raw = top / 10
    magnitude = 10 ** np.floor(np.log10(raw)) if raw > 0 else 1
    return float(min((m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw), default=raw))


def nomogram_figure(nomogram, title: str):
    rows = len(nomogram.axes) + 2 + len(nomogram.outcomes)
    fig, ax = plt.subplots(figsize=(10, 0.42 * rows + 1.0))
    y = rows
    _axis(ax, y, "Points", np.arange(0, 101, 10), [str(v) for v in range(0, 101, 10)], "#555555")
    for axis in nomogram.axes:
        y -= 1
        _axis(ax, y, axis[0], axis[3], axis[1])
    total = sum(max(axis[3]) for axis in nomogram.axes)
    step = _nice_step(total)
    top = float(np.ceil(total / step) * step)
    y -= 1
    scale = 100 / top if top > 0 else 1.0  # total points drawn on the same width as "Points"
    ticks = np.arange(0, top + step / 2, step)
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

"""Choose the twin's named default seed: the n = 101 draw closest to the published table.

    python benchmarks/choose_default_seed.py [--seeds 2000] [--top 5]

Each seed in 0..seeds-1 draws a 101-patient cohort from the default config. Its
summary (Kaplan-Meier medians of PFS and OS overall, crude PFS by arm, IPTW PFS
by arm with the true propensity, and the number of CIA patients) is compared to
the published one with

    distance = sum over the six medians of |achieved / published - 1|
               + |n_CIA - 45| / 45

(every term a relative error, so months and counts weigh alike). The seed with
the smallest distance becomes `default_seed` in experiments/cohorts/default.yaml.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.twin_calibration import PUBLISHED_TARGETS, calibration_summary  # noqa: E402
from features import twin  # noqa: E402

PUBLISHED_N, PUBLISHED_N_CIA = 101, 45
MEDIANS = [k for k in PUBLISHED_TARGETS if k != "p_cia"]


def summarise(seed: int, config: twin.TwinConfig, n: int = PUBLISHED_N) -> dict[str, float]:
    cohort = twin.generate(n=n, seed=seed, config=config)
    summary = calibration_summary(cohort)
    summary["n_cia"] = int(round(summary["p_cia"] * n))
    return summary


def distance(summary: dict[str, float]) -> float:
    """Sum of relative errors against the published table (inf if a median is undefined)."""
    errors = [abs(summary[k] / PUBLISHED_TARGETS[k] - 1.0) for k in MEDIANS]
    errors.append(abs(summary["n_cia"] - PUBLISHED_N_CIA) / PUBLISHED_N_CIA)
    total = float(sum(errors))
    return total if np.isfinite(total) else float("inf")


def scan(seeds: range, config: twin.TwinConfig) -> list[tuple[float, int, dict[str, float]]]:
    """(distance, seed, summary) for every seed, best first."""
    rows = [(distance(s), seed, s) for seed in seeds for s in [summarise(seed, config)]]
    return sorted(rows, key=lambda row: (row[0], row[1]))


def print_rows(rows, top: int) -> None:
    header = "".join(f"{k.replace('_median', ''):>14}" for k in MEDIANS)
    print(f"{'seed':>6}{'distance':>10}{'n_cia':>7}{header}")
    published = "".join(f"{PUBLISHED_TARGETS[k]:>14.2f}" for k in MEDIANS)
    print(f"{'table':>6}{'':>10}{PUBLISHED_N_CIA:>7}{published}")
    for dist, seed, s in rows[:top]:
        values = "".join(f"{s[k]:>14.2f}" for k in MEDIANS)
        print(f"{seed:>6}{dist:>10.3f}{s['n_cia']:>7}{values}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2000, help="scan seeds 0..seeds-1")
    parser.add_argument("--top", type=int, default=5)
    parser.add_argument("--config", type=Path, default=None)
    args = parser.parse_args(argv)
    config = twin.load_config(args.config)
    rows = scan(range(args.seeds), config)
    print(f"config {config.version}: {args.seeds} seeds at n = {PUBLISHED_N}, best first")
    print_rows(rows, args.top)
    distances = np.array([r[0] for r in rows])
    print(f"median distance over all seeds: {np.median(distances[np.isfinite(distances)]):.3f}")
    print(f"chosen default_seed: {rows[0][1]} (configured: {config.default_seed})")


if __name__ == "__main__":
    main()

"""The default model of `score`/`serve` (issue 11, item 5): out-of-fold calibration. Prints figures.

    .venv/bin/python benchmarks/calibration_default.py [--repeats 5] [--twin-seeds 1709,1,2]

Runs the benchmark itself (`ml.workflows.benchmark.run_benchmark` with experiments/benchmark.yaml:
5 x 5 folds stratified by event, seed 2024; each model fitted on the training rows and scored on the
held-out rows by `ml.evaluation.metrics.score_fold`) on the default twin (101 patients, PFS, the
cohort `score`/`serve` fit their default model on), with the models `cox` (CoxPH, ridge 0.01, the
old default), `cox_ridge_cv` (CoxPHCV, the new default: ridge chosen by leave-one-out cross-validated
partial likelihood within each training fold) and `coxnet` (for reference). Printed per model: the
mean over the 25 held-out folds of the calibration slope at each horizon (Cox slope of the outcome
followed up to h on log(-log S(h|x)); 1 ideal, < 1 predictions too extreme) and of Harrell's C,
with their Nadeau-Bengio corrected 95 % CIs (the benchmark's). Target for the default model: the
slope at the late horizon (12 months) in [0.85, 1.15]. `--twin-seeds` adds other twin draws of
the same size (a check that the figure is not one cohort's luck).
"""

from __future__ import annotations

import argparse
import time

from ml.workflows import benchmark as bench

MODELS = ["cox", "cox_ridge_cv", "coxnet"]
TARGET = (0.85, 1.15)
DEFAULT_MODEL = "cox_ridge_cv"


def _cell(row, metric: str) -> str:
    return f"{row[metric]:.3f} [{row[f'{metric}_ci_low']:.3f}, {row[f'{metric}_ci_high']:.3f}]"


def run(twin_seed: int | None, repeats: int) -> bool:
    config = bench.load_config(None, dataset="twin", models=MODELS, repeats=repeats, twin_seed=twin_seed,
                               validation={"bootstrap": 0})  # out-of-fold figures only
    data = bench.prepare_data(config)
    started = time.perf_counter()
    result = bench.run_benchmark(data, config)
    board = result.leaderboard.set_index("model")
    late = max(data.horizons, key=data.horizons.get)
    print(f"\n{data.name}: n {result.n}, events {result.events}, {config.folds} x {repeats} folds, "
          f"seed {config.seed} ({time.perf_counter() - started:.0f} s)")
    print(f"{'model':14s} " + "  ".join(f"{'slope ' + h:>24s}" for h in data.horizons)
          + f"  {'Harrell C':>24s}")
    for model in MODELS:
        row = board.loc[model]
        slopes = [f"{_cell(row, f'calibration_slope_{h}'):>24s}" for h in data.horizons]
        print(f"{model:14s} " + "  ".join(slopes) + f"  {_cell(row, 'harrell_c'):>24s}")
    slope = board.loc[DEFAULT_MODEL, f"calibration_slope_{late}"]
    ok = TARGET[0] <= slope <= TARGET[1]
    print(f"default model {DEFAULT_MODEL}: slope at {late} = {slope:.3f}, target {TARGET}: "
          f"{'met' if ok else 'NOT met'}")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--twin-seeds", default="", help="extra twin seeds, comma-separated")
    args = parser.parse_args()
    seeds = [None, *(int(s) for s in args.twin_seeds.split(",") if s)]
    results = [run(seed, args.repeats) for seed in seeds]
    print(f"\ntarget met on {sum(results)} of {len(results)} cohorts")


if __name__ == "__main__":
    main()

"""Tuning targets (issue 6): tuned vs default outer-fold Uno C with CIs, and trials per minute.

    python benchmarks/tune_targets.py                       # all: rsf, gbsa, xgb_cox x twin 101/1000, gbsg2
    python benchmarks/tune_targets.py --models rsf --data twin101 --trials 10

Each (data, model) pair runs `ml.workflows.tuning.tune` (nested CV: a study per outer fold plus the
final one) on a fresh journal storage in a temporary directory; no MLflow. Trials per
minute = trials of all studies / wall time of the search, with the given workers.
Not a unit test: it prints the figures (and writes --out CSV if given).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import optuna
import pandas as pd

from features import datasets
from ml.workflows import tuning

DATA = {
    "twin101": lambda: datasets.twin(n=101),
    "twin1000": lambda: datasets.twin(n=1000),
    "gbsg2": lambda: datasets.public("gbsg2"),
}


def one(data_key: str, model: str, args: argparse.Namespace) -> dict:
    data = DATA[data_key]()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = tuning.TuneConfig(model=model, n_trials=args.trials, outer_folds=args.outer,
                              inner_folds=args.inner, workers=args.workers, seed=args.seed,
                              timeout=args.timeout, storage=str(Path(tmp) / "journal.log"))
        started = time.time()
        result = tuning.tune(data, cfg, label=data_key)
        wall = time.time() - started
    t = result.trials
    search_minutes = (t["end"].max() - t["start"].min()).total_seconds() / 60
    s = result.summary[result.summary["metric"] == "uno_c"].set_index("variant")
    row = {"data": data.name, "n": len(data.y), "model": model, "trials": len(t),
           "pruned": int((t["state"] == "PRUNED").sum()), "failed": int((t["state"] == "FAIL").sum()),
           "trials_per_min": len(t) / search_minutes, "seconds": wall}
    for variant, key in (("tuned", "tuned"), ("default", "default"), ("tuned - default", "diff")):
        row[f"{key}_uno_c"] = s.loc[variant, "mean"]
        row[f"{key}_ci"] = f"{s.loc[variant, 'ci_low']:.3f} to {s.loc[variant, 'ci_high']:.3f}"
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="rsf,gbsa,xgb_cox")
    parser.add_argument("--data", default="twin101,twin1000,gbsg2")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--outer", type=int, default=3)
    parser.add_argument("--inner", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=None, help="seconds per (data, model) run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="CSV to write the table to")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print(f"settings: {args.trials} trials per study, {args.outer} outer x {args.inner} inner folds, "
          f"{args.workers} workers, timeout {args.timeout} s per run, seed {args.seed}; objective uno_c; "
          "CI = corrected resampled t over the outer folds", flush=True)
    rows = []
    for data_key in args.data.split(","):
        for model in args.models.split(","):
            rows.append(one(data_key, model, args))
            print(pd.DataFrame(rows[-1:]).to_string(index=False, float_format="%.3f"), flush=True)
    table = pd.DataFrame(rows)
    with pd.option_context("display.width", 200):
        print("\n" + table.to_string(index=False, float_format="%.3f"))
    if args.out is not None:
        table.to_csv(args.out, index=False)


if __name__ == "__main__":  # workers are spawned processes: keep the guard
    main()

"""Figures for the benchmark targets (issue 4). Prints them; not a timed unit test.

    .venv/bin/python benchmarks/benchmark_targets.py [default] [n2000] [public] [large] [rsf]

default  the default twin benchmark (n = 101, all models, 5 x 5): wall time (target < 60 s)
n2000    twin n = 2000, all models, 5 x 2: best model's mean Harrell C vs the oracle (target < 0.01)
public   the five scikit-survival data sets, all models, 5 x 5: leaderboards written to
         out/benchmark_targets/<name>/; the cox row's mean Harrell C vs lifelines' CoxPHFitter
         refitted on the same folds and preprocessed features (target < 0.005)
large    twin n = 20,000, cox + xgb_cox + gbsa, 5 x 5: wall time (target < 5 min)
rsf      what one RSF fit costs on 16,000 training rows: scaled defaults vs scikit-survival's
"""

from __future__ import annotations

import pickle
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from features import datasets
from ml import models
from ml.evaluation.folds import make_folds
from ml.workflows import benchmark as bench

OUT = Path("out/benchmark_targets")


def _run(config: bench.BenchmarkConfig, data=None) -> bench.BenchmarkResult:
    data = data or bench.prepare_data(config)
    start = time.perf_counter()
    result = bench.run_benchmark(data, config)
    result.seconds = time.perf_counter() - start
    return result


def default() -> None:
    cfg = bench.load_config(None)
    result = _run(cfg)
    top = result.leaderboard.iloc[0]
    print(f"[default] twin n={result.n}, {len(cfg.models)} models, {cfg.repeats}x{cfg.folds}, "
          f"n_jobs={cfg.n_jobs}: {result.seconds:.1f} s (target < 60 s); "
          f"top row {top['model']} C={top['harrell_c']:.3f}")


def n2000() -> None:
    cfg = bench.load_config(None, n=2000, repeats=2)
    result = _run(cfg)
    board = result.leaderboard.set_index("model")["harrell_c"]
    oracle = board.pop("oracle")
    best = board.idxmax()
    print(f"[n2000] twin n=2000, 5x2 folds: oracle C={oracle:.4f}, best model {best} C={board[best]:.4f}, "
          f"gap {oracle - board[best]:.4f} (target < 0.01); cox {board.get('cox', np.nan):.4f}")


def _lifelines_c(data: datasets.SurvivalData, cfg: bench.BenchmarkConfig) -> float:
    import pandas as pd
    from lifelines import CoxPHFitter
    from lifelines.exceptions import ConvergenceError
    from sklearn.base import clone
    from sksurv.metrics import concordance_index_censored

    y, X = data.y, data.X
    scores = []
    for fold in make_folds(y, cfg.folds, cfg.repeats, cfg.seed):
        pre = clone(models.make_pipeline("cox", data.spec)[0])
        train = pre.fit_transform(X.iloc[fold.train])
        test = pre.transform(X.iloc[fold.test])
        keep = [c for c in train.columns if train[c].std() > 0]
        df = pd.DataFrame(train[keep].to_numpy(), columns=[f"x{i}" for i in range(len(keep))])
        df["T"], df["E"] = y["time"][fold.train], y["event"][fold.train].astype(int)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                fit = CoxPHFitter().fit(df, "T", "E")
            except ConvergenceError:  # lifelines' full Newton steps overshoot on flchain; damp them
                fit = CoxPHFitter().fit(df, "T", "E", fit_options={"step_size": 0.3})
        risk = test[keep].to_numpy() @ fit.params_.to_numpy()
        scores.append(concordance_index_censored(y["event"][fold.test], y["time"][fold.test], risk)[0])
    return float(np.mean(scores))


def public() -> None:
    import json

    for name in datasets.PUBLIC:
        cfg = bench.load_config(None, dataset=name)
        data = bench.prepare_data(cfg)
        result = _run(cfg, data)
        out = OUT / name
        out.mkdir(parents=True, exist_ok=True)
        result.leaderboard.to_csv(out / "leaderboard.csv", index=False)
        (out / "benchmark.json").write_text(json.dumps(bench.to_json(result), indent=2))
        ours = float(result.leaderboard.set_index("model").loc["cox", "harrell_c"])
        theirs = _lifelines_c(data, cfg)
        best = result.leaderboard.iloc[0]
        print(f"[public] {name}: n={result.n}, {result.seconds:.0f} s; cox C={ours:.4f}, "
              f"lifelines C={theirs:.4f}, |diff|={abs(ours - theirs):.4f} (target < 0.005); "
              f"best {best['model']} C={best['harrell_c']:.4f}; wrote {out}/leaderboard.csv")


def large() -> None:
    cfg = bench.load_config(None, n=20000, models=["cox", "xgb_cox", "gbsa"])
    result = _run(cfg)
    fits = result.leaderboard.set_index("model")["fit_seconds"].round(2).to_dict()
    print(f"[large] twin n=20000, cox+xgb_cox+gbsa, 5x5, n_jobs={cfg.n_jobs}: {result.seconds:.1f} s "
          f"(target < 300 s); mean fit seconds per fold {fits}")


def rsf() -> None:
    from sklearn.base import clone

    data = datasets.twin(n=20000)
    y, X = data.y, data.X
    fold = make_folds(y, 5, 1, 0)[0]
    pre = clone(models.make_pipeline("cox", data.spec)[0])
    train = pre.fit_transform(X.iloc[fold.train])
    variants = {
        "scaled defaults (max_samples 2000, leaf n//250, 200 time bins, 100 trees)":
            models.RSF(random_state=0),
        "scikit-survival defaults (all rows, leaf 3, exact times), 10 trees": models.RSF(
            n_estimators=10, min_samples_leaf=3, max_samples=None, max_times=None, random_state=0),
    }
    for label, est in variants.items():
        start = time.perf_counter()
        est.fit(train, y[fold.train])
        seconds = time.perf_counter() - start
        size = len(pickle.dumps(est)) / 1e6
        print(f"[rsf] {label}: fit {seconds:.1f} s on {len(fold.train)} rows, pickled {size:.0f} MB")


if __name__ == "__main__":
    parts = sys.argv[1:] or ["default", "n2000", "public", "large", "rsf"]
    for part in parts:
        globals()[part]()

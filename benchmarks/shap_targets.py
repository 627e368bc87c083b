"""SHAP targets (issue 5): speed of the exact TreeSHAP conversion and recovery of the twin's signals.

    .venv/bin/python benchmarks/shap_targets.py                # everything (several minutes)
    .venv/bin/python benchmarks/shap_targets.py --only speed   # or: recovery, reversed
    .venv/bin/python benchmarks/shap_targets.py --seeds 5      # fewer draws

1. speed: exact TreeSHAP (scikit-survival trees converted for shap's C code) for a
   random survival forest of 300 trees on 1,000 patients, target < 10 s; shap's
   model-agnostic PermutationExplainer on the same model timed on a subsample and scaled
   to 1,000 patients; the ratio.
2. recovery: how often each model's risk SHAP ranks smoking and prior_response in the
   top three of the non-treatment features with the true direction, over K fresh twin
   draws at n = 101 and n = 500, and where the noise features rank.
3. reversed: the same with experiments/cohorts/smoking_harmful.yaml (smoking's true
   log HR reversed): the smoking direction found must flip with the config.
Printed, not asserted: these are reported figures, not timed tests.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from features import datasets, twin
from ml import explain as E
from ml import models
from ml.workflows import explain as W

MODELS = ("cox", "rsf", "gbsa", "xgb_cox", "xgb_aft")
AGNOSTIC_ROWS = 20


def speed(n: int = 1000, n_trees: int = 300, seed: int = 0) -> None:
    data = datasets.twin(n=n, seed=seed)
    t0 = time.perf_counter()
    fitted = models.fit_full("rsf", data.spec, data.X, data.y, random_state=seed, n_estimators=n_trees)
    fit_s = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), time.process_time()
    expl = E.explain(fitted, data.X)
    exact_s, exact_cpu = time.perf_counter() - t0, time.process_time() - c0
    final, Xt = E.split_pipeline(fitted, data.X)
    t0 = time.perf_counter()
    E.explain_tree(E.unwrap(final), Xt, n_jobs=2)
    two_s = time.perf_counter() - t0
    depth = np.mean([t.tree_.max_depth for t in E.unwrap(final).estimators_])
    rows = data.X.iloc[:AGNOSTIC_ROWS]
    t0 = time.perf_counter()
    agnostic = E.explain_permutation(lambda Z: final.predict(pd.DataFrame(Z, columns=Xt.columns)),
                                     Xt.iloc[:AGNOSTIC_ROWS], Xt, output="risk", scale="mortality",
                                     random_state=seed, raw=rows)
    agnostic_s = (time.perf_counter() - t0) * n / AGNOSTIC_ROWS
    gap = np.abs(agnostic.values - expl.values[:AGNOSTIC_ROWS]).mean() / np.abs(expl.values).mean()
    print(f"\n== speed: RSF {n_trees} trees, {n} patients, {Xt.shape[1]} columns (fit {fit_s:.1f} s)")
    print(f"exact TreeSHAP (path-dependent): {exact_s:.2f} s wall, {exact_cpu:.2f} s CPU for {n} patients "
          f"(target < 10 s: {'met' if exact_s < 10 else 'MISSED'}); additivity error "
          f"{expl.additivity_error():.1e}; mean tree depth {depth:.1f}")
    print(f"same with n_jobs=2 (rows split over two processes): {two_s:.2f} s wall")
    print(f"shap PermutationExplainer ({agnostic.method}): {agnostic_s:.0f} s for {n} patients "
          f"(timed on {AGNOSTIC_ROWS}, scaled; includes its one-off numba compile)")
    print(f"ratio model-agnostic / exact: {agnostic_s / exact_s:.0f}x; mean |difference| of the "
          f"values on the {AGNOSTIC_ROWS} rows = {gap:.0%} of mean |SHAP| (different value functions: "
          "interventional vs path-dependent, plus sampling)")


def recovery(seeds: int, sizes=(101, 500), config_path: Path | None = None, names=MODELS) -> None:
    config = twin.load_config(config_path)
    truth = twin.true_log_hazard_ratios(config)
    label = config_path.name if config_path else "default.yaml"
    for n in sizes:
        t0 = time.perf_counter()
        checks, table = W.recovery_over_seeds(names, range(1, seeds + 1), n=n, config=config, random_state=0)
        smoking = {m: np.mean([c.features["smoking"]["direction_found"].get("ever", 0) ==
                               np.sign(truth["smoking=ever"]) for c in checks if c.model == m])
                   for m in names}
        table.insert(3, "smoking_direction_ok", table["model"].map(smoking))
        cols = ["model", "draws", "recovered", "recovery_rate", "smoking_direction_ok", "smoking_ok_rate",
                "prior_response_ok_rate", *[c for c in table.columns if c.endswith("_median_rank")]]
        print(f"\n== recovery, {label} (true smoking log HR {truth['smoking=ever']:+.2f}), n = {n}, "
              f"{seeds} draws (seeds 1..{seeds}), {time.perf_counter() - t0:.0f} s")
        print(table[cols].to_string(index=False, float_format=lambda v: f"{v:.2f}"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=("speed", "recovery", "reversed"))
    parser.add_argument("--seeds", type=int, default=20)
    args = parser.parse_args()
    if args.only in (None, "speed"):
        speed()
    if args.only in (None, "recovery"):
        recovery(args.seeds)
    if args.only in (None, "reversed"):
        recovery(args.seeds, sizes=(500,),
                 config_path=Path(twin.DEFAULT_CONFIG_PATH).with_name("smoking_harmful.yaml"))


if __name__ == "__main__":
    main()

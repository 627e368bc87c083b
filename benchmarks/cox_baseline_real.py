"""The `cox` baseline on real tables against scikit-survival's ridge Cox (issue 15). Prints figures.

    .venv/bin/python benchmarks/cox_baseline_real.py [--tables veterans,gbsg2,...] [--repeats 5]

For each table the benchmark itself (`ml.workflows.benchmark.run_benchmark`, the `cox` row of
`rechallenge benchmark --data ... --models cox`: 5 x 5 folds stratified by event, seed 2024) is
run twice: with the default `CoxPH` (small ridge) and with `alpha=0` (the unpenalised fit).
On the same folds, the same preprocessor (`build_preprocessor(spec)`, rare levels pooled,
fitted on each training fold) feeds scikit-survival's `CoxPHSurvivalAnalysis(alpha=0.1)`.
Printed per table: the mean held-out Harrell C of each, the difference default - sksurv
(target: >= -0.005), the folds where each fit separated (a |log HR| > 10 note) and the
levels pooled as infrequent (`--no-pooling`: every level its own column, as before issue 15).

Tables: scikit-survival's veterans, gbsg2, whas500, aids, flchain (as `--dataset NAME`), and
the NCCTG lung table (lifelines' copy, 228 patients, times in days; lifelines is in the dev
extra) with its institution code `inst` (18 codes, 2 to 36 patients each) declared
categorical ("lung-inst") and left numeric as `infer_spec` reads it ("lung").
"""

from __future__ import annotations

import argparse
import dataclasses
import time
import warnings
from collections.abc import Callable

import numpy as np
import pandas as pd
from sklearn.base import clone
from sksurv.linear_model import CoxPHSurvivalAnalysis
from sksurv.metrics import concordance_index_censored

from features import datasets
from features.pipeline import build_preprocessor
from ml.evaluation.folds import make_folds
from ml.models import CoxPH
from ml.workflows import benchmark as bench

TARGET = -0.005
SKSURV_ALPHA = 0.1


def _lung(inst_categorical: bool) -> Callable[[], datasets.SurvivalData]:
    def load() -> datasets.SurvivalData:
        from lifelines.datasets import load_lung  # dev extra: the table ships with lifelines

        frame = load_lung()
        categorical = ("inst",) if inst_categorical else ()
        if inst_categorical:  # codes as labels "1", "2", ... (the table stores them as floats)
            frame["inst"] = frame["inst"].map(lambda v: v if pd.isna(v) else str(int(v)))
        name = "lung-inst" if inst_categorical else "lung"
        return datasets.from_table(frame, "time", "status", categorical=categorical, name=name,
                                   time_unit="days", source="lifelines.datasets.load_lung")
    return load


TABLES: dict[str, Callable[[], datasets.SurvivalData]] = {
    **{name: (lambda name=name: datasets.public(name)) for name in datasets.PUBLIC},
    "lung-inst": _lung(inst_categorical=True),
    "lung": _lung(inst_categorical=False),
}


def cox_row(data: datasets.SurvivalData, config: bench.BenchmarkConfig) -> tuple[float, int, list[str]]:
    """(mean Harrell C of the benchmark's cox row, folds with a separation note, other notes)."""
    result = bench.run_benchmark(data, config)
    c = float(result.leaderboard.set_index("model").loc["cox", "harrell_c"])
    separated = {n.split(":")[0] for n in result.notes if "separation" in n}
    others = [n for n in result.notes if "grouped as" in n]
    return c, len(separated), others


def sksurv_c(data: datasets.SurvivalData, config: bench.BenchmarkConfig) -> float:
    """Mean held-out Harrell C of CoxPHSurvivalAnalysis(alpha=0.1), same folds, same preprocessing."""
    y, X = data.y, data.X
    scores = []
    for fold in make_folds(y, config.folds, config.repeats, config.seed):
        pre = clone(build_preprocessor(data.spec))
        train, test = pre.fit_transform(X.iloc[fold.train]), pre.transform(X.iloc[fold.test])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # sksurv's convergence chatter on flchain
            model = CoxPHSurvivalAnalysis(alpha=SKSURV_ALPHA).fit(train.to_numpy(), y[fold.train])
        risk = model.predict(test.to_numpy())
        scores.append(concordance_index_censored(y["event"][fold.test], y["time"][fold.test], risk)[0])
    return float(np.mean(scores))


def compare(name: str, repeats: int, alpha: float | None, pooling: bool = True) -> dict[str, object]:
    data = TABLES[name]()
    if not pooling:
        data.spec = dataclasses.replace(data.spec, min_level_rows=None)
    config = bench.BenchmarkConfig(dataset="twin", models=["cox"], repeats=repeats,
                                   model_params={} if alpha is None else {"cox": {"alpha": alpha}})
    unpenalised = config.model_copy(update={"model_params": {"cox": {"alpha": 0.0}}})
    started = time.perf_counter()
    ours, separated_default, pooled = cox_row(data, config)
    plain, separated, _ = cox_row(data, unpenalised)
    theirs = sksurv_c(data, config)
    return {"table": name, "n": len(data.frame), "events": int(data.frame[data.event].sum()),
            "columns": len(build_preprocessor(data.spec).fit(data.X).get_feature_names_out()),
            "cox": ours, "cox_alpha0": plain, "sksurv_0.1": theirs, "diff": ours - theirs,
            "ok": ours - theirs >= TARGET, "separated": separated_default, "separated_alpha0": separated,
            "seconds": round(time.perf_counter() - started, 1), "pooled": "; ".join(pooled)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", default=",".join(TABLES), help="comma-separated: " + ", ".join(TABLES))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--alpha", type=float, default=None, help="the cox row's alpha [default: CoxPH's]")
    parser.add_argument("--no-pooling", action="store_true", help="keep rare levels as their own columns")
    args = parser.parse_args()
    alpha = CoxPH().alpha if args.alpha is None else args.alpha
    print(f"cox = CoxPH(alpha={alpha:g}), cox_alpha0 = CoxPH(alpha=0), "
          f"sksurv_0.1 = CoxPHSurvivalAnalysis(alpha={SKSURV_ALPHA}); mean held-out Harrell C over "
          f"{args.repeats} x 5 folds; target diff = cox - sksurv >= {TARGET}")
    rows = [compare(name, args.repeats, args.alpha, not args.no_pooling) for name in args.tables.split(",")]
    frame = pd.DataFrame(rows)
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.float_format",
                           "{:.4f}".format):
        print(frame.drop(columns="pooled").to_string(index=False))
    for row in rows:
        if row["pooled"]:
            print(f"{row['table']}: {row['pooled']}")
    missed = frame.loc[~frame["ok"], "table"]
    print("all within target" if missed.empty else "TARGET MISSED: " + ", ".join(missed))


if __name__ == "__main__":
    main()

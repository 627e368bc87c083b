"""Simulation study: adjusted survival curves and RMST (`ml.stats.causal`) against the twin's truth.

    python benchmarks/causal_simulation.py                       # 200 replicates, n = 500, B = 200
    python benchmarks/causal_simulation.py --replicates 20 --bootstrap 50 --workers 1

Truth (estimand: ATE, PFS): from --truth-n patients' potential outcomes (the twin's latent,
uncensored PFS times under CIA and under CI): S_a(t) = mean(T_a > t) at --times, and
RMST_a = mean(min(T_a, tau)); targets are the CIA-minus-CI differences. tau = 24 months by
default: every one of 200 cohorts of n = 500 (seeds 1000..1199) has follow-up beyond 24
months in both arms (survRM2's tau bound >= 24), so tau is never refused.

Each replicate draws a twin cohort of --n patients (cohort seed = --seed + r) and runs
`adjusted_survival` three times:
  - correct: propensity and Cox outcome model on all the experiment's confounders, with
    --bootstrap resamples (every model re-fitted in each; bootstrap seed derived from
    (--seed, r)); reported for IPTW-KM, AIPTW and the G-formula (reference): bias, empirical
    SD, mean bootstrap SE and coverage of two 95 % CIs: the bootstrap percentile CI (what
    `adjusted_survival`, hence the analysis, reports: the targets refer to it) and the Wald
    CI estimate +- 1.96 x bootstrap SE;
  - ps_misspecified: the propensity model leaves --drop out, the outcome model keeps it
    (point estimates only): AIPTW should stay unbiased, IPTW should not;
  - outcome_misspecified: the mirror (the Cox outcome model leaves --drop out): AIPTW should
    stay unbiased, the G-formula should not.
And entropy balancing (`ml.stats.entropy`, ATE) on the same confounders: the largest |SMD|
over every design term (one-hot levels), from the module and recomputed here independently
on the raw columns (numbers as they are, every level of every factor), max over replicates.
Targets: |bias| < 5 % of the truth and percentile coverage in [0.93, 0.97] for the RMST and
S(12) differences with IPTW and AIPTW; max |SMD| < 1e-6. Monte Carlo SEs: bias SD / sqrt(R),
coverage sqrt(c (1 - c) / R).

Why --drop prior_response: in the twin's propensity (experiments/cohorts/default.yaml) it has
the largest log odds ratio on a common level (CR/PR: +0.92, half the patients) and the largest
PFS log hazard ratio (CR/PR: -0.70, PD: +0.40); ECOG 2 acts as strongly but on 10 % of the
patients. At n = 20,000 leaving it out moves the RMST difference from 3.58 to 4.81 months
(IPTW, propensity without it) and to 4.62 (G-formula, outcome model without it), so the
default twin's confounding is strong enough: no config override is needed (--twin-config
takes another cohort YAML).

Measured (2026-12-02, 2 shared cores, 1 worker, 400 replicates in two disjoint halves, pooled):
    python benchmarks/causal_simulation.py --out /tmp/cs/full.json                  # r 0-199: 746 s
    python benchmarks/causal_simulation.py --start 200 --out /tmp/cs/part2.json    # r 200-399: 804 s
    python benchmarks/causal_simulation.py --combine /tmp/cs/full.csv /tmp/cs/part2.csv
  truth (n = 200,000): RMST(24) CIA 12.110, CI 8.556, difference 3.554 (MC SE 0.006);
  S(12) CIA 0.4509, CI 0.2625, difference 0.1884 (MC SE 0.0009)
  correct models, B = 200; coverage MC SE 0.010-0.015 (0.014-0.022 for either half alone):
    estimator  quantity    bias %  emp SD  mean boot SE  cover pct  cover Wald
    IPTW       RMST diff    +0.7   0.802   0.784         0.938      0.945
    IPTW       S(12) diff   -0.2   0.0494  0.0499        0.950      0.958
    AIPTW      RMST diff    +0.6   0.784   0.762         0.930      0.938
    AIPTW      S(12) diff   -0.3   0.0481  0.0488        0.955      0.960
    G-formula  RMST diff    +0.9   0.726   0.677         0.913      0.918
    G-formula  S(12) diff   +0.3   0.0385  0.0359        0.913      0.923
  (r 0-199 alone: AIPTW RMST percentile coverage 0.925, one replicate short of 0.93; IPTW 0.930.)
  propensity without prior_response: IPTW bias +35.1 % (RMST diff, z = 31) and +34.2 % (S(12)
  diff); AIPTW +0.4 % and -0.4 %. Outcome Cox without it: G-formula +33.3 % and +32.3 %;
  AIPTW +0.5 % and -0.4 %. Entropy balancing: max |SMD| 3.9e-08 over 15 design terms in 400
  replicates (none refused). 3 of 80,000 bootstrap resamples failed; 60 replicates raised a
  warning (mostly ExtremeWeightsWarning: an arm's ESS below half its size). Runtime: 3.7-4.0 s
  per replicate (three scenarios, B = 200 resamples of all three estimators, entropy balancing).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from features import twin  # noqa: E402
from ml.stats.causal.adjusted import adjusted_survival  # noqa: E402
from ml.stats.entropy import estimate_entropy_balance  # noqa: E402
from ml.stats.errors import CausalInputError  # noqa: E402
from ml.workflows.analysis_config import load_config  # noqa: E402

Z95 = 1.959963984540054
ESTIMATORS = ("iptw", "aiptw", "gformula")
TARGETED = ("iptw", "aiptw")
"""The estimators the targets apply to (the G-formula is a reference)."""
TARGETED_QUANTITIES = ("rmst_diff", "s12_diff")
BIAS_TARGET, COVERAGE_TARGET, SMD_TARGET = 0.05, (0.93, 0.97), 1e-6


def true_values(n: int, seed: int, times: tuple[float, ...], tau: float, config=None) -> dict:
    """True S_CIA(t), S_CI(t), their difference and the RMST per arm and difference at tau,
    with the Monte Carlo SE of each difference (paired potential outcomes of the same patients)."""
    truth = twin.generate(n=n, seed=seed, config=config).truth
    cia, ci = truth["pfs_time_cia"].to_numpy(), truth["pfs_time_ci"].to_numpy()
    out = {}
    for t in times:
        a, b = (cia > t).astype(float), (ci > t).astype(float)
        out[f"s{t:g}_cia"], out[f"s{t:g}_ci"], out[f"s{t:g}_diff"] = a.mean(), b.mean(), (a - b).mean()
        out[f"s{t:g}_diff_mcse"] = (a - b).std(ddof=1) / np.sqrt(n)
    a, b = np.minimum(cia, tau), np.minimum(ci, tau)
    out.update(rmst_cia=a.mean(), rmst_ci=b.mean(), rmst_diff=(a - b).mean(),
               rmst_diff_mcse=(a - b).std(ddof=1) / np.sqrt(n))
    return {k: float(v) for k, v in out.items()}


def _rows(res, scenario: str, rep: int, times: tuple[float, ...]) -> list[dict]:
    """One row per (estimator, quantity): estimate, bootstrap SE, percentile CI."""
    rows = []
    rmst = res.rmst_contrasts[res.rmst_contrasts["contrast"] == "difference"].set_index("estimator")
    diffs = res.differences.set_index(["estimator", "time"])
    for name in rmst.index:
        r = rmst.loc[name]
        rows.append({"quantity": "rmst_diff", "estimator": name, "estimate": r["estimate"],
                     "se": r["se"], "pct_low": r["ci_low"], "pct_high": r["ci_high"]})
        for t in times:
            d = diffs.loc[(name, float(t))]
            rows.append({"quantity": f"s{t:g}_diff", "estimator": name, "estimate": d["difference"],
                         "se": d["se"], "pct_low": d["ci_low"], "pct_high": d["ci_high"]})
    return [dict(row, scenario=scenario, rep=rep) for row in rows]


def independent_max_smd(df: pd.DataFrame, confounders: tuple[str, ...], weights: np.ndarray) -> float:
    """Largest weighted |SMD| over the raw confounder columns (numbers unscaled, every level of
    every factor as a 0/1 column), pooled unweighted SD: a check apart from `ml.stats.entropy`."""
    x = pd.get_dummies(df[list(confounders)].astype({"ecog": str}), dtype=float)
    t = (df["treatment"] == "CIA").to_numpy()
    diff = np.average(x[t], axis=0, weights=weights[t]) - np.average(x[~t], axis=0, weights=weights[~t])
    sd = np.sqrt((x[t].var(ddof=1).to_numpy() + x[~t].var(ddof=1).to_numpy()) / 2)
    return float(np.max(np.abs(diff[sd > 0] / sd[sd > 0])))


def _entropy(df: pd.DataFrame, confounders: tuple[str, ...]) -> dict:
    try:
        eb = estimate_entropy_balance(df, confounders, "ate")
    except CausalInputError as err:  # not met: the module refuses |SMD| >= 1e-6
        return {"ebal_ok": False, "ebal_max_smd": np.nan, "ebal_max_smd_raw": np.nan, "ebal_error": str(err)}
    return {"ebal_ok": True, "ebal_max_smd": eb.max_abs_smd,
            "ebal_max_smd_raw": independent_max_smd(df, confounders, eb.weights), "ebal_error": ""}


def one_replicate(rep: int, n: int, seed: int, n_boot: int, times: tuple[float, ...], tau: float,
                  confounders: tuple[str, ...], drop: str, config=None) -> tuple[list[dict], dict]:
    """All scenarios of one twin cohort (no I/O; warnings counted, not printed)."""
    df = twin.generate(n=n, seed=seed + rep, config=config).data
    reduced = tuple(c for c in confounders if c != drop)
    boot_seed = int(np.random.SeedSequence([seed, rep]).generate_state(1)[0])
    scenarios = {"correct": (confounders, confounders, n_boot),
                 "ps_misspecified": (reduced, confounders, 0),
                 "outcome_misspecified": (confounders, reduced, 0)}
    rows, info = [], {"rep": rep, "boot_failed": 0, "error": ""}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            for name, (ps, outcome, b) in scenarios.items():
                res = adjusted_survival(df, times, tau=tau, confounders=confounders, estimators=ESTIMATORS,
                                        replicates=b, seed=boot_seed, propensity_confounders=ps,
                                        outcome_confounders=outcome)
                rows += _rows(res, name, rep, times)
                info["boot_failed"] += res.failed
        except CausalInputError as err:  # e.g. tau beyond an arm's follow-up: the replicate is left out
            rows, info["error"] = [], str(err)
        info.update(_entropy(df, confounders))
    info["warnings"] = len(caught)
    return rows, info


def _coverage(covered: pd.Series) -> tuple[float, float]:
    c = float(covered.mean())
    return c, float(np.sqrt(c * (1 - c) / len(covered)))


def summarise(reps: pd.DataFrame, truth: dict) -> pd.DataFrame:
    """One row per scenario, estimator and quantity: bias, SDs and both coverages."""
    out = []
    for (scenario, quantity, name), g in reps.groupby(["scenario", "quantity", "estimator"], sort=False):
        true = truth[quantity]
        est, se = g["estimate"], g["se"]
        row = {"scenario": scenario, "quantity": quantity, "estimator": name, "truth": true,
               "mean": est.mean(), "bias": est.mean() - true, "bias_pct": 100 * (est.mean() - true) / true,
               "bias_mcse": est.std(ddof=1) / np.sqrt(len(est)), "emp_sd": est.std(ddof=1),
               "mean_boot_se": se.mean()}
        if se.notna().all():
            row["cover_pct"], row["cover_pct_mcse"] = _coverage(
                (g["pct_low"] <= true) & (true <= g["pct_high"]))
            row["cover_wald"], row["cover_wald_mcse"] = _coverage(
                (est - Z95 * se <= true) & (true <= est + Z95 * se))
        out.append(row)
    return pd.DataFrame(out)


def verdicts(summary: pd.DataFrame, infos: pd.DataFrame) -> list[str]:
    """One line per target: met or not, with the figure."""
    lines = []
    ok = summary[(summary["scenario"] == "correct") & summary["estimator"].isin(TARGETED)
                 & summary["quantity"].isin(TARGETED_QUANTITIES)]
    for r in ok.itertuples():
        bias_ok = abs(r.bias_pct) < 100 * BIAS_TARGET
        cover_ok = COVERAGE_TARGET[0] <= r.cover_pct <= COVERAGE_TARGET[1]
        lines.append(f"{r.estimator:>6} {r.quantity:<9}: |bias| {abs(r.bias_pct):.1f}% "
                     f"{'<' if bias_ok else '>='} 5% [{'met' if bias_ok else 'NOT met'}]; percentile "
                     f"coverage {r.cover_pct:.3f} (MC SE {r.cover_pct_mcse:.3f}) "
                     f"[{'met' if cover_ok else 'NOT met'}]")
    for scenario, good, bad in (("ps_misspecified", "aiptw", "iptw"),
                                ("outcome_misspecified", "aiptw", "gformula")):
        s = summary[(summary["scenario"] == scenario)].set_index(["quantity", "estimator"])
        for q in TARGETED_QUANTITIES:
            g, b = s.loc[(q, good)], s.loc[(q, bad)]
            lines.append(f"{scenario} {q}: {good} bias {g.bias_pct:+.1f}% (z = {g.bias / g.bias_mcse:+.1f}); "
                         f"{bad} bias {b.bias_pct:+.1f}% (z = {b.bias / b.bias_mcse:+.1f})")
    worst = max(infos["ebal_max_smd"].max(), infos["ebal_max_smd_raw"].max())
    n_fail = int((~infos["ebal_ok"]).sum())
    lines.append(f"entropy balancing: max |SMD| over all terms and replicates {worst:.2e} "
                 f"(module {infos['ebal_max_smd'].max():.2e}, recomputed on raw columns "
                 f"{infos['ebal_max_smd_raw'].max():.2e}); refused replicates {n_fail} "
                 f"[{'met' if worst < SMD_TARGET and n_fail == 0 else 'NOT met'}]")
    return lines


def simulate(args, config, twin_config) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per-replicate estimates, per-replicate diagnostics) of replicates start .. start + R - 1."""
    job = partial(one_replicate, n=args.n, seed=args.seed, n_boot=args.bootstrap, times=_times(args),
                  tau=args.tau, confounders=tuple(config.confounders), drop=args.drop, config=twin_config)
    start, done, results = time.time(), 0, {}
    wanted = range(args.start, args.start + args.replicates)
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        futures = {pool.submit(job, r): r for r in wanted}
        for future in as_completed(futures):
            results[futures[future]] = future.result()
            done += 1
            elapsed = time.time() - start
            print(f"\rreplicate {done}/{args.replicates}, {elapsed:.0f} s, ETA "
                  f"{elapsed / done * (args.replicates - done):.0f} s", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    rows = [row for r in wanted for row in results[r][0]]
    return pd.DataFrame(rows), pd.DataFrame([results[r][1] for r in wanted])


INFO_COLUMNS = ("boot_failed", "error", "ebal_ok", "ebal_max_smd", "ebal_max_smd_raw", "ebal_error",
                "warnings")


def load_replicates(paths: list[Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The per-replicate CSVs that --out wrote, pooled (replicate numbers must not repeat)."""
    both = pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)
    if "error" not in both:
        both["error"] = ""
    both[["error", "ebal_error"]] = both[["error", "ebal_error"]].fillna("")
    infos = both[["rep", *INFO_COLUMNS]].drop_duplicates("rep").reset_index(drop=True)
    reps = both[[c for c in both.columns if c not in INFO_COLUMNS]]
    if len(reps) != len(reps.drop_duplicates(["rep", "scenario", "quantity", "estimator"])):
        raise SystemExit("--combine: the files share replicate numbers; use --start to run disjoint ones")
    return reps, infos


def _times(args) -> tuple[float, ...]:
    return tuple(sorted(set(args.times) | {12.0}))


def _plain(value):
    """JSON for what json cannot write: numpy scalars as numbers, paths as text."""
    return value.item() if isinstance(value, np.generic) else str(value)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--replicates", type=int, default=200)
    p.add_argument("--n", type=int, default=500, help="patients per replicate cohort")
    p.add_argument("--bootstrap", type=int, default=200, help="resamples per replicate (scenario correct)")
    p.add_argument("--workers", type=int, default=1, help="worker processes")
    p.add_argument("--seed", type=int, default=1000, help="replicate r's cohort uses seed + r")
    p.add_argument("--start", type=int, default=0, help="first replicate number r (to split a run "
                   "into disjoint parts; --combine pools them)")
    p.add_argument("--truth-n", type=int, default=200_000)
    p.add_argument("--truth-seed", type=int, default=99)
    p.add_argument("--tau", type=float, default=24.0, help="RMST horizon, months")
    p.add_argument("--times", type=float, nargs="+", default=[6.0, 12.0, 24.0], help="horizons, months")
    p.add_argument("--drop", default="prior_response", help="confounder left out of the misspecified model")
    p.add_argument("--experiment", type=Path, default=None, help="analysis YAML with the confounders "
                   "[default: experiments/paper.yaml]")
    p.add_argument("--twin-config", type=Path, default=None, help="twin cohort YAML [default: "
                   "experiments/cohorts/default.yaml]")
    p.add_argument("--combine", type=Path, nargs="+", default=None, help="do not simulate: pool the "
                   "per-replicate CSVs of earlier --out runs (same --tau, --times, truth settings)")
    p.add_argument("--out", type=Path, default=None, help="write the truth, settings and summary as JSON "
                   "here, and the per-replicate estimates as CSV next to it (same name, .csv)")
    return p


def _check(parser, args, config) -> None:
    if args.replicates < 2 or args.n < 50 or args.bootstrap < 0 or args.workers < 1:
        parser.error("need --replicates >= 2, --n >= 50, --bootstrap >= 0, --workers >= 1")
    if args.drop not in config.confounders:
        parser.error(f"--drop {args.drop} is not one of the confounders {', '.join(config.confounders)}")
    if args.tau <= 0 or min(args.times) <= 0:
        parser.error("--tau and --times must be positive months")


def main(argv: list[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    config = load_config(args.experiment)
    _check(parser, args, config)
    twin_config = twin.load_config(args.twin_config) if args.twin_config else None
    start = time.time()
    reps, infos = load_replicates(args.combine) if args.combine else simulate(args, config, twin_config)
    truth = true_values(args.truth_n, args.truth_seed, _times(args), args.tau, twin_config)
    summary = summarise(reps, truth)
    elapsed = time.time() - start
    print(f"truth (n = {args.truth_n}, seed {args.truth_seed}; potential PFS outcomes, ATE): "
          + ", ".join(f"{k} {v:.4f}" for k, v in truth.items()))
    print(f"\n{infos['rep'].nunique()} replicates, n = {args.n}, tau = {args.tau:g} months, bootstrap "
          f"{args.bootstrap} (scenario correct); twin {args.twin_config or 'default cohort'}; confounders "
          f"{', '.join(config.confounders)}; misspecified models leave out {args.drop}")
    if args.combine:
        print(f"pooled from {', '.join(map(str, args.combine))} (n and bootstrap: as those runs had them)")
    print("coverage: cover_pct = bootstrap percentile CI (what adjusted_survival reports), "
          "cover_wald = estimate +- 1.96 bootstrap SE")
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print()
    print("\n".join(verdicts(summary, infos)))
    left_out = infos[infos["error"] != ""]
    print(f"failed bootstrap resamples (all replicates): {int(infos['boot_failed'].sum())}; "
          f"replicates with warnings: "
          f"{int((infos['warnings'] > 0).sum())}; replicates left out: {len(left_out)}"
          + (f" (first: {left_out['error'].iloc[0]})" if len(left_out) else ""))
    how = " (pooling only)" if args.combine else f" with {args.workers} worker(s)"
    print(f"elapsed {elapsed:.0f} s{how}")
    if args.out is not None:
        payload = {"settings": vars(args),
                   "confounders": list(config.confounders), "truth": truth, "elapsed_s": elapsed,
                   "summary": summary.to_dict(orient="records"),
                   "entropy_max_abs_smd": float(infos["ebal_max_smd"].max()),
                   "entropy_max_abs_smd_raw": float(infos["ebal_max_smd_raw"].max())}
        args.out.write_text(json.dumps(payload, indent=1, default=_plain))
        reps.merge(infos, on="rep").to_csv(args.out.with_suffix(".csv"), index=False)


if __name__ == "__main__":
    main()

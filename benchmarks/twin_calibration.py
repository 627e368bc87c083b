"""Calibrate the digital twin to the published table, or report how well it matches.

    python benchmarks/twin_calibration.py          # target vs achieved at n = 200,000
    python benchmarks/twin_calibration.py --fit    # re-run the calibration, print new parameters

The report uses Kaplan-Meier medians (`calibration_summary`, with the project's one KM,
`ml.stats.km`) on the observed (censored) table, crude and IPTW-weighted with the true
propensity (ATE weights).

The fit works on the latent, uncensored potential times instead: censoring in the
twin is independent of the event times, so the KM median converges to the median
of the latent times, and latent medians are smooth in the parameters and cheap
(no KM per evaluation). Common random numbers (one fixed seed) make the objective
deterministic, so Nelder-Mead can be used.

What is tuned: PFS Weibull scale and shape, a common multiplier of the propensity
log odds ratios (strength of confounding, pattern kept as configured) with the
intercept solved so that P(CIA) = 45/101, and the post-progression Weibull scale.
The true log hazard ratios stay as configured (CIA -0.60).

Why the published numbers cannot all be hit (n = 101 medians are noisy, and they
are not jointly reachable by a Weibull PH model with a constant CIA effect):
  1. With a common shape k and a constant CIA hazard ratio, each patient's CIA
     survival curve is the CI curve stretched in time by c = exp(0.60 / k). So
     IPTW CIA / IPTW CI = c exactly, and crude CIA / c is the median of the CIA
     group under CI. Crude CIA = IPTW CIA (11.49 = 11.49) says the CIA group is
     no better than everyone; crude CI < IPTW CI (6.06 < 6.89) says the CI group is
     worse than everyone. The population is the mixture of the two groups, so
     both cannot hold: confounding that lowers crude CI raises crude CIA.
  2. Overall median 7.10 with 45 % of patients at median 11.49 and 55 % at 6.06
     needs the CIA curve to fall to ~0.62 by 7.1 months and then stay almost flat
     until 11.5 (or the CI curve to fall from 0.5 to ~0.4 within one month); any
     single-shape PH model puts the mixture median near 8.
The fit is therefore a least-squares compromise on log medians (equal weights;
the IPTW CIA target, "about 11.5" in the brief, half weight). It reproduces P(CIA),
OS, and the crude PFS medians by arm, and keeps the IPTW CIA / CI ratio (the
causal contrast) close to the published 1.67; the overall PFS median and the two
IPTW medians stay above / below their targets, as printed by the report.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
from scipy import optimize

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from features import twin  # noqa: E402
from features.contract import OS_EVENT, OS_TIME, PFS_EVENT, PFS_TIME, TREATED, TREATMENT  # noqa: E402
from ml.stats.km import km_median_fast  # noqa: E402

PUBLISHED_TARGETS: dict[str, float] = {
    "pfs_median_all": 7.10,
    "os_median_all": 19.47,
    "pfs_median_cia": 11.49,
    "pfs_median_ci": 6.06,
    "pfs_median_cia_iptw": 11.49,
    "pfs_median_ci_iptw": 6.89,
    "p_cia": 45 / 101,
}
"""The study's published summary (n = 101) that the twin is calibrated to."""

REPORT_N = 200_000
REPORT_SEED = 2024
FIT_SEED = 7
TARGET_P_CIA = PUBLISHED_TARGETS["p_cia"]
MEDIAN_TARGETS = {k: v for k, v in PUBLISHED_TARGETS.items() if k != "p_cia"}
TARGET_WEIGHTS = {"pfs_median_cia_iptw": 0.5}
"""Relative weight in the fit; 1.0 unless listed (the IPTW CIA target is 'about')."""


# -------------------------------------------------------------------- summary


def calibration_summary(cohort: twin.TwinCohort) -> dict[str, float]:
    """Kaplan-Meier medians (crude and IPTW with the *true* propensity) and P(CIA).

    IPTW uses ATE weights, 1/e for CIA and 1/(1-e) for CI, so each weighted arm
    stands for the whole population under that regimen. A median the curve never
    reaches is NaN.
    """
    data, e = cohort.data, cohort.truth["true_propensity"].to_numpy()
    cia = data[TREATMENT].to_numpy() == TREATED
    pfs = data[PFS_TIME].to_numpy(), data[PFS_EVENT].to_numpy()
    os_ = data[OS_TIME].to_numpy(), data[OS_EVENT].to_numpy()
    everyone = np.ones(cia.size, dtype=bool)
    return {
        "pfs_median_all": _median(*pfs, everyone),
        "os_median_all": _median(*os_, everyone),
        "pfs_median_cia": _median(*pfs, cia),
        "pfs_median_ci": _median(*pfs, ~cia),
        "pfs_median_cia_iptw": _median(*pfs, cia, 1.0 / e),
        "pfs_median_ci_iptw": _median(*pfs, ~cia, 1.0 / (1.0 - e)),
        "p_cia": float(cia.mean()),
    }


def _median(time: np.ndarray, event: np.ndarray, mask: np.ndarray,
            weights: np.ndarray | None = None) -> float:
    """Kaplan-Meier median of the masked rows, optionally weighted."""
    return km_median_fast(time[mask], event[mask], None if weights is None else weights[mask])


# ------------------------------------------------------------------ parameters


def free_parameters(config: twin.TwinConfig) -> np.ndarray:
    """The tuned parameters as an unconstrained vector (confounding multiplier = 1)."""
    return np.array([np.log(config.pfs.scale), np.log(config.pfs.shape), 0.0,
                     np.log(config.pps.scale)])


def with_parameters(config: twin.TwinConfig, theta: np.ndarray,
                    design: np.ndarray) -> twin.TwinConfig:
    """Config with `theta` applied; the propensity intercept is solved for P(CIA)."""
    log_scale, log_shape, log_confounding, log_pps_scale = theta
    odds = {k: v * np.exp(log_confounding)
            for k, v in config.propensity.log_odds_ratios.items()}
    propensity = dataclasses.replace(config.propensity, log_odds_ratios=odds)
    propensity = dataclasses.replace(
        propensity, intercept=solve_intercept(propensity, design, TARGET_P_CIA))
    pfs = dataclasses.replace(config.pfs, scale=float(np.exp(log_scale)),
                              shape=float(np.exp(log_shape)))
    pps = dataclasses.replace(config.pps, scale=float(np.exp(log_pps_scale)))
    return dataclasses.replace(config, propensity=propensity, pfs=pfs, pps=pps)


def solve_intercept(propensity, design: np.ndarray, target: float) -> float:
    """Intercept whose mean true propensity over the covariate sample equals `target`."""
    def gap(intercept: float) -> float:
        cfg = dataclasses.replace(propensity, intercept=intercept)
        return float(twin.propensity_score(design, cfg).mean()) - target

    return float(optimize.brentq(gap, -10.0, 10.0, xtol=1e-10))


def covariate_sample(config: twin.TwinConfig, n: int, seed: int) -> np.ndarray:
    """The design matrix exactly as `generate(n, seed)` draws it (covariates come first)."""
    rng = np.random.default_rng(seed)
    return twin.design_matrix(twin.draw_covariates(n, config.covariates, rng))


# --------------------------------------------------------------------- latent fit


def weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    order = np.argsort(values)
    cumulative = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cumulative, 0.5 * cumulative[-1])])


def latent_medians(cohort: twin.TwinCohort) -> dict[str, float]:
    """What the KM medians converge to: medians of the uncensored latent times."""
    truth = cohort.truth
    cia = cohort.data["treatment"].to_numpy() == "CIA"
    e = truth["true_propensity"].to_numpy()
    pfs = np.where(cia, truth["pfs_time_cia"], truth["pfs_time_ci"])
    os_ = np.where(cia, truth["os_time_cia"], truth["os_time_ci"])
    ones = np.ones(cia.size)
    return {
        "pfs_median_all": weighted_median(pfs, ones),
        "os_median_all": weighted_median(os_, ones),
        "pfs_median_cia": weighted_median(pfs[cia], ones[cia]),
        "pfs_median_ci": weighted_median(pfs[~cia], ones[~cia]),
        "pfs_median_cia_iptw": weighted_median(pfs[cia], 1.0 / e[cia]),
        "pfs_median_ci_iptw": weighted_median(pfs[~cia], 1.0 / (1.0 - e[~cia])),
    }


def loss(achieved: dict[str, float]) -> float:
    """Weighted sum of squared log errors over the median targets."""
    return sum(TARGET_WEIGHTS.get(k, 1.0) * np.log(achieved[k] / v) ** 2
               for k, v in MEDIAN_TARGETS.items())


SHAPE_RANGE = (1.0, 1.5)
CONFOUNDING_RANGE = (0.4, 2.5)
"""Plausible ranges: Weibull shape of PFS, multiplier of the configured log odds ratios."""


def plausible(theta: np.ndarray) -> bool:
    shape, confounding = np.exp(theta[1]), np.exp(theta[2])
    return bool(SHAPE_RANGE[0] <= shape <= SHAPE_RANGE[1]
                and CONFOUNDING_RANGE[0] <= confounding <= CONFOUNDING_RANGE[1])


def fit(config: twin.TwinConfig, n: int = REPORT_N, seed: int = FIT_SEED) -> twin.TwinConfig:
    """Nelder-Mead on the latent medians; returns the calibrated config."""
    design = covariate_sample(config, n, seed)

    def objective(theta: np.ndarray) -> float:
        if not plausible(theta):
            return 1e3
        candidate = with_parameters(config, theta, design)
        return loss(latent_medians(twin.generate(n, seed, candidate)))

    start = free_parameters(config)
    # explicit 10 % steps: scipy's default step for a zero entry (the log multiplier) is tiny
    simplex = np.vstack([start, start + 0.1 * np.eye(start.size)])
    result = optimize.minimize(objective, start, method="Nelder-Mead",
                               options={"initial_simplex": simplex, "xatol": 1e-4,
                                        "fatol": 1e-9, "maxiter": 600})
    print(f"Nelder-Mead: {result.nfev} evaluations, loss {result.fun:.6f}, {result.message}")
    return with_parameters(config, result.x, design)


# ------------------------------------------------------------------------ report


def calibration_table(config: twin.TwinConfig, n: int = REPORT_N, seed: int = REPORT_SEED):
    """Rows of (target name, published, achieved KM value, relative error)."""
    achieved = calibration_summary(twin.generate(n, seed, config))
    return [(k, v, achieved[k], achieved[k] / v - 1.0) for k, v in PUBLISHED_TARGETS.items()]


def print_table(rows, n: int, seed: int, version: str) -> None:
    print(f"twin config {version}: Kaplan-Meier medians at n = {n:,} (seed {seed})")
    print(f"{'target':<22}{'published':>10}{'achieved':>10}{'rel. error':>12}")
    for name, target, achieved, error in rows:
        print(f"{name:<22}{target:>10.3f}{achieved:>10.3f}{error:>+11.1%}")
    # not a fitted target: the causal contrast, IPTW CIA / CI median (published 11.49 / 6.89)
    values = {name: (target, achieved) for name, target, achieved, _ in rows}
    published, achieved = (values["pfs_median_cia_iptw"][i] / values["pfs_median_ci_iptw"][i]
                           for i in (0, 1))
    print(f"{'(iptw CIA/CI ratio)':<22}{published:>10.3f}{achieved:>10.3f}"
          f"{achieved / published - 1:>+11.1%}")


def print_parameters(config: twin.TwinConfig) -> None:
    """The fitted values as YAML lines to paste into experiments/cohorts/default.yaml."""
    print("propensity:")
    print(f"  intercept: {config.propensity.intercept:.4f}")
    print("  log_odds_ratios:")
    for term, value in config.propensity.log_odds_ratios.items():
        print(f"    {term}: {value:.4f}")
    print(f"pfs:\n  shape: {config.pfs.shape:.4f}\n  scale: {config.pfs.scale:.4f}")
    print(f"pps:\n  scale: {config.pps.scale:.4f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fit", action="store_true", help="re-run the calibration")
    parser.add_argument("--config", type=Path, default=None, help="twin YAML [default.yaml]")
    parser.add_argument("--n", type=int, default=REPORT_N)
    parser.add_argument("--seed", type=int, default=REPORT_SEED)
    args = parser.parse_args(argv)
    config = twin.load_config(args.config)
    if args.fit:
        start = time.perf_counter()
        config = fit(config, n=args.n)
        print(f"fitted in {time.perf_counter() - start:.0f} s; new parameters:")
        print_parameters(config)
    print_table(calibration_table(config, args.n, args.seed), args.n, args.seed, config.version)


if __name__ == "__main__":
    main()

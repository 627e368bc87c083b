"""Digital-twin cohort generator: a synthetic rechallenge cohort with known truth.

The real patient rows of the study are private, so this package draws a cohort with the
same structure (see shared/COHORT.md) from a fully specified data-generating process, and
returns the ground truth with it: the true PFS linear predictor, the true propensity of CIA
and the latent potential event times under both regimens. Every number of the process lives
in a versioned YAML file (experiments/cohorts/default.yaml), calibrated so that the
large-sample Kaplan-Meier medians match the published table (benchmarks/twin_calibration.py).

- `config`: the typed config and `load_config`;
- `labels`: the categories' draw order (checked against the contract) and the design terms;
- `generator`: `generate` and its steps.
"""

from features.twin.config import (
    DEFAULT_CONFIG_PATH,
    CensoringConfig,
    CovariateConfig,
    PropensityConfig,
    TwinConfig,
    WeibullPHConfig,
    load_config,
    true_log_hazard_ratios,
)
from features.twin.generator import (
    DATA_COLUMNS,
    MIN_TIME,
    TIME_DECIMALS,
    TRUTH_COLUMNS,
    TwinCohort,
    covariate_lp,
    design_matrix,
    draw_censoring,
    draw_covariates,
    draw_latent_times,
    generate,
    propensity_score,
    weibull_time,
)
from features.twin.labels import (
    COVARIATE_TERMS,
    DRAW_ORDER,
    HAZARD_TERMS,
    NOISE_FEATURES,
    TREATMENT_TERM,
    check_draw_orders,
)

__all__ = [
    "DEFAULT_CONFIG_PATH", "CensoringConfig", "CovariateConfig", "PropensityConfig", "TwinConfig",
    "WeibullPHConfig", "load_config", "true_log_hazard_ratios",
    "DATA_COLUMNS", "MIN_TIME", "TIME_DECIMALS", "TRUTH_COLUMNS", "TwinCohort", "covariate_lp",
    "design_matrix", "draw_censoring", "draw_covariates", "draw_latent_times", "generate",
    "propensity_score", "weibull_time",
    "COVARIATE_TERMS", "DRAW_ORDER", "HAZARD_TERMS", "NOISE_FEATURES", "TREATMENT_TERM",
    "check_draw_orders",
]

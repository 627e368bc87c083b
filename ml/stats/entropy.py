"""Entropy balancing (Hainmueller 2012): weights under which the confounder means balance exactly.

Among all weights whose weighted confounder means hit a target, entropy balancing takes the ones
closest (in Kullback-Leibler divergence) to uniform base weights. The problem is solved through
its convex dual: the weights are w_i proportional to exp(lambda' c_i), with c_i the patient's
design row minus the target means, and lambda minimises log(sum_i exp(lambda' c_i)), whose
gradient is the weighted mean of c (zero at balance) and whose Hessian is its weighted
covariance. scipy's Newton trust-region solver (`trust-exact`) takes the exact Hessian.

- ATE: each group is re-weighted to the overall (unweighted) means of the design, as R
  WeightIt's `method = "ebal"` does for the ATE; each group's weights then sum to its size
  (mean weight 1, the scale of stabilised IPTW weights).
- ATT: treated patients keep weight 1; controls are re-weighted to the treated means and their
  weights sum to the number of treated patients (the scale of the odds weights e / (1 - e)).

The design is the propensity model's (`features.pipeline.build_preprocessor`: median / mode
imputation, scaled numbers, one-hot levels without the reference), so 'balance' means the same
terms as for the logistic propensity model; the means of the imputed values balance (with missing
values, the balance of the observed values alone is close to, not exactly, zero). A target on or
outside the edge of a group's range of a term, or in general outside the interior of the convex
hull of its design rows, admits no positive weights: `CausalInputError` names the confounder.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from sklearn.pipeline import Pipeline

from features import schema
from features.contract import split_term
from features.pipeline import FeatureSpec, build_preprocessor, cohort_spec
from ml.stats.errors import CausalInputError
from ml.stats.positivity import check_confounders, group_sizes
from ml.stats.weighting import (
    DEFAULT_CONFOUNDERS,
    warn_extreme_weights,
    weight_diagnostics,
)

ESTIMANDS = ("ate", "att")
BALANCE_TOLERANCE = 1e-6
"""Largest |SMD| (treated minus control, pooled unweighted SD) accepted on any design term."""
SOLVER_GTOL = 1e-10
"""Dual gradient tolerance: the weighted mean minus the target, in SDs of each term."""
GAP_TOLERANCE = BALANCE_TOLERANCE / 10
"""Largest accepted |weighted mean - target| of a group, in SDs of the term (the solver's check)."""
MAX_ITER = 500

METHOD = ("entropy balancing (Hainmueller 2012; R WeightIt method = 'ebal'): weights closest to "
          "uniform in Kullback-Leibler divergence whose weighted means of the propensity design "
          "terms (imputed, one-hot) equal the target exactly; ATE: each group to the overall means, "
          "ATT: controls to the treated means; convex dual solved by Newton trust region (scipy)")


def confounder_design(df: pd.DataFrame, confounders: tuple[str, ...] | list[str]
                      ) -> tuple[Pipeline, pd.DataFrame]:
    """The propensity model's design matrix of `confounders`, without fitting a propensity model.

    Returns the fitted preprocessor (as the step "pre" of a Pipeline, where `IPTW.model` keeps
    it) and the design: one column per number (imputed, scaled), one 0/1 column per
    non-reference level, named by term (`ecog=1`).
    """
    full = cohort_spec(include_treatment=False)
    spec = FeatureSpec(
        numeric=tuple(c for c in full.numeric if c in confounders),
        categorical={c: lv for c, lv in full.categorical.items() if c in confounders},
    )
    pre = build_preprocessor(spec)
    design = pre.fit_transform(df)
    return Pipeline([("pre", pre)]), design.astype(float)


@dataclass(frozen=True)
class EntropyBalance:
    """Entropy balancing weights of one cohort; the fields `estimate_iptw`'s `IPTW` has, and more.

    `propensity` is None (entropy balancing fits no propensity model); `model` holds the fitted
    design preprocessor as its step "pre" (so `weighting.propensity_design` works on it).
    `max_abs_smd` is the largest |SMD| left on a design term; `multipliers` the dual solution
    (lambda) per re-weighted group, on the terms scaled to unit SD.
    """

    propensity: None
    weights: np.ndarray
    treated: np.ndarray
    confounders: tuple[str, ...]
    estimand: str
    stabilized: bool
    truncate: None
    diagnostics: pd.DataFrame
    model: Pipeline
    terms: tuple[str, ...]
    max_abs_smd: float
    multipliers: dict[str, np.ndarray]
    method: str = "ebal"


def _dual(c: np.ndarray):
    """Objective, gradient and Hessian of the dual log-sum-exp, and the weights it implies."""
    def weights(lam):
        eta = c @ lam
        e = np.exp(eta - eta.max())
        return e / e.sum(), eta.max() + np.log(e.sum())

    def fun(lam):
        return weights(lam)[1]

    def jac(lam):
        return weights(lam)[0] @ c

    def hess(lam):
        w = weights(lam)[0]
        g = w @ c
        return (c * w[:, None]).T @ c - np.outer(g, g)

    return fun, jac, hess, weights


def _confounder_of(terms: list[str]) -> str:
    return ", ".join(dict.fromkeys(f"'{split_term(t)[0]}' (term {t})" for t in terms))


def _check_reachable(x: np.ndarray, target: np.ndarray, terms: list[str], label: str) -> np.ndarray:
    """Which terms need a constraint; raise for a target no positive weights can reach.

    A target on or outside the edge of a group's values of a term (e.g. a level that no patient
    of the group has, or that all have) needs zero weights: infeasible. A term constant in the
    group and equal to its target is balanced by any weights (left out of the solve).
    """
    lo, hi = x.min(axis=0), x.max(axis=0)
    tol = 1e-12 * np.maximum(1.0, np.abs(target))
    constant = hi - lo <= tol
    met = constant & (np.abs(target - lo) <= tol)
    out = ~met & ((target <= lo + tol) | (target >= hi - tol))
    if out.any():
        bad = [t for t, o in zip(terms, out, strict=True) if o]
        raise CausalInputError(
            f"entropy balancing is infeasible: the target mean of confounder {_confounder_of(bad)} "
            f"is at or beyond the edge of the values of the {label} group (e.g. a level that no "
            f"{label} patient has, or that every one has); no positive weights can balance it. "
            "Drop that confounder or merge its rare level, or use method 'logistic' or 'overlap'")
    return ~met


def balance_group(x: np.ndarray, target: np.ndarray, scale: np.ndarray, terms: list[str],
                  label: str) -> tuple[np.ndarray, np.ndarray]:
    """Weights (summing to 1) of the rows of `x` whose weighted column means equal `target`.

    `scale` is each column's SD (the dual is solved on standardised columns, which leaves the
    weights unchanged and makes the tolerance a fraction of an SD). Returns (weights, lambda).
    Raises `CausalInputError` naming the terms when the target cannot be reached.
    """
    keep = _check_reachable(x, target, terms, label) & (scale > 0)
    x, target, scale = x[:, keep], target[keep], scale[keep]
    kept_terms = [t for t, k in zip(terms, keep, strict=True) if k]
    c = (x - target) / scale
    fun, jac, hess, weights = _dual(c)
    res = minimize(fun, np.zeros(c.shape[1]), jac=jac, hess=hess, method="trust-exact",
                   options={"gtol": SOLVER_GTOL, "maxiter": MAX_ITER})
    w = weights(res.x)[0]
    gap = np.abs(w @ c)
    if not np.all(gap < GAP_TOLERANCE):
        worst = [kept_terms[i] for i in np.argsort(-gap)[:3] if gap[i] >= GAP_TOLERANCE]
        raise CausalInputError(
            f"entropy balancing did not converge for the {label} group ({res.message.strip()}; "
            f"largest remaining imbalance {gap.max():.2g} SD on {_confounder_of(worst)}): the "
            "target means lie at or beyond the edge of what the group's patients span. Drop or "
            "coarsen those confounders, or use method 'logistic' or 'overlap'")
    lam = np.zeros(len(keep))
    lam[keep] = res.x
    return w, lam


def _pooled_sd(x: np.ndarray, t: np.ndarray) -> np.ndarray:
    return np.sqrt((x[t].var(axis=0, ddof=1) + x[~t].var(axis=0, ddof=1)) / 2)


def entropy_weights(design: np.ndarray, treated: np.ndarray, estimand: str = "ate",
                    terms: list[str] | None = None, labels: tuple[str, str] = (schema.TREATED,
                                                                             schema.CONTROL)
                    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Entropy balancing weights for a design matrix (rows: patients, columns: terms).

    Returns (weights, lambda per re-weighted group). Scale: see the module docstring.
    Raises `CausalInputError` when the constraints are infeasible or the solver fails.
    """
    x = np.asarray(design, dtype=float)
    t = np.asarray(treated, dtype=bool)
    terms = terms or [f"column {j}" for j in range(x.shape[1])]
    if estimand not in ESTIMANDS:
        raise ValueError(f"entropy balancing estimand must be one of {ESTIMANDS}, got '{estimand}'")
    scale = x.std(axis=0)
    w = np.ones(len(t))
    multipliers = {}
    if estimand == "ate":
        target = x.mean(axis=0)
        for label, mask in ((labels[0], t), (labels[1], ~t)):
            wg, multipliers[label] = balance_group(x[mask], target, scale, terms, label)
            w[mask] = wg * mask.sum()
    else:
        wc, multipliers[labels[1]] = balance_group(x[~t], x[t].mean(axis=0), scale, terms, labels[1])
        w[~t] = wc * t.sum()
    return w, multipliers


def design_smd(design: np.ndarray, treated: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted SMD per design column: treated minus control, pooled SD of the unweighted groups."""
    x = np.asarray(design, dtype=float)
    t = np.asarray(treated, dtype=bool)
    diff = np.average(x[t], axis=0, weights=weights[t]) - np.average(x[~t], axis=0, weights=weights[~t])
    sd = _pooled_sd(x, t)
    return np.where(sd > 0, diff / np.where(sd > 0, sd, 1.0), 0.0)


def _warn_extreme(diagnostics: pd.DataFrame) -> None:
    """Warn with the ESS when exact balance was bought with a few heavy patients (the IPTW rule;
    truncating would undo the exact balance, so the advice differs)."""
    warn_extreme_weights(diagnostics, kind="entropy balancing",
                         advice="the groups differ strongly on the confounders: consider fewer or coarser "
                                "confounders, or overlap weights (method 'overlap')", stacklevel=3)


def estimate_entropy_balance(df: pd.DataFrame,
                             confounders: tuple[str, ...] | list[str] = DEFAULT_CONFOUNDERS,
                             estimand: str = "ate", group: str = schema.TREATMENT,
                             treated: str = schema.TREATED, control: str = schema.CONTROL
                             ) -> EntropyBalance:
    """Check the input (as `estimate_iptw` does), build the design and weight by entropy balancing.

    Raises `CausalInputError` for a single group, an unusable confounder, or constraints that
    cannot be met; warns `ExtremeWeightsWarning` with the ESS per group.
    """
    if estimand not in ESTIMANDS:
        raise ValueError(f"entropy balancing estimand must be one of {ESTIMANDS}, got '{estimand}'")
    group_sizes(df, group, treated, control)
    usable = check_confounders(df, confounders, group, treated, control)
    model, design = confounder_design(df, usable)
    t = (df[group] == treated).to_numpy()
    x = design.to_numpy()
    w, multipliers = entropy_weights(x, t, estimand, list(design.columns), (treated, control))
    max_smd = float(np.max(np.abs(design_smd(x, t, w)), initial=0.0))
    if max_smd >= BALANCE_TOLERANCE:
        raise CausalInputError(
            f"entropy balancing left |SMD| {max_smd:.2g} (above {BALANCE_TOLERANCE:g}); the groups "
            "barely overlap on the confounders: drop or coarsen some, or use method 'logistic'")
    diagnostics = weight_diagnostics(w, t, (treated, control))
    _warn_extreme(diagnostics)
    return EntropyBalance(propensity=None, weights=w, treated=t, confounders=usable, estimand=estimand,
                          stabilized=False, truncate=None, diagnostics=diagnostics, model=model,
                          terms=tuple(design.columns), max_abs_smd=max_smd, multipliers=multipliers)


def refit_entropy_weights(design: np.ndarray, treated: np.ndarray, estimand: str) -> np.ndarray:
    """Entropy balancing weights of a (resampled) design, for the bootstrap's re-weighting.

    Raises `CausalInputError` when a resample cannot be balanced (the bootstrap counts it failed).
    """
    return entropy_weights(design, treated, estimand)[0]
